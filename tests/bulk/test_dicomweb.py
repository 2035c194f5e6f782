"""The bulk job against a real PACS (Orthanc over DICOMweb): QIDO finds, WADO
retrieves, STOW stores one SEG per instance, exactly once, matching a folder run."""

from __future__ import annotations

import io
import shutil
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from bulk_outputs import kill_after_first_commit
from orthanc import PASSWORD, USER, dciodvfy_errors, start_orthanc
from pydicom.uid import generate_uid

from tumorseg.bulk import SegmentJobConfig, run_segmentation
from tumorseg.bulk.dicomweb import (
    ENV_PASSWORD,
    ENV_USER,
    DicomWebQuery,
    PacsError,
    connect,
    iter_instances,
)
from tumorseg.bulk.ledger import ERRORS_DIR, RESULTS_DIR, read_table
from tumorseg.config import ImageLimits
from tumorseg.io.dicom import dicom_bytes

MAX_PIXELS = 600_000
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    yield server
    server.stop()


@pytest.fixture
def credentials(monkeypatch):
    monkeypatch.setenv(ENV_USER, USER)
    monkeypatch.setenv(ENV_PASSWORD, PASSWORD)


def upload_study(pacs, paths: list[Path], folder: Path, series_size: int) -> dict[str, Path]:
    """Real BUSI images as ultrasound DICOM in one new study, ``series_size`` to a
    series, uploaded to the PACS and written to ``folder``: ``{SOP Instance UID: file}``."""
    images = [cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) for path in paths]
    return upload_images(pacs, images, folder, series_size)


def upload_images(pacs, images: list, folder: Path, series_size: int) -> dict[str, Path]:
    """``upload_study`` of gray images, or of lists of frames (a cine loop each)."""
    folder.mkdir(parents=True, exist_ok=True)
    study_uid, series_uid = generate_uid(), ""
    files = {}
    for number, image in enumerate(images):
        if number % series_size == 0:
            series_uid = generate_uid()
        dataset = pydicom.dcmread(io.BytesIO(dicom_bytes(image)))
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study_uid, series_uid
        dataset.InstanceNumber = number % series_size + 1
        target = folder / f"{dataset.SOPInstanceUID}.dcm"
        dataset.save_as(target, enforce_file_format=True)
        pacs.rest("/instances", "POST", target.read_bytes())
        files[str(dataset.SOPInstanceUID)] = target
    return files


@pytest.fixture(scope="module")
def study(pacs, busi_root, tmp_path_factory) -> dict[str, Path]:
    """Four real BUSI images in one study and two series (three and one)."""
    paths = [sorted((busi_root / label).glob("* (1*).png"))[0] for label in ("benign", "normal")]
    paths += [sorted((busi_root / "malignant").glob("* (2*).png"))[i] for i in (0, 1)]
    return upload_study(pacs, paths, tmp_path_factory.mktemp("study"), series_size=3)


def job(output: Path, store: str, source, **overrides) -> SegmentJobConfig:
    return SegmentJobConfig(
        input=source,
        output=str(output),
        tracking_uri=store,
        batch_size=2,
        limits=ImageLimits(max_pixels=MAX_PIXELS),
        **overrides,
    )


def pacs_segs(pacs) -> list[pydicom.Dataset]:
    client = connect(DicomWebQuery(pacs.dicomweb_url))
    found = client.search_for_instances(search_filters={"Modality": "SEG"})
    return [
        client.retrieve_instance(item["0020000D"]["Value"][0], item["0020000E"]["Value"][0],
                                 item["00080018"]["Value"][0])
        for item in found
    ]  # fmt: skip


def referenced_source(seg: pydicom.Dataset) -> str:
    (instance,) = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    return str(instance.ReferencedSOPInstanceUID)


def masks_by_sop(output: Path) -> dict[str, np.ndarray]:
    rows = read_table(output, RESULTS_DIR).to_pylist()
    return {
        Path(row["relative_path"]).stem: cv2.imread(str(output / row["mask_path"]), 0) > 0
        for row in rows
    }


def test_qido_lists_only_the_query_s_instances_keyed_by_sop_uid(pacs, study, credentials):
    client = connect(DicomWebQuery(pacs.dicomweb_url))
    listed = list(iter_instances(client, DicomWebQuery(pacs.dicomweb_url, page_size=1)))
    assert sorted(item.input_key for item in listed) == sorted(study)  # paged one by one
    first = pydicom.dcmread(next(iter(study.values())))
    narrowed = DicomWebQuery(pacs.dicomweb_url, series_uids=(str(first.SeriesInstanceUID),))
    assert len(list(iter_instances(client, narrowed))) == 3
    assert list(iter_instances(client, DicomWebQuery(pacs.dicomweb_url, modality="MR"))) == []


def test_without_credentials_the_job_stops_and_names_them(pacs, study, monkeypatch):
    monkeypatch.delenv(ENV_USER, raising=False)
    monkeypatch.delenv(ENV_PASSWORD, raising=False)
    client = connect(DicomWebQuery(pacs.dicomweb_url))
    with pytest.raises(PacsError, match=f"answered 401; set {ENV_USER}"):
        list(iter_instances(client, DicomWebQuery(pacs.dicomweb_url)))


def test_pacs_job_stores_one_seg_per_instance_exactly_once(
    ray_session, champion_store, pacs, study, credentials, tmp_path
):
    # A folder run over the same files, with the same models, keeping its SEG files.
    folder = tmp_path / "folder-input"
    folder.mkdir()
    for path in study.values():
        shutil.copy(path, folder / path.name)
    folder_output = tmp_path / "folder"
    folder_run = run_segmentation(
        job(folder_output, champion_store, str(folder), write_dicom_seg=True)
    )
    assert folder_run.segmented == 4
    expected = masks_by_sop(folder_output)
    assert set(expected) == set(study)

    query = DicomWebQuery(pacs.dicomweb_url, store_seg=True)
    output = tmp_path / "pacs"
    # A PACS that refuses stores: every instance is an error row at "store", no result.
    pacs.refuse_stores(True)
    try:
        refused = run_segmentation(job(output, champion_store, query))
    finally:
        pacs.refuse_stores(False)
    assert (refused.segmented, refused.errors) == (0, 4)
    assert {row["stage"] for row in read_table(output, ERRORS_DIR).to_pylist()} == {"store"}
    assert pacs_segs(pacs) == []

    # The rerun retries them all: one SEG per source in the PACS, one SEG series per
    # source series, masks equal to the folder run's in the SEGs as in masks/.
    summary = run_segmentation(job(output, champion_store, query))
    assert (summary.inputs, summary.segmented, summary.errors) == (4, 4, 0)
    segs = pacs_segs(pacs)
    assert sorted(referenced_source(seg) for seg in segs) == sorted(study)
    sources = {sop: pydicom.dcmread(path) for sop, path in study.items()}
    series = Counter(
        (str(seg.SeriesInstanceUID), str(sources[referenced_source(seg)].SeriesInstanceUID))
        for seg in segs
    )
    assert sorted(series.values()) == [1, 3] and len({s for s, _ in series}) == 2
    got = masks_by_sop(output)
    assert set(got) == set(study)
    for seg in segs:
        sop = referenced_source(seg)
        assert "research use only" in seg.SeriesDescription
        assert dciodvfy_errors(seg, tmp_path / "check.dcm") == []
        np.testing.assert_array_equal(got[sop], expected[sop])
        np.testing.assert_array_equal(seg.pixel_array.astype(bool), expected[sop])

    again = run_segmentation(job(output, champion_store, query))
    assert (again.already_done, again.segmented) == (4, 0)


def test_a_pacs_job_killed_midway_and_rerun_stores_one_seg_per_instance(
    ray_session, champion_store, pacs, busi_root, credentials, tmp_path
):
    """``jobs/segment.py`` against the PACS, SIGKILLed after its first committed batch
    (later batches may have stored SEGs without committing), then run again."""
    paths = sorted((busi_root / "benign").glob("* (3*).png"))[:16]
    sources = upload_study(pacs, paths, tmp_path / "study", series_size=8)
    study_uid = str(pydicom.dcmread(next(iter(sources.values()))).StudyInstanceUID)
    output = tmp_path / "out"
    command = [
        sys.executable, str(REPO_ROOT / "jobs" / "segment.py"),
        "--dicomweb", pacs.dicomweb_url, "--study", study_uid, "--store-seg",
        "--output", str(output), "--tracking-uri", champion_store, "--batch-size", "2",
        "--max-pixels", str(MAX_PIXELS),
        "--address", ray_session.get_runtime_context().gcs_address,
    ]  # fmt: skip
    kill_after_first_commit(command, output)
    done_at_kill = read_table(output, RESULTS_DIR).num_rows
    assert 0 < done_at_kill < len(sources), "the kill must land mid-run"

    query = DicomWebQuery(pacs.dicomweb_url, study_uids=(study_uid,), store_seg=True)
    rerun = run_segmentation(job(output, champion_store, query))
    assert rerun.already_done == done_at_kill and rerun.errors == 0
    rows = Counter(
        Path(r["relative_path"]).stem for r in read_table(output, RESULTS_DIR).to_pylist()
    )
    assert rows == Counter(dict.fromkeys(sources, 1))
    stored = Counter(referenced_source(seg) for seg in pacs_segs(pacs))
    assert {sop: stored[sop] for sop in sources} == dict.fromkeys(sources, 1)


def test_a_cine_loop_from_the_pacs_gets_one_multi_frame_seg(
    ray_session, champion_store, pacs, busi_root, credentials, tmp_path
):
    image = cv2.imread(str(sorted((busi_root / "benign").glob("* (4*).png"))[0]), 0)
    image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2))
    frames = [np.roll(image, 2 * index, axis=1) for index in range(60)]
    sources = upload_images(pacs, [frames, frames[0], frames[59]], tmp_path / "study", 3)
    loop_sop, first_sop, last_sop = sources
    study_uid = str(pydicom.dcmread(sources[loop_sop]).StudyInstanceUID)
    query = DicomWebQuery(pacs.dicomweb_url, study_uids=(study_uid,), store_seg=True)
    config = replace(job(tmp_path / "out", champion_store, query), limits=ImageLimits())
    summary = run_segmentation(config)  # the loop is over the other tests' pixel limit
    assert (summary.inputs, summary.segmented, summary.errors) == (3, 62, 0)

    rows = read_table(tmp_path / "out", RESULTS_DIR).to_pylist()
    loop = sorted((r for r in rows if loop_sop in r["relative_path"]), key=lambda r: r["frame"])
    assert [r["frame"] for r in loop] == list(range(60))
    masks = np.stack([cv2.imread(str(tmp_path / "out" / r["mask_path"]), 0) > 0 for r in loop])
    segs = {referenced_source(seg): seg for seg in pacs_segs(pacs)}
    seg = segs[loop_sop]
    assert seg.NumberOfFrames == 60 and seg.SeriesInstanceUID == segs[first_sop].SeriesInstanceUID
    np.testing.assert_array_equal(seg.pixel_array.astype(bool), masks)
    assert dciodvfy_errors(seg, tmp_path / "check.dcm") == []
    for sop, index in ((first_sop, 0), (last_sop, 59)):  # a loop's frame = the same still
        np.testing.assert_array_equal(segs[sop].pixel_array.astype(bool), masks[index])
