"""The group-aware split: the perceptual hash on real BUSI images, union-find, and the split."""

from __future__ import annotations

import dataclasses
import random
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from tumorseg.data import (
    DEFAULT_MAX_HASH_DISTANCE,
    ImageRecord,
    SplitConfig,
    SplitItem,
    assign_splits,
    connected_groups,
    discover_busi,
    group_keys,
    hamming_distance,
    near_duplicate_groups,
    perceptual_hash,
)
from tumorseg.data import split as split_module
from tumorseg.io.images import load_image

MAX_D = DEFAULT_MAX_HASH_DISTANCE


# --- real BUSI corpus -------------------------------------------------------------------


@pytest.fixture(scope="module")
def busi(busi_root: Path) -> tuple[list[ImageRecord], list[int]]:
    """Every BUSI record and its hash (about 3 s for the 624 images)."""
    records = sorted(discover_busi(busi_root), key=lambda r: r.path)
    return records, [perceptual_hash(load_image(r.path)) for r in records]


def _name(record: ImageRecord) -> str:
    return Path(record.path).stem


def _split_busi(
    records: list[ImageRecord], hashes: list[int], patients: list[str | None], seed: int = 0
) -> dict[str, str]:
    config = SplitConfig(seed=seed)
    keys = group_keys([r.image_id for r in records], patients, hashes, config.max_hash_distance)
    items = [SplitItem(r.image_id, k, r.label or "") for r, k in zip(records, keys, strict=True)]
    splits = assign_splits(items, config)
    return {r.image_id: s for r, s in zip(records, splits, strict=True)}


def _fake_patients(records: list[ImageRecord]) -> list[str | None]:
    """Every 10th image shares a patient with the image 37 places on (often another label)."""
    patients: list[str | None] = [None] * len(records)
    for k in range(0, len(records) - 37, 10):
        patients[k] = patients[k + 37] = f"patient-{k}"
    return patients


def test_busi_near_duplicates_form_many_small_groups(busi) -> None:
    _, hashes = busi
    groups = Counter(near_duplicate_groups(hashes))
    sizes = sorted((n for n in groups.values() if n > 1), reverse=True)
    # measured on the 624-image subset: 114 groups (88 pairs, 19 triples, 6 of 4, one of 7)
    assert 60 <= len(sizes) <= 180
    assert sizes[0] <= 12, "a giant group means the threshold chains unrelated images"


def test_busi_known_near_duplicates_are_grouped_and_known_strangers_are_not(busi) -> None:
    records, hashes = busi
    by_name = {_name(r): i for i, r in enumerate(records)}
    same = [
        ("malignant (6)", "malignant (7)", "malignant (8)", "malignant (9)"),  # one sweep
        ("benign (42)", "benign (131)", "malignant (51)"),  # one image filed under two labels
        ("benign (200)", "benign (274)", "benign (290)"),  # calipers, same frame
        ("malignant (85)", "malignant (86)"),  # consecutive frames, distance 10
    ]
    apart = [("benign (1)", "malignant (146)"), ("benign (37)", "normal (28)")]  # distance 12
    needed = {n for names in same + apart for n in names}
    if not needed <= set(by_name):
        pytest.skip("not the BUSI subset these examples were picked from")
    groups = near_duplicate_groups(hashes)
    for names in same:
        assert len({groups[by_name[n]] for n in names}) == 1, names
    for a, b in apart:
        assert groups[by_name[a]] != groups[by_name[b]], (a, b)


def test_busi_split_keeps_groups_and_patients_together(busi) -> None:
    records, hashes = busi
    patients = _fake_patients(records)
    by_id = _split_busi(records, hashes, patients)
    splits = [by_id[r.image_id] for r in records]
    # no near-duplicate pair straddles two splits
    values = np.array(hashes, dtype=np.uint64)
    distance = np.bitwise_count(values[:, None] ^ values[None, :])
    i, j = np.nonzero(np.triu(distance <= MAX_D, 1))
    assert len(i) > 100
    assert all(splits[a] == splits[b] for a, b in zip(i, j, strict=True))
    # no patient straddles two splits
    by_patient: dict[str, set[str]] = {}
    for patient, split in zip(patients, splits, strict=True):
        if patient:
            by_patient.setdefault(patient, set()).add(split)
    assert by_patient and all(len(s) == 1 for s in by_patient.values())


def test_busi_split_matches_the_fractions_overall_and_per_label(busi) -> None:
    records, hashes = busi
    splits = _split_busi(records, hashes, _fake_patients(records))
    config = SplitConfig()
    labels = sorted({r.label for r in records})
    for label in [None, *labels]:
        chosen = [splits[r.image_id] for r in records if label is None or r.label == label]
        counts = Counter(chosen)
        for name, fraction in zip(("train", "val", "test"), config.fractions, strict=True):
            assert abs(counts[name] / len(chosen) - fraction) <= 0.05, (label, counts)
            assert counts[name] > 0, (label, name)  # every label in every split


def test_busi_split_is_deterministic_and_independent_of_input_order(busi) -> None:
    records, hashes = busi
    patients = _fake_patients(records)
    first = _split_busi(records, hashes, patients)
    assert _split_busi(records, hashes, patients) == first
    order = list(range(len(records)))
    random.Random(7).shuffle(order)
    shuffled = _split_busi(
        [records[k] for k in order], [hashes[k] for k in order], [patients[k] for k in order]
    )
    assert shuffled == first
    other_seed = _split_busi(records, hashes, patients, seed=1)
    assert other_seed != first
    assert Counter(other_seed.values())["train"] == pytest.approx(0.7 * len(records), abs=30)


# --- the hash ----------------------------------------------------------------------------


def _shift(image: np.ndarray) -> np.ndarray:
    matrix = np.float32([[1, 0, 4], [0, 1, 3]])
    height, width = image.shape
    return cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)


def _speckle(image: np.ndarray, strength: float = 0.3) -> np.ndarray:
    """Multiplicative Rayleigh noise of mean 1, like ultrasound speckle."""
    noise = np.random.default_rng(0).rayleigh(np.sqrt(2 / np.pi), image.shape)
    return np.clip(image * (1 + strength * (noise - 1)), 0, 255).astype(np.uint8)


def _jpeg(image: np.ndarray, quality: int = 70) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)


def _rescale(image: np.ndarray, factor: float = 0.9) -> np.ndarray:
    return cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)


def _crop(image: np.ndarray, fraction: float = 0.015) -> np.ndarray:
    height, width = image.shape
    return image[int(height * fraction) :, : width - int(width * fraction)]


PERTURBATIONS = {
    "shift 4x3 px": _shift,
    "offset crop 5x3 px": lambda im: im[3:, 5:],
    "rescale 0.9": _rescale,
    "rescale 0.5": lambda im: _rescale(im, 0.5),
    "speckle": _speckle,
    "jpeg 70": _jpeg,
    "crop 1.5 %": _crop,
    "all but crop": lambda im: _jpeg(_speckle(_rescale(_shift(im)), 0.2), 80),
}


@pytest.mark.parametrize("name", sorted(PERTURBATIONS))
def test_busi_perturbed_copies_stay_within_max_distance(busi, name: str) -> None:
    # measured on all 624 images: shift/offset/crop 1 % ≤ 8 bits, rescale, speckle, JPEG ≤ 4
    records, hashes = busi
    perturb = PERTURBATIONS[name]
    distances = [
        hamming_distance(hashes[k], perceptual_hash(perturb(load_image(records[k].path))))
        for k in range(0, len(records), 12)
    ]
    assert max(distances) <= MAX_D, distances


def test_busi_distinct_images_are_far_apart(busi) -> None:
    _, hashes = busi
    values = np.array(hashes, dtype=np.uint64)
    distance = np.bitwise_count(values[:, None] ^ values[None, :])
    pairs = distance[np.triu_indices(len(values), 1)]
    # measured: 190 of 194,376 pairs (0.1 %) within 10 bits, 1st percentile 20, median 30
    assert np.mean(pairs <= MAX_D) < 0.002
    assert np.percentile(pairs, 1) >= 16
    assert np.median(pairs) >= 26


def test_hash_is_a_deterministic_64_bit_int() -> None:
    image = np.random.default_rng(0).integers(0, 256, (40, 50), dtype=np.uint8)
    value = perceptual_hash(image)
    assert type(value) is int and 0 <= value < 2**64
    assert perceptual_hash(image.copy()) == value
    assert perceptual_hash(image.astype(np.float64)) == value
    assert hamming_distance(value, perceptual_hash(image.T)) > MAX_D


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (2000, 30)])
def test_hash_handles_odd_shapes_and_flat_images(shape: tuple[int, int]) -> None:
    assert 0 <= perceptual_hash(np.full(shape, 7, np.uint8)) < 2**64
    assert perceptual_hash(np.zeros(shape, np.uint8)) == 0


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), np.uint8), np.zeros((0, 5)), np.zeros(9)])
def test_hash_refuses_non_2d_or_empty_arrays(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="2-D"):
        perceptual_hash(bad)


def test_hamming_distance() -> None:
    assert hamming_distance(0, 0) == 0
    assert hamming_distance(0b1011, 0b0001) == 2
    assert hamming_distance(0, 2**64 - 1) == 64


# --- union-find and near-duplicate groups --------------------------------------------------


def test_connected_groups_is_transitive_and_labels_by_smallest_member() -> None:
    assert connected_groups(6, [(4, 1), (1, 3), (5, 5)]) == [0, 1, 2, 1, 1, 5]
    assert connected_groups(6, [(3, 1), (1, 4)]) == connected_groups(6, [(4, 1), (1, 3)])
    assert connected_groups(3, []) == [0, 1, 2]
    assert connected_groups(0, []) == []


def test_connected_groups_refuses_out_of_range_pairs() -> None:
    with pytest.raises(ValueError, match="pair indices"):
        connected_groups(3, [(0, 3)])


def test_near_duplicate_groups_chain_transitively() -> None:
    a = 0
    b = a ^ 0b111  # 3 bits from a
    c = b ^ (0b111 << 20)  # 3 bits from b, 6 from a
    far = 2**64 - 1
    assert near_duplicate_groups([far, c, a, b], max_distance=3) == [0, 1, 1, 1]
    assert near_duplicate_groups([far, c, a, b], max_distance=2) == [0, 1, 2, 3]
    assert near_duplicate_groups([a, a, far], max_distance=0) == [0, 0, 2]
    assert near_duplicate_groups([]) == []


def test_near_duplicate_groups_in_blocks_match_brute_force(monkeypatch) -> None:
    rng = np.random.default_rng(1)
    centres = rng.integers(0, 2**63, 30, dtype=np.uint64)
    hashes = [int(centres[k % 30]) ^ (1 << int(rng.integers(0, 64))) for k in range(200)]
    brute = connected_groups(
        len(hashes),
        [
            (i, j)
            for i in range(len(hashes))
            for j in range(i + 1, len(hashes))
            if hamming_distance(hashes[i], hashes[j]) <= 2
        ],
    )
    monkeypatch.setattr(split_module, "_BLOCK_ELEMENTS", 7 * len(hashes))
    assert near_duplicate_groups(hashes, max_distance=2) == brute
    assert len(set(brute)) == 30


def test_near_duplicate_groups_take_10k_hashes_in_seconds() -> None:
    rng = np.random.default_rng(2)
    hashes = [int(h) for h in rng.integers(0, 2**64 - 1, 10_000, dtype=np.uint64, endpoint=True)]
    start = time.perf_counter()
    groups = near_duplicate_groups(hashes)
    assert time.perf_counter() - start < 5
    assert len(groups) == 10_000


@pytest.mark.parametrize("bad", [[-1], [2**64], [1, -5]])
def test_near_duplicate_groups_refuse_hashes_outside_64_bits(bad: list[int]) -> None:
    with pytest.raises(ValueError, match="2\\*\\*64"):
        near_duplicate_groups(bad)


def test_near_duplicate_groups_refuse_bad_distance() -> None:
    with pytest.raises(ValueError, match="max_distance"):
        near_duplicate_groups([1, 2], max_distance=65)


# --- group keys ------------------------------------------------------------------------------


def test_group_keys_join_patients_and_near_duplicates_transitively() -> None:
    ids = ["e", "d", "c", "b", "a", "f"]
    patients = ["P1", "P1", None, "", " ", "P2"]
    low, high, odd = 2**32 - 1, (2**32 - 1) << 32, 0x5555_5555_5555_5555  # ≥ 32 bits apart
    hashes = [2**64 - 1, 0, 1, low, high, odd]
    # e–d same patient; d–c near-duplicates; b, a, f alone (blank patients link nothing)
    keys = group_keys(ids, patients, hashes, max_distance=2)
    assert keys == ["c", "c", "c", "b", "a", "f"]
    assert group_keys(ids[::-1], patients[::-1], hashes[::-1], max_distance=2) == keys[::-1]


def test_group_keys_join_identical_image_ids() -> None:
    assert group_keys(["x", "y", "x"], [None] * 3, [0, 2**64 - 1, 2**63], 0) == ["x", "y", "x"]


def test_group_keys_refuse_different_lengths() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        group_keys(["a", "b"], [None], [0, 1])


# --- assign_splits -----------------------------------------------------------------------------


def _items(groups: list[int], strata: list[str] | None = None) -> list[SplitItem]:
    strata = strata or ["s"] * len(groups)
    return [SplitItem(f"img{k:04d}", f"g{g}", strata[k]) for k, g in enumerate(groups)]


def _straddling(items: list[SplitItem], splits: list[str]) -> set[str]:
    seen: dict[str, set[str]] = {}
    for item, split in zip(items, splits, strict=True):
        seen.setdefault(item.group, set()).add(split)
    return {group for group, where in seen.items() if len(where) > 1}


def test_assign_splits_of_nothing_is_nothing() -> None:
    assert assign_splits([], SplitConfig()) == []


def test_assign_splits_balances_every_stratum() -> None:
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(400), rng.integers(1, 4, 400)).tolist()
    strata = [f"{['homogeneous', 'heterogeneous'][g % 2]}/{['a', 'b', 'c'][g % 3]}" for g in groups]
    items = _items(groups, strata)
    splits = assign_splits(items, SplitConfig())
    assert not _straddling(items, splits)
    for stratum in set(strata):
        counts = Counter(s for s, t in zip(splits, strata, strict=True) if t == stratum)
        total = sum(counts.values())
        for name, fraction in (("train", 0.7), ("val", 0.15), ("test", 0.15)):
            assert abs(counts[name] / total - fraction) < 0.04, (stratum, counts)


def test_assign_splits_put_a_group_bigger_than_a_split_in_train() -> None:
    items = _items([0] * 50 + list(range(1, 11)))  # one group of 50, ten singletons
    splits = assign_splits(items, SplitConfig())
    assert set(splits[:50]) == {"train"}
    assert Counter(splits[50:])["val"] >= 1 and Counter(splits[50:])["test"] >= 1
    assert not _straddling(items, splits)


def test_assign_splits_of_24_singletons() -> None:
    counts = Counter(assign_splits(_items(list(range(24))), SplitConfig()))
    assert counts["train"] >= 15 and counts["val"] >= 3 and counts["test"] >= 3


@pytest.mark.parametrize(
    ("groups", "expected"),
    [
        ([0], {"train": 1}),
        ([0, 0, 0], {"train": 3}),
        ([0, 1], {"train": 1, "val": 1}),
        ([0, 0, 0, 1], {"train": 3, "val": 1}),
        ([0, 1, 2], {"train": 1, "val": 1, "test": 1}),
        ([0] * 10 + [1] * 8 + [2] * 6, {"train": 10, "val": 6, "test": 8}),
    ],
)
def test_assign_splits_fill_train_and_val_first_in_tiny_corpora(
    groups: list[int], expected: dict[str, int]
) -> None:
    assert Counter(assign_splits(_items(groups), SplitConfig())) == expected


def test_assign_splits_with_no_test_share() -> None:
    splits = assign_splits(_items(list(range(20))), SplitConfig(fractions=(0.8, 0.2, 0.0)))
    assert Counter(splits) == {"train": 16, "val": 4}


def test_assign_splits_depend_on_seed_not_on_input_order() -> None:
    items = _items([k // 2 for k in range(60)], [["x", "y"][k % 3 == 0] for k in range(60)])
    first = assign_splits(items, SplitConfig(seed=5))
    assert assign_splits(items, SplitConfig(seed=5)) == first
    order = list(range(60))
    random.Random(0).shuffle(order)
    shuffled = assign_splits([items[k] for k in order], SplitConfig(seed=5))
    assert [shuffled[order.index(k)] for k in range(60)] == first
    assert assign_splits(items, SplitConfig(seed=6)) != first


def test_assign_splits_handle_groups_spanning_strata() -> None:
    items = [
        SplitItem("a", "g1", "benign"),
        SplitItem("b", "g1", "malignant"),  # one image filed under two labels
        *_items(list(range(2, 40)), ["benign", "malignant"] * 19),
    ]
    splits = assign_splits(items, SplitConfig())
    assert splits[0] == splits[1]
    assert not _straddling(items, splits)


# --- SplitConfig -------------------------------------------------------------------------------


def test_split_config_round_trips_through_a_dict() -> None:
    config = SplitConfig(fractions=(0.8, 0.1, 0.1), seed=3, max_hash_distance=6)
    data = dataclasses.asdict(config)
    data["fractions"] = list(data["fractions"])  # as JSON gives it back
    assert SplitConfig(**data) == config


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fractions": (0.7, 0.2, 0.2)},
        {"fractions": (0.5, 0.5)},
        {"fractions": (1.2, -0.1, -0.1)},
        {"max_hash_distance": -1},
        {"max_hash_distance": 65},
    ],
)
def test_split_config_refuses_nonsense(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        SplitConfig(**kwargs)
