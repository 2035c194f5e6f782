"""The output folder of a bulk job, and the commit protocol that makes it exactly-once.

Layout under ``OUTPUT``::

    masks/<relative path>.png      mask, 0/255, the source's exact size
    masks/<relative path>.frame0000.png  ... one per frame of a cine loop
    overlays/<relative path>.png   optional contour overlay
    dicom_seg/<relative path>.seg.dcm  optional DICOM Segmentation (DICOM inputs only)
    results/part-<hash>.parquet    one row per segmented image (a loop's frames each)
    errors/part-<hash>.parquet     one row per input that could not be segmented

Every file is written to a hidden temporary name in its final folder and renamed
into place (``os.replace`` is atomic on POSIX), so nothing half-written is ever
visible under its final name; Parquet readers skip the hidden names. A batch is
*done* once its results part is renamed: masks are written before it, and a batch's
errors part right after. The part's name hashes the batch's input keys, so a task
that Ray retries rewrites the same part instead of adding a second one. A rerun
reads the keys of every committed part and skips them; inputs of a batch that was
cut short are simply segmented again (their mask files are overwritten, atomically).
A killed run can leave hidden temporaries behind; the next run, holding the output's
lock so that no other job is writing there, removes them (``sweep_temporaries``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from tumorseg.networks.roles import FUSED_ROLES

MASKS_DIR = "masks"
OVERLAYS_DIR = "overlays"
DICOM_SEG_DIR = "dicom_seg"
RESULTS_DIR = "results"
ERRORS_DIR = "errors"

_FILE_COLUMNS = [
    ("image_id", pa.string()),
    ("input_key", pa.string()),
    ("source_path", pa.string()),
    ("relative_path", pa.string()),
    ("size_bytes", pa.int64()),
    ("mtime_ns", pa.int64()),
]

RESULT_SCHEMA = pa.schema(
    [
        *_FILE_COLUMNS,
        ("frame", pa.int32()),  # a cine loop's frame, from 0; empty for a still image
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("route", pa.string()),
        ("route_confidence", pa.float32()),
        ("tumor_present", pa.bool_()),
        ("tumor_probability", pa.float32()),
        ("heterogeneity_score", pa.float32()),
        ("area_px", pa.int64()),
        ("bbox_y0", pa.int32()),
        ("bbox_x0", pa.int32()),
        ("bbox_y1", pa.int32()),
        ("bbox_x1", pa.int32()),
        ("area_mm2", pa.float32()),  # the mm fields: empty where the source states no size
        ("bbox_height_mm", pa.float32()),
        ("bbox_width_mm", pa.float32()),
        ("pixel_spacing_row_mm", pa.float32()),
        ("pixel_spacing_col_mm", pa.float32()),
        ("mask_path", pa.string()),
        ("overlay_path", pa.string()),
        ("dicom_seg_path", pa.string()),
        *(
            (f"{role}_{part}", pa.string())
            for role in FUSED_ROLES  # SegmentationResult.to_record's version columns
            for part in ("model", "version")
        ),
        ("elapsed_s", pa.float32()),
        ("finished_at", pa.timestamp("ms", tz="UTC")),
    ]
)

ERROR_SCHEMA = pa.schema(
    [
        *_FILE_COLUMNS,
        ("stage", pa.string()),
        ("error_type", pa.string()),
        ("message", pa.string()),
        ("finished_at", pa.timestamp("ms", tz="UTC")),
    ]
)


#: What an output adds to its input's relative path: masks and overlays, SEG files.
IMAGE_SUFFIX = ".png"
SEG_SUFFIX = ".seg.dcm"


def output_path(
    output: str | os.PathLike[str], folder: str, relative_path: str, suffix: str = IMAGE_SUFFIX
) -> Path:
    """``OUTPUT/<folder>/<relative path><suffix>``: the input's extension is kept, so
    ``a/b.dcm`` and ``a/b.png`` get different masks."""
    return Path(output, folder, f"{relative_path}{suffix}")


class OutputBusyError(RuntimeError):
    """Another bulk job holds the output folder."""


@contextlib.contextmanager
def output_lock(output: str | os.PathLike[str]) -> Iterator[None]:
    """Hold ``OUTPUT`` for one job: two jobs writing one ledger would sweep each
    other's temporaries. The lock is on the folder itself, so it leaves no file, and
    the kernel drops it when the holder dies, however it dies."""
    descriptor = os.open(output, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputBusyError(
                f"another bulk job is writing to {output}; wait for it or choose another --output"
            ) from None
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


_TEMPORARY_SUFFIX = ".tmp"


def _temporary_name(path: Path) -> Path:
    """A short hidden name beside ``path``: a final name near the file-system's
    limit must not fail only because its temporary is longer."""
    return path.with_name(f".tumorseg-{uuid.uuid4().hex}{_TEMPORARY_SUFFIX}")


def sweep_temporaries(output: str | os.PathLike[str]) -> int:
    """Remove the hidden temporaries a killed run left; call only under ``output_lock``.
    Returns how many were removed."""
    removed = 0
    for folder in (MASKS_DIR, OVERLAYS_DIR, DICOM_SEG_DIR, RESULTS_DIR, ERRORS_DIR):
        for path in Path(output, folder).rglob(f".*{_TEMPORARY_SUFFIX}"):
            if path.is_file() and not path.is_symlink():
                path.unlink(missing_ok=True)
                removed += 1
    return removed


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` at ``path`` so that readers see either nothing or the whole file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_name(path)
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def part_name(input_keys: Iterable[str]) -> str:
    """Deterministic part file name for a batch: retries of a batch overwrite, never add."""
    digest = hashlib.sha1("\n".join(sorted(input_keys)).encode()).hexdigest()[:24]
    return f"part-{digest}.parquet"


def commit_part(table: pa.Table, output: str | os.PathLike[str], folder: str, name: str) -> Path:
    """Atomically publish ``table`` as ``OUTPUT/<folder>/<name>``."""
    path = Path(output, folder, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_name(path)
    try:
        pq.write_table(table, temporary)
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    return path


def read_table(output: str | os.PathLike[str], folder: str) -> pa.Table:
    """Every committed row of ``results`` or ``errors`` (an empty table when none)."""
    schema = RESULT_SCHEMA if folder == RESULTS_DIR else ERROR_SCHEMA
    path = Path(output, folder)
    if not path.is_dir():
        return schema.empty_table()
    return pads.dataset(path, format="parquet", schema=schema).to_table()


#: Stages whose failures a rerun retries: the PACS was unreachable or refused a store.
#: Their error rows stay as a record; every other error row is final.
RETRIED_STAGES = ("retrieve", "store")


def done_keys(output: str | os.PathLike[str]) -> set[str]:
    """Input keys that already have a result or a final error row."""
    keys: set[str] = set()
    for folder in (RESULTS_DIR, ERRORS_DIR):
        path = Path(output, folder)
        if not path.is_dir():
            continue
        columns = ["input_key"] if folder == RESULTS_DIR else ["input_key", "stage"]
        rows = pads.dataset(path, format="parquet").to_table(columns=columns).to_pylist()
        keys.update(row["input_key"] for row in rows if row.get("stage") not in RETRIED_STAGES)
    return keys
