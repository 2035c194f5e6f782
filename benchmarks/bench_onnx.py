"""ONNX Runtime against torch eager on the CPU, per network and end to end.

    python benchmarks/bench_onnx.py --model model/ --data ../shared/data/busi

``--model`` is a model folder written with ``tumorseg export --onnx``. Printed, for
each fused network: ms per image at batch 1 and at batch 8 with each engine (inputs
cut from real images, as inference feeds them); then ``Segmenter.segment_batch``
over ``--images`` real images with each engine: images/s, and the share of mask
pixels on which the two engines disagree (largest per image, and mean).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from tumorseg.bulk.listing import list_inputs
from tumorseg.inference import Segmenter
from tumorseg.inference.gray_branch import graynet_inputs
from tumorseg.inference.multiscale import tile_inputs, to_canvas, whole_canvas
from tumorseg.inference.onnx_engine import OnnxNetwork
from tumorseg.inference.tensors import stack_resized
from tumorseg.io import load_image


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="model folder with ONNX graphs")
    parser.add_argument("--data", default="../shared/data/busi")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="torch and ORT threads")
    parser.add_argument("--repeats", type=int, default=3, help="best of N timings")
    return parser.parse_args()


def network_inputs(segmenter: Segmenter, grays: list[np.ndarray]) -> dict[str, np.ndarray]:
    config = segmenter.config
    networks = config.networks
    canvases = [to_canvas(gray, config.multiscale.canvas_size) for gray in grays]
    size = config.multiscale.canvas_size
    tiles = np.concatenate(
        [tile_inputs(c, None, whole_canvas(size), networks.fcn_tile_size) for c in canvases]
    )
    return {
        "classifier": stack_resized(grays, networks.classifier_size),
        "graynet": graynet_inputs(grays, networks, config.binarizer),
        "fcn": tiles,
    }


def ms_per_image(model: torch.nn.Module, inputs: np.ndarray, batch: int, repeats: int) -> float:
    best = float("inf")
    with torch.inference_mode():
        for _ in range(repeats):
            start = time.perf_counter()
            for i in range(0, len(inputs), batch):
                model(torch.from_numpy(np.ascontiguousarray(inputs[i : i + batch])))
            best = min(best, time.perf_counter() - start)
    return 1000 * best / len(inputs)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    paths = [item.absolute_path for item in list_inputs(args.data)][: args.images]
    grays = [load_image(path) for path in paths]
    engines = {
        engine: Segmenter.from_folder(args.model, device="cpu", engine=engine)
        for engine in ("torch", "onnx")
    }
    for role in ("classifier", "graynet", "fcn"):  # ORT threads are fixed at creation
        setattr(
            engines["onnx"].models,
            role,
            OnnxNetwork(getattr(engines["onnx"].models, role).path, args.threads),
        )
    inputs = network_inputs(engines["torch"], grays)
    print(f"{len(grays)} images, {args.threads} threads; ms per image (best of {args.repeats})")
    print(f"{'network':<11} {'torch b1':>9} {'onnx b1':>9} {'torch b8':>9} {'onnx b8':>9}")
    for role, batch in inputs.items():
        cells = [
            ms_per_image(getattr(engines[engine].models, role), batch, size, args.repeats)
            for size in (1, 8)
            for engine in ("torch", "onnx")
        ]
        print(f"{role:<11} " + " ".join(f"{c:>9.2f}" for c in cells))
    masks = {}
    for name, segmenter in engines.items():
        start = time.perf_counter()
        results = segmenter.segment_batch(grays)
        seconds = time.perf_counter() - start
        masks[name] = [r.mask for r in results]
        print(f"segment_batch, {name:<5}: {len(grays) / seconds:.1f} images/s")
    disagreement = [np.mean(a != b) for a, b in zip(masks["torch"], masks["onnx"], strict=True)]
    print(
        f"mask pixels where the engines disagree: max {max(disagreement):.2e}, "
        f"mean {np.mean(disagreement):.2e} per image"
    )


if __name__ == "__main__":
    main()
