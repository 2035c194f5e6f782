"""What a segmentation returns (the contract of DESIGN §4)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tumorseg.config import Route


@dataclass
class SegmentationResult:
    """Mask at the input's exact size plus everything needed to audit how it was made.

    ``timings`` holds seconds per stage (``classify``, ``graynet``, ``fcn`` when it
    ran, ``score``); in a batch, a stage's time is shared evenly among the images
    that went through it. ``pass_tiles`` lists the tile count of each multi-scale
    pass (empty when the FCN did not run). ``tumor_present`` is False (and the mask
    empty) when ``tumor_probability`` is below the configured presence threshold.
    """

    mask: np.ndarray
    route: Route
    route_confidence: float
    heterogeneity_score: float
    tumor_present: bool = True
    tumor_probability: float = 1.0
    pass_tiles: tuple[int, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)
    model_versions: dict[str, str] = field(default_factory=dict)

    @property
    def area_px(self) -> int:
        return int(self.mask.sum())

    @property
    def bbox(self) -> tuple[int, int, int, int] | None:
        """``(y0, x0, y1, x1)`` with exclusive ends, or ``None`` for an empty mask."""
        rows = np.flatnonzero(self.mask.any(axis=1))
        if rows.size == 0:
            return None
        cols = np.flatnonzero(self.mask.any(axis=0))
        return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1

    def summary(self) -> dict[str, Any]:
        """JSON-friendly fields (everything but the mask pixels)."""
        return {
            "height": int(self.mask.shape[0]),
            "width": int(self.mask.shape[1]),
            "route": self.route,
            "route_confidence": self.route_confidence,
            "heterogeneity_score": self.heterogeneity_score,
            "tumor_present": self.tumor_present,
            "tumor_probability": self.tumor_probability,
            "area_px": self.area_px,
            "bbox": self.bbox,
            "pass_tiles": list(self.pass_tiles),
            "timings": dict(self.timings),
            "model_versions": dict(self.model_versions),
        }
