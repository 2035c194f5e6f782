"""Which tile counts a rectangle of lattice cells admits, by guillotine cuts into squares.

A rectangle of ``h × w`` cells can be tiled with exactly ``k`` squares by guillotine
cuts iff bit ``k`` of :func:`feasible_counts` is set. The table is an exhaustive
dynamic programme over every sub-rectangle shape and every cut, with counts held
as Python-int bitsets (the sum-set of two shapes is an OR of shifts). Results
depend only on the shape, so they are cached and shared by every call and
position: a 32 × 32 lattice takes well under a second once per process.
"""

from __future__ import annotations

from functools import cache, lru_cache

#: Bitset width: counts above this are not tracked (the contract stops at 400).
COUNT_CAP = 512
_MASK = (1 << (COUNT_CAP + 1)) - 1


def feasible_counts(h: int, w: int) -> int:
    """Bitset of the square counts a ``h × w`` cell rectangle admits (bit k = k squares)."""
    if h > w:
        h, w = w, h
    return _feasible(h, w)


def is_feasible(h: int, w: int, n: int) -> bool:
    return 0 < n <= COUNT_CAP and bool((feasible_counts(h, w) >> n) & 1)


@cache
def _feasible(h: int, w: int) -> int:
    bits = 1 << 1 if h == w else 0
    # Counts never exceed the number of cells; cap early so sum-sets stay small.
    cap_mask = (1 << (min(h * w, COUNT_CAP) + 1)) - 1
    for c in range(1, h // 2 + 1):
        bits |= sum_set(feasible_counts(c, w), feasible_counts(h - c, w))
    for c in range(1, w // 2 + 1):
        bits |= sum_set(feasible_counts(h, c), feasible_counts(h, w - c))
    return bits & cap_mask & _MASK


@lru_cache(maxsize=1 << 16)
def sum_set(a: int, b: int) -> int:
    """Bitset of {i + j : bit i of a, bit j of b}, capped at :data:`COUNT_CAP`."""
    out = 0
    shift = 0
    while a:
        if a & 1:
            out |= b << shift
        a >>= 1
        shift += 1
    return out & _MASK
