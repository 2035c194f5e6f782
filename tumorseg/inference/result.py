"""What a segmentation returns (the contract of DESIGN §4)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tumorseg.config import Route
from tumorseg.networks.roles import FUSED_ROLES as VERSIONED_ROLES


@dataclass
class SegmentationResult:
    """Mask at the input's exact size plus everything needed to audit how it was made.

    ``timings`` holds seconds per stage (``classify``, ``graynet``, ``fcn`` when it
    ran, ``score``); in a batch, a stage's time is shared evenly among the images
    that went through it. ``pass_tiles`` lists the tile count of each multi-scale
    pass (empty when the FCN did not run). ``tumor_present`` is False (and the mask
    empty) when ``tumor_probability`` is below the configured presence threshold.
    ``pixel_spacing_mm`` (row, column) is the source's physical pixel size where it
    states one (:mod:`tumorseg.io.spacing`); the mm measures are ``None`` otherwise.
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
    pixel_spacing_mm: tuple[float, float] | None = None

    @property
    def area_px(self) -> int:
        return int(self.mask.sum())

    @property
    def area_mm2(self) -> float | None:
        if self.pixel_spacing_mm is None:
            return None
        row_mm, col_mm = self.pixel_spacing_mm
        return self.area_px * row_mm * col_mm

    @property
    def bbox_mm(self) -> dict[str, float] | None:
        """The bounding box's ``height`` and ``width`` in mm (``None``: empty or unknown)."""
        bbox = self.bbox
        if bbox is None or self.pixel_spacing_mm is None:
            return None
        row_mm, col_mm = self.pixel_spacing_mm
        return {"height": (bbox[2] - bbox[0]) * row_mm, "width": (bbox[3] - bbox[1]) * col_mm}

    @property
    def bbox(self) -> tuple[int, int, int, int] | None:
        """``(y0, x0, y1, x1)`` with exclusive ends, or ``None`` for an empty mask."""
        return bounding_box(self.mask)

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly fields (everything but the mask pixels): the HTTP body's.

        The bounding box is ``{"y0", "x0", "y1", "x1"}`` (exclusive ends) or ``None``;
        model versions map each role to ``"<registered name>/<version>"``; the mm fields
        are ``None`` where the source states no pixel size.
        """
        bbox = self.bbox
        spacing = self.pixel_spacing_mm
        return {
            "height": int(self.mask.shape[0]),
            "width": int(self.mask.shape[1]),
            "route": self.route,
            "route_confidence": float(self.route_confidence),
            "heterogeneity_score": float(self.heterogeneity_score),
            "tumor_present": bool(self.tumor_present),
            "tumor_probability": float(self.tumor_probability),
            "area_px": self.area_px,
            "bbox": None if bbox is None else dict(zip(BBOX_KEYS, bbox, strict=True)),
            "pixel_spacing_mm": None if spacing is None else [float(v) for v in spacing],
            "area_mm2": self.area_mm2,
            "bbox_mm": self.bbox_mm,
            "pass_tiles": list(self.pass_tiles),
            "timings": dict(self.timings),
            "model_versions": dict(self.model_versions),
        }

    def to_record(self) -> dict[str, Any]:
        """:meth:`to_json` flattened for a table (the bulk job's Parquet schema): the box
        as ``bbox_y0`` … (``None`` when empty), its size as ``bbox_height_mm`` and
        ``bbox_width_mm``, the spacing as ``pixel_spacing_row_mm`` and
        ``pixel_spacing_col_mm``, each fused role's version as ``<role>_model`` and
        ``<role>_version``; no timings or pass list."""
        body = self.to_json()
        bbox = body.pop("bbox") or {}
        size = body.pop("bbox_mm") or {}
        spacing = body.pop("pixel_spacing_mm") or (None, None)
        versions = body.pop("model_versions")
        del body["timings"], body["pass_tiles"]
        record = {**body, **{f"bbox_{key}": bbox.get(key) for key in BBOX_KEYS}}
        record["bbox_height_mm"], record["bbox_width_mm"] = size.get("height"), size.get("width")
        record["pixel_spacing_row_mm"], record["pixel_spacing_col_mm"] = spacing
        for role in VERSIONED_ROLES:
            name, _, version = versions.get(role, "").rpartition("/")
            record[f"{role}_model"], record[f"{role}_version"] = name, version
        return record


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(y0, x0, y1, x1)`` of a 2-D mask, exclusive ends; ``None`` when it is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def versions_of_record(record: Mapping[str, Any]) -> dict[str, str]:
    """``{role: "<name>/<version>"}`` back from a :meth:`SegmentationResult.to_record`."""
    return {
        role: f"{record[f'{role}_model']}/{record[f'{role}_version']}"
        for role in VERSIONED_ROLES
        if record.get(f"{role}_model")
    }


BBOX_KEYS: tuple[str, ...] = ("y0", "x0", "y1", "x1")
