"""Physical pixel size from Pixel Spacing or the ultrasound regions, never guessed."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from tumorseg.inference.result import SegmentationResult
from tumorseg.io.dicom import dicom_bytes
from tumorseg.io.spacing import Spacing, read_spacing, spacing_of


def region(x0, y0, x1, y1, delta_x_cm, delta_y_cm, units=3) -> Dataset:
    item = Dataset()
    item.RegionLocationMinX0, item.RegionLocationMinY0 = x0, y0
    item.RegionLocationMaxX1, item.RegionLocationMaxY1 = x1, y1
    item.PhysicalUnitsXDirection = item.PhysicalUnitsYDirection = units
    item.PhysicalDeltaX, item.PhysicalDeltaY = delta_x_cm, delta_y_cm
    return item


def ultrasound(**attributes) -> Dataset:
    dataset = pydicom.dcmread(io.BytesIO(dicom_bytes(np.zeros((100, 200), np.uint8))))
    for name, value in attributes.items():
        setattr(dataset, name, value)
    return dataset


def test_pixel_spacing_holds_for_the_whole_image() -> None:
    spacing = read_spacing(ultrasound(PixelSpacing=[0.1, 0.2]))
    assert spacing.at((10, 10, 20, 20)) == (0.1, 0.2) and spacing.at(None) == (0.1, 0.2)


def test_a_lesion_is_measured_in_the_tissue_region_that_holds_it() -> None:
    regions = [
        region(0, 0, 99, 99, 0.01, 0.02),  # B-mode, cm per pixel
        region(100, 0, 199, 99, 0.05, 0.05),  # a second image
        region(0, 0, 199, 99, 0.01, 0.1, units=4),  # seconds: a Doppler trace, never used
    ]
    spacing = read_spacing(ultrasound(SequenceOfUltrasoundRegions=regions))
    assert len(spacing.regions) == 2
    assert spacing.at((10, 10, 30, 40)) == pytest.approx((0.2, 0.1))  # rows: Y, cols: X
    assert spacing.at((10, 150, 30, 170)) == pytest.approx((0.5, 0.5))
    assert spacing.at(None) is None  # an empty mask with two regions: no size to give
    assert Spacing.from_json(spacing.to_json()) == spacing


def test_nothing_stated_means_nothing_measured() -> None:
    assert read_spacing(ultrasound()) is None
    assert read_spacing(ultrasound(PixelSpacing=[0, 0.1])) is None
    only_outside = read_spacing(ultrasound(SequenceOfUltrasoundRegions=[region(0, 0, 9, 9, 1, 1)]))
    assert only_outside.at((50, 50, 60, 60)) is None
    assert spacing_of(b"\x89PNG not a dicom") is None
    assert Spacing.from_json("") is None


def test_results_carry_mm_only_with_a_spacing() -> None:
    mask = np.zeros((100, 200), bool)
    mask[10:30, 20:60] = True
    result = SegmentationResult(mask, "homogeneous", 0.9, 0.1)
    assert result.area_mm2 is None and result.bbox_mm is None
    assert result.to_record()["area_mm2"] is None
    result.pixel_spacing_mm = (0.1, 0.2)
    assert result.area_mm2 == pytest.approx(800 * 0.02)
    assert result.bbox_mm == pytest.approx({"height": 2.0, "width": 8.0})
    record = result.to_record()
    assert record["bbox_height_mm"] == pytest.approx(2.0)
    assert (record["pixel_spacing_row_mm"], record["pixel_spacing_col_mm"]) == (0.1, 0.2)
    assert result.to_json()["pixel_spacing_mm"] == [0.1, 0.2]
