"""The output ledger: atomic files, idempotent part names, and what counts as done."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from tumorseg.bulk.ledger import (
    ERROR_SCHEMA,
    ERRORS_DIR,
    RESULTS_DIR,
    RETRIED_STAGES,
    OutputBusyError,
    commit_part,
    done_keys,
    output_lock,
    output_path,
    part_name,
    read_table,
    sweep_temporaries,
    write_atomic,
)


def error_rows(keys: list[str], stage: str = "decode") -> pa.Table:
    now = datetime.now(UTC)
    rows = [
        {
            "image_id": k,
            "input_key": k,
            "source_path": f"{k}.png",
            "relative_path": f"{k}.png",
            "size_bytes": 0,
            "mtime_ns": 0,
            "stage": stage,
            "error_type": "InvalidImageError",
            "message": "empty",
            "finished_at": now,
        }
        for k in keys
    ]
    return pa.Table.from_pylist(rows, schema=ERROR_SCHEMA)


def test_mask_paths_keep_the_source_extension(tmp_path) -> None:
    assert output_path(tmp_path, "masks", "a/b.dcm") == tmp_path / "masks" / "a" / "b.dcm.png"
    assert output_path(tmp_path, "masks", "a/b.dcm") != output_path(tmp_path, "masks", "a/b.png")


def test_atomic_write_leaves_no_temporary_files(tmp_path) -> None:
    target = tmp_path / "deep" / "mask.png"
    write_atomic(target, b"first")
    write_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["mask.png"]


def test_part_names_depend_on_the_batch_not_its_order() -> None:
    assert part_name(["b", "a"]) == part_name(["a", "b"])
    assert part_name(["a"]) != part_name(["a", "b"])


def test_done_keys_and_tables_read_committed_parts_only(tmp_path) -> None:
    assert done_keys(tmp_path) == set()
    assert read_table(tmp_path, RESULTS_DIR).num_rows == 0
    commit_part(error_rows(["k1", "k2"]), tmp_path, ERRORS_DIR, part_name(["k1", "k2"]))
    # a retried batch rewrites its own part instead of adding rows
    commit_part(error_rows(["k1", "k2"]), tmp_path, ERRORS_DIR, part_name(["k1", "k2"]))
    # a half-written part under a hidden temporary name is not "done"
    (tmp_path / ERRORS_DIR / ".part-x.parquet.tmp").write_bytes(b"PAR1 partial")
    assert done_keys(tmp_path) == {"k1", "k2"}
    assert read_table(tmp_path, ERRORS_DIR).column("input_key").to_pylist() == ["k1", "k2"]


def test_errors_of_an_unreachable_or_refusing_pacs_are_retried(tmp_path) -> None:
    commit_part(error_rows(["bad"]), tmp_path, ERRORS_DIR, part_name(["bad"]))
    for stage in RETRIED_STAGES:
        commit_part(error_rows([stage], stage), tmp_path, ERRORS_DIR, part_name([stage]))
    assert done_keys(tmp_path) == {"bad"}  # only the final error is done


def test_a_second_job_on_the_same_output_is_refused_until_the_first_ends(tmp_path: Path) -> None:
    busy = pytest.raises(OutputBusyError, match="another bulk job")
    with output_lock(tmp_path), busy, output_lock(tmp_path):
        pass
    with output_lock(tmp_path):  # released when the holder ends
        pass
    assert list(tmp_path.iterdir()) == []  # the lock leaves no file


def test_sweep_removes_a_killed_runs_temporaries_and_nothing_else(tmp_path: Path) -> None:
    mask = output_path(tmp_path, "masks", "a/b.png")
    write_atomic(mask, b"mask")
    leftovers = [
        mask.with_name(".tumorseg-0123.tmp"),
        Path(tmp_path, RESULTS_DIR, ".tumorseg-4567.tmp"),
    ]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    kept = Path(tmp_path, RESULTS_DIR, "notes.tmp")  # not hidden: not ours
    kept.write_bytes(b"x")
    assert sweep_temporaries(tmp_path) == 2
    assert not any(path.exists() for path in leftovers)
    assert mask.read_bytes() == b"mask" and kept.exists()


def test_a_name_at_the_file_system_limit_is_written_whole(tmp_path: Path) -> None:
    # The temporary beside it must not be longer than the final name.
    path = tmp_path / ("n" * 251 + ".png")
    write_atomic(path, b"data")
    assert path.read_bytes() == b"data"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
