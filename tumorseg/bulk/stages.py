"""The Ray Data stages of bulk segmentation: decode → first stage → FCN → write.

Every row carries its own state: ``status`` is ``"ok"`` until a stage fails on that
image, which then records ``stage``, ``error_type`` and ``message`` and lets the row
pass untouched through the later stages to the writer, which files it as an error
row. A failure is caught per image (a batch that raises is retried image by image),
so one bad input never costs the others their results.

The network stages are actor classes that hold a :class:`~tumorseg.inference.Segmenter`
and call its three stages (``first_stage``, ``fcn_stage``, ``finish``): the method is
the library's, exactly as in ``Segmenter.segment_batch`` and the Serve app. Images
travel between stages as raw ``uint8`` bytes plus their shape, the decisions as their
records, the results as their records (JSON) and the masks as packed bits: the writer
encodes the masks and builds the DICOM SEG from the arrays.

A row is one input, and an input is one or more frames: a cine loop stays one row
from decoding to writing, so that its frames end in one SEG and one committed part
(exactly once, as a unit). The networks take the frames of a batch's rows
``batch_size`` at a time, so a long loop is not one huge network call.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from tumorseg.bulk.config import SegmentJobConfig
from tumorseg.bulk.dicomweb import (
    DicomWebQuery,
    StoreError,
    client_for,
    header_bytes,
    is_dicomweb,
    retrieve_bytes,
    store,
)
from tumorseg.bulk.ledger import (
    DICOM_SEG_DIR,
    ERROR_SCHEMA,
    ERRORS_DIR,
    IMAGE_SUFFIX,
    MASKS_DIR,
    OVERLAYS_DIR,
    RESULT_SCHEMA,
    RESULTS_DIR,
    SEG_SUFFIX,
    commit_part,
    output_path,
    part_name,
    write_atomic,
)
from tumorseg.bulk.listing import LISTING_SCHEMA
from tumorseg.config import ImageLimits, SegmenterConfig
from tumorseg.data.records import make_image_id
from tumorseg.errors import InvalidImageError
from tumorseg.inference.result import versions_of_record
from tumorseg.io.dicom import is_dicom_file
from tumorseg.io.encode import png_bytes

if TYPE_CHECKING:  # the writer and decoder need no torch: keep it out of this module
    from tumorseg.inference.models import ModelSet

OK = "ok"
ERROR = "error"

#: Per-row state added to the listing's columns, with the value of "not set yet".
STATE_DEFAULTS: dict[str, Any] = {
    "status": OK,
    "stage": "",
    "error_type": "",
    "message": "",
    "gray": b"",  # frames × height × width uint8
    "frames": 0,  # 1 for a still image; a cine loop's frame count
    "dicom_header": b"",  # a PACS instance's header (no pixels), for its SEG
    "spacing": "",  # tumorseg.io.spacing.Spacing.to_json() of a DICOM that states one
    "height": -1,
    "width": -1,
    "decisions": "",  # JSON list, per frame: the first stage's Decision.to_record()
    "graynet_maps": b"",  # float32 maps of the frames waiting for the FCN, in frame order
    "results": "",  # JSON list, per frame: SegmentationResult.to_record(), null until done
    "mask_bits": b"",  # every frame's mask, np.packbits of its pixels, frame after frame
    "overlay_png": b"",  # the frames' overlay PNGs one after another, when written
    "overlay_sizes": "",  # JSON list: each frame's overlay PNG size in overlay_png
    "elapsed_s": 0.0,
}
ROW_COLUMNS = [*LISTING_SCHEMA.names, *STATE_DEFAULTS]

Row = dict[str, Any]


def _rows(batch: pd.DataFrame) -> list[Row]:
    rows = batch.to_dict("records")
    for row in rows:
        for column, default in STATE_DEFAULTS.items():
            row.setdefault(column, default)
    return rows


def _frame(rows: list[Row]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=ROW_COLUMNS)


def _fail(row: Row, stage: str, error: BaseException) -> None:
    row.update(
        status=ERROR, stage=stage, error_type=type(error).__name__, message=str(error), gray=b""
    )


def frames_of(row: Row) -> np.ndarray:
    """The row's frames, frames × height × width ``uint8``."""
    shape = (int(row["frames"]), int(row["height"]), int(row["width"]))
    return np.frombuffer(row["gray"], dtype=np.uint8).reshape(shape)


def is_cine(row: Row) -> bool:
    return int(row["frames"]) > 1


# --------------------------------------------------------------------------- decode


def decode_batch(
    batch: pd.DataFrame, limits: ImageLimits, dicomweb: DicomWebQuery | None = None
) -> pd.DataFrame:
    """Read (a file, or a PACS instance over WADO-RS) and decode each input to its
    ``uint8`` gray frames; undecodable inputs become errors."""
    from tumorseg.io import load_frames
    from tumorseg.io.spacing import spacing_of

    rows = _rows(batch)
    for row in rows:
        start = time.perf_counter()
        if row["problem"]:  # listed, but not readable as it stands
            _fail(row, "list", InvalidImageError(row["source_path"], row["problem"]))
            continue
        source: str | bytes = row["absolute_path"]
        if dicomweb is not None and is_dicomweb(source):
            try:
                source = retrieve_bytes(client_for(dicomweb), source)
            except Exception as error:  # the PACS is unreachable: a rerun retries it
                _fail(row, "retrieve", error)
                row["elapsed_s"] += time.perf_counter() - start
                continue
        try:
            if isinstance(source, bytes):
                row["dicom_header"] = header_bytes(source)
            frames = np.stack(load_frames(source, limits=limits, name=row["source_path"]))
            spacing = spacing_of(row["dicom_header"] if isinstance(source, bytes) else source)
            row["spacing"] = spacing.to_json() if spacing is not None else ""
        except Exception as error:  # every input error is typed, but nothing may stop the job
            _fail(row, "decode", error)
        else:
            count, height, width = frames.shape
            row.update(gray=frames.tobytes(), frames=count, height=height, width=width)
        row["elapsed_s"] += time.perf_counter() - start
    return _frame(rows)


# --------------------------------------------------------------------------- networks


@dataclass(frozen=True)
class SharedModels:
    """The job's model set, put in the object store once by the driver.

    The driver resolves the alias once, so every actor, restarted ones included,
    runs the same versions even if the alias moves mid-job, and no actor queries the
    registry. The set travels as a reference that each actor fetches, instead of a
    copy in every actor's constructor arguments.
    """

    ref: Any  # ray.ObjectRef of a ModelSet

    def get(self) -> ModelSet:
        import ray

        return ray.get(self.ref)


class SegmenterStage:
    """An actor holding the job's model set (see :class:`SharedModels`)."""

    def __init__(
        self, config: SegmentJobConfig, models: SharedModels, segmenter_config: SegmenterConfig
    ) -> None:
        import torch

        from tumorseg.inference import Segmenter
        from tumorseg.inference.tensors import select_device

        torch.set_num_threads(config.torch_threads or max(1, math.ceil(config.cpus_per_actor)))
        # The actor's GPU when it was given one.
        self.segmenter = Segmenter(models.get().to(select_device(None)), segmenter_config)
        self.write_overlays = config.write_overlays
        self.frames_per_call = config.batch_size

    def _apply(
        self,
        rows: list[Row],
        stage: str,
        selected: Callable[[Row], bool],
        run: Callable[[list[Row]], None],
    ) -> None:
        """``run`` on the selected rows at once; if that raises, row by row."""
        chosen = [row for row in rows if row["status"] == OK and selected(row)]
        if not chosen:
            return
        start = time.perf_counter()
        try:
            run(chosen)
        except Exception:
            for row in chosen:
                try:
                    run([row])
                except Exception as error:
                    _fail(row, stage, error)
            return
        share = (time.perf_counter() - start) / len(chosen)
        for row in chosen:
            row["elapsed_s"] += share

    def _in_calls(self, items: list[Any], call: Callable[[list[Any]], list[Any]]) -> list[Any]:
        """``call`` over ``items`` ``frames_per_call`` at a time, outputs in order."""
        size = max(1, self.frames_per_call)
        return [
            out for start in range(0, len(items), size) for out in call(items[start : start + size])
        ]


class FirstStage(SegmenterStage):
    """Classifier and binarizer + gray net on every frame, then presence and route.

    Frames that need no FCN are finished here; the others keep the gray net's map
    (the FCN's first guide and half of a soft fusion) for :class:`FCNStage`.
    """

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        rows = _rows(batch)
        self._apply(rows, "graynet", lambda row: True, self._first_stage)
        return _frame(rows)

    def _first_stage(self, rows: list[Row]) -> None:
        frames = [frames_of(row) for row in rows]
        grays = [gray for stack in frames for gray in stack]
        firsts = iter(self._in_calls(grays, self.segmenter.first_stage))
        for row, stack in zip(rows, frames, strict=True):
            outputs = [next(firsts) for _ in stack]
            row["decisions"] = json.dumps([first.decision.to_record() for first in outputs])
            results: list[Any] = [None] * len(stack)  # SegmentationResult, once finished
            pending = [first.graynet_map for first in outputs if first.needs_fcn]
            for index, (gray, first) in enumerate(zip(stack, outputs, strict=True)):
                if not first.needs_fcn:
                    results[index] = self._result(row, gray, first, None)
            row["graynet_maps"] = b"".join(m.astype(np.float32).tobytes() for m in pending)
            self._store(row, stack, results)

    def _result(self, row: Row, gray: np.ndarray, first, fcn_map: np.ndarray | None):
        from tumorseg.io.spacing import Spacing

        result = self.segmenter.finish(gray, first, fcn_map)
        if (spacing := Spacing.from_json(row["spacing"])) is not None:
            result.pixel_spacing_mm = spacing.at(result.bbox)
        return result

    def _store(self, row: Row, stack: np.ndarray, results: list) -> None:
        """Keep the frames finished now beside those finished before; once every frame
        is done, let go of the pixels (the writer needs neither gray nor maps)."""
        count, height, width = stack.shape
        records = json.loads(row["results"]) if row["results"] else [None] * count
        per_frame = _packed_size(height, width)
        masks = bytearray(row["mask_bits"] or bytes(per_frame * count))
        sizes = json.loads(row["overlay_sizes"]) if row["overlay_sizes"] else [0] * count
        overlays = _split(row["overlay_png"], sizes)
        for index, result in enumerate(results):
            if result is None:
                continue
            records[index] = result.to_record()
            masks[index * per_frame : (index + 1) * per_frame] = np.packbits(result.mask).tobytes()
            if self.write_overlays:
                overlays[index] = _overlay_png(stack[index], result.mask)
        row.update(
            results=json.dumps(records),
            mask_bits=bytes(masks),
            overlay_png=b"".join(overlays),
            overlay_sizes=json.dumps([len(png) for png in overlays]),
        )
        if all(record is not None for record in records):
            row.update(gray=b"", graynet_maps=b"")


def _packed_size(height: int, width: int) -> int:
    return (height * width + 7) // 8


def _split(blob: bytes, sizes: list[int]) -> list[bytes]:
    ends = itertools.accumulate(sizes, initial=0)
    return [blob[start:end] for start, end in itertools.pairwise(ends)]


class FCNStage(FirstStage):
    """The multi-scale FCN on the frames routed to it; other rows pass by."""

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        rows = _rows(batch)
        self._apply(rows, "fcn", lambda row: bool(row["graynet_maps"]), self._segment)
        return _frame(rows)

    def _segment(self, rows: list[Row]) -> None:
        from tumorseg.inference import FirstStageOutput
        from tumorseg.inference.fusion import Decision

        work = []  # (row, frame index, gray, first) of every waiting frame
        for row in rows:
            stack = frames_of(row)
            waiting = [i for i, r in enumerate(json.loads(row["results"])) if r is None]
            maps = np.frombuffer(row["graynet_maps"], np.float32).reshape(
                len(waiting), *stack.shape[1:]
            )
            decisions = json.loads(row["decisions"])
            for index, graynet_map in zip(waiting, maps, strict=True):
                first = FirstStageOutput(Decision.from_record(decisions[index]), graynet_map)
                work.append((row, index, stack[index], first))
        fcn_maps = self._in_calls(
            work, lambda part: self.segmenter.fcn_stage([w[2] for w in part], [w[3] for w in part])
        )
        finished: dict[int, list] = {}
        for (row, index, gray, first), fcn_map in zip(work, fcn_maps, strict=True):
            finished.setdefault(id(row), [None] * int(row["frames"]))[index] = self._result(
                row, gray, first, fcn_map
            )
        for row in rows:
            self._store(row, frames_of(row), finished[id(row)])


def mask_of(row: Row, frame: int = 0) -> np.ndarray:
    """A finished frame's mask, back from its packed bits."""
    height, width = int(row["height"]), int(row["width"])
    per_frame = _packed_size(height, width)
    packed = np.frombuffer(row["mask_bits"], np.uint8)[frame * per_frame : (frame + 1) * per_frame]
    return np.unpackbits(packed, count=height * width).reshape(height, width).astype(bool)


def masks_of(row: Row) -> np.ndarray:
    """Every frame's mask, frames × height × width."""
    return np.stack([mask_of(row, frame) for frame in range(int(row["frames"]))])


def _overlay_png(gray: np.ndarray, mask: np.ndarray) -> bytes:
    from tumorseg.tracking.plots import overlay_array

    return png_bytes(overlay_array(gray, None, mask))


# --------------------------------------------------------------------------- write


class WriteStage:
    """The writer as a long-lived actor: a task per batch would start (and import into)
    a fresh worker process whenever Ray has reaped the idle ones, which on a small
    machine costs more than the writing."""

    def __init__(
        self, output: str, dicom_seg: bool = False, dicomweb: DicomWebQuery | None = None
    ) -> None:
        self.output, self.dicom_seg, self.dicomweb = output, dicom_seg, dicomweb

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        return write_batch(batch, self.output, self.dicom_seg, self.dicomweb)


def write_batch(
    batch: pd.DataFrame,
    output: str,
    dicom_seg: bool = False,
    dicomweb: DicomWebQuery | None = None,
) -> pd.DataFrame:
    """Store each DICOM input's SEG in the PACS (``dicomweb.store_seg``), write masks
    (and, with ``dicom_seg``, the SEG files), then commit the batch's results part,
    then its errors part. A result is committed only after its SEG was stored.

    An input gets a result row per frame (one for a still image) or one error row.
    Returns one small row per committed row (key, outcome, route, seconds) for the
    driver's summary.
    """
    rows = _rows(batch)
    finished_at = datetime.now(UTC)
    results: list[Row] = []
    errors: list[Row] = []
    for row in rows:
        if row["status"] == OK and not _all_finished(row):
            _fail(row, "route", RuntimeError("a frame was left without a segmentation"))
        if row["status"] == OK:
            try:
                results.extend(_write_outputs(row, output, dicom_seg, dicomweb, finished_at))
            except StoreError as error:
                _fail(row, "store", error)
            except Exception as error:  # e.g. a full disk: an error row, not a dead job
                _fail(row, "write", error)
        if row["status"] == ERROR:
            errors.append(_error_record(row, finished_at))
    names = part_name(row["input_key"] for row in rows)
    if results:
        commit_part(pa.Table.from_pylist(results, schema=RESULT_SCHEMA), output, RESULTS_DIR, names)
    if errors:
        commit_part(pa.Table.from_pylist(errors, schema=ERROR_SCHEMA), output, ERRORS_DIR, names)
    return pd.DataFrame(
        {
            "input_key": [r["input_key"] for r in results] + [r["input_key"] for r in errors],
            "status": [OK] * len(results) + [ERROR] * len(errors),
            "route": [r["route"] for r in results] + [""] * len(errors),
            "elapsed_s": [r["elapsed_s"] for r in results] + [0.0] * len(errors),
        }
    )


def _all_finished(row: Row) -> bool:
    records = json.loads(row["results"]) if row["results"] else []
    return bool(records) and all(record is not None for record in records)


def _write_outputs(
    row: Row,
    output: str,
    dicom_seg: bool,
    dicomweb: DicomWebQuery | None,
    finished_at: datetime,
) -> list[Row]:
    """Every output of one input, and its result rows (one per frame)."""
    # The SEG is built (and stored) first: if that fails, nothing is written.
    to_pacs = dicomweb is not None and dicomweb.store_seg and bool(row["dicom_header"])
    is_dicom = bool(row["dicom_header"]) or is_dicom_file(row["absolute_path"])
    seg = _dicom_seg(row) if (dicom_seg or to_pacs) and is_dicom else None
    if to_pacs and seg is not None:
        store(client_for(dicomweb), seg)
    seg_path = None
    if dicom_seg and seg is not None:
        from tumorseg.io.dicom_seg import encode_dataset

        seg_file = output_path(output, DICOM_SEG_DIR, row["relative_path"], SEG_SUFFIX)
        write_atomic(seg_file, encode_dataset(seg))
        seg_path = str(seg_file.relative_to(output))
    records = json.loads(row["results"])
    sizes = json.loads(row["overlay_sizes"]) if row["overlay_sizes"] else [0] * len(records)
    overlays = _split(row["overlay_png"], sizes)
    cine = is_cine(row)
    written = []
    for frame, (record, overlay) in enumerate(zip(records, overlays, strict=True)):
        suffix = f".frame{frame:04d}{IMAGE_SUFFIX}" if cine else IMAGE_SUFFIX
        mask_file = output_path(output, MASKS_DIR, row["relative_path"], suffix)
        write_atomic(mask_file, png_bytes(mask_of(row, frame)))
        overlay_path = None
        if overlay:
            overlay_file = output_path(output, OVERLAYS_DIR, row["relative_path"], suffix)
            write_atomic(overlay_file, overlay)
            overlay_path = str(overlay_file.relative_to(output))
        written.append(
            {
                **_file_record(row, finished_at),
                **record,
                "image_id": make_image_id(row["image_id"], frame if cine else None),
                "frame": frame if cine else None,
                "mask_path": str(mask_file.relative_to(output)),
                "overlay_path": overlay_path,
                "dicom_seg_path": seg_path,
                "elapsed_s": float(row["elapsed_s"]) / len(records),
            }
        )
    return written


def _dicom_seg(row: Row):
    from tumorseg.io.dicom_seg import source_segmentation

    versions = versions_of_record(json.loads(row["results"])[0])
    source = row["dicom_header"] or row["absolute_path"]
    return source_segmentation(source, masks_of(row), versions, row["source_path"])


def _file_record(row: Row, finished_at: datetime) -> Row:
    return {
        "image_id": row["image_id"],
        "input_key": row["input_key"],
        "source_path": row["source_path"],
        "relative_path": row["relative_path"],
        "size_bytes": int(row["size_bytes"]),
        "mtime_ns": int(row["mtime_ns"]),
        "finished_at": finished_at,
    }


def _error_record(row: Row, finished_at: datetime) -> Row:
    record = _file_record(row, finished_at)
    record.update(stage=row["stage"], error_type=row["error_type"], message=row["message"])
    return record
