"""Corpus discovery: BUSI folders, CSV/Parquet manifests and DICOM archives → ImageRecords.

Also the group-aware, stratified train/val/test split (:mod:`tumorseg.data.split`).
"""

from tumorseg.data.discovery import (
    discover,
    discover_busi,
    discover_dicom,
    discover_images,
    read_manifest,
)
from tumorseg.data.records import ImageRecord, file_digest, make_image_id
from tumorseg.data.split import (
    DEFAULT_MAX_HASH_DISTANCE,
    SplitConfig,
    SplitItem,
    assign_splits,
    connected_groups,
    group_keys,
    hamming_distance,
    near_duplicate_groups,
    perceptual_hash,
)

__all__ = [
    "DEFAULT_MAX_HASH_DISTANCE",
    "ImageRecord",
    "SplitConfig",
    "SplitItem",
    "assign_splits",
    "connected_groups",
    "discover",
    "discover_busi",
    "discover_dicom",
    "discover_images",
    "file_digest",
    "group_keys",
    "hamming_distance",
    "make_image_id",
    "near_duplicate_groups",
    "perceptual_hash",
    "read_manifest",
]
