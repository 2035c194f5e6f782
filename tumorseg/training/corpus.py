"""The training corpus on Ray Data: decode, triage, hash, split, and shard by class.

Decoding happens once, in parallel Ray tasks, and the prepared rows are
materialised in the object store; every network's dataset is a filter of them
(the homogeneous shard for the gray net, the heterogeneous shard — cut into
tiles — for the FCN, all images for the classifier and the baseline). The split
runs on the driver over small metadata only (ids, patients, hashes, classes).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray
import ray.data

from tumorseg.data import ImageRecord
from tumorseg.data.split import SplitItem, assign_splits, group_keys, perceptual_hash
from tumorseg.errors import InvalidImageError
from tumorseg.io import load_frames, load_mask
from tumorseg.networks.roles import network_role
from tumorseg.preprocessing.heterogeneity import triage_class
from tumorseg.training.config import TrainConfig
from tumorseg.training.samples import image_samples, split_tile_row, tile_samples

log = logging.getLogger("tumorseg.training")

#: Ray Data tasks take half a core, so decoding never starves on small machines.
TASK_CPUS = 0.5
META_COLUMNS = ["image_id", "path", "label", "patient_id", "route", "score", "phash"]


@dataclass
class PreparedCorpus:
    """Materialised rows plus what the driver learned while preparing them."""

    rows: ray.data.Dataset
    splits: dict[str, str]  # image_id → "train" | "val" | "test"
    meta: list[dict[str, Any]]
    errors: list[tuple[str, str]]  # (path, reason) of records that could not be read


def prepare_corpus(records: list[ImageRecord], config: TrainConfig) -> PreparedCorpus:
    """Decode every record in parallel, then split the ids on the driver."""
    if not records:
        raise ValueError("no images to train on")
    items = [record.to_dict() for record in records]
    rows = (
        ray.data.from_items(items, override_num_blocks=min(len(items), 64))
        .flat_map(_prepare_row, fn_kwargs={"config": config.to_dict()}, num_cpus=TASK_CPUS)
        .materialize()
    )
    meta = rows.select_columns(META_COLUMNS).take_all()
    errors = _errors(records, {m["image_id"] for m in meta})
    if not meta:
        raise ValueError(f"none of the {len(records)} images could be read; first: {errors[:3]}")
    splits = split_ids(meta, config)
    return PreparedCorpus(rows=rows, splits=splits, meta=meta, errors=errors)


def split_ids(meta: list[dict[str, Any]], config: TrainConfig) -> dict[str, str]:
    """Group-aware, stratified split of the prepared images (see tumorseg.data.split)."""
    groups = group_keys(
        [m["image_id"] for m in meta],
        [m["patient_id"] for m in meta],
        [int(m["phash"]) for m in meta],
        config.split.max_hash_distance,
    )
    items = [
        SplitItem(m["image_id"], group, f"{m['route']}/{m['label']}")
        for m, group in zip(meta, groups, strict=True)
    ]
    return dict(zip([m["image_id"] for m in meta], assign_splits(items, config.split), strict=True))


def role_datasets(
    corpus: PreparedCorpus, role: str, config: TrainConfig
) -> dict[str, ray.data.Dataset]:
    """``{"train", "val"}`` datasets of one network, holding only the columns it reads."""
    out = {}
    for split in ("train", "val"):
        ids = {i for i, s in corpus.splits.items() if s == split}
        out[split] = _role_dataset(corpus.rows, ids, role, config)
    return out


def _role_dataset(rows: ray.data.Dataset, ids: set[str], role: str, config: TrainConfig):
    in_shard = _SHARDS[network_role(role).shard]

    def keep(row: dict[str, Any]) -> bool:
        return row["image_id"] in ids and in_shard(row["route"], bool(row["has_tumor"]))

    selected = rows.filter(keep, num_cpus=TASK_CPUS)
    if role == "fcn":
        return (
            selected.select_columns(["image_id", "canvas", "canvas_mask"])
            .map(_tiles_for_row, fn_kwargs={"config": config.to_dict()}, num_cpus=TASK_CPUS)
            .flat_map(split_tile_row, num_cpus=TASK_CPUS)
            .materialize()
        )
    spec = network_role(role)
    return selected.select_columns([spec.input_column, spec.target_column]).materialize()


def _everything(route: str, has_tumor: bool) -> bool:
    return True


def _graynet_shard(route: str, has_tumor: bool) -> bool:
    """Homogeneous lesions, and every tumor-free image: the gray net sees every image at
    inference (it is the first stage), so it must learn to find nothing."""
    return route == "homogeneous" or not has_tumor


def _fcn_shard(route: str, has_tumor: bool) -> bool:
    """Heterogeneous lesions only: the FCN refines images that have a tumor."""
    return route == "heterogeneous" and has_tumor


#: Shard of a role (NetworkRole.shard) → which prepared rows (by triage route and tumor
#: presence) it trains on.
_SHARDS: dict[str, Callable[[str, bool], bool]] = {
    "all": _everything,
    "homogeneous+normal": _graynet_shard,
    "heterogeneous": _fcn_shard,
}


def _prepare_row(row: dict[str, Any], config: dict[str, Any]) -> list[dict[str, Any]]:
    """Decode one record into everything training needs; unreadable images yield no row."""
    train_config = TrainConfig.from_dict(config)
    record = ImageRecord.from_dict(row)
    try:
        frames = load_frames(record.path, limits=train_config.segmenter.limits)
        gray = frames[record.frame or 0]
        mask = (
            load_mask(list(record.mask_paths), shape=gray.shape)
            if record.mask_paths
            else np.zeros(gray.shape, bool)
        )
    except (InvalidImageError, IndexError) as error:
        log.warning("skipping %s: %s", record.path, error)
        return []
    route, score = triage_class(gray, mask, record.expert_class, train_config.segmenter.triage)
    return [
        {
            "image_id": record.image_id,
            "path": record.path,
            "label": record.label or "",
            "patient_id": record.patient_id or "",
            "route": route,
            "score": score,
            "phash": str(perceptual_hash(gray)),  # uint64 does not fit Arrow's int64
            "has_tumor": bool(mask.any()),
            **image_samples(gray, mask, route, train_config.segmenter),
        }
    ]


def _tiles_for_row(row: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    train_config = TrainConfig.from_dict(config)
    seed = int(
        hashlib.sha256(f"{train_config.seed}/{row['image_id']}".encode()).hexdigest()[:8], 16
    )
    return tile_samples(
        row["canvas"],
        row["canvas_mask"],
        train_config.segmenter.multiscale.pass_tiles,
        train_config.tiles,
        train_config.segmenter.networks.fcn_tile_size,
        np.random.default_rng(seed),
        coarse_seed=train_config.segmenter.multiscale.coarse_seed,
    )


def _errors(records: list[ImageRecord], prepared: set[str]) -> list[tuple[str, str]]:
    """Reasons for the records that produced no row (re-read on the driver; they fail fast)."""
    errors = []
    for record in records:
        if record.image_id in prepared:
            continue
        try:
            frames = load_frames(record.path)
            reason = f"frame {record.frame} missing of {len(frames)}"
        except InvalidImageError as error:
            reason = str(error)
        errors.append((record.path, reason))
    return errors
