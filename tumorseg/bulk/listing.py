"""What a bulk job has to segment: the input files, each with a key that says "done".

Listing only stats files; it never opens them, so a folder of a million studies is
listed quickly and a bad file becomes an error row later instead of stopping the
listing. A file is an input when its extension is an image or DICOM one, or when it
has no extension (DICOM archives often store ``IM000123``-style names). Hidden
files and folders (``.name``) are skipped, and so are BUSI-style masks
(``X_mask.png``, ``X_mask_1.png``) whose image ``X.png`` sits beside them.

The key of an input is its path relative to the input root, its size and its
modification time: a rerun skips every key already in the output, and a file that
changed since is segmented again (its older row stays, with the older ``mtime_ns``).

Whatever exists is listed, so that it ends as exactly one row: an entry that cannot
be segmented (a dangling or looping link, an unreadable folder, a name that is not
UTF-8, a manifest path outside the manifest's folder) is listed with its
``problem``, which the decode stage files as an error row. A manifest that lists one
file twice (under two spellings too) lists it once.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

import pyarrow as pa

from tumorseg.bulk.ledger import IMAGE_SUFFIX, SEG_SUFFIX
from tumorseg.data.discovery import (
    MANIFEST_SUFFIXES,
    manifest_cell,
    manifest_table,
    mask_owner_stem,
    resolve_manifest_path,
)

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom", ".dic"}
)
MANIFEST_PATH_COLUMNS = ("image", "path", "source_path")

#: Columns of the listing table handed to Ray Data.
LISTING_SCHEMA = pa.schema(
    [
        ("input_key", pa.string()),
        ("image_id", pa.string()),
        ("source_path", pa.string()),
        ("absolute_path", pa.string()),
        ("relative_path", pa.string()),
        ("size_bytes", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("problem", pa.string()),  # why it cannot be read; empty when it can
    ]
)


@dataclass(frozen=True)
class InputFile:
    """One file to segment. ``relative_path`` (POSIX) names its outputs."""

    source_path: str
    absolute_path: str
    relative_path: str
    size_bytes: int
    mtime_ns: int
    key: str = ""  # the ledger key when the source names one (a PACS: the SOP Instance UID)
    problem: str = ""  # why it cannot be read (an error row), empty when it can

    @property
    def input_key(self) -> str:
        return self.key or input_key(self.relative_path, self.size_bytes, self.mtime_ns)

    @property
    def image_id(self) -> str:
        """Stable per path (across reruns and file changes): what reports join on."""
        return hashlib.sha1(self.relative_path.encode()).hexdigest()[:16]


def input_key(relative_path: str, size_bytes: int, mtime_ns: int) -> str:
    """Content-version key of an input: path, size and modification time."""
    text = f"{relative_path}\0{size_bytes}\0{mtime_ns}"
    return hashlib.sha1(text.encode()).hexdigest()


def is_candidate(name: str) -> bool:
    """Would a file of this name be segmented (before the mask rule)?"""
    if name.startswith("."):
        return False
    suffix = PurePosixPath(name).suffix.lower()
    return suffix in IMAGE_SUFFIXES or suffix == ""


def list_inputs(
    source: str | os.PathLike[str], allow_outside_root: bool = False
) -> list[InputFile]:
    """The inputs of a folder tree (recursive, sorted) or of a CSV/Parquet manifest.

    A manifest's paths outside its own folder are refused (an error row each) unless
    ``allow_outside_root``.
    """
    path = Path(source)
    if path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        return _without_output_collisions(_manifest_inputs(path, allow_outside_root))
    if not path.is_dir():
        raise FileNotFoundError(f"--input {source}: no such folder or manifest (.csv/.parquet)")
    return _without_output_collisions(_folder_inputs(path))


#: What the outputs of an input add to its relative path.
OUTPUT_SUFFIXES = (IMAGE_SUFFIX, SEG_SUFFIX)
#: A cine loop's masks are ``<relative path>.frameNNNN.png`` (bulk.stages).
_FRAME = re.compile(r"^(?P<owner>.+)\.frame\d{4}$")


def _without_output_collisions(inputs: list[InputFile]) -> list[InputFile]:
    """Outputs mirror the input tree, so a file ``x`` (mask ``x.png``, or
    ``x.frame0000.png``… for a cine loop) and a folder ``x.png/`` or
    ``x.frame0000.png/`` holding inputs cannot both have theirs; nor can ``x`` and a
    file ``x.frame0000`` (whose mask is a frame name of ``x``'s). The second file
    becomes an error row, named, instead of failing or overwriting at write."""
    folders = {parent.as_posix() for item in inputs for parent in Path(item.relative_path).parents}
    frame_folders: dict[str, str] = {}
    for folder in folders:
        if folder.endswith(IMAGE_SUFFIX) and (found := _FRAME.match(folder[: -len(IMAGE_SUFFIX)])):
            frame_folders.setdefault(found["owner"], folder)
    files = {item.relative_path for item in inputs}
    checked = []
    for item in inputs:
        if not item.problem:
            item = replace(
                item, problem=_collision(item.relative_path, folders, frame_folders, files)
            )
        checked.append(item)
    return checked


def _collision(
    relative: str, folders: set[str], frame_folders: dict[str, str], files: set[str]
) -> str:
    """Why ``relative``'s outputs cannot be written, or ``""``."""
    clashes = [relative + s for s in OUTPUT_SUFFIXES if relative + s in folders]
    if relative in frame_folders:
        clashes.append(frame_folders[relative])
    if clashes:
        return f"its outputs would collide with the folder {clashes[0]}/ (rename one)"
    if (found := _FRAME.match(relative)) and found["owner"] in files:
        return f"its mask would take the name of a frame of {found['owner']} (rename one)"
    return ""


def listing_table(inputs: list[InputFile]) -> pa.Table:
    """The listing as an Arrow table (one row per input) for ``ray.data.from_arrow``."""
    columns: dict[str, list] = {name: [] for name in LISTING_SCHEMA.names}
    for item in inputs:
        columns["input_key"].append(item.input_key)
        columns["image_id"].append(item.image_id)
        columns["source_path"].append(item.source_path)
        columns["absolute_path"].append(item.absolute_path)
        columns["relative_path"].append(item.relative_path)
        columns["size_bytes"].append(item.size_bytes)
        columns["mtime_ns"].append(item.mtime_ns)
        columns["problem"].append(item.problem)
    return pa.table(columns, schema=LISTING_SCHEMA)


def _folder_inputs(root: Path) -> list[InputFile]:
    root = root.resolve()
    found: list[InputFile] = []

    def unreadable(error: OSError) -> None:  # os.walk skips such a folder; say so
        relative = _printable(Path(error.filename).relative_to(root).as_posix())
        found.append(_problem(relative, f"unreadable folder ({error.strerror})"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        # A link to a folder is not walked (no loops), so it is listed as what it is.
        filenames = [*filenames, *(d for d in dirnames if os.path.islink(os.path.join(dirpath, d)))]
        present = set(filenames)
        for filename in sorted(filenames):
            if not is_candidate(filename) or _is_mask_of_present_image(filename, present):
                continue
            absolute = os.path.join(dirpath, filename)
            relative = Path(absolute).relative_to(root).as_posix()
            found.append(_folder_entry(absolute, relative))
    return found


def _folder_entry(absolute: str, relative: str) -> InputFile:
    printable = _printable(relative)
    if printable != relative:
        return _problem(printable, "file name is not valid UTF-8; rename it to segment it")
    if os.path.isdir(absolute):  # only links to folders are listed among the files
        return _problem(relative, "a link to a folder (folders behind links are not walked)")
    item = _stat_input(absolute, source_path=relative, relative_path=relative)
    if item is not None:
        return item
    if os.path.islink(absolute):
        return _problem(relative, "dangling or looping symbolic link")
    return _problem(relative, "vanished while listed")


def _printable(text: str) -> str:
    """``text`` with the bytes of a non-UTF-8 name shown as ``\\xNN`` (as Arrow needs)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _problem(relative: str, problem: str) -> InputFile:
    return InputFile(relative, "", relative, -1, -1, problem=problem)


def _is_mask_of_present_image(filename: str, present: set[str]) -> bool:
    stem = mask_owner_stem(filename)
    suffix = PurePosixPath(filename).suffix
    return stem is not None and f"{stem}{suffix}" in present


def _manifest_inputs(manifest: Path, allow_outside_root: bool) -> list[InputFile]:
    base = manifest.resolve().parent
    found, seen = [], set()
    for number, given in enumerate(_manifest_paths(manifest), start=1):
        if given is None:  # the row is there, its path is not: say so rather than drop it
            found.append(_problem(f"<{manifest.name} row {number}>", "empty path cell"))
            continue
        if "\0" in given:
            found.append(_problem(given.replace("\0", "\\0"), "a NUL byte in the path"))
            continue
        if (printable := _printable(given)) != given:
            found.append(_problem(printable, "path is not valid UTF-8; save the manifest as UTF-8"))
            continue
        absolute = resolve_manifest_path(given, base)
        try:
            resolved = absolute.resolve()
        except (OSError, RuntimeError) as error:  # a link loop
            found.append(_problem(given, f"unresolvable path ({error})"))
            continue
        if resolved in seen:  # the same file listed again, perhaps spelled otherwise
            continue
        seen.add(resolved)
        try:
            relative = resolved.relative_to(base).as_posix()
        except ValueError:  # outside the manifest's folder: under _outside_root/<its path>
            if not allow_outside_root:
                found.append(
                    _problem(given, "outside the manifest's folder (--allow-outside-root)")
                )
                continue
            relative = f"_outside_root/{resolved.as_posix().lstrip('/')}"
        item = _stat_input(str(absolute), source_path=given, relative_path=relative)
        # A listed file that is missing is still an input: it gets an error row.
        found.append(item or InputFile(given, str(absolute), relative, -1, -1))
    return found


def _manifest_paths(manifest: Path) -> list[str | None]:
    """The image path of each manifest row (discovery's reader; the first path-like
    column), ``None`` where the cell is empty."""
    names, rows = manifest_table(manifest, undecodable="surrogateescape")
    column = next((c for c in MANIFEST_PATH_COLUMNS if c in names), None)
    if column is None:
        raise ValueError(
            f"manifest {manifest} needs one of the columns {list(MANIFEST_PATH_COLUMNS)}; "
            f"it has {list(names)}"
        )
    return [manifest_cell(row.get(column)) for row in rows]


def _stat_input(absolute: str, *, source_path: str, relative_path: str) -> InputFile | None:
    try:
        info = os.stat(absolute)
    except OSError:
        return None
    return InputFile(source_path, absolute, relative_path, info.st_size, info.st_mtime_ns)
