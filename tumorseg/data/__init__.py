"""Corpus discovery: BUSI folders, CSV/Parquet manifests and DICOM archives → ImageRecords."""

from tumorseg.data.discovery import (
    discover,
    discover_busi,
    discover_dicom,
    discover_images,
    read_manifest,
)
from tumorseg.data.records import ImageRecord, file_digest, make_image_id

__all__ = [
    "ImageRecord",
    "discover",
    "discover_busi",
    "discover_dicom",
    "discover_images",
    "file_digest",
    "make_image_id",
    "read_manifest",
]
