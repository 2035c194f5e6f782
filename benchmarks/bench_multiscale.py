"""The heterogeneous route's cost against one full-canvas pass of the gray net.

    python benchmarks/bench_multiscale.py --data ../shared/data/busi --tracking-uri sqlite:///mlflow.db
    python benchmarks/bench_multiscale.py --preset cpu   # untrained weights

Times, per image and on the same batches of real images: the whole multi-scale FCN
route (``segment_heterogeneous``: canvas, first guide, every pass, fusion), the
partitions alone (the CPU search that each pass's guide drives), the tile FCN's
forward passes alone on the same number of tiles, and the gray net on the FCN's
canvas (``multiscale.canvas_size``, its inputs built as inference builds them).
Printed: milliseconds per image of each and the route / gray-net ratio. With
``--tracking-uri`` the registered models run (the guides, hence the partitions, are
real); otherwise ``--preset``'s networks with random weights (the same arithmetic).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from tumorseg.bulk.listing import list_inputs
from tumorseg.inference.gray_branch import graynet_inputs, segment_homogeneous
from tumorseg.inference.multiscale import segment_heterogeneous, to_canvas
from tumorseg.inference.tensors import predict, select_device
from tumorseg.io import load_image
from tumorseg.networks import build_network
from tumorseg.partition import partition_squares
from tumorseg.training.config import PRESETS


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="../shared/data/busi")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--tracking-uri", help="registered models (default: --preset, untrained)")
    parser.add_argument("--model-alias", default="champion")
    parser.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    parser.add_argument("--device", help="default: the first GPU when there is one")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes over the images")
    return parser.parse_args()


def load(args: argparse.Namespace, device: torch.device):
    if args.tracking_uri:
        from tumorseg.tracking import ModelSelector, load_model_set

        models, config = load_model_set(
            args.tracking_uri, ModelSelector(args.model_alias), device=device
        )
        return models.network("fcn"), models.network("graynet"), config
    config = PRESETS[args.preset].segmenter
    torch.manual_seed(0)
    nets = [build_network(role, config.networks).to(device).eval() for role in ("fcn", "graynet")]
    return nets[0], nets[1], config


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
    device = select_device(args.device)
    fcn, graynet, config = load(args, device)
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

    def partitions(batch):
        for image in batch:
            canvas = to_canvas(image, size)
            for n_tiles in multiscale.pass_tiles:
                partition_squares(size, size, n_tiles, canvas)  # a guide-shaped map

    print(
        f"{len(images)} images from {args.data}, batches of {args.batch_size}, {device}, "
        f"canvas {size}, tiles {networks.fcn_tile_size}, passes {multiscale.pass_tiles}, "
        f"first guide: {config.fcn_guide}, "
        f"{'registered' if args.tracking_uri else 'untrained'} weights"
    )
    figures = {
        "multi-scale FCN route": timed(args.repeats, batches, route),
        "  of which the partitions": timed(args.repeats, batches, partitions),
        f"  of which the FCN forward ({tiles} tiles)": timed(args.repeats, batches, fcn_forward),
        "gray net on the same canvas": timed(args.repeats, batches, gray_net),
    }
    for label, seconds in figures.items():
        print(f"{label:<40} {seconds * 1000:8.1f} ms/image")
    ratio = figures["multi-scale FCN route"] / figures["gray net on the same canvas"]
    print(f"route / gray net = {ratio:.2f} (target <= 2)")


if __name__ == "__main__":
    main()
