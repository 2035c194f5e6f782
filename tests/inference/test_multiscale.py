from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tumorseg.config import MultiScaleConfig, NetworkConfig
from tumorseg.inference.multiscale import (
    UNKNOWN,
    coarse_seeds,
    feedback_guides,
    fuse_passes,
    partitions,
    pass_weights,
    paste_tiles,
    segment_heterogeneous,
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


def _lesion_and_island(size: int = 64) -> np.ndarray:
    """A map with a large confident region, a smaller stray island and a faint halo."""
    probability = np.full((size, size), 0.05, np.float32)
    probability[10:40, 10:40] = 0.3  # halo: below one half, around the lesion
    probability[14:36, 14:36] = 0.9  # the lesion
    probability[50:56, 50:56] = 0.8  # an island
    return probability


def test_partitions_in_worker_processes_equal_those_made_here() -> None:
    config = MultiScaleConfig(canvas_size=128)
    guides = [_lesion_and_island(), None, np.zeros((64, 64), np.float32), _lesion_and_island().T]
    here = partitions(guides, 50, config)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the processes' budget: torch's thread count
    try:
        there = partitions(guides, 50, config, in_processes=True)
    finally:
        torch.set_num_threads(threads)
    assert len(there) == len(here) == 4
    for a, b in zip(here, there, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(here[0], here[1])  # the guide did steer the layout
    np.testing.assert_array_equal(here[0], partition_squares(128, 128, 50, guides[0]))


def test_the_feedback_unit_hands_on_the_largest_region_only() -> None:
    probability = _lesion_and_island()
    config = MultiScaleConfig(canvas_size=64, guide_boundary_width=0.1)  # radius 3 px
    (guide,) = feedback_guides(probability[None], config)
    assert (guide[14:36, 14:36] == probability[14:36, 14:36]).all()  # the region, unchanged
    assert guide[11, 20] == pytest.approx(0.3)  # its halo within the margin stays...
    assert guide[10, 20] == 0.0 and guide[5, 5] == 0.0  # ...beyond it goes
    assert (guide[50:56, 50:56] == 0.0).all()  # the island is not handed on
    (batched,) = feedback_guides(torch.from_numpy(probability[None]), config)  # GPU path
    np.testing.assert_array_equal(batched.numpy(), guide)
    whole = MultiScaleConfig(canvas_size=64, feedback="map")
    np.testing.assert_array_equal(feedback_guides(probability[None], whole)[0], probability)
    nothing = np.full((1, 64, 64), 0.3, np.float32)  # no region to choose: handed on as is
    np.testing.assert_array_equal(feedback_guides(nothing, config), nothing)


def test_a_stray_island_of_one_pass_does_not_guide_the_next() -> None:
    class EchoGuide(nn.Module):  # logits from the guide channel: passes show their guides
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x[:, 2:] - 0.5) * 20

    probability = _lesion_and_island()
    image = np.zeros((64, 64), np.uint8)
    networks = NetworkConfig(fcn_tile_size=16)

    def fused(feedback: str) -> np.ndarray:
        config = MultiScaleConfig(canvas_size=64, pass_tiles=(10, 16, 20), feedback=feedback)
        device = torch.device("cpu")
        return segment_heterogeneous(
            EchoGuide(), [image], networks, config, device, guides=[probability]
        )[0]

    kept, dropped = fused("map"), fused("largest_region")
    assert kept[53, 53] > 0.9  # every pass echoes the island it is handed
    assert dropped[53, 53] < 0.5  # only pass one (weight 1/6) saw it
    assert dropped[25, 25] > 0.9  # the lesion is handed on and kept
