"""The output ledger: atomic files, idempotent part names, and what counts as done."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa

from tumorseg.bulk.ledger import (
    ERROR_SCHEMA,
    ERRORS_DIR,
    RESULTS_DIR,
    RETRIED_STAGES,
    commit_part,
    done_keys,
    output_path,
    part_name,
    read_table,
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
