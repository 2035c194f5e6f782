"""Physical pixel size of a DICOM image, where the object states it.

Two sources, as ultrasound objects give them: Pixel Spacing (0028,0030), in mm, for
the whole image, and the Sequence of Ultrasound Regions (0018,6011), whose regions
each have their own physical deltas (in cm for tissue regions). A lesion is
measured with the region that holds it (its bounding box's centre), else with Pixel
Spacing; where neither applies the size is unknown (``None``), never guessed.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass

from pydicom.dataset import Dataset

#: Physical Units X/Y Direction (0018,6024/6026) code for centimetres.
_CENTIMETRES = 3


@dataclass(frozen=True)
class Region:
    """One ultrasound region: its pixel bounds (inclusive) and its pixel size in mm."""

    x0: int
    y0: int
    x1: int
    y1: int
    row_mm: float
    col_mm: float

    def holds(self, y: float, x: float) -> bool:
        return self.x0 <= x <= self.x1 and self.y0 <= y <= self.y1


@dataclass(frozen=True)
class Spacing:
    """What an object says about its pixel size: image-wide, per region, or both."""

    pixel_mm: tuple[float, float] | None = None  # (row, column)
    regions: tuple[Region, ...] = ()

    def at(self, bbox: tuple[int, int, int, int] | None) -> tuple[float, float] | None:
        """``(row mm, column mm)`` for a lesion in ``bbox`` (``y0, x0, y1, x1``,
        exclusive ends; ``None``: an empty mask, measured only where one size holds for
        the whole image)."""
        if bbox is not None:
            y, x = (bbox[0] + bbox[2] - 1) / 2, (bbox[1] + bbox[3] - 1) / 2
            for region in self.regions:
                if region.holds(y, x):
                    return region.row_mm, region.col_mm
        elif len(self.regions) == 1 and self.pixel_mm is None:
            return self.regions[0].row_mm, self.regions[0].col_mm
        return self.pixel_mm

    def to_json(self) -> str:
        return json.dumps(
            {"pixel_mm": self.pixel_mm, "regions": [list(vars(r).values()) for r in self.regions]}
        )

    @classmethod
    def from_json(cls, text: str) -> Spacing | None:
        if not text:
            return None
        raw = json.loads(text)
        pixel = tuple(raw["pixel_mm"]) if raw["pixel_mm"] else None
        return cls(pixel, tuple(Region(*values) for values in raw["regions"]))


def read_spacing(dataset: Dataset) -> Spacing | None:
    """The spacing a dataset states, or ``None`` when it states none usable."""
    pixel = _pixel_spacing(dataset)
    regions = tuple(
        r for item in dataset.get("SequenceOfUltrasoundRegions", []) if (r := _region(item))
    )
    if pixel is None and not regions:
        return None
    return Spacing(pixel, regions)


def spacing_of(source: str | os.PathLike[str] | bytes) -> Spacing | None:
    """:func:`read_spacing` of a DICOM file or its bytes (headers only); ``None`` when
    the source is not a readable DICOM (a file is told by :func:`is_dicom_file`)."""
    import pydicom

    from tumorseg.io.dicom import is_dicom_file

    try:
        if not isinstance(source, bytes) and not is_dicom_file(source):
            return None
        readable = io.BytesIO(source) if isinstance(source, bytes) else source
        dataset = pydicom.dcmread(readable, stop_before_pixels=True, force=True)
    except Exception:  # not DICOM, or unreadable: decoding reports it, not this
        return None
    return read_spacing(dataset)


def _pixel_spacing(dataset: Dataset) -> tuple[float, float] | None:
    try:
        row, col = (float(v) for v in dataset.PixelSpacing)
    except (AttributeError, TypeError, ValueError):
        return None
    return (row, col) if row > 0 and col > 0 else None


def _region(item: Dataset) -> Region | None:
    """A tissue region measured in centimetres, in mm per pixel; others (time, velocity
    axes of Doppler and M-mode regions) measure no lesion."""
    try:
        if int(item.PhysicalUnitsXDirection) != _CENTIMETRES:
            return None
        if int(item.PhysicalUnitsYDirection) != _CENTIMETRES:
            return None
        col_mm, row_mm = abs(float(item.PhysicalDeltaX)) * 10, abs(float(item.PhysicalDeltaY)) * 10
        bounds = (
            int(item.RegionLocationMinX0),
            int(item.RegionLocationMinY0),
            int(item.RegionLocationMaxX1),
            int(item.RegionLocationMaxY1),
        )
    except (AttributeError, TypeError, ValueError):
        return None
    if row_mm <= 0 or col_mm <= 0:
        return None
    return Region(*bounds, row_mm=row_mm, col_mm=col_mm)
