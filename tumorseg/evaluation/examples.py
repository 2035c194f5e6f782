"""Loading labeled images for evaluation: an image, its OR-ed ground truth, its split.

* **Ground truth.** A record's masks are OR-ed (:func:`tumorseg.io.load_mask`). An
  image with an empty mask is *tumor-free* ("normal"); a record without mask files
  is tumor-free only when its label is ``normal`` (:data:`NORMAL_LABELS`),
  otherwise it has no ground truth (:class:`MissingTruthError`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tumorseg.data.records import ImageRecord
from tumorseg.errors import InvalidImageError
from tumorseg.io import load_frames, load_image, load_mask

#: Dataset labels whose records may come without mask files: they are tumor-free.
NORMAL_LABELS = frozenset({"normal"})


class MissingTruthError(ValueError):
    """A record has no mask files and is not labeled tumor-free: nothing to score against."""


@dataclass
class Example:
    """One loaded image with its ground truth (2-D uint8 gray, 2-D bool)."""

    record: ImageRecord
    gray: np.ndarray
    truth: np.ndarray


def load_example(record: ImageRecord, limits=None) -> Example:
    """Image (the record's frame for multi-frame DICOM) and its OR-ed ground-truth mask.

    Raises :class:`InvalidImageError` for unreadable images or masks (or masks of
    another size) and :class:`MissingTruthError` for an unlabeled record without masks.
    """
    if record.frame is None:
        gray = load_image(record.path, limits=limits)
    else:
        frames = load_frames(record.path, limits=limits)
        if record.frame >= len(frames):
            raise InvalidImageError(
                record.path, f"frame {record.frame} requested but the file has {len(frames)}"
            )
        gray = frames[record.frame]
    if record.mask_paths:
        truth = load_mask(list(record.mask_paths), shape=gray.shape, limits=limits)
    elif (record.label or "").lower() in NORMAL_LABELS:
        truth = np.zeros(gray.shape, dtype=bool)
    else:
        raise MissingTruthError(
            f"{record.path}: no ground-truth mask (and the label {record.label!r} is not "
            f"one of {sorted(NORMAL_LABELS)})"
        )
    return Example(record, gray, truth)


def records_in_split(
    records: Sequence[ImageRecord], split: str, assigned: dict[str, str]
) -> list[ImageRecord]:
    """The records that a training run put in ``split``.

    ``assigned`` maps image ids to splits, as the training run logged it
    (``splits.json``). Image ids hash the file's content, so the corpus may have
    moved since. Records the run never assigned (unreadable then, or not part of
    its corpus) are left out; if none of ``records`` was assigned at all, ``--data``
    is not the corpus the models were trained on, and that is an error.
    """
    from tumorseg.data.split import SPLITS

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if records and not any(r.image_id in assigned for r in records):
        raise ValueError(
            f"none of the {len(records)} images was in the training run's split: "
            "evaluate a split only on the corpus the models were trained on"
        )
    return [r for r in records if assigned.get(r.image_id) == split]
