"""One row of the corpus: an image (or one frame of a cine loop), its masks and its labels.

Records are plain, frozen data so that they can be shipped to Ray workers, written
to Parquet and read back unchanged (:meth:`ImageRecord.to_dict` /
:meth:`ImageRecord.from_dict`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, fields
from typing import Any

from tumorseg.config import ROUTES
from tumorseg.io.files import open_regular

ID_LENGTH = 16
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ImageRecord:
    """An image of the corpus.

    ``image_id`` depends only on the file's bytes (plus the frame for multi-frame
    DICOM), so it survives renames and moves, and a rerun of a job recognises work
    already done. ``label`` is the dataset's own class (BUSI: benign / malignant /
    normal); ``expert_class`` is an expert's triage (``homogeneous`` /
    ``heterogeneous``), which always wins over the computed one.
    """

    image_id: str
    path: str
    mask_paths: tuple[str, ...] = ()
    label: str | None = None
    expert_class: str | None = None
    patient_id: str | None = None
    frame: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mask_paths", tuple(self.mask_paths))
        if self.expert_class is not None and self.expert_class not in ROUTES:
            raise ValueError(
                f"expert_class must be one of {', '.join(ROUTES)} or empty, "
                f"got {self.expert_class!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (``mask_paths`` as a list) for JSON, Arrow and Ray Data."""
        data = asdict(self)
        data["mask_paths"] = list(self.mask_paths)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageRecord:
        """Inverse of :meth:`to_dict`; unknown keys are an error, a missing mask list is ()."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown ImageRecord keys: {sorted(unknown)}")
        values = dict(data)
        values["mask_paths"] = tuple(values.get("mask_paths") or ())
        return cls(**values)


def file_digest(path: str | os.PathLike[str]) -> str:
    """First :data:`ID_LENGTH` hex characters of the SHA-256 of a file, read in chunks."""
    sha = hashlib.sha256()
    with open_regular(path) as handle:
        while chunk := handle.read(_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()[:ID_LENGTH]


def make_image_id(digest: str, frame: int | None = None) -> str:
    """Image id from a file digest; frames of a multi-frame file get ``-f<index>``."""
    return digest if frame is None else f"{digest}-f{frame}"
