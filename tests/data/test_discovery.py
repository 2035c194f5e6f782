"""Corpus discovery: BUSI folders, CSV/Parquet manifests, DICOM archives, plain folders."""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hostile_files import within

from tumorseg.data import (
    ImageRecord,
    discover,
    discover_busi,
    discover_dicom,
    discover_images,
    file_digest,
    read_manifest,
)
from tumorseg.data import records as records_module
from tumorseg.data.discovery import manifest_table
from tumorseg.io import write_dicom


def _png(path: Path, value: int = 0, shape: tuple[int, int] = (12, 16)) -> Path:
    """A distinct small PNG (``value`` makes its bytes, hence its id, unique)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full(shape, value, dtype=np.uint8)
    image[0, 0] = 255 - value
    cv2.imwrite(str(path), image)
    return path


def _sha16(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


# --------------------------------------------------------------------------- real BUSI corpus


def test_real_busi_folder(busi_root: Path) -> None:
    records = discover(busi_root)
    assert records == discover_busi(busi_root)
    assert len(records) == 624
    assert Counter(r.label for r in records) == {"benign": 350, "malignant": 168, "normal": 106}
    assert all(r.mask_paths for r in records)
    assert Counter(len(r.mask_paths) for r in records) == {1: 612, 2: 12}
    assert len({r.image_id for r in records}) == 624
    assert all(Path(r.path).is_absolute() and r.frame is None for r in records)
    first = records[0]
    assert Path(first.path).name == "benign (1).png"
    assert Path(records[1].path).name == "benign (2).png"  # natural order
    assert first.image_id == _sha16(Path(first.path))
    by_name = {Path(r.path).name: r for r in records}
    assert [Path(p).name for p in by_name["benign (4).png"].mask_paths] == [
        "benign (4)_mask.png",
        "benign (4)_mask_1.png",
    ]


# --------------------------------------------------------------------------- BUSI layout


def test_busi_layout_pairs_masks_by_name(tmp_path, caplog) -> None:
    root = tmp_path / "corpus"
    _png(root / "benign" / "b (10).png", 1)
    _png(root / "benign" / "b (2).png", 2)
    for name in ("b (2)_mask_2.png", "b (2)_mask.png", "b (2)_mask_1.png", "b (10)_mask.png"):
        _png(root / "benign" / name, 200)
    _png(root / "normal" / "n (1).png", 3)
    _png(root / "normal" / "n (1)_mask.png", 0)
    _png(root / "normal" / "orphan_mask.png", 200)  # no image "orphan": skipped
    (root / "benign" / "README.txt").write_text("not an image")
    (root / "benign" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    _png(root / ".cache" / "x.png", 9)
    with caplog.at_level(logging.WARNING, logger="tumorseg.data.discovery"):
        records = discover(root)
    assert "orphan_mask.png" in caplog.text
    assert [(Path(r.path).name, r.label) for r in records] == [
        ("b (2).png", "benign"),
        ("b (10).png", "benign"),
        ("n (1).png", "normal"),
    ]
    assert [Path(p).name for p in records[0].mask_paths] == [
        "b (2)_mask.png",
        "b (2)_mask_1.png",
        "b (2)_mask_2.png",
    ]
    assert discover(root) == records  # deterministic


def test_plain_image_folder(tmp_path) -> None:
    _png(tmp_path / "a" / "one.png", 1)
    _png(tmp_path / "two.png", 2)
    jpeg_named_bin = tmp_path / "a" / "deep" / "three.bin"
    jpeg_named_bin.parent.mkdir(parents=True)
    _, buffer = cv2.imencode(".jpg", np.full((8, 8), 50, np.uint8))
    jpeg_named_bin.write_bytes(buffer.tobytes())
    records = discover(tmp_path)
    assert records == discover_images(tmp_path)
    assert [Path(r.path).name for r in records] == ["three.bin", "one.png", "two.png"]  # by path
    assert all(r.label is None and r.mask_paths == () for r in records)


def test_a_fifo_or_a_device_among_the_images_is_passed_over_not_read(tmp_path) -> None:
    """Opening a FIFO blocks until a writer comes and a device never ends: discovery
    must neither wait nor read forever (it ran in a thread here to fail, not hang)."""
    _png(tmp_path / "one.png", 1)
    os.mkfifo(tmp_path / "fifo.png")
    (tmp_path / "zero.dcm").symlink_to("/dev/zero")
    found = within(30, lambda: discover(tmp_path))
    assert [Path(r.path).name for r in found] == ["one.png"]


def test_same_bytes_same_id(tmp_path) -> None:
    first = _png(tmp_path / "x" / "a.png", 4)
    copy = tmp_path / "y" / "renamed.png"
    copy.parent.mkdir()
    copy.write_bytes(first.read_bytes())
    ids = {r.image_id for r in discover(tmp_path)}
    assert ids == {_sha16(first)}


def test_file_digest_streams_large_files(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(records_module, "_CHUNK", 1000)
    path = tmp_path / "big.bin"
    path.write_bytes(np.random.default_rng(0).bytes(25_000))
    assert file_digest(path) == _sha16(path)


# --------------------------------------------------------------------------- DICOM folders


@pytest.fixture
def dicom_root(tmp_path) -> Path:
    root = tmp_path / "archive"
    image = np.arange(12 * 16, dtype=np.uint8).reshape(12, 16)
    write_dicom(root / "p1" / "study" / "IM0001", image, patient_id="P1")
    write_dicom(root / "p1" / "study" / "loop.dcm", [image, image.T.copy().T, 255 - image])
    write_dicom(root / "p2" / "scan.bin", 255 - image, patient_id="P2", photometric="RGB")
    write_dicom(root / "p2" / "bare.dcm", image // 2, preamble=False, patient_id="P2")
    # Bare and without an extension, as archives export them: told by its first element.
    write_dicom(root / "p2" / "IM0002", image // 3, preamble=False, patient_id="P2")
    (root / "p2" / "DICOMDIR.txt").write_text("index")
    return root


def test_dicom_folder(dicom_root) -> None:
    records = discover(dicom_root)
    assert records == discover_dicom(dicom_root)
    summary = [(Path(r.path).name, r.frame, r.patient_id) for r in records]
    assert summary == [
        ("IM0001", None, "P1"),
        ("loop.dcm", 0, None),
        ("loop.dcm", 1, None),
        ("loop.dcm", 2, None),
        ("bare.dcm", None, "P2"),
        ("IM0002", None, "P2"),
        ("scan.bin", None, "P2"),
    ]
    loop_id = _sha16(dicom_root / "p1" / "study" / "loop.dcm")
    assert [r.image_id for r in records[1:4]] == [f"{loop_id}-f{i}" for i in range(3)]
    assert len({r.image_id for r in records}) == len(records)


def test_dicom_only_ignores_other_images(dicom_root) -> None:
    _png(dicom_root / "snapshot.png", 5)
    assert len(discover_dicom(dicom_root)) == 7
    assert len(discover_images(dicom_root)) == 8


# --------------------------------------------------------------------------- manifests


@pytest.fixture
def manifest_files(tmp_path) -> Path:
    data = tmp_path / "data"
    _png(data / "img" / "a.png", 1)
    _png(data / "img" / "b.png", 2)
    _png(data / "masks" / "a_1.png", 200)
    _png(data / "masks" / "a_2.png", 200)
    _png(data / "masks" / "b.png", 200)
    write_dicom(data / "img" / "loop.dcm", [np.zeros((12, 16), np.uint8)] * 2, patient_id="D9")
    return data


def _csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_csv_manifest(manifest_files, tmp_path) -> None:
    absolute_b = manifest_files / "img" / "b.png"
    manifest = _csv(
        manifest_files / "manifest.csv",
        "image, mask ,label,expert_class,patient_id\n"
        "img/a.png,masks/a_1.png; masks/a_2.png,benign,Homogeneous,17\n"
        f"{absolute_b},masks/b.png,malignant,,\n"
        "img/loop.dcm,,,heterogeneous,\n",
    )
    records = read_manifest(manifest)
    assert records == discover(manifest)
    a, b, *frames = records
    assert a.path == str(manifest_files / "img" / "a.png")
    assert a.mask_paths == (
        str(manifest_files / "masks" / "a_1.png"),
        str(manifest_files / "masks" / "a_2.png"),
    )
    assert (a.label, a.expert_class, a.patient_id) == ("benign", "homogeneous", "17")
    assert (b.label, b.expert_class, b.patient_id) == ("malignant", None, None)
    assert b.image_id == _sha16(absolute_b)
    assert [(f.frame, f.patient_id, f.expert_class) for f in frames] == [
        (0, "D9", "heterogeneous"),
        (1, "D9", "heterogeneous"),
    ]


def test_csv_manifest_with_only_images(manifest_files) -> None:
    manifest = _csv(manifest_files / "only.csv", "image\nimg/b.png\nimg/a.png\n\n")
    records = read_manifest(manifest)
    assert [Path(r.path).name for r in records] == ["b.png", "a.png"]  # row order kept
    assert all(r.mask_paths == () and r.label is None for r in records)


def test_parquet_manifest(manifest_files) -> None:
    table = pa.table(
        {
            "image": ["img/a.png", "img/b.png"],
            "mask": ["masks/a_1.png;masks/a_2.png", None],
            "label": ["benign", None],
            "expert_class": [None, "heterogeneous"],
            "patient_id": [4, 5],
        }
    )
    path = manifest_files / "manifest.parquet"
    pq.write_table(table, path)
    a, b = discover(path)
    assert len(a.mask_paths) == 2 and b.mask_paths == ()
    assert (a.patient_id, b.patient_id, b.expert_class) == ("4", "5", "heterogeneous")


def test_parquet_mask_list_column(manifest_files) -> None:
    table = pa.table({"image": ["img/a.png"], "mask": [["masks/a_1.png", "masks/a_2.png"]]})
    path = manifest_files / "lists.parquet"
    pq.write_table(table, path)
    assert len(read_manifest(path)[0].mask_paths) == 2


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("path,mask\nimg/a.png,\n", ValueError, "no 'image' column"),
        ("image\nimg/a.png\nimg/missing.png\n", FileNotFoundError, "row 2: image .*missing"),
        ("image,mask\nimg/a.png,masks/nope.png\n", FileNotFoundError, "row 1: mask .*nope"),
        ("image,expert_class\nimg/a.png,uniform\n", ValueError, "row 1: expert_class 'uniform'"),
        ("image,label\n,benign\n", ValueError, "row 1: the 'image' cell is empty"),
    ],
)
def test_manifest_errors(manifest_files, text, error, message) -> None:
    manifest = _csv(manifest_files / "bad.csv", text)
    with pytest.raises(error, match=message):
        read_manifest(manifest)


def test_corrupt_parquet(tmp_path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 definitely not parquet")
    with pytest.raises(ValueError, match="cannot be read as Parquet"):
        discover(path)


# --------------------------------------------------------------------------- sources


def test_source_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        discover(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_manifest(tmp_path / "nowhere.csv")
    note = tmp_path / "notes.txt"
    note.write_text("hello")
    with pytest.raises(ValueError, match="not a manifest"):
        discover(note)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="found no image files"):
        discover(empty)
    with pytest.raises(ValueError, match="found no DICOM files"):
        discover_dicom(empty)
    with pytest.raises(FileNotFoundError):
        discover_busi(note)


# --------------------------------------------------------------------------- records


def test_record_round_trip() -> None:
    record = ImageRecord(
        "0123456789abcdef-f2",
        "/x/loop.dcm",
        ["/x/m.png"],  # any sequence is stored as a tuple
        label="benign",
        expert_class="heterogeneous",
        patient_id="P1",
        frame=2,
    )
    assert record.mask_paths == ("/x/m.png",)
    data = record.to_dict()
    assert data["mask_paths"] == ["/x/m.png"]
    assert ImageRecord.from_dict(data) == record
    assert (
        ImageRecord.from_dict({"image_id": "i", "path": "p", "mask_paths": None}).mask_paths == ()
    )


def test_record_validation() -> None:
    with pytest.raises(ValueError, match="expert_class"):
        ImageRecord("i", "p", expert_class="mixed")
    with pytest.raises(ValueError, match="unknown ImageRecord keys"):
        ImageRecord.from_dict({"image_id": "i", "path": "p", "colour": "red"})
    record = ImageRecord("i", "p")
    with pytest.raises(AttributeError):
        record.label = "x"  # type: ignore[misc]


def test_a_manifest_that_is_not_utf8_is_a_clear_error(tmp_path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(b"image\nlatin1-\xe9.png\n")
    with pytest.raises(ValueError, match=r"not UTF-8 .*save it as UTF-8"):
        manifest_table(manifest)


def test_a_manifest_swallowed_by_a_stray_quote_is_a_clear_error(tmp_path) -> None:
    """A quote that never closes makes the rest of the file one cell, past the csv
    module's field limit: the error names the manifest and the line, not ``_csv.Error``."""
    manifest = tmp_path / "m.csv"
    manifest.write_text('image\na.png\n"b.png\n' + "c.png\n" * 30_000)
    with pytest.raises(ValueError, match=r"m.csv cannot be read as CSV at line \d+: .*quote"):
        manifest_table(manifest)
