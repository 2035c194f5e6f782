"""Heterogeneous branch: the iterative multi-scale FCN (patent modules 50–53).

Each image is resized to a square canvas. Every pass (layering unit) partitions
the canvas into its number of squares — guided by the previous pass's probability
map on its largest region (feedback unit: :func:`feedback_guides`), the first pass
by a coarse whole-canvas seed when
``coarse_seed`` is on — runs the tile FCN on all tiles of all images in one
batch, and pastes the tile outputs back. The passes are
then fused (:func:`fuse_passes`) and the result resized to each image's size.

On a GPU, from canvas to fused map the images stay tensors on the model's device
(the cut and paste are batched: :mod:`tumorseg.inference.tiling`), and only the
partition, a search on the CPU (in worker processes: :func:`partitions`), takes each
pass's guide as an array; on a CPU they stay arrays, cut and pasted tile by tile (see
:func:`_fcn_pass`). torch is imported
where a pass runs: the training corpus's tasks cut tiles with :func:`tile_inputs`.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache, partial
from typing import TYPE_CHECKING, TypeVar

import cv2
import numpy as np

from tumorseg.config import MultiScaleConfig, NetworkConfig
from tumorseg.inference.postprocess import largest_component
from tumorseg.inference.tensors import predict, predict_tensor, resize, sigmoid
from tumorseg.inference.threads import cpu_threads, map_images
from tumorseg.partition import partition_squares

if TYPE_CHECKING:
    import torch
    from torch import nn

#: A probability map: an array, or a tensor on the model's device.
Map = TypeVar("Map", np.ndarray, "torch.Tensor")


def to_canvas(image: np.ndarray, size: int) -> np.ndarray:
    """Float32 canvas in [0, 1] of ``size × size`` (aspect is not kept: the FCN is local)."""
    return resize(image.astype(np.float32), size, size) / 255.0


#: FCN input channels: the tile, its surroundings (3× wider), the previous pass's map.
TILE_CHANNELS = ("tile", "context", "guide")  # networks.tile_fcn.FCN_INPUT_CHANNELS of them
#: The guide value meaning "no previous pass yet".
UNKNOWN = 0.5
#: Where a pass's map becomes the mask whose largest region the feedback unit keeps.
FEEDBACK_THRESHOLD = 0.5


def tile_inputs(
    canvas: np.ndarray, guide: np.ndarray | None, tiles: np.ndarray, tile_size: int
) -> np.ndarray:
    """``(N, 3, t, t)`` FCN inputs for each square of ``tiles`` on ``canvas``.

    The context channel (a window three tiles wide, zero outside the canvas)
    tells the FCN where it is relative to the lesion; the guide channel carries
    the previous pass's probabilities (:data:`UNKNOWN` on the first pass), so the
    feedback reaches the network as well as the partition.
    """
    pad = int(tiles[:, 2].max())
    padded = np.pad(canvas, pad)
    if guide is None:
        guide = np.full(canvas.shape, UNKNOWN, dtype=np.float32)
    out = np.empty((len(tiles), len(TILE_CHANNELS), tile_size, tile_size), dtype=np.float32)
    for i, (y, x, side) in enumerate(tiles):
        out[i, 0] = resize(canvas[y : y + side, x : x + side], tile_size, tile_size)
        window = padded[y + pad - side : y + pad + 2 * side, x + pad - side : x + pad + 2 * side]
        out[i, 1] = resize(window, tile_size, tile_size)
        out[i, 2] = resize(guide[y : y + side, x : x + side], tile_size, tile_size)
    return out


def whole_canvas(size: int) -> np.ndarray:
    """The one-square "partition" of the coarse seed: ``[[y, x, side]]``."""
    return np.array([[0, 0, size]], dtype=np.int64)


def coarse_seeds(model: nn.Module, canvases: Map, tile_size: int, chunk: int = 256) -> Map:
    """The tile FCN's map of each whole canvas seen as one tile: pass one's guide.
    ``canvases`` is ``(B, H, W)``, an array or a tensor on the model's device (see
    :func:`segment_heterogeneous`); the answer is of the same kind."""
    layouts = [whole_canvas(canvases.shape[-1])] * len(canvases)
    return _fcn_pass(model, canvases, None, layouts, tile_size, chunk)


def paste_tiles(outputs: np.ndarray, tiles: np.ndarray, size: int) -> np.ndarray:
    """Inverse of cutting: a ``size × size`` map from per-tile ``(N, 1, t, t)`` outputs."""
    canvas = np.empty((size, size), dtype=np.float32)
    for output, (y, x, side) in zip(outputs, tiles, strict=True):
        canvas[y : y + side, x : x + side] = resize(output[0], side, side)
    return canvas


def _fcn_pass(
    model: nn.Module,
    canvases: Map,
    guides: Map | None,
    layouts: Sequence[np.ndarray],
    tile_size: int,
    chunk: int,
) -> Map:
    """One layering unit's probability maps: cut every tile, run the FCN, paste back.

    Arrays (a CPU model) are cut and pasted tile by tile with OpenCV; tensors (a GPU
    model) in batched tensor operations (:mod:`~tumorseg.inference.tiling`) that
    keep them on the device. On 2 CPU cores OpenCV cut a pass 25x faster (69 vs
    1942 ms for 16 images of 100 tiles), so each device gets the faster one.
    """
    import torch

    size = canvases.shape[-1]
    if isinstance(canvases, np.ndarray):
        per_image = [None] * len(canvases) if guides is None else guides
        cut = zip(canvases, per_image, layouts, strict=True)
        batch = np.concatenate([tile_inputs(c, g, t, tile_size) for c, g, t in cut])
        outputs = sigmoid(predict(model, batch, torch.device("cpu"), chunk))
        ends = np.cumsum([len(t) for t in layouts])
        pieces = np.split(outputs, ends[:-1])
        return np.stack([paste_tiles(o, t, size) for o, t in zip(pieces, layouts, strict=True)])
    from tumorseg.inference.tiling import cut_tiles
    from tumorseg.inference.tiling import paste_tiles as paste_batched

    inputs = cut_tiles(canvases, guides, layouts, tile_size)
    outputs = torch.sigmoid(predict_tensor(model, inputs, chunk))
    return paste_batched(outputs, layouts, size)


def pass_weights(config: MultiScaleConfig) -> np.ndarray:
    """Normalised fusion weights; by default pass i weighs i + 1 (later passes see more)."""
    n = len(config.pass_tiles)
    raw = np.asarray(config.fusion_weights or np.arange(1, n + 1), dtype=np.float64)
    if (raw < 0).any() or raw.sum() <= 0:
        raise ValueError(f"fusion weights must be non-negative and not all zero, got {raw}")
    return raw / raw.sum()


def fuse_passes(probabilities: Sequence[Map], config: MultiScaleConfig) -> Map:
    """``"last"``: the last pass; ``"weighted"``: weighted mean of all passes' maps
    (arrays or tensors)."""
    if config.fusion == "last":
        return probabilities[-1]
    if config.fusion == "weighted":
        weights = pass_weights(config)
        return sum(float(w) * p for w, p in zip(weights, probabilities, strict=True))
    raise ValueError(f"unknown fusion {config.fusion!r}; choose 'last' or 'weighted'")


def segment_heterogeneous(
    model: nn.Module,
    images: Sequence[np.ndarray],
    networks: NetworkConfig,
    multiscale: MultiScaleConfig,
    device: torch.device,
    chunk: int = 256,
    guides: Sequence[np.ndarray] | None = None,
) -> list[np.ndarray]:
    """Fused tumor probability maps at each image's own size.

    ``guides`` (probability maps, any size) guide the first pass, e.g. a full-image
    network's maps; without them the first pass takes the coarse seed when
    ``multiscale.coarse_seed`` is on, else no guide.
    """
    if not images:
        return []
    history = pass_maps(model, images, networks, multiscale, device, chunk, guides)
    fused = _array(fuse_passes(history, multiscale))
    return map_images(lambda f, image: resize(f, *image.shape), fused, images)


def pass_maps(
    model: nn.Module,
    images: Sequence[np.ndarray],
    networks: NetworkConfig,
    multiscale: MultiScaleConfig,
    device: torch.device,
    chunk: int = 256,
    guides: Sequence[np.ndarray] | None = None,
) -> list[Map]:
    """Each pass's ``(B, canvas, canvas)`` maps, in pass order, before fusion: every
    pass partitions and is guided by what the feedback unit made of the one before."""
    import torch

    size = multiscale.canvas_size
    on_device = torch.device(device).type != "cpu"
    with torch.inference_mode():
        canvases = _on(device, np.stack(map_images(lambda image: to_canvas(image, size), images)))
        guide = _first_guides(model, canvases, networks, multiscale, chunk, guides)
        history = []
        for n_tiles in multiscale.pass_tiles:
            guide_arrays = [None] * len(images) if guide is None else _array(guide)
            layouts = partitions(guide_arrays, n_tiles, multiscale, in_processes=on_device)
            output = _fcn_pass(model, canvases, guide, layouts, networks.fcn_tile_size, chunk)
            history.append(output)
            guide = feedback_guides(output, multiscale)
    return history


def partitions(
    guides: Sequence[np.ndarray | None],
    n_tiles: int,
    multiscale: MultiScaleConfig,
    in_processes: bool = False,
) -> list[np.ndarray]:
    """One pass's layout of each canvas, each guided by its map (or by none).

    The partition is a search in Python, which threads cannot spread; with
    ``in_processes`` (on a GPU, where the networks take little and the searches most
    of a pass) and several CPU threads to spend, they run in worker processes.
    """
    size = multiscale.canvas_size
    layout = partial(
        partition_squares,
        size,
        size,
        n_tiles,
        boundary_width=multiscale.guide_boundary_width,
        guide_weight=multiscale.guide_weight,
    )
    workers = min(cpu_threads(), MAX_PARTITION_PROCESSES, len(guides))
    if not in_processes or workers < 2:
        return [layout(g) for g in guides]
    chunk = -(-len(guides) // workers)
    return list(_partition_pool(workers).map(layout, guides, chunksize=chunk))


#: Worker processes for the partitions of a pass at most (see :func:`partitions`).
MAX_PARTITION_PROCESSES = 8


@lru_cache(maxsize=2)
def _partition_pool(workers: int) -> ProcessPoolExecutor:
    # spawn: a forked copy of a process that holds CUDA and Ray threads is not safe.
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def feedback_guides(maps: Map, multiscale: MultiScaleConfig) -> Map:
    """The feedback unit: what one pass hands the next as its guide.

    ``"largest_region"`` keeps each map only on its largest region at one half,
    grown by half the partition's boundary band (the band the next pass refines);
    a map with no such region is handed on as it is. ``"map"`` hands every map on.
    """
    if multiscale.feedback == "map":
        return maps
    radius = round(multiscale.guide_boundary_width * maps.shape[-1] / 2)
    support = np.stack(map_images(lambda m: _region_support(m, radius), _array(maps)))
    if isinstance(maps, np.ndarray):
        return maps * support
    import torch

    return maps * torch.from_numpy(support).to(maps.device)


def _region_support(probability: np.ndarray, radius: int) -> np.ndarray:
    """``1`` on the largest region of ``probability >= 0.5`` grown by ``radius``, else
    ``0``; all ones when there is no region."""
    region = largest_component(probability >= FEEDBACK_THRESHOLD)
    if not region.any():
        return np.ones(probability.shape, dtype=probability.dtype)
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(region.astype(np.uint8), disk).astype(probability.dtype)


def _on(device: torch.device, arrays: np.ndarray) -> Map:
    """The maps of a pass as the device computes them: arrays on a CPU, tensors else."""
    import torch

    if torch.device(device).type == "cpu":
        return arrays
    return torch.from_numpy(arrays).to(device)


def _array(maps: Map) -> np.ndarray:
    return maps if isinstance(maps, np.ndarray) else maps.cpu().numpy()


def _first_guides(
    model: nn.Module,
    canvases: Map,
    networks: NetworkConfig,
    multiscale: MultiScaleConfig,
    chunk: int,
    guides: Sequence[np.ndarray] | None,
) -> Map | None:
    size = multiscale.canvas_size
    if guides is not None:
        if len(guides) != len(canvases):
            raise ValueError(f"got {len(guides)} guides for {len(canvases)} images")
        resized = np.stack([resize(np.asarray(g, dtype=np.float32), size, size) for g in guides])
        return resized if isinstance(canvases, np.ndarray) else _on(canvases.device, resized)
    if multiscale.coarse_seed:
        return coarse_seeds(model, canvases, networks.fcn_tile_size, chunk)
    return None
