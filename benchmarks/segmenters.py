"""What the speed benchmarks share: where their models come from, and the GPU's load.

A benchmark takes its models from the registry (``--tracking-uri``), from a model
folder (``--model-folder``: no MLflow needed, e.g. on a machine that has only torch)
or, with neither, from ``--preset``'s networks with random weights (the same
arithmetic, for speed only).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import threading

import torch

from tumorseg.config import ENGINES
from tumorseg.inference import Segmenter
from tumorseg.training.config import PRESETS


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tracking-uri", help="registered models (see --model-alias)")
    parser.add_argument("--model-alias", default="champion")
    parser.add_argument("--model-folder", help="a folder from tumorseg export")
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="torch",
        help="with --model-folder: onnx runs its ONNX graphs on ONNX Runtime (CPU)",
    )
    parser.add_argument(
        "--preset",
        default="cpu",
        choices=sorted(PRESETS),
        help="without --tracking-uri or --model-folder: this preset's networks, untrained",
    )
    parser.add_argument("--device", help="default: the first GPU when there is one")


def load_segmenter(args: argparse.Namespace) -> Segmenter:
    """The segmenter that ``add_model_arguments``' flags name."""
    if args.tracking_uri and args.model_folder:
        raise SystemExit("give --tracking-uri or --model-folder, not both")
    if args.model_folder:
        return Segmenter.from_folder(args.model_folder, args.device, args.engine)
    if args.tracking_uri:
        from tumorseg.tracking import ModelSelector, load_model_set

        models, config = load_model_set(
            args.tracking_uri, ModelSelector(args.model_alias), device=None
        )
        return Segmenter(models, config, args.device)
    return Segmenter.untrained(0, PRESETS[args.preset].segmenter, args.device)


def describe(args: argparse.Namespace) -> str:
    if args.model_folder:
        return f"model folder {args.model_folder} ({args.engine})"
    if args.tracking_uri:
        return f"registered models ({args.model_alias})"
    return f"{args.preset} preset's networks, untrained"


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

    def suffix(self) -> str:
        return "" if self.mean is None else f", GPU utilisation {self.mean:.0f} %"
