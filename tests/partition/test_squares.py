"""Contract of the layering unit: exact square partitions with exact tile counts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tumorseg.partition import is_exact_cover, partition_squares
from tumorseg.partition.feasibility import feasible_counts
from tumorseg.partition.guide import boundary_band

contract_sides = st.integers(2, 64).map(lambda m: 32 * m)
contract_counts = st.integers(10, 400)


def disk_guide(size: int, cy: float, cx: float, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (((yy - cy) ** 2 + (xx - cx) ** 2) < radius**2).astype(np.float32)


def assert_contract(tiles: np.ndarray, height: int, width: int, n_tiles: int) -> None:
    assert tiles.dtype == np.int64
    assert tiles.shape == (n_tiles, 3)
    assert (tiles[:, 2] >= 1).all()
    assert int((tiles[:, 2] ** 2).sum()) == height * width
    assert is_exact_cover(tiles, height, width)


def test_every_count_from_10_to_400_on_the_32_cell_lattice() -> None:
    # Every contract canvas (side 32·m) is searched on a 32 × 32 lattice.
    bits = feasible_counts(32, 32)
    assert all((bits >> n) & 1 for n in range(10, 401))
    for n in range(10, 401):
        assert_contract(partition_squares(64, 64, n), 64, 64, n)


@settings(max_examples=60, deadline=None)
@given(side=contract_sides, n_tiles=contract_counts)
def test_contract_on_square_canvases(side: int, n_tiles: int) -> None:
    assert_contract(partition_squares(side, side, n_tiles), side, side, n_tiles)


@settings(max_examples=40, deadline=None)
@given(
    side=contract_sides,
    n_tiles=contract_counts,
    cy=st.floats(0.1, 0.9),
    cx=st.floats(0.1, 0.9),
    radius=st.floats(0.05, 0.4),
)
def test_contract_holds_with_a_guide(side, n_tiles, cy, cx, radius) -> None:
    guide = disk_guide(128, cy * 128, cx * 128, radius * 128)  # guide resized to the canvas
    assert_contract(partition_squares(side, side, n_tiles, guide), side, side, n_tiles)


@settings(max_examples=60, deadline=None)
@given(height=st.integers(1, 300), width=st.integers(1, 300), n_tiles=st.integers(1, 450))
def test_other_canvases_tile_exactly_or_raise_value_error(height, width, n_tiles) -> None:
    try:
        tiles = partition_squares(height, width, n_tiles)
    except ValueError as error:
        assert f"{height}×{width}" in str(error)
    else:
        assert_contract(tiles, height, width, n_tiles)


@pytest.mark.parametrize(
    ("height", "width", "n_tiles"), [(64, 96, 10), (480, 640, 50), (30, 40, 12)]
)
def test_rectangles_that_admit_the_count(height: int, width: int, n_tiles: int) -> None:
    assert_contract(partition_squares(height, width, n_tiles), height, width, n_tiles)


@pytest.mark.parametrize(
    ("height", "width", "n_tiles"),
    [(64, 64, 2), (64, 64, 3), (1, 50, 10), (4, 4, 17), (377, 500, 100), (64, 64, 4097)],
)
def test_impossible_requests_raise_value_error(height: int, width: int, n_tiles: int) -> None:
    with pytest.raises(ValueError, match="canvas"):
        partition_squares(height, width, n_tiles)


@pytest.mark.parametrize("bad", [0, -3])
def test_non_positive_sizes_are_rejected(bad: int) -> None:
    with pytest.raises(ValueError):
        partition_squares(bad, 64, 10)
    with pytest.raises(ValueError):
        partition_squares(64, 64, bad)


def test_non_integer_arguments_are_rejected() -> None:
    with pytest.raises(TypeError):
        partition_squares(64.0, 64, 10)  # type: ignore[arg-type]


def test_deterministic() -> None:
    guide = disk_guide(512, 200, 300, 90)
    first = partition_squares(512, 512, 80, guide)
    second = partition_squares(512, 512, 80, guide.copy())
    np.testing.assert_array_equal(first, second)


@settings(max_examples=25, deadline=None)
@given(
    n_tiles=st.sampled_from([50, 80, 100, 150]),
    cy=st.floats(0.25, 0.75),
    cx=st.floats(0.25, 0.75),
    radius=st.floats(0.08, 0.2),
)
def test_tiles_on_the_guide_boundary_are_smaller(n_tiles, cy, cx, radius) -> None:
    size = 512
    guide = disk_guide(size, cy * size, cx * size, radius * size)
    tiles = partition_squares(size, size, n_tiles, guide)
    edge = boundary_band(guide > 0.5, 1)
    crossing = np.array([edge[y : y + s, x : x + s].any() for y, x, s in tiles])
    assert crossing.any() and (~crossing).any()
    assert tiles[crossing, 2].mean() < tiles[~crossing, 2].mean()


def test_soft_guides_refine_uncertain_zones() -> None:
    size = 256
    guide = np.zeros((size, size), np.float32)
    guide[:, : size // 4] = 0.5  # undecided strip on the left
    tiles = partition_squares(size, size, 60, guide)
    left = tiles[:, 1] < size // 4
    assert tiles[left, 2].mean() < tiles[~left, 2].mean()


def test_guide_validation() -> None:
    with pytest.raises(ValueError, match="2-D"):
        partition_squares(64, 64, 10, np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="NaN"):
        partition_squares(64, 64, 10, np.full((4, 4), np.nan))


def test_is_exact_cover_rejects_gaps_and_overlaps() -> None:
    assert is_exact_cover(np.array([[0, 0, 2]]), 2, 2)
    assert not is_exact_cover(np.array([[0, 0, 1], [0, 0, 1], [1, 0, 1], [1, 1, 1]]), 2, 2)
    assert not is_exact_cover(np.array([[0, 0, 1], [1, 1, 1]]), 2, 2)
    assert not is_exact_cover(np.array([[1, 1, 2]]), 2, 2)
