"""Listing a folder tree or a manifest: what counts as an input, and the keys of done work."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tumorseg.bulk.listing import LISTING_SCHEMA, input_key, list_inputs, listing_table


def touch(path, data: bytes = b"x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_folder_listing_is_recursive_sorted_and_skips_masks_hidden_and_other_files(
    tmp_path,
) -> None:
    for name in (
        "b/2.png",
        "b/2_mask.png",  # mask of b/2.png: skipped
        "b/2_mask_1.png",
        "a/1.jpg",
        "a/orphan_mask.png",  # no image "orphan.png": an input like any other
        "a/IM000123",  # extensionless (DICOM archives)
        "a/study.dcm",
        "a/notes.txt",  # not an image extension: skipped
        "a/.hidden.png",
        ".cache/x.png",
    ):
        touch(tmp_path / name)
    listed = [item.source_path for item in list_inputs(tmp_path)]
    assert listed == ["a/1.jpg", "a/IM000123", "a/orphan_mask.png", "a/study.dcm", "b/2.png"]


def test_keys_follow_path_size_and_mtime(tmp_path) -> None:
    touch(tmp_path / "x.png", b"abc")
    (first,) = list_inputs(tmp_path)
    assert first.input_key == input_key("x.png", 3, first.mtime_ns)
    os.utime(tmp_path / "x.png", ns=(first.mtime_ns + 10**9, first.mtime_ns + 10**9))
    (touched,) = list_inputs(tmp_path)
    assert touched.input_key != first.input_key
    assert touched.image_id == first.image_id  # the same image, a new version of it


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_manifest_listing_keeps_given_paths_and_lists_missing_files(tmp_path, suffix) -> None:
    touch(tmp_path / "data" / "one.png")
    outside = tmp_path.parent / f"{tmp_path.name}-elsewhere.png"
    touch(outside)
    paths = ["data/one.png", str(outside), "data/missing.png"]
    manifest = tmp_path / f"manifest{suffix}"
    if suffix == ".csv":
        manifest.write_text("image,label\n" + "".join(f"{p},benign\n" for p in paths))
    else:
        pq.write_table(pa.table({"image": paths}), manifest)
    listed = list_inputs(manifest)
    assert [item.source_path for item in listed] == paths
    assert listed[0].relative_path == "data/one.png"
    assert listed[1].relative_path == str(outside.resolve()).lstrip("/")
    assert listed[2].size_bytes == -1  # still an input: it will get an error row
    table = listing_table(listed)
    assert table.schema == LISTING_SCHEMA and table.num_rows == 3


def test_manifest_without_a_path_column_is_refused(tmp_path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("file\nx.png\n")
    with pytest.raises(ValueError, match="needs one of the columns"):
        list_inputs(manifest)


def test_missing_input_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no such folder or manifest"):
        list_inputs(tmp_path / "nope")
