"""Listing a folder tree or a manifest: what counts as an input, and the keys of done work."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tumorseg.bulk.listing import LISTING_SCHEMA, input_key, list_inputs, listing_table
from tumorseg.bulk.stages import decode_batch
from tumorseg.config import ImageLimits


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
    assert listed[0].relative_path == "data/one.png" and not listed[0].problem
    assert "outside the manifest's folder" in listed[1].problem  # refused by default
    assert listed[2].size_bytes == -1  # still an input: it will get an error row
    table = listing_table(listed)
    assert table.schema == LISTING_SCHEMA and table.num_rows == 3
    allowed = list_inputs(manifest, allow_outside_root=True)[1]
    assert not allowed.problem
    assert allowed.relative_path == "_outside_root/" + str(outside.resolve()).lstrip("/")


def test_manifest_without_a_path_column_is_refused(tmp_path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("file\nx.png\n")
    with pytest.raises(ValueError, match="needs one of the columns"):
        list_inputs(manifest)


def test_missing_input_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no such folder or manifest"):
        list_inputs(tmp_path / "nope")


def test_every_entry_that_exists_is_listed_once_with_its_problem(tmp_path) -> None:
    """Whatever a messy archive holds becomes exactly one entry; the unreadable ones
    carry the problem the decode stage files as their error row."""
    root = tmp_path / "archive"
    touch(root / "good.png")
    touch(root / "real" / "inside.png")
    with open(os.path.join(os.fsencode(root), b"latin1-\xe9.png"), "wb") as handle:
        handle.write(b"x")  # a name that is not UTF-8
    os.symlink(root / "gone.png", root / "dangling.png")
    os.symlink(root / "loop-b.png", root / "loop-a.png")
    os.symlink(root / "loop-a.png", root / "loop-b.png")
    os.symlink(root / "real", root / "linked-folder")
    listed = {item.source_path: item for item in list_inputs(root)}
    assert sorted(listed) == sorted(
        [
            "dangling.png",
            "good.png",
            "latin1-\\xe9.png",
            "linked-folder",
            "loop-a.png",
            "loop-b.png",
            "real/inside.png",
        ]
    )
    assert not listed["good.png"].problem and not listed["real/inside.png"].problem
    assert "not valid UTF-8" in listed["latin1-\\xe9.png"].problem
    for name in ("dangling.png", "loop-a.png", "loop-b.png"):
        assert "symbolic link" in listed[name].problem
    assert "link to a folder" in listed["linked-folder"].problem
    table = listing_table(list(listed.values()))  # Arrow takes every name
    decoded = decode_batch(table.to_pandas(), ImageLimits())
    stages = dict(zip(decoded["source_path"], decoded["stage"], strict=True))
    assert {stages[name] for name in listed if listed[name].problem} == {"list"}


def list_without_privileges(root: Path) -> dict[str, str]:
    """``list_inputs(root)`` by a user whom folder permissions bind: as root, in a forked
    child that becomes ``nobody`` first (root reads any folder, so it never sees the
    error; a fork needs no interpreter that ``nobody`` may run)."""
    if os.geteuid() != 0:
        return {i.source_path: i.problem for i in list_inputs(root)}
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to nobody, list, report, leave without cleanup
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            listed = [[i.source_path, i.problem] for i in list_inputs(root)]
            os.write(write_end, json.dumps(listed).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        output = reader.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the unprivileged listing failed"
    return dict(json.loads(output))


def test_an_unreadable_folder_is_a_problem_row_and_its_siblings_are_listed() -> None:
    """``os.walk`` skips a folder it cannot open; the listing says so instead of losing it."""
    root = Path(tempfile.mkdtemp(prefix="tumorseg-unreadable-"))  # not under root's tmp_path
    try:
        touch(root / "a.png")
        touch(root / "locked" / "hidden.png")
        touch(root / "open" / "b.png")
        for folder in (root, root / "open"):
            folder.chmod(0o755)
        for file in (root / "a.png", root / "open" / "b.png"):
            file.chmod(0o644)
        (root / "locked").chmod(0o000)
        listed = list_without_privileges(root)
    finally:
        (root / "locked").chmod(0o755)
        shutil.rmtree(root)
    assert listed == {
        "a.png": "",
        "locked": "unreadable folder (Permission denied)",
        "open/b.png": "",
    }


def test_a_manifest_lists_a_file_once_whatever_its_spelling(tmp_path) -> None:
    touch(tmp_path / "data" / "one.png")
    manifest = tmp_path / "m.parquet"
    paths = ["data/one.png", "./data/one.png", str(tmp_path / "data" / "one.png"), "a\0b.png"]
    pq.write_table(pa.table({"image": paths}), manifest)
    listed = list_inputs(manifest)
    assert [item.source_path for item in listed] == ["data/one.png", "a\\0b.png"]
    assert "NUL" in listed[1].problem


def test_a_manifest_that_is_not_utf8_lists_its_bad_cells_as_problems(tmp_path) -> None:
    """A Latin-1 manifest stops nothing: its other rows are listed as usual."""
    touch(tmp_path / "good.png")
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(b"image\ngood.png\nlatin1-\xe9.png\n")
    listed = list_inputs(manifest)
    assert [item.source_path for item in listed] == ["good.png", "latin1-\\xe9.png"]
    assert not listed[0].problem and "not valid UTF-8" in listed[1].problem
    table = listing_table(listed)  # Arrow takes it
    assert table.num_rows == 2


def test_an_empty_manifest_cell_is_a_problem_row_not_dropped(tmp_path) -> None:
    touch(tmp_path / "good.png")
    manifest = tmp_path / "m.csv"
    manifest.write_text("image,label\ngood.png,benign\n,malignant\n")
    listed = list_inputs(manifest)
    assert [item.source_path for item in listed] == ["good.png", "<m.csv row 2>"]
    assert not listed[0].problem and listed[1].problem == "empty path cell"


def test_a_symlink_loop_listed_in_a_manifest_is_a_problem_row(tmp_path) -> None:
    touch(tmp_path / "good.png")
    (tmp_path / "loop-a.png").symlink_to(tmp_path / "loop-b.png")
    (tmp_path / "loop-b.png").symlink_to(tmp_path / "loop-a.png")
    manifest = tmp_path / "m.csv"
    manifest.write_text("image\nloop-a.png\ngood.png\n")
    listed = list_inputs(manifest)
    assert [item.source_path for item in listed] == ["loop-a.png", "good.png"]
    assert "unresolvable path" in listed[0].problem and not listed[1].problem


def test_a_manifest_whose_column_names_are_not_utf8_says_so(tmp_path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(b"image,r\xe9sultat\ngood.png,1\n")
    with pytest.raises(ValueError, match=r"column names .* are not UTF-8: save it as UTF-8"):
        list_inputs(manifest)


def test_an_output_inside_the_input_is_refused(tmp_path) -> None:
    from tumorseg.bulk import SegmentJobConfig, run_segmentation

    touch(tmp_path / "x.png")
    config = SegmentJobConfig(input=str(tmp_path), output=str(tmp_path / "segmented"))
    with pytest.raises(ValueError, match="is inside --input"):
        run_segmentation(config)
    assert not (tmp_path / "segmented").exists()


def test_a_file_whose_mask_would_be_a_folder_of_outputs_is_an_error_row(tmp_path) -> None:
    (tmp_path / "x.png").mkdir()
    (tmp_path / "x.png" / "inside.png").write_bytes(b"png")
    (tmp_path / "x").write_bytes(b"dicom")  # masks/x.png would be the folder masks/x.png/
    (tmp_path / "y").write_bytes(b"dicom")
    problems = {item.relative_path: item.problem for item in list_inputs(tmp_path)}
    assert "collide with the folder x.png/" in problems["x"]
    assert problems["x.png/inside.png"] == problems["y"] == ""


def test_names_that_would_take_a_cine_loops_frame_masks_are_error_rows(tmp_path) -> None:
    (tmp_path / "loop").write_bytes(b"dicom")  # a cine loop's masks: loop.frame0000.png…
    (tmp_path / "loop.frame0002.png").mkdir()
    touch(tmp_path / "loop.frame0002.png" / "inside.png")
    problems = {item.relative_path: item.problem for item in list_inputs(tmp_path)}
    assert "collide with the folder loop.frame0002.png/" in problems["loop"]
    assert problems["loop.frame0002.png/inside.png"] == ""
    (tmp_path / "clip").write_bytes(b"dicom")
    (tmp_path / "clip.frame0001").write_bytes(b"dicom")  # its mask: clip.frame0001.png
    manifest = tmp_path / "m.csv"
    manifest.write_text("image\nclip\nclip.frame0001\n")
    problems = {item.relative_path: item.problem for item in list_inputs(manifest)}
    assert "name of a frame of clip" in problems["clip.frame0001"]
    assert problems["clip"] == ""
