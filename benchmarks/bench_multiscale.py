"""The heterogeneous route's cost against one full-canvas pass of the gray net.

    python benchmarks/bench_multiscale.py --data ../shared/data/busi --tracking-uri sqlite:///mlflow.db
    python benchmarks/bench_multiscale.py --preset cpu   # untrained weights
    python benchmarks/bench_multiscale.py --model-folder model/ --compare-cpu   # on a GPU

Times, per image and on the same batches of real images: the whole multi-scale FCN
route (``segment_heterogeneous``: canvas, first guide, every pass, fusion), the
partitions alone (the CPU search that each pass's guide drives), the tile FCN's
forward passes alone on the same number of tiles, and the gray net on the FCN's
canvas (``multiscale.canvas_size``, its inputs built as inference builds them).
Printed: milliseconds per image of each and the route / gray-net ratio. With
``--tracking-uri`` or ``--model-folder`` trained models run (the guides, hence the
partitions, are real); otherwise ``--preset``'s networks with random weights (the same
arithmetic). ``--compare-cpu`` (on a GPU) also runs the route on the CPU, where tiles
are cut and pasted one by one with OpenCV, and prints how far the two maps and masks
differ.
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import replace

import numpy as np
import torch
from segmenters import add_model_arguments, describe, load_segmenter

from tumorseg.bulk.listing import list_inputs
from tumorseg.inference.gray_branch import graynet_inputs, segment_homogeneous
from tumorseg.inference.multiscale import partitions, segment_heterogeneous, to_canvas
from tumorseg.inference.tensors import predict
from tumorseg.io import load_image


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="../shared/data/busi")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    add_model_arguments(parser)
    parser.add_argument("--repeats", type=int, default=2, help="timed passes over the images")
    parser.add_argument(
        "--compare-cpu", action="store_true", help="also run the route on the CPU and compare"
    )
    return parser.parse_args()


def timed(repeats: int, batches: list, run) -> float:
    """Seconds per image of ``run(batch)``, best of ``repeats`` passes after a warm-up."""
    run(batches[0])
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in batches:
            run(batch)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best / sum(len(b) for b in batches)


def main() -> None:
    args = parse_args()
    segmenter = load_segmenter(args)
    device, config = segmenter.device, segmenter.config
    fcn, graynet = segmenter.models.network("fcn"), segmenter.models.network("graynet")
    networks, multiscale = config.networks, config.multiscale
    size = multiscale.canvas_size
    paths = [item.absolute_path for item in list_inputs(args.data)[: args.images]]
    images = [load_image(p) for p in paths]
    batches = [images[i : i + args.batch_size] for i in range(0, len(images), args.batch_size)]
    on_canvas = replace(networks, graynet_size=size)
    by_graynet = config.fcn_guide == "graynet"  # else the FCN's own coarse seed
    guides = {  # the first stage's maps (not timed: every image gets them anyway)
        id(batch): segment_homogeneous(graynet, batch, networks, config.binarizer, device)
        for batch in batches
    }

    def route(batch):
        first = guides[id(batch)] if by_graynet else None
        segment_heterogeneous(fcn, batch, networks, multiscale, device, guides=first)

    def gray_net(batch):
        predict(graynet, graynet_inputs(batch, on_canvas, config.binarizer), device, 16)

    tiles = 0 if by_graynet else 1
    tiles += sum(multiscale.pass_tiles)
    blank = torch.zeros(
        (tiles * args.batch_size, 3, networks.fcn_tile_size, networks.fcn_tile_size)
    )

    def fcn_forward(batch):
        with torch.inference_mode():
            for start in range(0, tiles * len(batch), 256):
                fcn(blank[start : min(start + 256, tiles * len(batch))].to(device))

    def layouts(batch):  # as the route makes them: in processes on a GPU
        canvases = [to_canvas(image, size) for image in batch]  # guide-shaped maps
        for n_tiles in multiscale.pass_tiles:
            partitions(canvases, n_tiles, multiscale, in_processes=device.type != "cpu")

    print(
        f"{len(images)} images from {args.data}, batches of {args.batch_size}, {device}, "
        f"canvas {size}, tiles {networks.fcn_tile_size}, passes {multiscale.pass_tiles}, "
        f"first guide: {config.fcn_guide}, {describe(args)}"
    )
    figures = {
        "multi-scale FCN route": timed(args.repeats, batches, route),
        "  of which the partitions": timed(args.repeats, batches, layouts),
        f"  of which the FCN forward ({tiles} tiles)": timed(args.repeats, batches, fcn_forward),
        "gray net on the same canvas": timed(args.repeats, batches, gray_net),
    }
    for label, seconds in figures.items():
        print(f"{label:<40} {seconds * 1000:8.1f} ms/image")
    ratio = figures["multi-scale FCN route"] / figures["gray net on the same canvas"]
    print(f"route / gray net = {ratio:.2f} (target <= 2)")
    if args.compare_cpu:
        compare_with_cpu(segmenter, batches, guides if by_graynet else None)


def compare_with_cpu(segmenter, batches: list, guides: dict | None) -> None:
    """How far the route's maps on the segmenter's device are from those on the CPU
    (per-tile OpenCV cut and paste), over every image; masks at the config's threshold."""
    config = segmenter.config
    fcn_cpu = copy.deepcopy(segmenter.models.network("fcn")).to("cpu")
    worst, differing, pixels = 0.0, 0, 0
    for batch in batches:
        first = None if guides is None else guides[id(batch)]
        here, cpu = (
            segment_heterogeneous(net, batch, config.networks, config.multiscale, on, guides=first)
            for on, net in ((segmenter.device, segmenter.models.network("fcn")), ("cpu", fcn_cpu))
        )
        for a, b in zip(here, cpu, strict=True):
            worst = max(worst, float(np.abs(a - b).max()))
            threshold = config.mask_threshold
            differing += int(((a >= threshold) != (b >= threshold)).sum())
            pixels += a.size
    print(
        f"{segmenter.device} against the CPU: largest probability difference {worst:.2e}, "
        f"mask pixels that differ {differing / pixels:.4%} of {pixels}"
    )


if __name__ == "__main__":
    main()
