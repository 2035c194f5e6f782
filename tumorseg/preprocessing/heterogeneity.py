"""Grayscale triage (patent module 10): how uniform is a lesion's gray-level distribution.

The score is the coefficient of variation of gray levels inside the lesion after
speckle smoothing: ``std / (mean + 1)`` on a 0–255 scale (the ``+ 1`` keeps black
lesions finite). Uniform, homogeneous lesions score low; lesions with mixed echo
patterns (calcifications, cystic and solid parts) score high.
"""

from __future__ import annotations

import cv2
import numpy as np

from tumorseg.config import Route, TriageConfig

#: Fewer lesion pixels than this give no reliable statistics: the whole image is scored.
MIN_REGION_PIXELS = 16


def heterogeneity_score(
    image: np.ndarray, mask: np.ndarray | None = None, *, smoothing_sigma: float = 2.0
) -> float:
    """Coefficient of variation of the smoothed gray levels inside ``mask``.

    ``image`` is a 2-D grayscale array (0–255); ``mask`` a same-shaped boolean
    lesion mask. Without a mask, or with fewer than :data:`MIN_REGION_PIXELS`
    lesion pixels (normal images), the whole image is scored.
    """
    gray = _as_float_gray(image)
    region = _region(mask, gray.shape)
    smooth = cv2.GaussianBlur(gray, (0, 0), smoothing_sigma) if smoothing_sigma > 0 else gray
    values = smooth[region] if region is not None else smooth.ravel()
    return float(values.std() / (values.mean() + 1.0))


def class_from_score(score: float, threshold: float) -> Route:
    return "heterogeneous" if score > threshold else "homogeneous"


def triage_class(
    image: np.ndarray,
    mask: np.ndarray | None,
    expert_class: str | None = None,
    config: TriageConfig | None = None,
) -> tuple[Route, float]:
    """Class of a training image and its score; an expert's label always wins."""
    config = config or TriageConfig()
    score = heterogeneity_score(image, mask, smoothing_sigma=config.smoothing_sigma)
    if expert_class:
        if expert_class not in ("homogeneous", "heterogeneous"):
            raise ValueError(
                f"expert_class must be homogeneous or heterogeneous, not {expert_class!r}"
            )
        return expert_class, score  # type: ignore[return-value]
    return class_from_score(score, config.threshold), score


def _as_float_gray(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2 or image.size == 0:
        raise ValueError(f"expected a non-empty 2-D grayscale image, got shape {image.shape}")
    return image.astype(np.float32)


def _region(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if mask is None:
        return None
    mask = np.asarray(mask).astype(bool)
    if mask.shape != shape:
        raise ValueError(f"mask shape {mask.shape} differs from image shape {shape}")
    return mask if mask.sum() >= MIN_REGION_PIXELS else None
