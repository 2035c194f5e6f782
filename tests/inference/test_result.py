"""One result, two shapes: the HTTP JSON and the bulk table's flat record."""

from __future__ import annotations

import json

import numpy as np

from tumorseg.bulk.ledger import RESULT_SCHEMA
from tumorseg.inference.result import SegmentationResult, versions_of_record


def _result(mask: np.ndarray) -> SegmentationResult:
    return SegmentationResult(
        mask=mask,
        route="heterogeneous",
        route_confidence=0.8,
        heterogeneity_score=0.4,
        tumor_present=bool(mask.any()),
        tumor_probability=0.7,
        pass_tiles=(50, 80, 100),
        timings={"graynet": 0.01},
        model_versions={"classifier": "lab-classifier/3", "graynet": "g/3", "fcn": "f/3"},
    )


def test_json_and_record_describe_the_same_box_and_versions() -> None:
    mask = np.zeros((30, 40), bool)
    mask[5:10, 7:20] = True
    result = _result(mask)
    body = json.loads(json.dumps(result.to_json()))
    assert body["bbox"] == {"y0": 5, "x0": 7, "y1": 10, "x1": 20} and body["area_px"] == 65
    record = result.to_record()
    assert (record["bbox_y0"], record["bbox_x0"], record["bbox_y1"], record["bbox_x1"]) == (
        5,
        7,
        10,
        20,
    )
    assert record["classifier_model"] == "lab-classifier" and record["classifier_version"] == "3"
    assert versions_of_record(record) == result.model_versions
    # every field of the record is a column of the bulk job's Parquet schema
    assert set(record) <= set(RESULT_SCHEMA.names)


def test_an_empty_mask_has_no_box() -> None:
    result = _result(np.zeros((8, 8), bool))
    assert result.to_json()["bbox"] is None
    assert all(result.to_record()[f"bbox_{k}"] is None for k in ("y0", "x0", "y1", "x1"))
