"""Evaluate the fused segmenter (and a no-routing baseline) on a labeled corpus.

:func:`evaluate_corpus` segments every record, scores it against its ground truth
and returns one row per image (a plain dict, see :data:`ROW_FIELDS`);
:func:`summarize` turns rows into the ``summary.json`` structure. Both are pure
library code: no MLflow, no files written (``tumorseg.evaluation.report`` writes
them, ``jobs/evaluate.py`` wires everything up).

Conventions
-----------
* **Ground truth.** A record's masks are OR-ed (:func:`tumorseg.io.load_mask`). An
  image with an empty mask is *tumor-free* ("normal"); a record without mask files
  is tumor-free only when its label is ``normal`` (:data:`NORMAL_LABELS`),
  otherwise it is an error row (no ground truth to score against).
* **Means over tumor images.** Dice, IoU and HD95 are averaged over images whose
  ground truth has a tumor; tumor-free images only feed the false-positive rate.
  Empty-mask conventions are those of :func:`tumorseg.metrics.score_masks` (an
  empty prediction on a tumor image scores Dice 0, IoU 0, HD95 = image diagonal).
* **False positive on a normal image.** The prediction's *largest connected
  component* (8-connectivity) covers at least ``normal_fp_min_area`` of the
  image's pixels (default 0.1 %, e.g. 262 px on a 500 × 524 image). The smallest
  lesion of the BUSI corpus covers 0.21 % of its image, so anything a reader would
  call "a tumor" counts, while isolated specks do not.
* **True class.** :func:`tumorseg.preprocessing.heterogeneity.triage_class` on the
  ground-truth mask (an expert class wins). Routing accuracy compares it with the
  predicted route on tumor images only: on a tumor-free image the score is taken
  over the whole image and says nothing about a lesion.
* **Bad input.** Images or masks that cannot be read (:class:`InvalidImageError`),
  records without ground truth and images the pipeline rejects become error rows
  (``error`` set, metrics ``None``), counted as ``n_errors``; they never stop the run.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from tumorseg.config import ROUTES, NetworkConfig, TriageConfig
from tumorseg.data.records import ImageRecord
from tumorseg.errors import InvalidImageError
from tumorseg.inference.baseline import segment_full_image
from tumorseg.inference.postprocess import largest_component
from tumorseg.inference.segmenter import Segmenter
from tumorseg.io import load_frames, load_image, load_mask
from tumorseg.metrics import score_masks
from tumorseg.preprocessing.heterogeneity import triage_class

log = logging.getLogger(__name__)

#: Dataset labels whose records may come without mask files: they are tumor-free.
NORMAL_LABELS = frozenset({"normal"})
#: Default share of the image a predicted component must cover to be a false positive.
DEFAULT_NORMAL_FP_MIN_AREA = 0.001
#: Error rows listed in the summary (all of them are in the rows / Parquet file).
MAX_LISTED_ERRORS = 50
#: Name used for records without a dataset label in ``per_label``.
UNLABELED = "unlabeled"
METHODS = ("fused", "baseline")

#: Columns of a row, in order, with their kind (``str``, ``int``, ``float``, ``bool``,
#: ``str_list``); every value may be ``None`` (error rows, no baseline).
ROW_FIELDS: dict[str, str] = {
    "image_id": "str",
    "path": "str",
    "mask_paths": "str_list",
    "frame": "int",
    "label": "str",
    "patient_id": "str",
    "height": "int",
    "width": "int",
    "has_tumor": "bool",
    "truth_area_px": "int",
    "true_class": "str",
    "true_class_source": "str",  # "expert" or "score"
    "truth_score": "float",  # heterogeneity score on the ground-truth region
    "route": "str",  # predicted route
    "route_confidence": "float",
    "predicted_score": "float",  # heterogeneity score on the predicted mask
    "fused_dice": "float",
    "fused_iou": "float",
    "fused_hd95": "float",
    "fused_area_px": "int",
    "fused_largest_px": "int",
    "fused_fp": "bool",  # normal images only
    "fused_seconds": "float",
    "baseline_dice": "float",
    "baseline_iou": "float",
    "baseline_hd95": "float",
    "baseline_area_px": "int",
    "baseline_largest_px": "int",
    "baseline_fp": "bool",
    "baseline_seconds": "float",
    "error": "str",
}


class MissingTruthError(ValueError):
    """A record has no mask files and is not labeled tumor-free: nothing to score against."""


@dataclass
class Example:
    """One loaded image with its ground truth (2-D uint8 gray, 2-D bool)."""

    record: ImageRecord
    gray: np.ndarray
    truth: np.ndarray


@dataclass
class Prediction:
    """Masks predicted for one :class:`Example` by the fused pipeline and the baseline."""

    fused: np.ndarray
    route: str
    route_confidence: float
    predicted_score: float
    fused_seconds: float
    baseline: np.ndarray | None = None
    baseline_seconds: float | None = None


@dataclass
class EvaluationResult:
    """Per-image rows (input order) and the summary built from them."""

    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def n_errors(self) -> int:
        return self.summary["n_errors"]


# --------------------------------------------------------------------------- loading


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


def record_from_row(row: Mapping[str, Any]) -> ImageRecord:
    """The record a row was made from (enough to reload the image and its masks)."""
    return ImageRecord(
        image_id=row["image_id"],
        path=row["path"],
        mask_paths=tuple(row.get("mask_paths") or ()),
        label=row.get("label"),
        patient_id=row.get("patient_id"),
        frame=row.get("frame"),
    )


# --------------------------------------------------------------------------- splits


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


# --------------------------------------------------------------------------- predicting


def predict_examples(
    examples: Sequence[Example],
    segmenter: Segmenter,
    baseline: nn.Module | None = None,
    baseline_networks: NetworkConfig | None = None,
) -> list[Prediction]:
    """Fused and baseline masks for a batch (each network batched across the examples)."""
    if not examples:
        return []
    grays = [example.gray for example in examples]
    results = segmenter.segment_batch(grays)
    predictions = [
        Prediction(
            fused=result.mask,
            route=result.route,
            route_confidence=float(result.route_confidence),
            predicted_score=float(result.heterogeneity_score),
            fused_seconds=float(sum(result.timings.values())),
        )
        for result in results
    ]
    if baseline is not None:
        start = time.perf_counter()
        baseline.to(segmenter.device).eval()
        probabilities = segment_full_image(
            baseline, grays, baseline_networks or segmenter.config.networks, segmenter.device
        )
        seconds = (time.perf_counter() - start) / len(grays)
        for prediction, probability in zip(predictions, probabilities, strict=True):
            prediction.baseline = probability >= segmenter.config.mask_threshold
            prediction.baseline_seconds = seconds
    return predictions


def largest_component_px(mask: np.ndarray) -> int:
    """Pixel count of the largest 8-connected component of a boolean mask (0 when empty)."""
    return int(largest_component(mask).sum())


# --------------------------------------------------------------------------- evaluating


def evaluate_corpus(
    records: Iterable[ImageRecord],
    segmenter: Segmenter,
    baseline: nn.Module | None = None,
    *,
    batch_size: int = 8,
    normal_fp_min_area: float = DEFAULT_NORMAL_FP_MIN_AREA,
    triage: TriageConfig | None = None,
    baseline_networks: NetworkConfig | None = None,
    log_every: int = 50,
) -> EvaluationResult:
    """Segment and score every record; one row per record, in input order.

    ``baseline`` is the no-routing full-image network (``None`` skips it; its rows'
    ``baseline_*`` columns and the summary's ``baseline`` are then ``None``).
    ``normal_fp_min_area`` is the share of an image's pixels (0–1) that the largest
    predicted component must cover for a tumor-free image to count as a false
    positive. ``triage`` sets the ground-truth class (default: the segmenter's
    config); ``baseline_networks`` the baseline's input size (default: the
    segmenter's). A progress line is logged every ``log_every`` images.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if not 0.0 <= normal_fp_min_area < 1.0:
        raise ValueError(
            f"normal_fp_min_area is a share of the image (0–1), got {normal_fp_min_area}"
        )
    records = list(records)
    triage = triage or segmenter.config.triage
    limits = segmenter.config.limits
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    next_log = log_every
    for offset in range(0, len(records), batch_size):
        batch = records[offset : offset + batch_size]
        rows.extend(
            _evaluate_batch(
                batch, segmenter, baseline, baseline_networks, triage, limits, normal_fp_min_area
            )
        )
        if log_every and (len(rows) >= next_log or len(rows) == len(records)):
            elapsed = time.perf_counter() - start
            log.info(
                "evaluated %d/%d images (%.2f images/s, %d errors)",
                len(rows),
                len(records),
                len(rows) / max(elapsed, 1e-9),
                sum(row["error"] is not None for row in rows),
            )
            next_log = (len(rows) // log_every + 1) * log_every
    seconds = time.perf_counter() - start
    settings = {
        "batch_size": batch_size,
        "normal_fp_min_area": normal_fp_min_area,
        "triage_threshold": triage.threshold,
        "mask_threshold": segmenter.config.mask_threshold,
        "baseline": baseline is not None,
        "device": str(segmenter.device),
    }
    summary = summarize(rows)
    summary["settings"] = settings
    summary["model_versions"] = dict(segmenter.models.versions)
    summary["seconds"] = seconds
    summary["images_per_second"] = len(rows) / seconds if seconds > 0 else None
    return EvaluationResult(rows=rows, summary=summary, settings=settings)


def _evaluate_batch(
    batch: Sequence[ImageRecord],
    segmenter: Segmenter,
    baseline: nn.Module | None,
    baseline_networks: NetworkConfig | None,
    triage: TriageConfig,
    limits,
    min_area: float,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any] | None] = [None] * len(batch)
    loaded: list[tuple[int, Example]] = []
    for i, record in enumerate(batch):
        try:
            loaded.append((i, load_example(record, limits)))
        except (InvalidImageError, MissingTruthError) as error:
            log.warning("error row for %s: %s", record.path, error)
            rows[i] = _error_row(record, str(error))
    examples = [example for _, example in loaded]
    try:
        predictions: list[Prediction | None] = list(
            predict_examples(examples, segmenter, baseline, baseline_networks)
        )
    except Exception:  # one image the pipeline rejects must not sink its batch-mates
        log.warning("batch of %d failed; retrying image by image", len(examples), exc_info=True)
        predictions = [_predict_one(e, segmenter, baseline, baseline_networks) for e in examples]
    for (i, example), prediction in zip(loaded, predictions, strict=True):
        if isinstance(prediction, Prediction):
            rows[i] = _score_row(example, prediction, triage, min_area)
        else:
            rows[i] = _error_row(example.record, prediction)
    return rows  # type: ignore[return-value]


def _predict_one(
    example: Example,
    segmenter: Segmenter,
    baseline: nn.Module | None,
    baseline_networks: NetworkConfig | None,
) -> Prediction | str:
    try:
        return predict_examples([example], segmenter, baseline, baseline_networks)[0]
    except Exception as error:
        log.exception("segmentation failed for %s", example.record.path)
        return f"{example.record.path}: segmentation failed ({type(error).__name__}: {error})"


def _base_row(record: ImageRecord) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(ROW_FIELDS)
    row.update(
        image_id=record.image_id,
        path=record.path,
        mask_paths=list(record.mask_paths),
        frame=record.frame,
        label=record.label,
        patient_id=record.patient_id,
    )
    return row


def _error_row(record: ImageRecord, error: str) -> dict[str, Any]:
    row = _base_row(record)
    row["error"] = error
    return row


def _score_row(
    example: Example, prediction: Prediction, triage: TriageConfig, min_area: float
) -> dict[str, Any]:
    record, truth = example.record, example.truth
    height, width = truth.shape
    has_tumor = bool(truth.any())
    true_class, truth_score = triage_class(example.gray, truth, record.expert_class, triage)
    row = _base_row(record)
    row.update(
        height=height,
        width=width,
        has_tumor=has_tumor,
        truth_area_px=int(truth.sum()),
        true_class=true_class,
        true_class_source="expert" if record.expert_class else "score",
        truth_score=float(truth_score),
        route=prediction.route,
        route_confidence=prediction.route_confidence,
        predicted_score=prediction.predicted_score,
    )
    min_px = min_area * height * width
    masks = {"fused": prediction.fused, "baseline": prediction.baseline}
    for method, mask in masks.items():
        if mask is None:
            continue
        scores = score_masks(mask, truth)
        largest = largest_component_px(mask)
        row[f"{method}_dice"] = scores.dice
        row[f"{method}_iou"] = scores.iou
        row[f"{method}_hd95"] = scores.hd95
        row[f"{method}_area_px"] = int(mask.sum())
        row[f"{method}_largest_px"] = largest
        row[f"{method}_fp"] = None if has_tumor else bool(largest > 0 and largest >= min_px)
    row["fused_seconds"] = prediction.fused_seconds
    row["baseline_seconds"] = prediction.baseline_seconds
    return row


# --------------------------------------------------------------------------- summarizing


def summarize(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``summary.json`` structure of a list of rows (see the module docstring).

    ``fused`` / ``baseline`` hold means over tumor images (``dice``, ``iou``,
    ``hd95``, plus ``dice_median`` and ``hd95_median``) and the false-positive rate
    over tumor-free images (``normal_fp_rate``); ``baseline`` is ``None`` when no
    row has baseline figures. ``per_route`` groups by *predicted* route (both
    routes always present), ``per_label`` by dataset label, ``per_true_class``
    (tumor images) by the ground-truth class; each group has ``n``, ``n_tumor``,
    ``n_normal``, the fused figures flat and the baseline's under ``baseline``.
    Any figure without images to average is ``None``.
    """
    rows = list(rows)
    good = [row for row in rows if row.get("error") is None]
    errors = [row for row in rows if row.get("error") is not None]
    tumor = [row for row in good if row["has_tumor"]]
    has_baseline = any(row.get("baseline_dice") is not None for row in good)
    fused = _method_figures(good, "fused")
    base = _method_figures(good, "baseline") if has_baseline else None
    return {
        "n_images": len(rows),
        "n_evaluated": len(good),
        "n_tumor": len(tumor),
        "n_normal": len(good) - len(tumor),
        "n_errors": len(errors),
        "fused": fused,
        "baseline": base,
        "normal_fp_rate": fused["normal_fp_rate"],
        "fused_minus_baseline": _difference(fused, base),
        "per_route": _groups(good, "route", ROUTES, has_baseline),
        "per_label": _groups(
            [{**row, "label": row.get("label") or UNLABELED} for row in good],
            "label",
            (),
            has_baseline,
        ),
        "per_true_class": _groups(tumor, "true_class", ROUTES, has_baseline),
        "routing": _routing(tumor),
        "errors": [
            {"image_id": row.get("image_id"), "path": row.get("path"), "error": row["error"]}
            for row in errors[:MAX_LISTED_ERRORS]
        ],
    }


def _method_figures(rows: Sequence[Mapping[str, Any]], method: str) -> dict[str, float | None]:
    tumor = [row for row in rows if row["has_tumor"]]
    normal = [row for row in rows if not row["has_tumor"]]
    return {
        "dice": _mean(row[f"{method}_dice"] for row in tumor),
        "iou": _mean(row[f"{method}_iou"] for row in tumor),
        "hd95": _mean(row[f"{method}_hd95"] for row in tumor),
        "dice_median": _median(row[f"{method}_dice"] for row in tumor),
        "hd95_median": _median(row[f"{method}_hd95"] for row in tumor),
        "normal_fp_rate": _mean(row[f"{method}_fp"] for row in normal),
    }


def _difference(
    fused: Mapping[str, float | None], baseline: Mapping[str, float | None] | None
) -> dict[str, float | None] | None:
    if baseline is None:
        return None
    keys = ("dice", "iou", "hd95", "normal_fp_rate")
    return {
        key: None if fused[key] is None or baseline[key] is None else fused[key] - baseline[key]
        for key in keys
    }


def _groups(
    rows: Sequence[Mapping[str, Any]], key: str, always: Sequence[str], has_baseline: bool
) -> dict[str, dict[str, Any]]:
    names = list(always) + sorted({str(row[key]) for row in rows} - set(always))
    groups: dict[str, dict[str, Any]] = {}
    for name in names:
        members = [row for row in rows if str(row[key]) == name]
        tumor = sum(bool(row["has_tumor"]) for row in members)
        fused = _method_figures(members, "fused")
        groups[name] = {
            "n": len(members),
            "n_tumor": tumor,
            "n_normal": len(members) - tumor,
            "dice": fused["dice"],
            "iou": fused["iou"],
            "hd95": fused["hd95"],
            "normal_fp_rate": fused["normal_fp_rate"],
            "baseline": _brief(_method_figures(members, "baseline")) if has_baseline else None,
        }
    return groups


def _brief(figures: Mapping[str, float | None]) -> dict[str, float | None]:
    return {key: figures[key] for key in ("dice", "iou", "hd95", "normal_fp_rate")}


def _routing(tumor: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Predicted route vs the ground-truth triage class, on tumor images."""
    confusion = {true: dict.fromkeys(ROUTES, 0) for true in ROUTES}
    for row in tumor:
        confusion.setdefault(row["true_class"], dict.fromkeys(ROUTES, 0))
        confusion[row["true_class"]][row["route"]] = (
            confusion[row["true_class"]].get(row["route"], 0) + 1
        )
    correct = sum(row["route"] == row["true_class"] for row in tumor)
    return {
        "n": len(tumor),
        "accuracy": correct / len(tumor) if tumor else None,
        "mean_confidence": _mean(row["route_confidence"] for row in tumor),
        "confusion": confusion,  # confusion[true_class][predicted_route] = count
    }


def _values(values: Iterable[Any]) -> list[float]:
    out = []
    for value in values:
        if value is None:
            continue
        number = float(value)
        if math.isfinite(number):
            out.append(number)
    return out


def _mean(values: Iterable[Any]) -> float | None:
    numbers = _values(values)
    return math.fsum(numbers) / len(numbers) if numbers else None


def _median(values: Iterable[Any]) -> float | None:
    numbers = _values(values)
    return float(statistics.median(numbers)) if numbers else None
