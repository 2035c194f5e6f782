"""Heterogeneous branch: the iterative multi-scale FCN (patent modules 50–53).

Each image is resized to a square canvas. Every pass (layering unit) partitions
the canvas into its number of squares — guided by the previous pass's probability
map (feedback unit), the first pass by a coarse whole-canvas seed when
``coarse_seed`` is on — runs the tile FCN on all tiles of all images in one
batch, and pastes the tile outputs back. The passes are
then fused (:func:`fuse_passes`) and the result resized to each image's size.

From canvas to fused map the images stay tensors on the model's device (the cut
and paste are batched: :mod:`tumorseg.inference.tiling`); only the partition, a
search on the CPU, takes each pass's guide as an array. torch is imported where a
pass runs: the training corpus's tasks cut tiles with :func:`tile_inputs` alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from tumorseg.config import MultiScaleConfig, NetworkConfig
from tumorseg.inference.tensors import predict_tensor, resize
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
    model: nn.Module, canvases: torch.Tensor, tile_size: int, chunk: int = 256
) -> torch.Tensor:
    """The tile FCN's map of each whole canvas seen as one tile: pass one's guide.
    ``canvases`` is ``(B, H, W)`` on the model's device; so is the answer."""
    layouts = [whole_canvas(canvases.shape[-1])] * len(canvases)
    return _fcn_pass(model, canvases, None, layouts, tile_size, chunk)


def _fcn_pass(
    model: nn.Module,
    canvases: torch.Tensor,
    guides: torch.Tensor | None,
    layouts: Sequence[np.ndarray],
    tile_size: int,
    chunk: int,
) -> torch.Tensor:
    """One layering unit's probability maps: cut every tile, run the FCN, paste back."""
    import torch

    from tumorseg.inference.tiling import cut_tiles, paste_tiles

    inputs = cut_tiles(canvases, guides, layouts, tile_size)
    outputs = torch.sigmoid(predict_tensor(model, inputs, chunk))
    return paste_tiles(outputs, layouts, canvases.shape[-1])


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
    import torch

    size = multiscale.canvas_size
    with torch.inference_mode():
        canvas_arrays = np.stack([to_canvas(image, size) for image in images])
        canvases = torch.from_numpy(canvas_arrays).to(device)
        current = _first_guides(model, canvases, networks, multiscale, chunk, guides)
        history = []
        for n_tiles in multiscale.pass_tiles:
            guide_arrays = [None] * len(images) if current is None else current.cpu().numpy()
            layouts = [
                partition_squares(
                    size,
                    size,
                    n_tiles,
                    guide,
                    boundary_width=multiscale.guide_boundary_width,
                    guide_weight=multiscale.guide_weight,
                )
                for guide in guide_arrays
            ]
            current = _fcn_pass(model, canvases, current, layouts, networks.fcn_tile_size, chunk)
            history.append(current)
        fused = fuse_passes(history, multiscale).cpu().numpy()
    return [resize(f, *image.shape) for f, image in zip(fused, images, strict=True)]


def _first_guides(
    model: nn.Module,
    canvases: torch.Tensor,
    networks: NetworkConfig,
    multiscale: MultiScaleConfig,
    chunk: int,
    guides: Sequence[np.ndarray] | None,
) -> torch.Tensor | None:
    import torch

    size = multiscale.canvas_size
    if guides is not None:
        if len(guides) != len(canvases):
            raise ValueError(f"got {len(guides)} guides for {len(canvases)} images")
        resized = np.stack([resize(np.asarray(g, dtype=np.float32), size, size) for g in guides])
        return torch.from_numpy(resized).to(canvases.device)
    if multiscale.coarse_seed:
        return coarse_seeds(model, canvases, networks.fcn_tile_size, chunk)
    return None
