"""Segmentation metrics (MONAI) with explicit empty-mask conventions.

MONAI leaves empty masks as NaN or inf; evaluation needs finite numbers, so:

=====================  ======  ======  ==============================
ground truth / pred    Dice    IoU     HD95 (pixels)
=====================  ======  ======  ==============================
both non-empty         MONAI   MONAI   MONAI, 95th percentile
both empty             1.0     1.0     0.0 (a correct "no tumor")
exactly one empty      0.0     0.0     image diagonal (the worst case)
=====================  ======  ======  ==============================
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_iou


@dataclass(frozen=True)
class MaskScores:
    dice: float
    iou: float
    hd95: float  # pixels
    hd95_mm: float | None = None  # with a spacing only


def score_masks(
    prediction: np.ndarray, truth: np.ndarray, spacing: tuple[float, float] | None = None
) -> MaskScores:
    """Dice, IoU and HD95 of two same-shaped 2-D boolean masks; HD95 in mm too when
    ``spacing`` (row mm, column mm) is given."""
    prediction = np.asarray(prediction).astype(bool)
    truth = np.asarray(truth).astype(bool)
    if prediction.shape != truth.shape or prediction.ndim != 2:
        raise ValueError(f"masks must be 2-D and alike, got {prediction.shape} and {truth.shape}")
    has_prediction, has_truth = prediction.any(), truth.any()
    if not has_prediction and not has_truth:
        return MaskScores(1.0, 1.0, 0.0, None if spacing is None else 0.0)
    if not has_prediction or not has_truth:  # the image's diagonal, the worst distance
        diagonal_mm = None if spacing is None else math.hypot(*np.multiply(truth.shape, spacing))
        return MaskScores(0.0, 0.0, math.hypot(*truth.shape), diagonal_mm)
    y_pred, y = _as_batch(prediction), _as_batch(truth)
    return MaskScores(
        dice=float(compute_dice(y_pred, y, include_background=True)[0, 0]),
        iou=float(compute_iou(y_pred, y, include_background=True)[0, 0]),
        hd95=_hd95(y_pred, y),
        hd95_mm=None if spacing is None else _hd95(y_pred, y, spacing),
    )


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice alone, with :func:`score_masks`'s conventions, without the cost of HD95
    (choices sweep it over thousands of masks)."""
    prediction = np.asarray(prediction).astype(bool)
    truth = np.asarray(truth).astype(bool)
    if prediction.shape != truth.shape or prediction.ndim != 2:
        raise ValueError(f"masks must be 2-D and alike, got {prediction.shape} and {truth.shape}")
    total = int(prediction.sum()) + int(truth.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(prediction, truth).sum()) / total


def iou(prediction: np.ndarray, truth: np.ndarray) -> float:
    return score_masks(prediction, truth).iou


def hd95(prediction: np.ndarray, truth: np.ndarray) -> float:
    return score_masks(prediction, truth).hd95


def _hd95(
    y_pred: torch.Tensor, y: torch.Tensor, spacing: tuple[float, float] | None = None
) -> float:
    with warnings.catch_warnings():
        # MONAI 1.5+ warns about an argument its own helper passes; nothing for us to change.
        warnings.filterwarnings("ignore", category=FutureWarning, module="monai")
        distance = compute_hausdorff_distance(
            y_pred,
            y,
            include_background=True,
            percentile=95,
            spacing=None if spacing is None else [float(v) for v in spacing],
        )
    return float(distance[0, 0])


def _as_batch(mask: np.ndarray) -> torch.Tensor:
    """MONAI wants one-hot-like (batch, channel, H, W) tensors."""
    return torch.from_numpy(mask[None, None].astype(np.float32))
