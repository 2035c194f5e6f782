"""Bulk segmentation throughput: a bare in-process loop against the Ray Data job.

    python benchmarks/bench_segment.py --data ../shared/data/busi --tracking-uri sqlite:///mlflow.db

(a) reads and decodes each image with ``load_image`` and runs ``Segmenter.segment_batch``
    in this process, batch after batch (nothing written);
(b) runs ``jobs/segment.py``'s pipeline (``run_segmentation``) on the same files into
    a fresh output folder, with at most one actor per stage (the job's defaults),
    with up to two for the multi-scale FCN only, and with up to two per stage.
Both use the same registered models. Printed: images/s of each, b/a, and 2-actor/1-actor.
Times include everything each path does end to end (for (b): listing, loading the
models, starting the actors, writing masks and Parquet). (b) also gives its steady
rate: images per second between the first and the last committed batch (from the
results' ``finished_at``), which leaves out the start-up that a long job amortises.
On a GPU, the GPU's utilisation is sampled during (b).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import ray
import torch

from tumorseg.bulk import SegmentJobConfig, run_segmentation
from tumorseg.bulk.ledger import RESULTS_DIR
from tumorseg.bulk.listing import list_inputs
from tumorseg.inference import Segmenter
from tumorseg.io import load_image
from tumorseg.tracking import ModelSelector, load_model_set


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="../shared/data/busi")
    parser.add_argument("--images", type=int, help="default: every image of --data")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="link each image this many times: an archive-sized run (the images repeat)",
    )
    parser.add_argument("--tracking-uri")
    parser.add_argument("--model-alias", default="champion")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--cpus-per-actor", type=float, default=0.25)
    parser.add_argument("--num-gpus", type=float, default=0.0)
    parser.add_argument("--torch-threads", type=int, help="per actor (default: its CPUs)")
    parser.add_argument(
        "--in-process-only", action="store_true", help="time (a) only: no Ray Data job"
    )
    return parser.parse_args()


def pick_images(data: str, count: int | None, folder: Path, repeat: int = 1) -> list[Path]:
    """``count`` images of the corpus (masks excluded), each linked ``repeat`` times
    into ``folder`` (distinct names, so the job sees distinct inputs)."""
    inputs = list_inputs(data)[:count]
    if count is not None and len(inputs) < count:
        raise SystemExit(f"{data} has only {len(inputs)} images, {count} asked")
    links = []
    for copy in range(repeat):
        for i, item in enumerate(inputs):
            link = folder / f"{copy:02d}-{i:05d}{Path(item.absolute_path).suffix}"
            link.symlink_to(item.absolute_path)
            links.append(link)
    return links


def in_process(paths: list[Path], args: argparse.Namespace) -> float:
    models, config = load_model_set(args.tracking_uri, ModelSelector(args.model_alias), device=None)
    segmenter = Segmenter(models, config)
    start = time.perf_counter()
    for i in range(0, len(paths), args.batch_size):
        images = [load_image(p) for p in paths[i : i + args.batch_size]]
        segmenter.segment_batch(images)
    return len(paths) / (time.perf_counter() - start)


def with_ray(
    folder: Path, concurrency: int, fcn_concurrency: int | None, args: argparse.Namespace
) -> tuple[float, float]:
    """End-to-end and steady images/s of the Ray Data job."""
    with tempfile.TemporaryDirectory() as output:
        config = SegmentJobConfig(
            input=str(folder),
            output=output,
            tracking_uri=args.tracking_uri,
            models=ModelSelector(args.model_alias),
            batch_size=args.batch_size,
            concurrency=concurrency,
            fcn_concurrency=fcn_concurrency,
            cpus_per_actor=args.cpus_per_actor,
            num_gpus=args.num_gpus,
            torch_threads=args.torch_threads,
        )
        summary = run_segmentation(config)
        steady = steady_rate(Path(output) / RESULTS_DIR)
    if summary.errors:
        print(f"  warning: {summary.errors} error rows")
    return summary.images_per_second, steady


def steady_rate(results: Path) -> float:
    """Images/s between the first and the last committed batch (start-up left out)."""
    finished = pq.read_table(results, columns=["finished_at"]).column(0).to_pandas()
    batches = finished.value_counts().sort_index()
    seconds = (batches.index[-1] - batches.index[0]).total_seconds()
    return (batches.sum() - batches.iloc[0]) / seconds if seconds > 0 else float("nan")


class GpuSampler:
    """Mean GPU utilisation from ``nvidia-smi`` while a block runs (None without a GPU)."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            query = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
            found = subprocess.run(query, capture_output=True, text=True, check=False)
            if found.returncode == 0 and found.stdout.strip():
                self.samples.append(float(found.stdout.split()[0]))

    def __enter__(self) -> GpuSampler:
        if torch.cuda.is_available() and shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()

    @property
    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        paths = pick_images(args.data, args.images, folder, args.repeat)
        repeated = f" ({args.repeat}× each)" if args.repeat > 1 else ""
        print(f"{len(paths)} images from {args.data}{repeated}, batch size {args.batch_size}")
        bare = in_process(paths, args)
        print(f"(a) in-process Segmenter.segment_batch loop: {bare:.2f} images/s")
        if args.in_process_only:
            return
        ray.init(address="local", log_to_driver=False)
        rates = {}
        for label, concurrency, fcn in RAY_RUNS:
            with GpuSampler() as gpu:
                rates[label], steady = with_ray(folder, concurrency, fcn, args)
            busy = "" if gpu.mean is None else f", GPU utilisation {gpu.mean:.0f} %"
            print(
                f"(b) Ray Data job, {label}: {rates[label]:.2f} images/s end to end "
                f"(b/a {rates[label] / bare:.2f}); steady {steady:.2f} images/s "
                f"(b/a {steady / bare:.2f}){busy}"
            )
        ray.shutdown()
    one, two = rates["1 actor per stage"], rates["2 actors per stage"]
    print(f"2 actors / 1 actor per stage = {two / one:.2f}")


#: (label, concurrency, fcn_concurrency) of each Ray Data run.
RAY_RUNS = (
    ("1 actor per stage", 1, None),  # the job's defaults
    ("FCN up to 2, others 1", 1, 2),
    ("2 actors per stage", 2, 2),
)


if __name__ == "__main__":
    main()
