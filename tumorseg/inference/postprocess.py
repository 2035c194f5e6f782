"""Mask post-processing applied by :meth:`Segmenter.finish`, per route."""

from __future__ import annotations

import cv2
import numpy as np


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Only the largest 8-connected component of a boolean mask (empty stays empty).

    A breast-ultrasound image shows one lesion as a rule; tile-wise prediction
    scatters small false islands over dark background, and keeping the largest
    region removes them.
    """
    mask = np.asarray(mask, dtype=bool)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8
    )
    if count <= 2:  # background plus at most one component
        return mask
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
