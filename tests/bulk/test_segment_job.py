"""Bulk segmentation end to end on real Ray, a real MLflow store and real BUSI images.

The models are an untrained tiny set registered as ``champion`` (see the
``champion_store`` fixture): these tests check that every input is accounted for
exactly once, not how good the masks are.
"""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from bulk_outputs import kill_after_first_commit, outcome_counts
from pydicom.dataset import FileMetaDataset

from tumorseg.bulk import SegmentJobConfig, run_segmentation
from tumorseg.bulk.ledger import ERRORS_DIR, RESULTS_DIR, read_table
from tumorseg.bulk.listing import list_inputs
from tumorseg.config import ImageLimits
from tumorseg.io.dicom import write_dicom

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
MAX_PIXELS = 800_000


def busi_images(busi_root: Path, count: int) -> list[Path]:
    per_label = [
        sorted((busi_root / label).glob("*).png")) for label in ("benign", "malignant", "normal")
    ]
    picked = [path for trio in zip(*per_label, strict=False) for path in trio]
    return picked[:count]


def gray(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)


def dicom_without_pixels(path: Path) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.6.1"
    meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture(scope="module")
def archive(busi_root, tmp_path_factory) -> tuple[Path, dict[str, tuple[int, int] | None]]:
    """A mixed folder: ``{relative path: source (height, width), or None for a bad file}``."""
    root = tmp_path_factory.mktemp("archive")
    expected: dict[str, tuple[int, int] | None] = {}
    sources = busi_images(busi_root, 5)
    for i, source in enumerate(sources[:3]):
        target = root / "png" / f"case {i}" / source.name
        target.parent.mkdir(parents=True)
        shutil.copy(source, target)
        expected[target.relative_to(root).as_posix()] = gray(source).shape
    jpeg = gray(sources[3])
    (root / "jpeg").mkdir()
    cv2.imwrite(str(root / "jpeg" / "study.jpg"), jpeg)
    expected["jpeg/study.jpg"] = jpeg.shape
    dicom = gray(sources[4])
    write_dicom(root / "dicom" / "IM0001", dicom)  # extensionless, as archives store them
    with_spacing = pydicom.dcmread(root / "dicom" / "IM0001")
    with_spacing.PixelSpacing = [0.1, 0.2]  # mm; dicom/same.dcm states none
    with_spacing.save_as(root / "dicom" / "IM0001")
    write_dicom(root / "dicom" / "same.dcm", dicom)
    shutil.copy(sources[4], root / "dicom" / "same.png")  # same stem: masks must not collide
    expected.update({"dicom/IM0001": dicom.shape, "dicom/same.dcm": dicom.shape})
    expected["dicom/same.png"] = dicom.shape
    bad = root / "bad"
    bad.mkdir()
    (bad / "empty.png").write_bytes(b"")
    data = sources[0].read_bytes()
    (bad / "truncated.png").write_bytes(data[: len(data) // 2])
    (bad / "notes.png").write_text("not an image, whatever the name says\n")
    dicom_without_pixels(bad / "no-pixels.dcm")
    cv2.imwrite(str(bad / "huge.png"), np.zeros((1000, 1000), np.uint8))  # over MAX_PIXELS
    expected.update(
        {
            f"bad/{name}": None
            for name in ("empty.png", "truncated.png", "notes.png", "no-pixels.dcm", "huge.png")
        }
    )
    return root, expected


def job_config(archive_root: Path, output: Path, store: str, **overrides) -> SegmentJobConfig:
    return SegmentJobConfig(
        input=str(archive_root),
        output=str(output),
        tracking_uri=store,
        batch_size=overrides.pop("batch_size", 4),
        limits=ImageLimits(max_pixels=MAX_PIXELS),
        **overrides,
    )


@pytest.fixture(scope="module")
def first_run(ray_session, champion_store, archive, tmp_path_factory):
    root, _ = archive
    output = tmp_path_factory.mktemp("segmented")
    config = job_config(root, output, champion_store, write_overlays=True, write_dicom_seg=True)
    return config, run_segmentation(config)


def test_every_input_gets_exactly_one_row_and_good_ones_a_mask_of_their_size(
    archive, first_run
) -> None:
    _, expected = archive
    config, summary = first_run
    output = Path(config.output)
    assert outcome_counts(output) == Counter({path: 1 for path in expected})
    assert summary.segmented == sum(v is not None for v in expected.values()) == 7
    assert summary.errors == 5 and summary.inputs == 12

    results = read_table(output, RESULTS_DIR).to_pylist()
    for row in results:
        mask = cv2.imread(str(output / row["mask_path"]), cv2.IMREAD_UNCHANGED)
        assert mask.shape == expected[row["source_path"]] == (row["height"], row["width"])
        assert set(np.unique(mask)) <= {0, 255}
        assert row["area_px"] == int((mask > 0).sum())
        assert row["route"] in ("homogeneous", "heterogeneous")
        assert 0.5 <= row["route_confidence"] <= 1.0
        assert 0.0 <= row["tumor_probability"] <= 1.0
        assert row["tumor_present"] or row["area_px"] == 0  # no tumor: an empty mask
        assert row["classifier_model"] == "tumorseg-classifier" and row["classifier_version"] == "1"
        assert (output / row["overlay_path"]).is_file()
        assert row["mask_path"] == f"masks/{row['source_path']}.png"
    assert sum(summary.routes.values()) == 7


def test_dicom_inputs_get_a_seg_that_references_them(archive, first_run) -> None:
    config, _ = first_run
    output = Path(config.output)
    results = {row["source_path"]: row for row in read_table(output, RESULTS_DIR).to_pylist()}
    with_seg = {path for path, row in results.items() if row["dicom_seg_path"]}
    assert with_seg == {"dicom/IM0001", "dicom/same.dcm"}  # not dicom/same.png
    for path in with_seg:
        row = results[path]
        assert row["dicom_seg_path"] == f"dicom_seg/{path}.seg.dcm"
        seg = pydicom.dcmread(output / row["dicom_seg_path"])
        source = pydicom.dcmread(Path(config.input) / path)
        (referenced,) = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
        assert referenced.ReferencedSOPInstanceUID == source.SOPInstanceUID
        mask = cv2.imread(str(output / row["mask_path"]), cv2.IMREAD_GRAYSCALE) > 0
        np.testing.assert_array_equal(seg.pixel_array.astype(bool), mask)
    # Physical units where the object states them, empty (never guessed) elsewhere.
    stated = results["dicom/IM0001"]
    assert (stated["pixel_spacing_row_mm"], stated["pixel_spacing_col_mm"]) == pytest.approx(
        (0.1, 0.2)
    )
    assert stated["area_mm2"] == pytest.approx(stated["area_px"] * 0.02, rel=1e-4)
    for path in ("dicom/same.dcm", "dicom/same.png"):
        assert results[path]["area_mm2"] is None and results[path]["pixel_spacing_row_mm"] is None


def test_bad_files_become_typed_error_rows(archive, first_run) -> None:
    config, _ = first_run
    errors = {row["source_path"]: row for row in read_table(config.output, ERRORS_DIR).to_pylist()}
    assert sorted(errors) == sorted(p for p, shape in archive[1].items() if shape is None)
    assert {row["error_type"] for row in errors.values()} == {
        "InvalidImageError",
        "ImageTooLargeError",
    }
    assert errors["bad/huge.png"]["error_type"] == "ImageTooLargeError"
    assert {row["stage"] for row in errors.values()} == {"decode"}
    assert "empty" in errors["bad/empty.png"]["message"]
    assert "pixel" in errors["bad/huge.png"]["message"]
    assert "pixel" in errors["bad/no-pixels.dcm"]["message"].lower()


def test_rerun_recomputes_nothing(archive, first_run, champion_store) -> None:
    config, _ = first_run
    output = Path(config.output)
    parts = {p: p.stat().st_mtime_ns for p in output.rglob("*.parquet")}
    masks = {p: p.stat().st_mtime_ns for p in (output / "masks").rglob("*.png")}
    again = run_segmentation(config)
    assert (again.already_done, again.segmented, again.errors) == (12, 0, 0)
    assert {p: p.stat().st_mtime_ns for p in output.rglob("*.parquet")} == parts
    assert {p: p.stat().st_mtime_ns for p in (output / "masks").rglob("*.png")} == masks


def test_killed_driver_rerun_finishes_with_every_input_exactly_once(
    ray_session, champion_store, busi_root, tmp_path
) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    for i, source in enumerate(busi_images(busi_root, 16)):
        shutil.copy(source, archive / f"{i:02d}.png")
    (archive / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    output = tmp_path / "out"
    command = [
        sys.executable,
        str(REPO_ROOT / "jobs" / "segment.py"),
        "--input",
        str(archive),
        "--output",
        str(output),
        "--tracking-uri",
        champion_store,
        "--batch-size",
        "2",
        "--address",
        ray_session.get_runtime_context().gcs_address,
    ]
    kill_after_first_commit(command, output)
    done_at_kill = sum(outcome_counts(output).values())
    assert 0 < done_at_kill < 17, "the kill must land mid-run"

    rerun = run_segmentation(job_config(archive, output, champion_store, batch_size=2))
    assert rerun.already_done == done_at_kill
    counts = outcome_counts(output)
    assert counts == Counter({item.source_path: 1 for item in list_inputs(archive)})
    assert len(counts) == 17
    assert not [p for p in output.rglob(".*") if p.is_file()], "temporary files left visible"


#: A cine loop of this many frames, as the issue's acceptance asks.
LOOP_FRAMES = 60
#: Frames of the loop also written as still images, to compare with.
STILLS = (0, 31, 59)


def cine_frames(busi_root: Path) -> list[np.ndarray]:
    """A sweep over a real BUSI image: each frame shifted a little further."""
    image = gray(busi_images(busi_root, 1)[0])
    return [np.roll(image, 3 * index, axis=1) for index in range(LOOP_FRAMES)]


def test_a_cine_loop_gets_a_row_and_mask_per_frame_and_one_seg(
    ray_session, champion_store, busi_root, tmp_path
) -> None:
    archive = tmp_path / "archive"
    frames = cine_frames(busi_root)
    write_dicom(archive / "loop.dcm", frames)
    for index in STILLS:
        write_dicom(archive / f"still-{index:02d}.dcm", frames[index])
    write_dicom(archive / "too-long.dcm", [frames[0]] * (LOOP_FRAMES + 1))
    output = tmp_path / "out"
    limits = ImageLimits(max_frames=LOOP_FRAMES)
    config = job_config(archive, output, champion_store, write_dicom_seg=True)
    summary = run_segmentation(replace(config, limits=limits))
    assert (summary.inputs, summary.segmented, summary.errors) == (5, LOOP_FRAMES + 3, 1)

    results = read_table(output, RESULTS_DIR).to_pylist()
    loop = sorted((r for r in results if r["source_path"] == "loop.dcm"), key=lambda r: r["frame"])
    assert [r["frame"] for r in loop] == list(range(LOOP_FRAMES))
    assert len({r["image_id"] for r in loop}) == LOOP_FRAMES
    assert {r["dicom_seg_path"] for r in loop} == {"dicom_seg/loop.dcm.seg.dcm"}
    masks = np.stack([cv2.imread(str(output / r["mask_path"]), 0) > 0 for r in loop])
    assert loop[7]["mask_path"] == "masks/loop.dcm.frame0007.png"
    seg = pydicom.dcmread(output / "dicom_seg/loop.dcm.seg.dcm")
    assert seg.NumberOfFrames == LOOP_FRAMES
    np.testing.assert_array_equal(seg.pixel_array.astype(bool), masks)
    for index in STILLS:  # a frame of a loop is segmented as the same still image
        (still,) = (r for r in results if r["source_path"] == f"still-{index:02d}.dcm")
        assert still["frame"] is None
        expected = cv2.imread(str(output / still["mask_path"]), 0) > 0
        np.testing.assert_array_equal(masks[index], expected)
        assert (still["route"], still["area_px"]) == (loop[index]["route"], loop[index]["area_px"])

    (error,) = read_table(output, ERRORS_DIR).to_pylist()  # over the frame limit: one row
    assert error["source_path"] == "too-long.dcm" and "61 frames" in error["message"]


@pytest.mark.parametrize(
    "bad",
    [
        {"batch_size": 0},
        {"concurrency": 0},
        {"fcn_concurrency": 0},
        {"cpus_per_actor": 0},
        {"memory_per_actor_gib": 0},
        {"num_gpus": -1},
    ],
)
def test_a_job_config_out_of_range_is_refused(tmp_path, bad) -> None:
    with pytest.raises(ValueError, match=next(iter(bad)).split("_per")[0]):
        SegmentJobConfig(input=str(tmp_path), output=str(tmp_path / "out"), **bad)


def test_a_policy_that_never_routes_to_the_fcn_starts_no_fcn_actors(ray_session, tmp_path) -> None:
    from tumorseg.bulk.pipeline import build_dataset
    from tumorseg.config import SegmenterConfig
    from tumorseg.inference.models import ModelSet

    listing = ray_session.data.from_items([{"path": "x.png"}])
    job = SegmentJobConfig(input=str(tmp_path), output=str(tmp_path / "out"))
    for threshold, fcn_stage in ((0.5, True), (1.0, False)):
        config = SegmenterConfig(route_threshold=threshold)
        assert config.routes_to_fcn is fcn_stage
        plan = str(build_dataset(job, listing, ModelSet.untrained(config.networks), config))
        assert ("FCNStage" in plan) is fcn_stage, plan
        assert "FirstStage" in plan and "WriteStage" in plan
