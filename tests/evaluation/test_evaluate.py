"""Evaluation library and report on real BUSI images, with freshly initialised networks.

Untrained weights say nothing about accuracy: these tests check the bookkeeping —
which images feed which figure, error rows, the files written, the saved
predictions — and, on hand-made rows and predictions, that the aggregation and the
bootstrap are exactly right.
"""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pydicom
import pytest
import torch
from hand_made import hand_predictions

from tumorseg.config import MultiScaleConfig, NetworkConfig, SegmenterConfig
from tumorseg.data import ImageRecord, discover_busi
from tumorseg.evaluation import (
    ROW_FIELDS,
    evaluate_corpus,
    evaluate_predictions,
    load_example,
    load_predictions,
    paired_bootstrap,
    records_in_split,
    summarize,
    write_report,
)
from tumorseg.evaluation.evaluate import roc_auc
from tumorseg.evaluation.predictions import (
    MAP_NAMES,
)
from tumorseg.evaluation.report import pick_examples
from tumorseg.inference import Segmenter
from tumorseg.io.dicom import dicom_bytes
from tumorseg.networks import build_network

REPO_ROOT = Path(__file__).resolve().parents[2]
SMALL = SegmenterConfig(
    networks=NetworkConfig(graynet_size=64, classifier_size=64),
    multiscale=MultiScaleConfig(canvas_size=256, pass_tiles=(10, 20)),
)


@pytest.fixture(scope="module")
def corpus(busi_root, tmp_path_factory) -> list[ImageRecord]:
    """3 benign, 3 malignant, 2 normal real images, a corrupt file, an unlabeled maskless
    one, and a benign one as a DICOM stating its pixel size."""
    records = discover_busi(busi_root)
    picked = []
    for label, count in (("benign", 3), ("malignant", 3), ("normal", 2)):
        picked += [r for r in records if r.label == label][:count]
    scratch = tmp_path_factory.mktemp("bad")
    broken = scratch / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # PNG magic, truncated
    picked.insert(2, ImageRecord("broken", str(broken), picked[0].mask_paths, label="benign"))
    picked.append(ImageRecord("no-truth", picked[0].path, (), label="benign"))
    # The first benign image again, as a DICOM that states its pixel size.
    source = pydicom.dcmread(io.BytesIO(dicom_bytes(cv2.imread(picked[0].path, 0))))
    source.PixelSpacing = [0.1, 0.1]
    source.save_as(scratch / "spaced.dcm", enforce_file_format=True)
    picked.append(
        ImageRecord("spaced", str(scratch / "spaced.dcm"), picked[0].mask_paths, label="benign")
    )
    return picked


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter.untrained(seed=0, config=SMALL, device="cpu")


@pytest.fixture(scope="module")
def baseline() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_network("baseline", SMALL.networks)


@pytest.fixture(scope="module")
def evaluated(corpus, segmenter, baseline, tmp_path_factory):
    directory = tmp_path_factory.mktemp("predictions")
    return evaluate_corpus(corpus, segmenter, directory, baseline, batch_size=4, log_every=3)


def good_rows(result):
    return [row for row in result.rows if row["error"] is None]


def test_one_row_per_record_in_input_order(corpus, evaluated) -> None:
    assert [row["image_id"] for row in evaluated.rows] == [r.image_id for r in corpus]
    assert all(set(row) == set(ROW_FIELDS) for row in evaluated.rows)


def test_hd95_in_mm_only_where_the_source_states_a_pixel_size(corpus, evaluated) -> None:
    rows = {row["image_id"]: row for row in good_rows(evaluated)}
    spaced = rows["spaced"]
    for method in ("fused", "baseline"):
        assert spaced[f"{method}_hd95_mm"] == pytest.approx(0.1 * spaced[f"{method}_hd95"])
        assert all(row[f"{method}_hd95_mm"] is None for key, row in rows.items() if key != "spaced")
    assert evaluated.summary["fused"]["hd95_mm"] == pytest.approx(spaced["fused_hd95_mm"])
    case = next(c for c in evaluated.predictions.cases if c.image_id == "spaced")
    assert case.pixel_spacing_mm == (0.1, 0.1)


def test_bad_records_become_error_rows(evaluated) -> None:
    errors = {row["image_id"]: row for row in evaluated.rows if row["error"] is not None}
    assert set(errors) == {"broken", "no-truth"}
    assert "broken.png" in errors["broken"]["error"]
    assert "no ground-truth mask" in errors["no-truth"]["error"]
    for row in errors.values():
        assert row["fused_dice"] is None and row["baseline_dice"] is None and row["route"] is None
    summary = evaluated.summary
    assert summary["n_errors"] == 2
    assert {e["image_id"] for e in summary["errors"]} == {"broken", "no-truth"}


def test_summary_structure_and_ranges(evaluated) -> None:
    s = evaluated.summary
    assert (s["n_images"], s["n_evaluated"], s["n_tumor"], s["n_normal"]) == (11, 9, 7, 2)
    for method in ("fused", "baseline"):
        figures = s[method]
        assert 0.0 <= figures["dice"] <= 1.0 and 0.0 <= figures["iou"] <= 1.0
        assert figures["iou"] <= figures["dice"] + 1e-9  # IoU ≤ Dice image by image
        assert figures["hd95"] >= 0.0
        assert 0.0 <= figures["normal_fp_rate"] <= 1.0
    assert s["normal_fp_rate"] == s["fused"]["normal_fp_rate"]
    assert s["fused_minus_baseline"]["dice"] == pytest.approx(
        s["fused"]["dice"] - s["baseline"]["dice"]
    )
    assert set(s["per_route"]) == {"homogeneous", "heterogeneous"}
    assert set(s["per_label"]) == {"benign", "malignant", "normal"}
    assert s["settings"]["normal_fp_min_area"] == 0.001
    assert set(s["model_versions"]) == {"classifier", "graynet", "fcn"}


def test_means_over_tumor_images_and_fp_over_normal_images(evaluated) -> None:
    rows = good_rows(evaluated)
    tumor = [r for r in rows if r["has_tumor"]]
    normal = [r for r in rows if not r["has_tumor"]]
    assert {r["label"] for r in normal} == {"normal"} and len(tumor) == 7
    for method in ("fused", "baseline"):
        figures = evaluated.summary[method]
        for metric in ("dice", "iou", "hd95"):
            expected = np.mean([r[f"{method}_{metric}"] for r in tumor])
            assert figures[metric] == pytest.approx(expected, rel=1e-12)
        assert all(r[f"{method}_fp"] is None for r in tumor)
        assert all(isinstance(r[f"{method}_fp"], bool) for r in normal)
        assert figures["normal_fp_rate"] == pytest.approx(
            np.mean([r[f"{method}_fp"] for r in normal])
        )
    for row in normal:  # tumor-free truth: Dice is 1 (empty prediction) or 0, never averaged in
        assert row["truth_area_px"] == 0 and row["fused_dice"] in (0.0, 1.0)


def test_groups_add_up(evaluated) -> None:
    s = evaluated.summary
    for key in ("per_route", "per_label"):
        groups = s[key].values()
        assert sum(g["n"] for g in groups) == s["n_evaluated"]
        assert sum(g["n_tumor"] for g in groups) == s["n_tumor"]
        assert sum(g["n_normal"] for g in groups) == s["n_normal"]
    assert sum(g["n"] for g in s["per_true_class"].values()) == s["n_tumor"]
    routing = s["routing"]
    assert routing["n"] == s["n_tumor"]
    assert sum(sum(c.values()) for c in routing["confusion"].values()) == s["n_tumor"]
    rows = [r for r in good_rows(evaluated) if r["has_tumor"]]
    assert routing["accuracy"] == pytest.approx(
        np.mean([r["route"] == r["true_class"] for r in rows])
    )


def test_row_figures_match_the_ground_truth(corpus, evaluated) -> None:
    for record, row in zip(corpus, evaluated.rows, strict=True):
        if row["error"] is not None:
            continue
        example = load_example(record)
        assert (row["height"], row["width"]) == example.gray.shape
        assert row["truth_area_px"] == int(example.truth.sum())
        assert row["has_tumor"] == (record.label != "normal")
        assert 0 <= row["fused_largest_px"] <= row["fused_area_px"] <= row["height"] * row["width"]
        assert row["true_class"] in ("homogeneous", "heterogeneous")
        assert row["true_class_source"] == "score"
        assert 0.5 <= row["route_confidence"] <= 1.0


def test_report_files(evaluated, segmenter, baseline, tmp_path) -> None:
    paths = write_report(
        evaluated, tmp_path, config=segmenter.config, examples=1, context={"data": "BUSI subset"}
    )
    table = pq.read_table(paths["rows"])
    assert table.num_rows == 11 and table.column_names == list(ROW_FIELDS)
    assert table.column("image_id").to_pylist() == [r["image_id"] for r in evaluated.rows]
    summary = json.loads(paths["summary"].read_text(), parse_constant=pytest.fail)
    assert (
        summary["n_images"] == 11 and summary["fused"]["dice"] == evaluated.summary["fused"]["dice"]
    )
    assert paths["histogram"].stat().st_size > 0
    report = paths["report"].read_text()
    assert "## Overall" in report and "dice_histogram.png" in report and "BUSI subset" in report
    overlays = sorted((tmp_path / "overlays").glob("*.png"))
    assert {p.name.split("_")[0] for p in overlays} == {"fused", "baseline"}
    assert len(overlays) == 6  # best, median, worst × two methods
    for overlay in overlays:
        assert overlay.name in report


def test_report_without_baseline_or_overlays(corpus, segmenter, tmp_path) -> None:
    result = evaluate_corpus(corpus[-3:], segmenter, tmp_path / "predictions", None, batch_size=8)
    assert result.summary["baseline"] is None and result.summary["fused_minus_baseline"] is None
    assert result.summary["bootstrap"] is None
    assert all(row["baseline_dice"] is None for row in result.rows)
    paths = write_report(result, tmp_path)  # no config: no overlays
    table = pq.read_table(paths["rows"])
    assert table.num_rows == 3 and str(table.schema.field("baseline_dice").type) == "double"
    assert "not evaluated" in paths["report"].read_text()


HOMOGENEOUS_ONLY = SegmenterConfig(
    route_source="classifier", presence_source="none", largest_component_routes=()
)


def test_false_positive_needs_one_component_above_the_minimum_area(tmp_path) -> None:
    truth = np.zeros((100, 100), bool)
    blob = np.zeros((100, 100), bool)
    blob[10:20, 10:20] = True  # 100 px = 1 % of the image
    specks = np.zeros((100, 100), bool)
    specks[::4, ::4] = True  # 625 px = 6.25 %, but every component is 1 px
    masks = {"blob": blob, "specks": specks, "empty": np.zeros_like(truth)}
    items = [
        (name, truth, {"graynet": m.astype(np.float32)}, (0.1, 0.8, 0.1))
        for name, m in masks.items()
    ]
    predictions = hand_predictions(tmp_path, items)

    def fp(name: str, min_area: float) -> bool:
        result = evaluate_predictions(predictions, HOMOGENEOUS_ONLY, normal_fp_min_area=min_area)
        return {row["image_id"]: row["fused_fp"] for row in result.rows}[name]

    assert fp("blob", 0.005) and not fp("blob", 0.02)
    assert not fp("specks", 0.001) and fp("specks", 0.0)
    assert not fp("empty", 0.0)


def test_saved_predictions_round_trip(evaluated, corpus) -> None:
    saved = evaluated.predictions
    again = load_predictions(saved.directory)
    assert [c.case_id for c in again.cases] == [c.case_id for c in saved.cases]
    assert again.cases == saved.cases
    good = again.good[0]
    maps, truth = again.maps(good), again.truth(good)
    assert set(maps) == set(MAP_NAMES)
    for probability in maps.values():
        assert probability.shape == truth.shape == (good.height, good.width)
        assert (
            probability.dtype == np.float32 and 0.0 <= probability.min() <= probability.max() <= 1.0
        )
    record = next(r for r in corpus if r.image_id == good.image_id)
    np.testing.assert_array_equal(truth, load_example(record).truth)
    rescored = evaluate_predictions(
        again, SMALL, model_versions=evaluated.summary["model_versions"]
    )
    assert rescored.rows == evaluated.rows


def test_saved_maps_give_the_live_segmenter_masks(corpus, segmenter, evaluated) -> None:
    """Scoring from files is the live pipeline: same decisions, same masks (up to the
    1/255 quantisation of the saved maps)."""
    by_id = {row["image_id"]: row for row in evaluated.rows}
    records = [r for r in corpus if by_id[r.image_id]["error"] is None]
    live = segmenter.segment_batch([load_example(r).gray for r in records])
    for record, result in zip(records, live, strict=True):
        row = by_id[record.image_id]
        assert (row["route"], row["tumor_present"]) == (result.route, result.tumor_present)
        assert row["fused_area_px"] == pytest.approx(result.area_px, rel=0.01, abs=20)


def test_paired_bootstrap_known_answers() -> None:
    constant = paired_bootstrap([0.8, 0.7, 0.9], [0.7, 0.6, 0.8])
    assert constant["mean"] == pytest.approx(0.1)
    assert constant["low"] == pytest.approx(0.1) and constant["high"] == pytest.approx(0.1)
    # Differences of +1 and -1 in equal numbers: mean 0; the mean of 400 resampled ±1
    # has standard deviation 1/20, so the 95 % interval is about ±0.098.
    a = [1.0, 0.0] * 200
    b = [0.0, 1.0] * 200
    interval = paired_bootstrap(a, b, seed=1, resamples=4000)
    assert interval["mean"] == pytest.approx(0.0)
    assert interval["low"] == pytest.approx(-0.098, abs=0.012)
    assert interval["high"] == pytest.approx(0.098, abs=0.012)
    assert paired_bootstrap([], [])["mean"] is None
    with pytest.raises(ValueError, match="length"):
        paired_bootstrap([1.0], [])


def test_roc_auc_known_answers() -> None:
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == pytest.approx(0.75)
    assert roc_auc([0.5, 0.5], [True, False]) == pytest.approx(0.5)
    assert roc_auc([0.2, None, 0.9], [False, True, True]) == 1.0
    assert roc_auc([0.2, 0.3], [True, True]) is None


def test_normal_label_without_masks_is_tumor_free(busi_root) -> None:
    record = next(r for r in discover_busi(busi_root) if r.label == "normal")
    example = load_example(ImageRecord(record.image_id, record.path, (), label="normal"))
    assert example.truth.shape == example.gray.shape and not example.truth.any()


def hand_row(image_id, label, route, true_class, dice, iou, hd95, fp, base=None, error=None):
    row = dict.fromkeys(ROW_FIELDS)
    row.update(image_id=image_id, path=f"{image_id}.png", label=label, error=error)
    if error is not None:
        return row
    has_tumor = fp is None
    row.update(
        has_tumor=has_tumor,
        route=route,
        true_class=true_class,
        route_confidence=0.8,
        fused_dice=dice,
        fused_iou=iou,
        fused_hd95=hd95,
        fused_fp=fp,
    )
    if base is not None:
        row.update(baseline_dice=base[0], baseline_iou=base[1], baseline_hd95=base[2])
        row.update(baseline_fp=base[3])
    return row


def test_summarize_hand_made_rows_exactly() -> None:
    rows = [
        hand_row(
            "a",
            "benign",
            "homogeneous",
            "homogeneous",
            0.8,
            0.6,
            10.0,
            None,
            (0.5, 0.4, 20.0, None),
        ),
        hand_row(
            "b",
            "malignant",
            "heterogeneous",
            "homogeneous",
            0.4,
            0.2,
            30.0,
            None,
            (0.7, 0.5, 10.0, None),
        ),
        hand_row(
            "c",
            "benign",
            "heterogeneous",
            "heterogeneous",
            0.6,
            0.4,
            50.0,
            None,
            (0.3, 0.3, 30.0, None),
        ),
        hand_row(
            "d",
            "normal",
            "homogeneous",
            "homogeneous",
            0.0,
            0.0,
            700.0,
            True,
            (1.0, 1.0, 0.0, False),
        ),
        hand_row(
            "e",
            "normal",
            "heterogeneous",
            "homogeneous",
            1.0,
            1.0,
            0.0,
            False,
            (1.0, 1.0, 0.0, False),
        ),
        hand_row(
            "f",
            "normal",
            "heterogeneous",
            "homogeneous",
            0.0,
            0.0,
            700.0,
            True,
            (0.0, 0.0, 700.0, True),
        ),
        hand_row(
            "g", None, "homogeneous", "homogeneous", 0.9, 0.9, 1.0, None, (0.9, 0.9, 1.0, None)
        ),
        hand_row("x", "benign", None, None, None, None, None, None, error="x.png: truncated"),
    ]
    s = summarize(rows)
    assert (s["n_images"], s["n_evaluated"], s["n_tumor"], s["n_normal"], s["n_errors"]) == (
        8,
        7,
        4,
        3,
        1,
    )
    assert s["fused"]["dice"] == pytest.approx((0.8 + 0.4 + 0.6 + 0.9) / 4)
    assert s["fused"]["iou"] == pytest.approx((0.6 + 0.2 + 0.4 + 0.9) / 4)
    assert s["fused"]["hd95"] == pytest.approx((10 + 30 + 50 + 1) / 4)
    assert s["fused"]["dice_median"] == pytest.approx(0.7)
    assert s["fused"]["hd95_median"] == pytest.approx(20.0)
    assert s["fused"]["normal_fp_rate"] == pytest.approx(2 / 3) == s["normal_fp_rate"]
    assert s["baseline"]["dice"] == pytest.approx((0.5 + 0.7 + 0.3 + 0.9) / 4)
    assert s["baseline"]["hd95"] == pytest.approx((20 + 10 + 30 + 1) / 4)
    assert s["baseline"]["normal_fp_rate"] == pytest.approx(1 / 3)
    assert s["fused_minus_baseline"]["dice"] == pytest.approx(0.3 / 4)
    assert s["fused_minus_baseline"]["normal_fp_rate"] == pytest.approx(1 / 3)

    homo, hetero = s["per_route"]["homogeneous"], s["per_route"]["heterogeneous"]
    assert (homo["n"], homo["n_tumor"], homo["n_normal"]) == (3, 2, 1)
    assert homo["dice"] == pytest.approx((0.8 + 0.9) / 2) and homo["normal_fp_rate"] == 1.0
    assert homo["baseline"]["dice"] == pytest.approx((0.5 + 0.9) / 2)
    assert (hetero["n"], hetero["n_tumor"], hetero["n_normal"]) == (4, 2, 2)
    assert hetero["hd95"] == pytest.approx(40.0) and hetero["normal_fp_rate"] == 0.5
    assert hetero["baseline"]["normal_fp_rate"] == 0.5

    labels = s["per_label"]
    assert list(labels) == ["benign", "malignant", "normal", "unlabeled"]
    assert labels["benign"]["n"] == 2 and labels["benign"]["dice"] == pytest.approx(0.7)
    assert labels["normal"]["dice"] is None and labels["normal"]["normal_fp_rate"] == pytest.approx(
        2 / 3
    )
    assert labels["unlabeled"]["dice"] == pytest.approx(0.9)
    assert s["per_true_class"]["homogeneous"]["n"] == 3
    assert s["per_true_class"]["heterogeneous"]["dice"] == pytest.approx(0.6)

    routing = s["routing"]
    assert routing["n"] == 4 and routing["accuracy"] == pytest.approx(3 / 4)
    assert routing["confusion"] == {
        "homogeneous": {"homogeneous": 2, "heterogeneous": 1},
        "heterogeneous": {"homogeneous": 0, "heterogeneous": 1},
    }
    assert s["errors"] == [{"image_id": "x", "path": "x.png", "error": "x.png: truncated"}]
    json.dumps(s, allow_nan=False)


def test_summarize_empty_and_baseline_free_rows() -> None:
    s = summarize([])
    assert s["n_images"] == 0 and s["fused"]["dice"] is None and s["normal_fp_rate"] is None
    assert s["baseline"] is None and s["routing"]["accuracy"] is None
    only_normal = summarize(
        [hand_row("d", "normal", "homogeneous", "homogeneous", 1.0, 1.0, 0.0, False)]
    )
    assert only_normal["fused"]["dice"] is None and only_normal["normal_fp_rate"] == 0.0
    assert only_normal["per_route"]["heterogeneous"] == {
        "n": 0,
        "n_tumor": 0,
        "n_normal": 0,
        "dice": None,
        "iou": None,
        "hd95": None,
        "miss_rate": None,
        "normal_fp_rate": None,
        "baseline": None,
    }
    assert not any(math.isnan(v) for v in only_normal["fused"].values() if v is not None)


def test_pick_examples_best_median_worst_without_repeats() -> None:
    rows = [
        hand_row(str(i), "benign", "homogeneous", "homogeneous", i / 10, 0, 0, None)
        for i in range(7)
    ]
    picked = pick_examples(rows, "fused", per_kind=2)
    ids = {kind: [r["image_id"] for r in rs] for kind, rs in picked.items()}
    assert ids == {"best": ["6", "5"], "median": ["2", "3"], "worst": ["0", "1"]}
    few = pick_examples(rows[:3], "fused", per_kind=2)
    assert sum(len(v) for v in few.values()) == 3


def test_job_help_runs() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "jobs" / "evaluate.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for flag in (
        "--data",
        "--model-alias",
        "--model-version",
        "--tracking-uri",
        "--output",
        "--no-baseline",
    ):
        assert flag in done.stdout


def test_records_in_split_follow_the_logged_assignment(corpus) -> None:
    assigned = {r.image_id: ("val" if i % 3 == 0 else "train") for i, r in enumerate(corpus)}
    del assigned["broken"]  # unreadable when the model was trained: in no split
    val = records_in_split(corpus, "val", assigned)
    assert [r.image_id for r in val] == [i for i, s in assigned.items() if s == "val"]
    assert records_in_split(corpus, "test", assigned) == []
    with pytest.raises(ValueError, match="split must be one of"):
        records_in_split(corpus, "holdout", assigned)
    with pytest.raises(ValueError, match="trained on"):
        records_in_split(corpus, "val", {"some-other-image": "val"})
