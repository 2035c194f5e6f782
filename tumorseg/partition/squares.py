"""The layering unit: exact partitions of a canvas into a given number of squares.

How it works. The canvas is seen as a lattice of ``u × u``-pixel cells, ``u`` a
divisor of ``gcd(height, width)`` (the coarsest one with at least 32 cells on the
short side, or finer ones when those admit ``n_tiles`` and the coarse one does
not). :mod:`~tumorseg.partition.feasibility` knows, for every sub-rectangle shape
of the lattice, exactly which square counts guillotine cuts can reach. The tiling
is then built top-down: each rectangle is cut in two and its tile budget split
between the halves in proportion to their weight — their area, blended with the
guide's importance — choosing the nearest split that both halves can realise.
Regions the guide marks as boundary or uncertain therefore get more, smaller tiles.
"""

from __future__ import annotations

from math import gcd

import numpy as np

from tumorseg.partition.feasibility import COUNT_CAP, feasible_counts
from tumorseg.partition.guide import importance_map

#: Lattices with more cells than this on their long side are not searched (DP cost).
MAX_LATTICE_SIDE = 64
#: Importance is sampled on this many points per cell side.
SAMPLES_PER_CELL = 4
#: The coarsest lattice tried first has at least this many cells on its short side.
PREFERRED_SHORT_SIDE = 32


def partition_squares(
    height: int,
    width: int,
    n_tiles: int,
    guide: np.ndarray | None = None,
    *,
    boundary_width: float = 0.04,
    guide_weight: float = 0.75,
) -> np.ndarray:
    """Partition a ``height × width`` canvas into exactly ``n_tiles`` squares.

    Returns an ``(n_tiles, 3)`` int64 array of ``(y, x, side)`` rows, sorted by
    ``(y, x)``: squares of integer side ≥ 1 that do not overlap and cover the canvas
    exactly. The result is deterministic for given arguments.

    ``guide`` (optional) is the previous pass's probability map or binary mask, of
    any 2-D shape (it is resized to the canvas). Tiles crossing its boundary band
    (``boundary_width`` × short side) or its uncertain zone (p near 0.5) come out
    smaller than the others; ``guide_weight`` in [0, 1] sets how strongly the
    guide, rather than area, decides where tiles go.

    When it works: every ``n_tiles`` in 10..400 on every square canvas whose side
    is a multiple of 32 from 64 to 2048 (a 32-cell lattice admits all of them).
    On other canvases it searches every guillotine tiling on lattices of
    ``gcd(height, width)``-divisor cells with at most ``MAX_LATTICE_SIDE`` cells
    per side, and raises :class:`ValueError` when none has exactly ``n_tiles``
    squares: for instance ``n_tiles`` of 2, 3 or 5 on a square, more tiles than
    lattice cells, fewer than the canvas' aspect ratio forces (a 1 × 50 canvas
    needs 50), or a canvas whose gcd is too small for a lattice within the limit
    (e.g. 377 × 500 beyond a handful of counts); pad or resize such images to a
    square canvas first, as the multi-scale FCN does.
    """
    _check_arguments(height, width, n_tiles, guide_weight)
    unit = _choose_unit(height, width, n_tiles)
    rows, cols = height // unit, width // unit
    weights = _cell_weights(rows, cols, unit, guide, boundary_width, guide_weight)
    cells = _build_tiling(rows, cols, n_tiles, _summed_area(weights))
    tiles = np.asarray(cells, dtype=np.int64) * unit
    return tiles[np.lexsort((tiles[:, 1], tiles[:, 0]))]


def is_exact_cover(tiles: np.ndarray, height: int, width: int) -> bool:
    """True iff ``tiles`` are in-bounds squares that cover the canvas once each pixel."""
    tiles = np.asarray(tiles)
    if tiles.ndim != 2 or tiles.shape[1] != 3 or (tiles[:, 2] < 1).any():
        return False
    y, x, s = tiles.T
    if (y < 0).any() or (x < 0).any() or (y + s > height).any() or (x + s > width).any():
        return False
    if int((s.astype(np.int64) ** 2).sum()) != height * width:
        return False
    coverage = np.zeros((height, width), dtype=np.int32)
    for ty, tx, ts in tiles:
        coverage[ty : ty + ts, tx : tx + ts] += 1
    return bool((coverage == 1).all())


def _check_arguments(height: int, width: int, n_tiles: int, guide_weight: float) -> None:
    for name, value in (("height", height), ("width", width), ("n_tiles", n_tiles)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if value < 1:
            raise ValueError(f"{name} must be ≥ 1, got {value}")
    if n_tiles > min(height * width, COUNT_CAP):
        raise ValueError(
            f"cannot cut a {height}×{width} canvas into {n_tiles} squares: at most "
            f"{min(height * width, COUNT_CAP)} tiles are supported there"
        )
    if not 0.0 <= guide_weight <= 1.0:
        raise ValueError(f"guide_weight must be in [0, 1], got {guide_weight}")


def _choose_unit(height: int, width: int, n_tiles: int) -> int:
    """Cell size of the coarsest searched lattice that admits ``n_tiles`` squares."""
    g = gcd(height, width)
    units = [u for u in _divisors_descending(g) if max(height, width) // u <= MAX_LATTICE_SIDE]
    if not units:
        raise ValueError(
            f"cannot partition a {height}×{width} canvas: gcd {g} leaves no lattice with at "
            f"most {MAX_LATTICE_SIDE} cells per side; pad or resize it to a square canvas"
        )
    preferred = [u for u in units if min(height, width) // u >= PREFERRED_SHORT_SIDE]
    # Finer lattices admit every count coarser ones do, so the finest is the last resort.
    for unit in [*preferred[:1], units[-1]]:
        if (feasible_counts(height // unit, width // unit) >> n_tiles) & 1:
            return unit
    raise ValueError(
        f"no guillotine tiling of a {height}×{width} canvas into exactly {n_tiles} squares "
        f"exists on lattices of up to {MAX_LATTICE_SIDE} cells per side"
    )


def _divisors_descending(n: int) -> list[int]:
    small = [d for d in range(1, int(n**0.5) + 1) if n % d == 0]
    return sorted({*small, *(n // d for d in small)}, reverse=True)


def _cell_weights(
    rows: int,
    cols: int,
    unit: int,
    guide: np.ndarray | None,
    boundary_width: float,
    guide_weight: float,
) -> np.ndarray:
    """Per-cell share of the tile budget: area blended with the guide's importance."""
    area = np.full((rows, cols), 1.0 / (rows * cols))
    if guide is None or guide_weight == 0.0:
        return area
    # Budgets only need per-cell sums: a few samples per cell suffice and keep it fast.
    sub = min(unit, SAMPLES_PER_CELL)
    samples = importance_map(guide, (rows * sub, cols * sub), boundary_width)
    per_cell = samples.reshape(rows, sub, cols, sub).sum(axis=(1, 3), dtype=np.float64)
    total = per_cell.sum()
    if total <= 0.0:
        return area
    return (1.0 - guide_weight) * area + guide_weight * per_cell / total


def _summed_area(weights: np.ndarray) -> np.ndarray:
    table = np.zeros((weights.shape[0] + 1, weights.shape[1] + 1))
    table[1:, 1:] = weights.cumsum(0).cumsum(1)
    return table


def _build_tiling(rows: int, cols: int, n_tiles: int, table: np.ndarray) -> list[tuple]:
    """Top-down guillotine construction; returns ``(y, x, side)`` in cells."""
    # Python floats index faster than numpy scalars in this hot loop.
    sat = table.tolist()
    tiles: list[tuple[int, int, int]] = []
    stack = [(0, 0, rows, cols, n_tiles)]
    while stack:
        y, x, h, w, k = stack.pop()
        if k == 1:
            tiles.append((y, x, h))
            continue
        first, second = _best_cut(y, x, h, w, k, sat)
        stack.append(second)
        stack.append(first)
    return tiles


def _region_weight(sat: list[list[float]], y: int, x: int, h: int, w: int) -> float:
    return sat[y + h][x + w] - sat[y][x + w] - sat[y + h][x] + sat[y][x]


def _best_cut(y: int, x: int, h: int, w: int, k: int, sat: list[list[float]]) -> tuple:
    """Cut a rectangle and split its budget ``k``; the split nearest its weights wins."""
    best = None
    best_error = float("inf")
    for axis, c in _candidate_cuts(h, w):
        first, second = _halves(y, x, h, w, axis, c)
        k_first = _nearest_split(first, second, k, sat)
        if k_first is None:
            continue
        error = abs(k_first - _target_share(first, second, k, sat))
        if error < best_error - 1e-9:
            best, best_error = (first, second, k_first), error
    if best is None:  # rare: only an off-centre cut reaches k
        for axis, c in _all_cuts(h, w):
            first, second = _halves(y, x, h, w, axis, c)
            k_first = _nearest_split(first, second, k, sat)
            if k_first is not None:
                best = (first, second, k_first)
                break
    if best is None:
        raise AssertionError(f"internal error: {h}×{w} cells cannot take {k} squares")
    first, second, k_first = best
    return (*first, k_first), (*second, k - k_first)


def _candidate_cuts(h: int, w: int) -> list[tuple[int, int]]:
    """Cuts worth weighing: halves (of the long side, or both for squares), square-offs."""
    cuts: set[tuple[int, int]] = set()
    if w >= h and w > 1:
        cuts.add((1, w // 2))
    if h >= w and h > 1:
        cuts.add((0, h // 2))
    if w > h:
        cuts.update({(1, h), (1, w - h)})
    elif h > w:
        cuts.update({(0, w), (0, h - w)})
    return sorted(cuts)


def _all_cuts(h: int, w: int) -> list[tuple[int, int]]:
    cuts = [(0, c) for c in range(1, h)] + [(1, c) for c in range(1, w)]
    return sorted(cuts, key=lambda cut: abs(cut[1] - (h if cut[0] == 0 else w) / 2))


def _halves(y: int, x: int, h: int, w: int, axis: int, c: int) -> tuple[tuple, tuple]:
    if axis == 0:
        return (y, x, c, w), (y + c, x, h - c, w)
    return (y, x, h, c), (y, x + c, h, w - c)


def _target_share(first: tuple, second: tuple, k: int, sat: list[list[float]]) -> float:
    w_first = _region_weight(sat, *first)
    w_second = _region_weight(sat, *second)
    total = w_first + w_second
    return k * (w_first / total if total > 0 else 0.5)


def _nearest_split(first: tuple, second: tuple, k: int, sat: list[list[float]]) -> int | None:
    """Budget of ``first`` nearest its weighted share such that both halves can realise it."""
    f_first = feasible_counts(first[2], first[3])
    f_second = feasible_counts(second[2], second[3])
    target = _target_share(first, second, k, sat)
    start = min(max(round(target), 1), k - 1)
    for step in range(k):
        for k_first in (start - step, start + step) if step else (start,):
            if 1 <= k_first < k and (f_first >> k_first) & 1 and (f_second >> (k - k_first)) & 1:
                return k_first
    return None
