"""Bulk segmentation throughput: a bare in-process loop against the Ray Data job.

    python benchmarks/bench_segment.py --data ../shared/data/busi --tracking-uri sqlite:///mlflow.db
    python benchmarks/bench_segment.py --model-folder model/ --in-process-only --fcn-share 0.2

(a) reads and decodes each image with ``load_image`` and runs ``Segmenter.segment_batch``
    in this process, batch after batch (nothing written); also printed: the rate of
    ``segment_batch`` alone on images decoded beforehand, and each stage's share;
(b) runs ``jobs/segment.py``'s pipeline (``run_segmentation``) on the same files into
    a fresh output folder, with at most one actor per stage (the job's defaults),
    with up to two for the multi-scale FCN only, and with up to two per stage.
Both use the same models (registered, a model folder, or untrained: see
``segmenters.py``). ``--fcn-share`` sends that share of each batch down the multi-scale
FCN's route (forced routes: a cost at a chosen route mix, whatever the policy).
Printed: images/s of each, b/a, and 2-actor/1-actor.
Times include everything each path does end to end (for (b): listing, loading the
models, starting the actors, writing masks and Parquet). (b) also gives its steady
rate: images per second between the first and the last committed batch (from the
results' ``finished_at``), which leaves out the start-up that a long job amortises.
On a GPU, the GPU's utilisation is sampled during (a) and (b).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from segmenters import GpuSampler, add_model_arguments, describe, load_segmenter

from tumorseg.bulk.listing import list_inputs
from tumorseg.io import load_image


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
    add_model_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--fcn-share",
        type=float,
        help="force this share of each batch onto the FCN's route, the rest onto the gray "
        "net's (default: the policy routes)",
    )
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
    """(a): images/s of decoding and segmenting batch after batch; prints the rate of
    ``segment_batch`` alone and each stage's milliseconds per image."""
    segmenter = load_segmenter(args)
    batches = [paths[i : i + args.batch_size] for i in range(0, len(paths), args.batch_size)]
    segmenter.segment_batch(
        [load_image(p) for p in batches[0]], forced_routes(len(batches[0]), args)
    )
    start = time.perf_counter()
    with GpuSampler() as gpu:
        for batch in batches:
            segmenter.segment_batch([load_image(p) for p in batch], forced_routes(len(batch), args))
    bare = len(paths) / (time.perf_counter() - start)
    decoded = [[load_image(p) for p in batch] for batch in batches]
    stages: dict[str, list[float]] = defaultdict(list)
    routed = 0
    start = time.perf_counter()
    with GpuSampler() as alone:
        for images in decoded:
            results = segmenter.segment_batch(images, forced_routes(len(images), args))
            routed += sum(1 for r in results if r.pass_tiles)
            for result in results:
                for stage, seconds in result.timings.items():
                    stages[stage].append(seconds)
    rate = len(paths) / (time.perf_counter() - start)
    print(
        f"(a) in-process, {describe(args)} on {segmenter.device}: "
        f"{routed / len(paths):.0%} of the images on the FCN's route"
    )
    print(f"    segment_batch alone (images decoded before): {rate:.2f} images/s{alone.suffix()}")
    shares = ", ".join(
        f"{stage} {1000 * sum(times) / len(paths):.1f}" for stage, times in stages.items()
    )
    # A network stage's time is its batch's, shared over its images; the score is each
    # image's own, and these overlap where per-image work runs on several threads.
    print(f"    ms per image by stage (timed in segment_batch): {shares}")
    print(f"    decode + segment_batch loop: {bare:.2f} images/s{gpu.suffix()}")
    return bare


def forced_routes(count: int, args: argparse.Namespace) -> list | None:
    """``--fcn-share`` of ``count`` images on the heterogeneous route, the rest homogeneous."""
    if args.fcn_share is None:
        return None
    routed = int(np.round(args.fcn_share * count))
    return ["heterogeneous"] * routed + ["homogeneous"] * (count - routed)


def with_ray(
    folder: Path, concurrency: int, fcn_concurrency: int | None, args: argparse.Namespace
) -> tuple[float, float]:
    """End-to-end and steady images/s of the Ray Data job."""
    from tumorseg.bulk import SegmentJobConfig, run_segmentation
    from tumorseg.bulk.ledger import RESULTS_DIR
    from tumorseg.tracking import ModelSelector

    with tempfile.TemporaryDirectory() as output:
        config = SegmentJobConfig(
            input=str(folder),
            output=output,
            tracking_uri=args.tracking_uri,
            model_folder=args.model_folder,
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


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        paths = pick_images(args.data, args.images, folder, args.repeat)
        repeated = f" ({args.repeat}× each)" if args.repeat > 1 else ""
        print(f"{len(paths)} images from {args.data}{repeated}, batch size {args.batch_size}")
        bare = in_process(paths, args)
        if args.in_process_only:
            return
        if not (args.tracking_uri or args.model_folder):
            raise SystemExit("(b) needs trained models: --tracking-uri or --model-folder")
        if args.fcn_share is not None:
            raise SystemExit("--fcn-share forces routes in (a) only: add --in-process-only")
        import ray

        ray.init(address="local", log_to_driver=False)
        rates = {}
        for label, concurrency, fcn in RAY_RUNS:
            with GpuSampler() as gpu:
                rates[label], steady = with_ray(folder, concurrency, fcn, args)
            print(
                f"(b) Ray Data job, {label}: {rates[label]:.2f} images/s end to end "
                f"(b/a {rates[label] / bare:.2f}); steady {steady:.2f} images/s "
                f"(b/a {steady / bare:.2f}){gpu.suffix()}"
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
