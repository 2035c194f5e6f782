from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tumorseg.data import discover_busi


def write_busi_manifest(busi_root: Path, path: Path, per_label: int) -> Path:
    """A manifest of the first ``per_label`` real BUSI images of each label."""
    by_label: dict[str, list] = {}
    for record in discover_busi(busi_root):
        by_label.setdefault(record.label, []).append(record)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "mask", "label"])
        for label in sorted(by_label):
            for record in by_label[label][:per_label]:
                writer.writerow([record.path, ";".join(record.mask_paths), label])
    return path


@pytest.fixture(scope="session")
def busi24(busi_root, tmp_path_factory) -> Path:
    """24 real BUSI images (8 benign, 8 malignant, 8 normal) as a CSV manifest."""
    return write_busi_manifest(busi_root, tmp_path_factory.mktemp("busi") / "busi24.csv", 8)
