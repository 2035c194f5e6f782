"""Saved prediction sets made by hand, with known right answers."""

from __future__ import annotations

from pathlib import Path

from tumorseg.evaluation import load_predictions
from tumorseg.evaluation.predictions import (
    MAP_NAMES,
    Case,
    PredictionSet,
    write_case_maps,
    write_cases,
)


def hand_predictions(directory: Path, items) -> PredictionSet:
    """A saved prediction set from ``(case_id, truth, maps, p_classes)`` items; maps not
    given repeat the gray net's, ``map_score`` may be given as ``maps["score"]``."""
    cases = []
    for name, truth, maps, classes in items:
        full = {key: maps.get(key, maps["graynet"]) for key in MAP_NAMES}
        score = float(maps.get("score", 0.2))
        write_case_maps(directory, name, full, truth)
        cases.append(
            Case(
                case_id=name,
                image_id=name,
                path=f"{name}.png",
                label="normal" if not truth.any() else "benign",
                height=truth.shape[0],
                width=truth.shape[1],
                has_tumor=bool(truth.any()),
                truth_area_px=int(truth.sum()),
                true_class="homogeneous",
                true_class_source="score",
                truth_score=0.2,
                p_normal=classes[0],
                p_homogeneous=classes[1],
                p_heterogeneous=classes[2],
                map_peak=float(maps["graynet"].max()),
                map_score=score,
                seconds_first_stage=0.01,
                seconds_fcn=0.05,
                seconds_baseline=0.01,
            )
        )
    write_cases(cases, directory / "cases.parquet")
    return load_predictions(directory)
