"""Heterogeneous branch: the iterative multi-scale FCN (patent modules 50–53).

Each image is resized to a square canvas. Every pass (layering unit) partitions
the canvas into its number of squares — guided by the previous pass's probability
map (feedback unit), the first pass by a coarse whole-canvas seed when
``coarse_seed`` is on — runs the tile FCN on all tiles of all images in one
batch, and pastes the tile outputs back. The passes are
then fused (:func:`fuse_passes`) and the result resized to each image's size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from tumorseg.config import MultiScaleConfig, NetworkConfig
from tumorseg.inference.tensors import predict, resize, sigmoid
from tumorseg.partition import partition_squares

if TYPE_CHECKING:
    import torch
    from torch import nn


def to_canvas(image: np.ndarray, size: int) -> np.ndarray:
    """Float32 canvas in [0, 1] of ``size × size`` (aspect is not kept: the FCN is local)."""
    return resize(image.astype(np.float32), size, size) / 255.0


#: FCN input channels: the tile, its surroundings (3× wider), the previous pass's map.
TILE_CHANNELS = ("tile", "context", "guide")  # networks.tile_fcn.FCN_INPUT_CHANNELS of them
#: The guide value meaning "no previous pass yet".
UNKNOWN = 0.5


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


def coarse_seeds(
    model: nn.Module,
    canvases: Sequence[np.ndarray],
    tile_size: int,
    device: torch.device,
    chunk: int = 256,
) -> list[np.ndarray]:
    """The tile FCN's map of each whole canvas seen as one tile: pass one's guide."""
    size = canvases[0].shape[0]
    tiles = whole_canvas(size)
    batch = np.concatenate([tile_inputs(canvas, None, tiles, tile_size) for canvas in canvases])
    outputs = sigmoid(predict(model, batch, device, chunk))
    return [paste_tiles(output[None], tiles, size) for output in outputs]


def paste_tiles(outputs: np.ndarray, tiles: np.ndarray, size: int) -> np.ndarray:
    """Inverse of cutting: a ``size × size`` map from per-tile ``(N, 1, t, t)`` outputs."""
    canvas = np.empty((size, size), dtype=np.float32)
    for output, (y, x, side) in zip(outputs, tiles, strict=True):
        canvas[y : y + side, x : x + side] = resize(output[0], side, side)
    return canvas


def pass_weights(config: MultiScaleConfig) -> np.ndarray:
    """Normalised fusion weights; by default pass i weighs i + 1 (later passes see more)."""
    n = len(config.pass_tiles)
    raw = np.asarray(config.fusion_weights or np.arange(1, n + 1), dtype=np.float64)
    if (raw < 0).any() or raw.sum() <= 0:
        raise ValueError(f"fusion weights must be non-negative and not all zero, got {raw}")
    return raw / raw.sum()


def fuse_passes(probabilities: Sequence[np.ndarray], config: MultiScaleConfig) -> np.ndarray:
    """``"last"``: the last pass; ``"weighted"``: weighted mean of all passes' maps."""
    if config.fusion == "last":
        return probabilities[-1]
    if config.fusion == "weighted":
        weights = pass_weights(config)
        return np.tensordot(weights, np.stack(probabilities), axes=1).astype(np.float32)
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
    size = multiscale.canvas_size
    canvases = [to_canvas(image, size) for image in images]
    current = _first_guides(model, canvases, networks, multiscale, device, chunk, guides)
    history: list[list[np.ndarray]] = [[] for _ in images]
    for n_tiles in multiscale.pass_tiles:
        layouts = [
            partition_squares(
                size,
                size,
                n_tiles,
                guide,
                boundary_width=multiscale.guide_boundary_width,
                guide_weight=multiscale.guide_weight,
            )
            for guide in current
        ]
        batch = np.concatenate(
            [
                tile_inputs(canvas, guide, tiles, networks.fcn_tile_size)
                for canvas, guide, tiles in zip(canvases, current, layouts, strict=True)
            ]
        )
        outputs = sigmoid(predict(model, batch, device, chunk))
        offsets = np.cumsum([0] + [len(t) for t in layouts])
        for i, tiles in enumerate(layouts):
            probability = paste_tiles(outputs[offsets[i] : offsets[i + 1]], tiles, size)
            history[i].append(probability)
            current[i] = probability
    return [
        resize(fuse_passes(passes, multiscale), *image.shape)
        for passes, image in zip(history, images, strict=True)
    ]


def _first_guides(
    model: nn.Module,
    canvases: list[np.ndarray],
    networks: NetworkConfig,
    multiscale: MultiScaleConfig,
    device: torch.device,
    chunk: int,
    guides: Sequence[np.ndarray] | None,
) -> list[np.ndarray | None]:
    size = multiscale.canvas_size
    if guides is not None:
        if len(guides) != len(canvases):
            raise ValueError(f"got {len(guides)} guides for {len(canvases)} images")
        return [resize(np.asarray(g, dtype=np.float32), size, size) for g in guides]
    if multiscale.coarse_seed:
        return list(coarse_seeds(model, canvases, networks.fcn_tile_size, device, chunk))
    return [None] * len(canvases)
