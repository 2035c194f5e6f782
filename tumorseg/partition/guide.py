"""The feedback unit's signal: where the previous pass wants finer tiles.

A guide is the previous pass's probability map (or a binary mask). Tiles should
be small where the segmentation is undecided: along the predicted boundary and
where probabilities sit near 0.5. :func:`importance_map` turns a guide into a
non-negative map that is high exactly there; the partitioner spends tiles in
proportion to it.
"""

from __future__ import annotations

import cv2
import numpy as np


def importance_map(guide: np.ndarray, shape: tuple[int, int], boundary_width: float) -> np.ndarray:
    """Per-pixel importance in [0, 1] on a canvas of ``shape`` (H, W).

    ``boundary_width`` is the half-width of the boundary band as a fraction of the
    canvas' short side. Importance is the larger of the boundary band of the
    thresholded guide and the uncertainty ``4·p·(1−p)``.
    """
    prob = _as_probability(guide, shape)
    band = boundary_band(prob >= 0.5, max(1, round(boundary_width * min(shape))))
    uncertainty = 4.0 * prob * (1.0 - prob)
    return np.maximum(band.astype(np.float32), uncertainty)


def boundary_band(mask: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within ``radius`` of the mask's boundary (morphological gradient)."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_GRADIENT, kernel) > 0


def _as_probability(guide: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    guide = np.asarray(guide)
    if guide.ndim != 2:
        raise ValueError(f"guide must be a 2-D probability map or mask, got shape {guide.shape}")
    prob = guide.astype(np.float32)
    if guide.dtype == np.uint8 and guide.max(initial=0) > 1:
        prob /= 255.0
    if not np.isfinite(prob).all():
        raise ValueError("guide holds NaN or infinite values")
    prob = np.clip(prob, 0.0, 1.0)
    if prob.shape != shape:
        shrinking = prob.shape[0] > shape[0] and prob.shape[1] > shape[1]
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        prob = cv2.resize(prob, (shape[1], shape[0]), interpolation=interpolation)
    return prob
