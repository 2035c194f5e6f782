"""Find the images of a corpus and describe each one as an :class:`ImageRecord`.

Three shapes of corpus are understood (see :func:`discover`):

* a folder in the **BUSI layout**: one subfolder per dataset label holding ``X.png``
  with its masks ``X_mask.png``, ``X_mask_1.png`` … (several masks are OR-ed when
  loaded);
* a **manifest**, CSV or Parquet, with an ``image`` column and optional ``mask``
  (several paths joined by ``;``), ``label``, ``expert_class`` and ``patient_id``;
* a folder of **DICOM** files (any extension, recognised by content, searched
  recursively): one record per frame of a multi-frame file, ``patient_id`` from
  the PatientID tag. A plain folder of images works the same way (no labels).

Files are recognised by their content (magic numbers), not their extension; a
file named like a mask (``<stem>_mask`` or ``<stem>_mask_<n>``) is a mask of the
image ``<stem>`` in the same folder, and is skipped with a warning when there is
no such image. Hidden files and folders (``.name``) are ignored. Folder results
are in natural order (``benign (2)`` before ``benign (10)``); manifest results
keep the manifest's row order. Paths in records are absolute.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom

from tumorseg.config import ROUTES
from tumorseg.data.records import ImageRecord, file_digest, make_image_id
from tumorseg.io.dicom import decodes_as_dicom, frame_count
from tumorseg.io.files import open_regular
from tumorseg.io.headers import sniff_format

log = logging.getLogger(__name__)

MANIFEST_SUFFIXES = (".csv", ".parquet")
_RASTER_FORMATS = frozenset({"png", "jpeg", "bmp", "tiff"})
_MASK_STEM = re.compile(r"^(?P<base>.+)_mask(?:_(?P<index>\d+))?$")
_SNIFF_BYTES = 132


@dataclass(frozen=True)
class _Found:
    """An image-like file met while scanning a folder."""

    path: Path
    kind: str  # "raster" or "dicom"


def discover(source: str | os.PathLike[str]) -> list[ImageRecord]:
    """Records for every image of ``source``: a manifest file, a BUSI folder or any folder.

    A ``.csv``/``.parquet`` file goes to :func:`read_manifest`; a folder whose
    subfolders hold images with ``_mask`` files goes to :func:`discover_busi`;
    any other folder to :func:`discover_images` (DICOM and plain images, no labels).
    """
    root = Path(source)
    if not root.exists():
        raise FileNotFoundError(f"data source {os.fspath(source)} does not exist")
    if root.is_file():
        if root.suffix.lower() in MANIFEST_SUFFIXES:
            return read_manifest(root)
        raise ValueError(
            f"{root} is a file but not a manifest; pass a .csv or .parquet manifest or a folder"
        )
    found = _scan(root)
    if _is_busi_layout(root, found):
        return discover_busi(root)
    return _require_some(_folder_records(found, label=None), root, "image")


def discover_busi(root: str | os.PathLike[str]) -> list[ImageRecord]:
    """BUSI layout: ``root/<label>/X.png`` with ``X_mask*.png``; the label is the subfolder."""
    folder = _existing_dir(root)
    records: list[ImageRecord] = []
    for sub in sorted(_visible_subdirs(folder), key=lambda p: _natural_key(p.name)):
        records.extend(_folder_records(_scan(sub), label=sub.name))
    return _require_some(records, folder, "image")


def discover_images(root: str | os.PathLike[str]) -> list[ImageRecord]:
    """Every image and DICOM file under ``root`` (recursive), masks by name, no labels."""
    folder = _existing_dir(root)
    return _require_some(_folder_records(_scan(folder), label=None), folder, "image")


def discover_dicom(root: str | os.PathLike[str]) -> list[ImageRecord]:
    """Every DICOM file under ``root`` (recursive, any extension): one record per frame."""
    folder = _existing_dir(root)
    found = [f for f in _scan(folder) if f.kind == "dicom"]
    return _require_some(_folder_records(found, label=None), folder, "DICOM")


def read_manifest(path: str | os.PathLike[str]) -> list[ImageRecord]:
    """Records from a CSV or Parquet manifest, in row order.

    Relative paths are relative to the manifest's folder. Errors name the
    manifest and the row (row 1 is the first data row, after the header).
    """
    manifest = Path(path)
    if not manifest.is_file():
        raise FileNotFoundError(f"manifest {os.fspath(path)} does not exist")
    columns, rows = manifest_table(manifest)
    if "image" not in columns:
        raise ValueError(
            f"manifest {manifest} has no 'image' column (columns: {', '.join(columns) or 'none'})"
        )
    base = Path(os.path.abspath(manifest.parent))
    records: list[ImageRecord] = []
    for number, row in enumerate(rows, start=1):
        records.extend(_manifest_row(row, f"manifest {manifest}, row {number}", base))
    return records


# --------------------------------------------------------------------------- folders


def _existing_dir(root: str | os.PathLike[str]) -> Path:
    folder = Path(root)
    if not folder.is_dir():
        raise FileNotFoundError(f"folder {os.fspath(root)} does not exist or is not a folder")
    return folder


def _visible_subdirs(folder: Path) -> Iterator[Path]:
    return (p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scan(folder: Path) -> list[_Found]:
    """Image-like files under ``folder`` (recursive), in natural path order."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for filename in filenames:
            path = Path(os.path.abspath(os.path.join(dirpath, filename)))
            kind = None if filename.startswith(".") else _file_kind(path)
            if kind is not None:
                found.append(_Found(path, kind))
    return sorted(found, key=lambda f: _natural_key(str(f.path)))


def _file_kind(path: Path) -> str | None:
    """``"raster"``, ``"dicom"`` or None, from the first bytes (or a ``.dcm`` name when
    they tell nothing)."""
    try:
        with open_regular(path) as handle:  # a FIFO or a device is not an image
            head = handle.read(_SNIFF_BYTES)
    except OSError:
        return None
    fmt = sniff_format(head)
    if decodes_as_dicom(fmt, path.suffix):
        return "dicom"
    return "raster" if fmt in _RASTER_FORMATS else None


def _is_busi_layout(root: Path, found: list[_Found]) -> bool:
    """No images directly in ``root``, and images with ``_mask`` files in its subfolders."""
    if any(f.path.parent == Path(os.path.abspath(root)) for f in found):
        return False
    stems = {(f.path.parent, f.path.stem) for f in found}
    return any(_mask_owner(f.path) in stems for f in found)


def mask_owner_stem(filename: str) -> str | None:
    """``"X"`` for a mask file named ``X_mask.ext`` or ``X_mask_<n>.ext``, else None."""
    match = _MASK_STEM.match(Path(filename).stem)
    return match["base"] if match else None


def _mask_owner(path: Path) -> tuple[Path, str] | None:
    stem = mask_owner_stem(path.name)
    return (path.parent, stem) if stem is not None else None


def _mask_order(path: Path) -> int:
    match = _MASK_STEM.match(path.stem)
    return int(match["index"]) if match and match["index"] else -1


def _folder_records(found: Iterable[_Found], *, label: str | None) -> list[ImageRecord]:
    """Pair images with their masks by name and build the records."""
    found = list(found)
    images = [f for f in found if _mask_owner(f.path) is None]
    masks: dict[tuple[Path, str], list[Path]] = {(f.path.parent, f.path.stem): [] for f in images}
    for f in found:
        owner = _mask_owner(f.path)
        if owner is None:
            continue
        if owner in masks:
            masks[owner].append(f.path)
        else:
            log.warning("skipping mask %s: no image %r next to it", f.path, owner[1])
    records: list[ImageRecord] = []
    for f in images:
        own = sorted(masks[(f.path.parent, f.path.stem)], key=_mask_order)
        records.extend(_file_records(f.path, own, kind=f.kind, label=label))
    return records


def _require_some(records: list[ImageRecord], folder: Path, what: str) -> list[ImageRecord]:
    if not records:
        raise ValueError(f"found no {what} files under {folder}")
    return records


def _natural_key(text: str) -> list[Any]:
    """Sort key that orders embedded numbers by value: ``x (2)`` before ``x (10)``."""
    parts = re.split(r"(\d+)", text)
    return [int(p) if i % 2 else p.lower() for i, p in enumerate(parts)]


# --------------------------------------------------------------------------- records


def _file_records(
    path: Path,
    masks: Iterable[Path],
    *,
    kind: str | None = None,
    label: str | None = None,
    expert_class: str | None = None,
    patient_id: str | None = None,
) -> list[ImageRecord]:
    """One record for an image file, one per frame for a multi-frame DICOM file."""
    digest = file_digest(path)
    common = {
        "path": str(path),
        "mask_paths": tuple(str(m) for m in masks),
        "label": label,
        "expert_class": expert_class,
    }
    kind = kind or _file_kind(path)
    if kind != "dicom":
        return [ImageRecord(make_image_id(digest), patient_id=patient_id, **common)]
    frames, dicom_patient = _dicom_header(path)
    patient = patient_id or dicom_patient
    if frames == 1:
        return [ImageRecord(make_image_id(digest), patient_id=patient, **common)]
    return [
        ImageRecord(make_image_id(digest, i), patient_id=patient, frame=i, **common)
        for i in range(frames)
    ]


def _dicom_header(path: Path) -> tuple[int, str | None]:
    """Frame count and PatientID without reading pixels; (1, None) when unreadable.

    An unreadable file still gets a record, so that the loader reports it as an
    error row instead of it silently disappearing from the corpus.
    """
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception as exc:  # damaged files raise many types
        log.warning("cannot read DICOM header of %s: %s", path, exc)
        return 1, None
    patient = str(ds.get("PatientID", "") or "").strip()
    return frame_count(ds), patient or None


# --------------------------------------------------------------------------- manifests


def manifest_table(
    manifest: Path, undecodable: str = "strict"
) -> tuple[list[str], list[dict[str, Any]]]:
    """Column names and rows (dicts) of a CSV or Parquet manifest.

    A CSV's bytes that are not UTF-8 are an error (``undecodable="strict"``) or kept as
    surrogates (``"surrogateescape"``), so that a caller can report each such cell.
    """
    suffix = manifest.suffix.lower()
    if suffix == ".csv":
        try:
            return _csv_table(manifest, undecodable)
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"manifest {manifest} is not UTF-8 (byte {exc.start}): save it as UTF-8"
            ) from exc
    if suffix == ".parquet":
        return _parquet_table(manifest)
    raise ValueError(f"manifest {manifest} must be a .csv or .parquet file")


def _csv_table(manifest: Path, undecodable: str) -> tuple[list[str], list[dict[str, Any]]]:
    with open(manifest, newline="", encoding="utf-8-sig", errors=undecodable) as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        if any(_undecodable(name) for name in header):
            raise ValueError(
                f"the column names of manifest {manifest} are not UTF-8: save it as UTF-8"
            )
        try:
            rows = [dict(zip(header, cells, strict=False)) for cells in reader if any(cells)]
        except csv.Error as exc:  # e.g. a stray quote that swallows the rest of the file
            raise ValueError(
                f"manifest {manifest} cannot be read as CSV at line {reader.line_num}: {exc} "
                "(an unbalanced quote makes the rest of the file one cell)"
            ) from exc
    return header, rows


def _undecodable(text: str) -> bool:
    """Whether ``text`` holds bytes kept as surrogates (``errors="surrogateescape"``)."""
    return any("\udc80" <= char <= "\udcff" for char in text)


def _parquet_table(manifest: Path) -> tuple[list[str], list[dict[str, Any]]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(manifest)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, …
        raise ValueError(f"manifest {manifest} cannot be read as Parquet: {exc}") from exc
    return list(table.column_names), table.to_pylist()


def _manifest_row(row: dict[str, Any], where: str, base: Path) -> list[ImageRecord]:
    image = manifest_cell(row.get("image"))
    if image is None:
        raise ValueError(f"{where}: the 'image' cell is empty")
    image_path = resolve_manifest_path(image, base)
    if not image_path.is_file():
        raise FileNotFoundError(f"{where}: image {image_path} does not exist")
    masks = [resolve_manifest_path(m, base) for m in _mask_cells(row.get("mask"))]
    for mask in masks:
        if not mask.is_file():
            raise FileNotFoundError(f"{where}: mask {mask} does not exist")
    return _file_records(
        image_path,
        masks,
        label=manifest_cell(row.get("label")),
        expert_class=_expert_class(row.get("expert_class"), where),
        patient_id=manifest_cell(row.get("patient_id")),
    )


def manifest_cell(value: Any) -> str | None:
    """A manifest cell as stripped text; empty, None and NaN are None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # patient ids read back as floats by pandas
    text = str(value).strip()
    return text or None


def _mask_cells(value: Any) -> list[str]:
    """Mask paths from ``a.png;b.png`` text or a Parquet list column."""
    items = value if isinstance(value, list | tuple) else (manifest_cell(value) or "").split(";")
    return [text for item in items if (text := manifest_cell(item))]


def _expert_class(value: Any, where: str) -> str | None:
    text = manifest_cell(value)
    if text is None:
        return None
    if text.lower() not in ROUTES:
        raise ValueError(
            f"{where}: expert_class {text!r} is not one of {', '.join(ROUTES)} (or empty)"
        )
    return text.lower()


def resolve_manifest_path(path: str, base: Path) -> Path:
    """Absolute path; relative ones are taken from the manifest's folder."""
    return Path(os.path.abspath(base / os.path.expanduser(path)))
