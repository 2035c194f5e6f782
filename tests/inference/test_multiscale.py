from __future__ import annotations

import numpy as np
import pytest

from tumorseg.config import MultiScaleConfig
from tumorseg.inference.multiscale import cut_tiles, fuse_passes, pass_weights, paste_tiles
from tumorseg.partition import partition_squares


def test_cut_then_paste_restores_a_piecewise_constant_canvas() -> None:
    tiles = partition_squares(128, 128, 50)
    canvas = np.zeros((128, 128), np.float32)
    for i, (y, x, side) in enumerate(tiles):
        canvas[y : y + side, x : x + side] = i / len(tiles)
    crops = cut_tiles(canvas, tiles, 32)
    assert crops.shape == (50, 1, 32, 32)
    np.testing.assert_allclose(paste_tiles(crops, tiles, 128), canvas, atol=1e-6)


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
