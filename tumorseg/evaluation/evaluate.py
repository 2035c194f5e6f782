"""Score saved predictions: one row per image, and the ``summary.json`` structure.

:func:`evaluate_corpus` predicts a corpus once (:func:`~tumorseg.evaluation.
predictions.predict_split`) and scores it; :func:`evaluate_predictions` scores a
saved prediction set under a segmenter config, so that any candidate choice can be
scored without running a network again. Both are pure library code: no MLflow;
``tumorseg.evaluation.report`` writes the files, ``jobs/evaluate.py`` wires it up.

Conventions
-----------
* **Means over tumor images.** Dice, IoU and HD95 are averaged over images whose
  ground truth has a tumor; tumor-free images feed the false-positive rate. Empty
  masks follow :func:`tumorseg.metrics.score_masks` (an empty prediction on a
  tumor image scores Dice 0, IoU 0, HD95 = image diagonal).
* **Miss** on a tumor image: the prediction is empty (the presence decision said
  "no tumor", or nothing passed the threshold).
* **False positive on a normal image.** The prediction's *largest connected
  component* (8-connectivity) covers at least ``normal_fp_min_area`` of the
  image's pixels (default 0.1 %). The smallest lesion of the BUSI corpus covers
  0.21 % of its image, so anything a reader would call "a tumor" counts.
* **True class.** :func:`tumorseg.preprocessing.heterogeneity.triage_class` on the
  ground-truth mask (an expert class wins). Routing figures compare it with the
  route on tumor images only.
* **Branches.** Each branch is also scored alone on every tumor image (the gray
  net; the FCN under each first-pass guide), with its route's post-processing.
* **fused − baseline** comes with a paired bootstrap 95 % interval over tumor images.
* **Bad input.** Unreadable images, records without ground truth and images the
  networks reject are error rows (``error`` set, figures ``None``); they never stop
  the run.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from tumorseg.config import ROUTES, NetworkConfig, SegmenterConfig, TriageConfig
from tumorseg.data.records import ImageRecord
from tumorseg.evaluation.predictions import Case, PredictionSet, predict_split
from tumorseg.inference.fusion import Decision, decide, final_mask, fuse
from tumorseg.inference.postprocess import largest_component
from tumorseg.inference.segmenter import Segmenter
from tumorseg.metrics import score_masks

#: Default share of the image a predicted component must cover to be a false positive.
DEFAULT_NORMAL_FP_MIN_AREA = 0.001
#: Error rows listed in the summary (all of them are in the rows / Parquet file).
MAX_LISTED_ERRORS = 50
#: Name used for records without a dataset label in ``per_label``.
UNLABELED = "unlabeled"
METHODS = ("fused", "baseline")
#: Each branch alone on every tumor image: name → saved map and route post-processing.
BRANCHES: dict[str, tuple[str, str]] = {
    "graynet": ("graynet", "homogeneous"),
    "fcn_graynet": ("fcn_graynet", "heterogeneous"),
    "fcn_own": ("fcn_own", "heterogeneous"),
}
BOOTSTRAP_RESAMPLES = 2000

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
    "p_heterogeneous": "float",  # from the configured route source
    "tumor_present": "bool",  # the presence decision
    "tumor_probability": "float",
    "classifier_p_tumor": "float",
    "classifier_p_heterogeneous": "float",
    "map_peak": "float",  # the gray net map's highest probability
    "map_score": "float",  # heterogeneity score on the gray net's region
    "fused_dice": "float",
    "fused_iou": "float",
    "fused_hd95": "float",
    "fused_hd95_mm": "float",  # where the source states its pixel size
    "fused_area_px": "int",
    "fused_largest_px": "int",
    "fused_fp": "bool",  # normal images only
    "fused_missed": "bool",  # tumor images only
    "fused_seconds": "float",
    "baseline_dice": "float",
    "baseline_iou": "float",
    "baseline_hd95": "float",
    "baseline_hd95_mm": "float",
    "baseline_area_px": "int",
    "baseline_largest_px": "int",
    "baseline_fp": "bool",
    "baseline_missed": "bool",
    "baseline_seconds": "float",
    **{f"{branch}_dice": "float" for branch in BRANCHES},
    "error": "str",
}


@dataclass
class EvaluationResult:
    """Per-image rows (input order), the summary built from them, and the predictions."""

    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)
    predictions: PredictionSet | None = None

    @property
    def n_errors(self) -> int:
        return self.summary["n_errors"]


# --------------------------------------------------------------------------- evaluating


def evaluate_corpus(
    records: Iterable[ImageRecord],
    segmenter: Segmenter,
    directory: str | Path,
    baseline: nn.Module | None = None,
    *,
    batch_size: int = 8,
    normal_fp_min_area: float = DEFAULT_NORMAL_FP_MIN_AREA,
    triage: TriageConfig | None = None,
    baseline_networks: NetworkConfig | None = None,
    log_every: int = 50,
) -> EvaluationResult:
    """Predict every record once into ``directory``, then score the predictions under
    the segmenter's config (see :func:`evaluate_predictions`)."""
    start = time.perf_counter()
    predictions = predict_split(
        records,
        segmenter,
        directory,
        baseline,
        baseline_networks=baseline_networks,
        triage=triage,
        batch_size=batch_size,
        log_every=log_every,
    )
    seconds = time.perf_counter() - start
    result = evaluate_predictions(
        predictions,
        segmenter.config,
        normal_fp_min_area=normal_fp_min_area,
        model_versions=segmenter.models.versions,
    )
    n = len(predictions.cases)
    result.summary["settings"].update(batch_size=batch_size, device=str(segmenter.device))
    result.summary["predict_seconds"] = seconds
    result.summary["images_per_second"] = n / seconds if seconds > 0 else None
    return result


def evaluate_predictions(
    predictions: PredictionSet,
    config: SegmenterConfig,
    *,
    normal_fp_min_area: float = DEFAULT_NORMAL_FP_MIN_AREA,
    model_versions: Mapping[str, str] | None = None,
) -> EvaluationResult:
    """Rows and summary of saved predictions under ``config`` (its presence, route,
    fusion and post-processing settings); ``normal_fp_min_area`` is the share of an
    image (0–1) the largest predicted component must cover to be a false positive."""
    if not 0.0 <= normal_fp_min_area < 1.0:
        raise ValueError(
            f"normal_fp_min_area is a share of the image (0–1), got {normal_fp_min_area}"
        )
    rows = [score_case(predictions, case, config, normal_fp_min_area) for case in predictions.cases]
    settings = {
        "normal_fp_min_area": normal_fp_min_area,
        "triage_threshold": config.triage.threshold,
        "mask_threshold": config.mask_threshold,
        "baseline": any(row.get("baseline_dice") is not None for row in rows),
        "policy": policy_settings(config),
    }
    summary = summarize(rows)
    summary["settings"] = settings
    summary["model_versions"] = dict(model_versions or {})
    return EvaluationResult(rows=rows, summary=summary, settings=settings, predictions=predictions)


def policy_settings(config: SegmenterConfig) -> dict[str, Any]:
    """The settings that turn saved maps into masks (what the policy chooses)."""
    names = (
        "presence_source",
        "presence_threshold",
        "route_source",
        "route_threshold",
        "route_score_scale",
        "fusion",
        "fcn_guide",
        "largest_component_routes",
        "flip_tta",
    )
    return {name: getattr(config, name) for name in names}


def case_masks(
    predictions: PredictionSet, case: Case, config: SegmenterConfig
) -> tuple[Decision, dict[str, np.ndarray], np.ndarray]:
    """The decision and every mask of one saved case under ``config`` (``fused``,
    ``baseline`` when saved, each branch alone: :data:`BRANCHES`), and its truth."""
    maps, truth = predictions.load(case)
    decision = decide(case.evidence, config)
    fcn = maps["fcn_graynet" if config.fcn_guide == "graynet" else "fcn_own"]
    fused = final_mask(fuse(decision, maps["graynet"], fcn, config), decision, config)
    masks = {"fused": fused}
    if "baseline" in maps:
        masks["baseline"] = maps["baseline"] >= config.mask_threshold
    for branch, (name, route) in BRANCHES.items():
        alone = Decision(True, 1.0, route, 1.0, float(route == ROUTES[1]))  # type: ignore[arg-type]
        masks[branch] = final_mask(maps[name], alone, config)
    return decision, masks, truth


def score_case(
    predictions: PredictionSet, case: Case, config: SegmenterConfig, min_area: float
) -> dict[str, Any]:
    row = _base_row(case)
    if case.error is not None:
        row["error"] = case.error
        return row
    decision, masks, truth = case_masks(predictions, case, config)
    evidence = case.evidence
    row.update(
        route=decision.route,
        route_confidence=decision.route_confidence,
        p_heterogeneous=decision.p_heterogeneous,
        tumor_present=decision.tumor_present,
        tumor_probability=decision.tumor_probability,
        classifier_p_tumor=evidence.classifier_tumor,
        classifier_p_heterogeneous=evidence.classifier_heterogeneous,
        map_peak=case.map_peak,
        map_score=case.map_score,
    )
    min_px = min_area * case.height * case.width
    for method in METHODS:
        mask = masks.get(method)
        if mask is None:
            continue
        scores = score_masks(mask, truth, case.pixel_spacing_mm)
        largest = int(largest_component(mask).sum())
        row[f"{method}_dice"] = scores.dice
        row[f"{method}_iou"] = scores.iou
        row[f"{method}_hd95"] = scores.hd95
        row[f"{method}_hd95_mm"] = scores.hd95_mm
        row[f"{method}_area_px"] = int(mask.sum())
        row[f"{method}_largest_px"] = largest
        row[f"{method}_fp"] = None if case.has_tumor else bool(largest > 0 and largest >= min_px)
        row[f"{method}_missed"] = bool(not mask.any()) if case.has_tumor else None
    if case.has_tumor:
        for branch in BRANCHES:
            row[f"{branch}_dice"] = score_masks(masks[branch], truth).dice
    fcn_ran = decision.tumor_present and decision.route == "heterogeneous"
    fcn_seconds = case.seconds_fcn if config.fcn_guide == "graynet" else case.seconds_fcn_own
    row["fused_seconds"] = (case.seconds_first_stage or 0.0) + (
        (fcn_seconds or 0.0) if fcn_ran else 0.0
    )
    row["baseline_seconds"] = case.seconds_baseline
    return row


def _base_row(case: Case) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(ROW_FIELDS)
    for name in (
        "image_id",
        "path",
        "frame",
        "label",
        "patient_id",
        "height",
        "width",
        "has_tumor",
        "truth_area_px",
        "true_class",
        "true_class_source",
        "truth_score",
    ):
        row[name] = getattr(case, name)
    row["mask_paths"] = list(case.mask_paths)
    return row


# --------------------------------------------------------------------------- summarizing


def summarize(rows: Iterable[Mapping[str, Any]], seed: int = 0) -> dict[str, Any]:
    """The ``summary.json`` structure of a list of rows (see the module docstring).

    ``fused`` / ``baseline`` hold means over tumor images (``dice``, ``iou``,
    ``hd95``, ``dice_median``, ``hd95_median``), the miss rate over tumor images and
    the false-positive rate over tumor-free images; ``baseline`` is ``None`` when no
    row has baseline figures. ``per_route`` groups by *predicted* route,
    ``per_label`` by dataset label, ``per_true_class`` (tumor images) by the
    ground-truth class; ``branches`` scores each branch alone on every tumor image;
    ``bootstrap`` is the paired 95 % interval of fused − baseline Dice. Any figure
    without images to average is ``None``.
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
        "miss_rate": fused["miss_rate"],
        "fused_minus_baseline": _difference(fused, base),
        "bootstrap": (
            paired_bootstrap(
                [row["fused_dice"] for row in tumor], [row["baseline_dice"] for row in tumor], seed
            )
            if has_baseline
            else None
        ),
        "branches": _branches(tumor),
        "per_route": _groups(good, "route", ROUTES, has_baseline),
        "per_label": _groups(
            [{**row, "label": row.get("label") or UNLABELED} for row in good],
            "label",
            (),
            has_baseline,
        ),
        "per_true_class": _groups(tumor, "true_class", ROUTES, has_baseline),
        "routing": _routing(tumor),
        "presence": _presence(good),
        "errors": [
            {"image_id": row.get("image_id"), "path": row.get("path"), "error": row["error"]}
            for row in errors[:MAX_LISTED_ERRORS]
        ],
    }


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES
) -> dict[str, float | int | None]:
    """Mean of ``a − b`` over paired items and its percentile 95 % interval from
    ``resamples`` resamplings of the items (with replacement)."""
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} and {len(b)}")
    differences = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if differences.size == 0:
        return {"n": 0, "mean": None, "low": None, "high": None, "resamples": resamples}
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, differences.size, size=(resamples, differences.size))
    means = differences[picks].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {
        "n": int(differences.size),
        "mean": float(differences.mean()),
        "low": float(low),
        "high": float(high),
        "resamples": resamples,
    }


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Area under the ROC curve (ties count one half) over the items with a score;
    ``None`` when they hold one class only."""
    pairs = [(s, bool(t)) for s, t in zip(scores, labels, strict=True) if s is not None]
    scores_array = np.asarray([s for s, _ in pairs], dtype=np.float64)
    labels_array = np.asarray([t for _, t in pairs], dtype=bool)
    positive, negative = scores_array[labels_array], scores_array[~labels_array]
    if positive.size == 0 or negative.size == 0:
        return None
    greater = (positive[:, None] > negative[None, :]).sum()
    ties = (positive[:, None] == negative[None, :]).sum()
    return float((greater + 0.5 * ties) / (positive.size * negative.size))


def _method_figures(rows: Sequence[Mapping[str, Any]], method: str) -> dict[str, float | None]:
    tumor = [row for row in rows if row["has_tumor"]]
    normal = [row for row in rows if not row["has_tumor"]]
    return {
        "dice": _mean(row[f"{method}_dice"] for row in tumor),
        "iou": _mean(row[f"{method}_iou"] for row in tumor),
        "hd95": _mean(row[f"{method}_hd95"] for row in tumor),
        # over the tumor images whose source states a pixel size; None when none does
        "hd95_mm": _mean(row.get(f"{method}_hd95_mm") for row in tumor),
        "dice_median": _median(row[f"{method}_dice"] for row in tumor),
        "hd95_median": _median(row[f"{method}_hd95"] for row in tumor),
        "miss_rate": _mean(row.get(f"{method}_missed") for row in tumor),
        "normal_fp_rate": _mean(row[f"{method}_fp"] for row in normal),
        "seconds_per_image": _mean(row.get(f"{method}_seconds") for row in rows),
    }


def _difference(
    fused: Mapping[str, float | None], baseline: Mapping[str, float | None] | None
) -> dict[str, float | None] | None:
    if baseline is None:
        return None
    keys = ("dice", "iou", "hd95", "miss_rate", "normal_fp_rate")
    return {
        key: None if fused[key] is None or baseline[key] is None else fused[key] - baseline[key]
        for key in keys
    }


def _branches(tumor: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each branch alone on every tumor image, overall and by ground-truth class."""
    out = {}
    for branch in (*BRANCHES, "baseline", "fused"):
        key = f"{branch}_dice"
        by_class = {
            true: _mean(row[key] for row in tumor if row["true_class"] == true) for true in ROUTES
        }
        out[branch] = {"dice": _mean(row[key] for row in tumor), "per_true_class": by_class}
    return out


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
            "miss_rate": fused["miss_rate"],
            "normal_fp_rate": fused["normal_fp_rate"],
            "baseline": _brief(_method_figures(members, "baseline")) if has_baseline else None,
        }
    return groups


def _brief(figures: Mapping[str, float | None]) -> dict[str, float | None]:
    return {key: figures[key] for key in ("dice", "iou", "hd95", "miss_rate", "normal_fp_rate")}


def _routing(tumor: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Route vs the ground-truth triage class on tumor images, and the AUC of the
    configured p(heterogeneous) and of the classifier's."""
    confusion = {true: dict.fromkeys(ROUTES, 0) for true in ROUTES}
    for row in tumor:
        confusion.setdefault(row["true_class"], dict.fromkeys(ROUTES, 0))
        confusion[row["true_class"]][row["route"]] = (
            confusion[row["true_class"]].get(row["route"], 0) + 1
        )
    correct = sum(row["route"] == row["true_class"] for row in tumor)
    truth = [row["true_class"] == "heterogeneous" for row in tumor]
    return {
        "n": len(tumor),
        "accuracy": correct / len(tumor) if tumor else None,
        "auc": roc_auc([row["p_heterogeneous"] for row in tumor], truth),
        "classifier_auc": roc_auc([row["classifier_p_heterogeneous"] for row in tumor], truth),
        "mean_confidence": _mean(row["route_confidence"] for row in tumor),
        "confusion": confusion,  # confusion[true_class][predicted_route] = count
    }


def _presence(good: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The presence decision against the ground truth, and its sources' AUCs."""
    truth = [bool(row["has_tumor"]) for row in good]
    return {
        "n": len(good),
        "auc": roc_auc([row["tumor_probability"] for row in good], truth),
        "classifier_auc": roc_auc([row["classifier_p_tumor"] for row in good], truth),
        "map_peak_auc": roc_auc([row["map_peak"] for row in good], truth),
        "accuracy": _mean(
            bool(row["tumor_present"]) == t for row, t in zip(good, truth, strict=True)
        ),
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
