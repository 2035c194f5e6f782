"""The Ray Data stages of bulk segmentation: decode → first stage → FCN → write.

Every row carries its own state: ``status`` is ``"ok"`` until a stage fails on that
image, which then records ``stage``, ``error_type`` and ``message`` and lets the row
pass untouched through the later stages to the writer, which files it as an error
row. A failure is caught per image (a batch that raises is retried image by image),
so one bad input never costs the others their results.

The network stages are actor classes that hold a :class:`~tumorseg.inference.Segmenter`
and call its three stages (``first_stage``, ``fcn_stage``, ``finish``): the method is
the library's, exactly as in ``Segmenter.segment_batch`` and the Serve app. Images
travel between stages as raw ``uint8`` bytes plus their shape, the decision as its
record, the result as its record (JSON) and its mask as packed bits: the writer
encodes the mask and builds the DICOM SEG from the array.
"""

from __future__ import annotations

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
    MASKS_DIR,
    OVERLAYS_DIR,
    RESULT_SCHEMA,
    RESULTS_DIR,
    commit_part,
    output_path,
    part_name,
    write_atomic,
)
from tumorseg.bulk.listing import LISTING_SCHEMA
from tumorseg.config import ImageLimits, SegmenterConfig
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
    "gray": b"",
    "dicom_header": b"",  # a PACS instance's header (no pixels), for its SEG
    "spacing": "",  # tumorseg.io.spacing.Spacing.to_json() of a DICOM that states one
    "height": -1,
    "width": -1,
    # the first stage's Decision (Decision.to_record)
    "route": "",
    "route_confidence": math.nan,
    "p_heterogeneous": math.nan,
    "tumor_present": False,
    "tumor_probability": math.nan,
    "graynet_map": b"",
    "result": "",  # SegmentationResult.to_record() as JSON
    "mask_bits": b"",  # the mask, np.packbits of its pixels
    "overlay_png": b"",
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


def gray_of(row: Row) -> np.ndarray:
    return np.frombuffer(row["gray"], dtype=np.uint8).reshape(row["height"], row["width"])


# --------------------------------------------------------------------------- decode


def decode_batch(
    batch: pd.DataFrame, limits: ImageLimits, dicomweb: DicomWebQuery | None = None
) -> pd.DataFrame:
    """Read (a file, or a PACS instance over WADO-RS) and decode each input to 2-D
    ``uint8`` gray; undecodable inputs become errors."""
    from tumorseg.io import load_image
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
            gray = load_image(source, limits=limits, name=row["source_path"])
            spacing = spacing_of(row["dicom_header"] if isinstance(source, bytes) else source)
            row["spacing"] = spacing.to_json() if spacing is not None else ""
        except Exception as error:  # every input error is typed, but nothing may stop the job
            _fail(row, "decode", error)
        else:
            row.update(gray=gray.tobytes(), height=gray.shape[0], width=gray.shape[1])
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

    def _apply(
        self,
        rows: list[Row],
        stage: str,
        selected: Callable[[Row], bool],
        run: Callable[[list[Row]], None],
    ) -> None:
        """``run`` on the selected rows at once; if that raises, image by image."""
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


class FirstStage(SegmenterStage):
    """Classifier and binarizer + gray net on every image, then presence and route.

    Images that need no FCN are finished here; the others keep the gray net's map
    (the FCN's first guide and half of a soft fusion) for :class:`FCNStage`.
    """

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        rows = _rows(batch)
        self._apply(rows, "graynet", lambda row: True, self._first_stage)
        return _frame(rows)

    def _first_stage(self, rows: list[Row]) -> None:
        grays = [gray_of(row) for row in rows]
        firsts = self.segmenter.first_stage(grays)
        for row, gray, first in zip(rows, grays, firsts, strict=True):
            row.update(first.decision.to_record())
            if first.needs_fcn:
                row["graynet_map"] = first.graynet_map.astype(np.float32).tobytes()
            else:
                self._finish(row, gray, first, None)

    def _finish(self, row: Row, gray: np.ndarray, first, fcn_map: np.ndarray | None) -> None:
        from tumorseg.io.spacing import Spacing

        result = self.segmenter.finish(gray, first, fcn_map)
        if (spacing := Spacing.from_json(row["spacing"])) is not None:
            result.pixel_spacing_mm = spacing.at(result.bbox)
        row.update(
            result=json.dumps(result.to_record()),
            mask_bits=np.packbits(result.mask).tobytes(),
            overlay_png=_overlay_png(gray, result.mask) if self.write_overlays else b"",
            gray=b"",  # done with the pixels: keep the rows light for the writer
            graynet_map=b"",
        )


class FCNStage(FirstStage):
    """The multi-scale FCN on the images routed to it; other rows pass by."""

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        rows = _rows(batch)
        self._apply(rows, "fcn", lambda row: bool(row["graynet_map"]), self._segment)
        return _frame(rows)

    def _segment(self, rows: list[Row]) -> None:
        from tumorseg.inference import FirstStageOutput
        from tumorseg.inference.fusion import Decision

        grays = [gray_of(row) for row in rows]
        firsts = [
            FirstStageOutput(
                Decision.from_record(row),
                np.frombuffer(row["graynet_map"], np.float32).reshape(gray.shape),
            )
            for row, gray in zip(rows, grays, strict=True)
        ]
        fcn_maps = self.segmenter.fcn_stage(grays, firsts)
        for row, gray, first, fcn_map in zip(rows, grays, firsts, fcn_maps, strict=True):
            self._finish(row, gray, first, fcn_map)


def mask_of(row: Row) -> np.ndarray:
    """The finished mask of a row, back from its packed bits."""
    height, width = int(row["height"]), int(row["width"])
    bits = np.unpackbits(np.frombuffer(row["mask_bits"], np.uint8), count=height * width)
    return bits.reshape(height, width).astype(bool)


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

    Returns one small row per input (key, outcome, route, seconds) for the driver's
    summary.
    """
    rows = _rows(batch)
    finished_at = datetime.now(UTC)
    results, errors = [], []
    for row in rows:
        if row["status"] == OK and not row["result"]:
            _fail(row, "route", RuntimeError(f"no branch segmented route {row['route']!r}"))
        if row["status"] == OK:
            try:
                results.append(_write_outputs(row, output, dicom_seg, dicomweb))
            except StoreError as error:
                _fail(row, "store", error)
            except Exception as error:  # e.g. a full disk: an error row, not a dead job
                _fail(row, "write", error)
        if row["status"] == ERROR:
            errors.append(row)
    names = part_name(row["input_key"] for row in rows)
    if results:
        table = pa.Table.from_pylist(
            [_result_record(row, finished_at) for row in results], schema=RESULT_SCHEMA
        )
        commit_part(table, output, RESULTS_DIR, names)
    if errors:
        table = pa.Table.from_pylist(
            [_error_record(row, finished_at) for row in errors], schema=ERROR_SCHEMA
        )
        commit_part(table, output, ERRORS_DIR, names)
    return pd.DataFrame(
        {
            "input_key": [row["input_key"] for row in rows],
            "status": [row["status"] for row in rows],
            "route": [row["route"] for row in rows],
            "elapsed_s": [row["elapsed_s"] for row in rows],
        }
    )


def _write_outputs(row: Row, output: str, dicom_seg: bool, dicomweb: DicomWebQuery | None) -> Row:
    # The SEG is built (and stored) first: if that fails, nothing is written.
    to_pacs = dicomweb is not None and dicomweb.store_seg and bool(row["dicom_header"])
    is_dicom = bool(row["dicom_header"]) or is_dicom_file(row["absolute_path"])
    seg = _dicom_seg(row) if (dicom_seg or to_pacs) and is_dicom else None
    if to_pacs and seg is not None:
        store(client_for(dicomweb), seg)
    mask_path = output_path(output, MASKS_DIR, row["relative_path"])
    write_atomic(mask_path, png_bytes(mask_of(row)))
    row["mask_path"] = str(mask_path.relative_to(output))
    row["overlay_path"] = ""
    if row["overlay_png"]:
        overlay_path = output_path(output, OVERLAYS_DIR, row["relative_path"])
        write_atomic(overlay_path, row["overlay_png"])
        row["overlay_path"] = str(overlay_path.relative_to(output))
    row["dicom_seg_path"] = ""
    if dicom_seg and seg is not None:
        from tumorseg.io.dicom_seg import encode_dataset

        seg_path = output_path(output, DICOM_SEG_DIR, row["relative_path"], ".seg.dcm")
        write_atomic(seg_path, encode_dataset(seg))
        row["dicom_seg_path"] = str(seg_path.relative_to(output))
    return row


def _dicom_seg(row: Row):
    from tumorseg.io.dicom_seg import source_segmentation

    versions = versions_of_record(json.loads(row["result"]))
    source = row["dicom_header"] or row["absolute_path"]
    return source_segmentation(source, mask_of(row), versions, row["source_path"])


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


def _result_record(row: Row, finished_at: datetime) -> Row:
    return {
        **_file_record(row, finished_at),
        **json.loads(row["result"]),
        "mask_path": row["mask_path"],
        "overlay_path": row["overlay_path"] or None,
        "dicom_seg_path": row["dicom_seg_path"] or None,
        "elapsed_s": float(row["elapsed_s"]),
    }


def _error_record(row: Row, finished_at: datetime) -> Row:
    record = _file_record(row, finished_at)
    record.update(stage=row["stage"], error_type=row["error_type"], message=row["message"])
    return record
