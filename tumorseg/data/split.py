"""Seeded, stratified train/val/test splits that keep patients and near-duplicates together.

Why groups: BUSI (and any clinical archive) holds many near-duplicates — consecutive
frames of one sweep, the same frame with and without calipers, even the same image
filed under two labels. When one copy trains and its twin is tested, the test score
measures memory, not generalisation. So images are grouped (same patient, or
perceptual hashes within a small Hamming distance, transitively) and every group
goes to one split as a whole.

Why separate pure functions: hashes are computed where images are decoded (a Ray Data
map, :func:`perceptual_hash`); the split runs on the driver over per-image metadata
only (:func:`group_keys`, then :func:`assign_splits`), so it needs no pixels.

Default threshold: pHash distances on the 624 BUSI images are bimodal. Every pair
within distance 10 that we inspected is the same lesion (same frame, consecutive
frame, calipers added, or a cross-label copy); at 12 unrelated images start to merge
(e.g. ``benign (1)`` with ``malignant (146)``), and at 14 most new merges are unrelated.
Shifts of a few pixels, 0.9 rescaling, speckle and JPEG move the hash by ≤ 8; one-sided
crops of more than ~3 % move it further, so such copies may escape grouping.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

SPLITS = ("train", "val", "test")
HASH_BITS = 64
DEFAULT_MAX_HASH_DISTANCE = 10
_HASH_SIDE = 32  # DCT input size: INTER_AREA averages speckle away before the DCT
_HASH_FREQS = 8  # 8×8 lowest frequencies = 64 bits
_BLOCK_ELEMENTS = 1 << 22  # pairwise distances are computed in blocks of ~4M pairs


def perceptual_hash(image: np.ndarray) -> int:
    """64-bit DCT pHash of a 2-D grayscale image, as a Python int in ``[0, 2**64)``.

    The image is area-averaged to 32×32 (which also averages out speckle), its 8×8
    lowest DCT frequencies are compared with their median, and the bits are packed
    row-major, first coefficient in the most significant bit. Only coarse structure
    survives, so shifts of a few pixels, resizing, noise and recompression change few
    bits; compare hashes with :func:`hamming_distance`.
    """
    array = np.asarray(image)
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"perceptual_hash needs a non-empty 2-D image, got shape {array.shape}")
    small = cv2.resize(
        array.astype(np.float32), (_HASH_SIDE, _HASH_SIDE), interpolation=cv2.INTER_AREA
    )
    low = cv2.dct(small)[:_HASH_FREQS, :_HASH_FREQS]
    bits = (low > np.median(low)).ravel()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def hamming_distance(a: int, b: int) -> int:
    """Number of differing bits between two hashes."""
    return (int(a) ^ int(b)).bit_count()


def connected_groups(n_items: int, pairs: Iterable[tuple[int, int]]) -> list[int]:
    """Union-find over ``pairs`` of item indices: each item's group is its smallest member index.

    Transitive: ``(0, 1)`` and ``(1, 2)`` put 0, 1 and 2 in group 0. Items in no pair
    are their own group. The result depends only on the set of pairs.
    """
    edges = np.asarray(list(pairs), dtype=np.int64).reshape(-1, 2)
    if edges.size and (edges.min() < 0 or edges.max() >= n_items):
        raise ValueError(f"pair indices must be in [0, {n_items})")
    return _min_index_components(n_items, edges[:, 0], edges[:, 1]).tolist()


def near_duplicate_groups(
    hashes: Sequence[int], max_distance: int = DEFAULT_MAX_HASH_DISTANCE
) -> list[int]:
    """Group index per item: items whose hashes are within ``max_distance`` bits, transitively.

    The group index is the smallest index of its members (deterministic). All pairs
    are compared — O(n²) work in numpy blocks of bounded memory: 10k hashes take well under a
    second. Far bigger corpora should bucket first (e.g. LSH on hash bands: two hashes
    within distance d agree exactly on at least one of d + 1 disjoint bands).
    """
    _check_distance(max_distance)
    values = _hash_array(hashes)
    n = len(values)
    labels = np.arange(n, dtype=np.int64)
    rows_per_block = max(1, _BLOCK_ELEMENTS // max(n, 1))
    for start in range(0, n, rows_per_block):
        block = values[start : start + rows_per_block]
        distances = _popcount64(block[:, None] ^ values[None, start:])
        rows, cols = np.nonzero(distances <= max_distance)
        rows, cols = rows + start, cols + start
        above = rows < cols  # each pair once, no self-pairs
        if above.any():
            left = np.concatenate([np.arange(n), rows[above]])
            right = np.concatenate([labels, cols[above]])  # keep the groups found so far
            labels = _min_index_components(n, left, right)
    return labels.tolist()


def group_keys(
    image_ids: Sequence[str],
    patient_ids: Sequence[str | None],
    hashes: Sequence[int],
    max_distance: int = DEFAULT_MAX_HASH_DISTANCE,
) -> list[str]:
    """A group key per image: same patient, near-duplicate hash or same image id, transitively.

    Empty or ``None`` patient ids link nothing. Beware archives that anonymise every
    PatientID to one value: they become one group (which then lands in one split).
    The key is the smallest image id of the group, so it does not depend on input order.
    """
    n = len(image_ids)
    if not n == len(patient_ids) == len(hashes):
        raise ValueError(
            f"image_ids, patient_ids and hashes differ in length: "
            f"{n}, {len(patient_ids)}, {len(hashes)}"
        )
    near = near_duplicate_groups(hashes, max_distance)
    pairs = list(enumerate(near))
    pairs += _same_value_pairs(image_ids)
    pairs += _same_value_pairs([(p or "").strip() or None for p in patient_ids])
    groups = connected_groups(n, pairs)
    smallest: dict[int, str] = {}
    for index, group in enumerate(groups):
        current = smallest.get(group)
        if current is None or image_ids[index] < current:
            smallest[group] = image_ids[index]
    return [smallest[group] for group in groups]


@dataclass(frozen=True)
class SplitItem:
    """What the split needs to know of one image: its id, its group key and its stratum."""

    image_id: str
    group: str
    stratum: str


@dataclass(frozen=True)
class SplitConfig:
    """Target shares of train/val/test, the seed, and the near-duplicate hash distance."""

    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    seed: int = 0
    max_hash_distance: int = DEFAULT_MAX_HASH_DISTANCE

    def __post_init__(self) -> None:
        fractions = tuple(float(f) for f in self.fractions)
        object.__setattr__(self, "fractions", fractions)
        if len(fractions) != len(SPLITS) or any(not f >= 0 for f in fractions):
            raise ValueError(f"fractions must be three non-negative numbers, got {fractions}")
        if abs(sum(fractions) - 1.0) > 1e-6:
            raise ValueError(f"fractions must sum to 1, got {fractions} (sum {sum(fractions)})")
        _check_distance(self.max_hash_distance)


def assign_splits(items: Sequence[SplitItem], config: SplitConfig | None = None) -> list[str]:
    """``"train"``/``"val"``/``"test"`` per item; a group never straddles two splits.

    Groups are placed biggest first (ties in a seeded, input-order-free shuffle), each
    into the split whose share of the group's strata would be least filled relative to
    its target (``fraction × stratum size``) — so every stratum is spread close to the
    fractions, and a group bigger than a split's target lands in train. Afterwards an
    empty split with a positive fraction takes the smallest group of the split holding
    the most groups, so tiny corpora still get train and val (and test) when possible.
    """
    config = config or SplitConfig()
    if not items:
        return []
    strata = _group_strata(items)
    order = sorted(strata, key=lambda g: (-sum(strata[g].values()), _shuffle_key(config.seed, g)))
    placed = _place_greedily(order, strata, np.asarray(config.fractions))
    _fill_empty_splits(order, placed, config.fractions)
    return [SPLITS[placed[item.group]] for item in items]


def _group_strata(items: Sequence[SplitItem]) -> dict[str, Counter[str]]:
    """Per group, how many of its items fall in each stratum."""
    strata: dict[str, Counter[str]] = {}
    for item in items:
        strata.setdefault(item.group, Counter())[item.stratum] += 1
    return strata


def _shuffle_key(seed: int, group: str) -> tuple[str, str]:
    """Seeded pseudo-random rank of a group, the same on every platform and input order."""
    return hashlib.sha256(f"{seed}\0{group}".encode()).hexdigest(), group


def _place_greedily(
    order: Sequence[str], strata: dict[str, Counter[str]], fractions: np.ndarray
) -> dict[str, int]:
    totals: Counter[str] = Counter()
    for counts in strata.values():
        totals.update(counts)
    filled = {stratum: np.zeros(len(SPLITS)) for stratum in totals}
    placed: dict[str, int] = {}
    for group in order:
        cost = np.zeros(len(SPLITS))
        for stratum, count in strata[group].items():
            target = fractions * totals[stratum]
            fill = np.divide(
                filled[stratum] + count, target, out=np.full(len(SPLITS), np.inf), where=target > 0
            )
            cost += count * fill
        split = int(np.argmin(cost))  # ties go to the earlier split
        placed[group] = split
        for stratum, count in strata[group].items():
            filled[stratum][split] += count
    return placed


def _fill_empty_splits(
    order: Sequence[str], placed: dict[str, int], fractions: Sequence[float]
) -> None:
    """Give each empty split with a positive fraction one group, never emptying another."""
    for split in range(len(SPLITS)):
        members = [[g for g in order if placed[g] == s] for s in range(len(SPLITS))]
        if fractions[split] <= 0 or members[split]:
            continue
        donors = [s for s in range(len(SPLITS)) if len(members[s]) >= 2]
        if donors:
            donor = max(donors, key=lambda s: (len(members[s]), -s))
            placed[members[donor][-1]] = split  # the last placed is the smallest


def _same_value_pairs(values: Sequence[str | None]) -> list[tuple[int, int]]:
    """Link every item to the first item with the same non-empty value."""
    first: dict[str, int] = {}
    pairs = []
    for index, value in enumerate(values):
        if value:
            pairs.append((first.setdefault(value, index), index))
    return pairs


def _min_index_components(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Connected components of an undirected graph, labelled by their smallest node."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    graph = coo_matrix((np.ones(len(left), dtype=bool), (left, right)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    smallest = np.full(component.max() + 1, n, dtype=np.int64)
    np.minimum.at(smallest, component, np.arange(n))
    return smallest[component]


def _hash_array(hashes: Sequence[int]) -> np.ndarray:
    values = [int(h) for h in hashes]
    if any(not 0 <= h < 1 << HASH_BITS for h in values):
        raise ValueError(f"hashes must be integers in [0, 2**{HASH_BITS})")
    return np.array(values, dtype=np.uint64)


def _popcount64(values: np.ndarray) -> np.ndarray:
    """Set bits per uint64 element (numpy ≥ 2 has it built in; else a byte lookup table)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(values)
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
    as_bytes = values.view(np.uint8).reshape(*values.shape, 8)
    return table[as_bytes].sum(axis=-1, dtype=np.uint8)


def _check_distance(max_distance: int) -> None:
    if not 0 <= max_distance <= HASH_BITS:
        raise ValueError(f"max_distance must be in [0, {HASH_BITS}], got {max_distance}")
