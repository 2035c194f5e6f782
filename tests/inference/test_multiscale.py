from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tumorseg.config import MultiScaleConfig
from tumorseg.inference.multiscale import (
    UNKNOWN,
    coarse_seeds,
    fuse_passes,
    pass_weights,
    paste_tiles,
    tile_inputs,
)
from tumorseg.partition import partition_squares


def test_cut_then_paste_restores_a_piecewise_constant_canvas() -> None:
    tiles = partition_squares(128, 128, 50)
    canvas = np.zeros((128, 128), np.float32)
    for i, (y, x, side) in enumerate(tiles):
        canvas[y : y + side, x : x + side] = i / len(tiles)
    inputs = tile_inputs(canvas, None, tiles, 32)
    assert inputs.shape == (50, 3, 32, 32)
    np.testing.assert_allclose(paste_tiles(inputs[:, :1], tiles, 128), canvas, atol=1e-6)
    assert (inputs[:, 2] == UNKNOWN).all()  # no previous pass yet


def test_context_and_guide_channels() -> None:
    canvas = np.zeros((64, 64), np.float32)
    canvas[:, 32:] = 1.0  # right half bright
    guide = np.zeros((64, 64), np.float32)
    guide[:32] = 1.0  # top half predicted tumor
    tiles = np.array([[0, 0, 32], [0, 32, 32], [32, 0, 32], [32, 32, 32]])
    inputs = tile_inputs(canvas, guide, tiles, 16)
    top_left = inputs[0]
    assert top_left[0].max() == 0.0  # the tile itself is dark...
    assert top_left[1].max() > 0.5  # ...but its context window sees the bright half
    np.testing.assert_allclose(inputs[:, 2].mean(axis=(1, 2)), [1, 1, 0, 0])


def test_coarse_seed_sees_the_whole_canvas_as_one_tile() -> None:
    class Echo(nn.Module):  # returns its tile channel as logits: shows what it was given
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x[:, :1] - 0.5) * 20

    canvas = np.zeros((64, 64), np.float32)
    canvas[10:30, 20:50] = 1.0
    (seed,) = coarse_seeds(Echo(), canvas[None], 16)
    assert seed.shape == (64, 64)
    assert seed[20, 35] > 0.9 and seed[50, 5] < 0.1  # the lesion comes back where it was
    (batched,) = coarse_seeds(Echo(), torch.from_numpy(canvas[None]), 16)  # the GPU path
    np.testing.assert_allclose(batched.numpy(), seed, atol=1e-4)


def test_a_pass_gives_the_same_maps_as_arrays_and_as_tensors() -> None:
    """The CPU (OpenCV, tile by tile) and GPU (batched tensor) paths of one layering unit."""
    from tumorseg.config import NetworkConfig
    from tumorseg.inference.multiscale import _fcn_pass
    from tumorseg.networks import build_network

    torch.manual_seed(0)
    model = build_network("fcn", NetworkConfig(fcn_channels=(8, 16))).eval()
    rng = np.random.default_rng(0)
    canvases = rng.random((2, 128, 128)).astype(np.float32)
    guides = rng.random((2, 128, 128)).astype(np.float32)
    layouts = [partition_squares(128, 128, 50, g) for g in guides]
    arrays = _fcn_pass(model, canvases, guides, layouts, 32, chunk=64)
    tensors = _fcn_pass(
        model, torch.from_numpy(canvases), torch.from_numpy(guides), layouts, 32, chunk=64
    )
    np.testing.assert_allclose(tensors.numpy(), arrays, atol=1e-3)


def test_fusion_rules() -> None:
    maps = [np.full((4, 4), v, np.float32) for v in (0.0, 0.3, 0.9)]
    last = MultiScaleConfig(fusion="last")
    assert fuse_passes(maps, last)[0, 0] == pytest.approx(0.9)
    weighted = MultiScaleConfig(fusion="weighted")  # default weights 1:2:3
    np.testing.assert_allclose(pass_weights(weighted), [1 / 6, 2 / 6, 3 / 6])
    assert fuse_passes(maps, weighted)[0, 0] == pytest.approx((0.6 + 2.7) / 6)
    custom = MultiScaleConfig(fusion_weights=(0.0, 0.0, 1.0))
    assert fuse_passes(maps, custom)[0, 0] == pytest.approx(0.9)
    with pytest.raises(ValueError):
        pass_weights(MultiScaleConfig(fusion_weights=(0.0, 0.0, 0.0)))
