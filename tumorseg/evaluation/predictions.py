"""Predict a split once, save every network's output, and read it back.

The nnU-Net way of validating: one pass over the images writes, per image, the
probability maps of the gray net, of the multi-scale FCN (guided by the gray net's
map and by its own coarse seed), of the baseline, the classifier's probabilities,
the first stage's evidence and the ground truth. Every later choice (presence,
route, fusion, post-processing: :mod:`tumorseg.evaluation.policy`) and every table
(:mod:`tumorseg.evaluation.evaluate`) is computed from these files, by code.

Layout of a predictions folder::

    DIR/cases.parquet         one row per image (CASE_FIELDS), error rows included
    DIR/maps/<case_id>.npz    uint8 maps (probability × 255) at the image's size, and
                              the ground truth (bit-packed)

Maps are quantised to 1/255: a mask made from them differs from the live pipeline's
only where a probability lies within 1/510 of the threshold.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from tumorseg.config import NetworkConfig, TriageConfig
from tumorseg.data.records import ImageRecord
from tumorseg.errors import InvalidImageError
from tumorseg.evaluation.examples import Example, MissingTruthError, load_example
from tumorseg.inference.baseline import segment_full_image
from tumorseg.inference.fusion import Evidence, first_stage_evidence
from tumorseg.inference.segmenter import Segmenter
from tumorseg.preprocessing.heterogeneity import triage_class

log = logging.getLogger("tumorseg.evaluation")

CASES_FILE = "cases.parquet"
MAPS_DIR = "maps"
#: The saved maps: the gray net's, the FCN's under each first-pass guide, the baseline's.
MAP_NAMES = ("graynet", "fcn_graynet", "fcn_own", "baseline")


@dataclass
class Case:
    """One image's saved predictions, without its maps (:meth:`PredictionSet.maps`)."""

    case_id: str
    image_id: str
    path: str
    mask_paths: tuple[str, ...] = ()
    frame: int | None = None
    label: str | None = None
    patient_id: str | None = None
    expert_class: str | None = None
    height: int | None = None
    width: int | None = None
    has_tumor: bool | None = None
    truth_area_px: int | None = None
    pixel_spacing_row_mm: float | None = None  # where the source states its pixel size
    pixel_spacing_col_mm: float | None = None
    true_class: str | None = None
    true_class_source: str | None = None  # "expert" or "score"
    truth_score: float | None = None
    p_normal: float | None = None
    p_homogeneous: float | None = None
    p_heterogeneous: float | None = None
    map_peak: float | None = None
    map_score: float | None = None
    seconds_first_stage: float | None = None  # classifier + gray net, per image
    seconds_fcn: float | None = None  # the FCN guided by the gray net, per image
    seconds_fcn_own: float | None = None  # the FCN with its own coarse seed, per image
    seconds_baseline: float | None = None
    error: str | None = None

    @property
    def pixel_spacing_mm(self) -> tuple[float, float] | None:
        if self.pixel_spacing_row_mm is None or self.pixel_spacing_col_mm is None:
            return None
        return self.pixel_spacing_row_mm, self.pixel_spacing_col_mm

    @property
    def evidence(self) -> Evidence:
        probabilities = (self.p_normal, self.p_homogeneous, self.p_heterogeneous)
        return Evidence(tuple(float(p) for p in probabilities), self.map_peak, self.map_score)

    def record(self) -> ImageRecord:
        return ImageRecord(
            image_id=self.image_id,
            path=self.path,
            mask_paths=self.mask_paths,
            label=self.label,
            patient_id=self.patient_id,
            frame=self.frame,
            expert_class=self.expert_class,
        )


CASE_FIELDS = tuple(f.name for f in dataclasses.fields(Case))


class PredictionSet:
    """The cases of a predictions folder and lazy access to their maps."""

    def __init__(self, directory: str | Path, cases: Sequence[Case]) -> None:
        self.directory = Path(directory)
        self.cases = list(cases)

    @property
    def good(self) -> list[Case]:
        return [case for case in self.cases if case.error is None]

    def load(self, case: Case) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The case's ``float32`` maps in [0, 1] by :data:`MAP_NAMES` (``baseline`` may be
        absent) and its boolean ground truth, from one read of its file."""
        with np.load(self.directory / MAPS_DIR / f"{case.case_id}.npz") as saved:
            maps = {
                name: saved[name].astype(np.float32) / 255.0 for name in MAP_NAMES if name in saved
            }
            bits = np.unpackbits(saved["truth"], count=case.height * case.width)
        return maps, bits.reshape(case.height, case.width).astype(bool)

    def maps(self, case: Case) -> dict[str, np.ndarray]:
        return self.load(case)[0]

    def truth(self, case: Case) -> np.ndarray:
        return self.load(case)[1]


def case_id(record: ImageRecord) -> str:
    return record.image_id if record.frame is None else f"{record.image_id}-f{record.frame}"


def predict_split(
    records: Iterable[ImageRecord],
    segmenter: Segmenter,
    directory: str | Path,
    baseline: nn.Module | None = None,
    *,
    baseline_networks: NetworkConfig | None = None,
    triage: TriageConfig | None = None,
    batch_size: int = 8,
    log_every: int = 50,
) -> PredictionSet:
    """Run every network once over ``records`` and save the outputs under ``directory``.

    Unreadable images and records without ground truth become error cases; an image
    the networks reject does not sink its batch-mates (they are retried one by one).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    directory = Path(directory)
    (directory / MAPS_DIR).mkdir(parents=True, exist_ok=True)
    records = list(records)
    triage = triage or segmenter.config.triage
    cases: list[Case] = []
    start, next_log = time.perf_counter(), log_every
    for offset in range(0, len(records), batch_size):
        batch = records[offset : offset + batch_size]
        cases.extend(
            _predict_batch(batch, segmenter, baseline, baseline_networks, triage, directory)
        )
        if log_every and (len(cases) >= next_log or len(cases) == len(records)):
            elapsed = time.perf_counter() - start
            log.info(
                "predicted %d/%d images (%.2f images/s, %d errors)",
                len(cases),
                len(records),
                len(cases) / max(elapsed, 1e-9),
                sum(case.error is not None for case in cases),
            )
            next_log = (len(cases) // log_every + 1) * log_every
    write_cases(cases, directory / CASES_FILE)
    return PredictionSet(directory, cases)


def load_predictions(directory: str | Path) -> PredictionSet:
    """A :class:`PredictionSet` written by :func:`predict_split`."""
    import pyarrow.parquet as pq

    directory = Path(directory)
    path = directory / CASES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory} holds no predictions ({CASES_FILE} missing)")
    cases = []
    for row in pq.read_table(path).to_pylist():
        row["mask_paths"] = tuple(row.get("mask_paths") or ())
        cases.append(Case(**{name: row.get(name) for name in CASE_FIELDS}))
    return PredictionSet(directory, cases)


def write_cases(cases: Sequence[Case], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {
        str: pa.string(),
        int: pa.int64(),
        float: pa.float64(),
        bool: pa.bool_(),
        tuple: pa.list_(pa.string()),
    }
    hints = {f.name: f.type for f in dataclasses.fields(Case)}
    schema = pa.schema([(name, types[_base_type(hints[name])]) for name in CASE_FIELDS])
    columns = {name: [_plain(getattr(case, name)) for case in cases] for name in CASE_FIELDS}
    pq.write_table(pa.Table.from_pydict(columns, schema=schema), path)


def _base_type(hint: Any) -> type:
    text = str(hint)
    for name, kind in (("tuple", tuple), ("bool", bool), ("int", int), ("float", float)):
        if text.startswith(name):
            return kind
    return str


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# --------------------------------------------------------------------------- predicting


def _predict_batch(
    batch: Sequence[ImageRecord],
    segmenter: Segmenter,
    baseline: nn.Module | None,
    baseline_networks: NetworkConfig | None,
    triage: TriageConfig,
    directory: Path,
) -> list[Case]:
    cases: list[Case | None] = [None] * len(batch)
    loaded: list[tuple[int, Example]] = []
    for i, record in enumerate(batch):
        try:
            loaded.append((i, load_example(record, segmenter.config.limits)))
        except (InvalidImageError, MissingTruthError) as error:
            log.warning("error case for %s: %s", record.path, error)
            cases[i] = _error_case(record, str(error))
    examples = [example for _, example in loaded]
    try:
        predicted = _predict_examples(examples, segmenter, baseline, baseline_networks)
    except Exception:  # one image the networks reject must not sink its batch-mates
        log.warning("batch of %d failed; retrying image by image", len(examples), exc_info=True)
        predicted = [_predict_one(e, segmenter, baseline, baseline_networks) for e in examples]
    for (i, example), outcome in zip(loaded, predicted, strict=True):
        if isinstance(outcome, str):
            cases[i] = _error_case(example.record, outcome)
        else:
            cases[i] = _save_case(example, *outcome, triage, directory)
    return cases  # type: ignore[return-value]


def _predict_one(example, segmenter, baseline, baseline_networks):
    try:
        return _predict_examples([example], segmenter, baseline, baseline_networks)[0]
    except Exception as error:
        log.exception("prediction failed for %s", example.record.path)
        return f"{example.record.path}: prediction failed ({type(error).__name__}: {error})"


def _predict_examples(
    examples: Sequence[Example],
    segmenter: Segmenter,
    baseline: nn.Module | None,
    baseline_networks: NetworkConfig | None,
) -> list[tuple[dict[str, np.ndarray], Evidence, dict[str, float]]]:
    """Every network on every example, through the segmenter's own stages."""
    if not examples:
        return []
    grays = [example.gray for example in examples]
    n = len(grays)
    start = time.perf_counter()
    classes = segmenter.class_probabilities(grays)
    graynet = segmenter.graynet_probabilities(grays)
    first = (time.perf_counter() - start) / n
    start = time.perf_counter()
    fcn_graynet = _with_guide(segmenter, "graynet").fcn_probabilities(grays, graynet)
    fcn_seconds = (time.perf_counter() - start) / n
    start = time.perf_counter()
    fcn_own = _with_guide(segmenter, "own").fcn_probabilities(grays)
    fcn_own_seconds = (time.perf_counter() - start) / n
    maps: list[dict[str, np.ndarray]] = [
        {"graynet": g, "fcn_graynet": f, "fcn_own": o}
        for g, f, o in zip(graynet, fcn_graynet, fcn_own, strict=True)
    ]
    baseline_seconds = None
    if baseline is not None:
        start = time.perf_counter()
        baseline.to(segmenter.device).eval()
        networks = baseline_networks or segmenter.config.networks
        probabilities = segment_full_image(
            baseline, grays, networks, segmenter.device, flip_tta=segmenter.config.flip_tta
        )
        baseline_seconds = (time.perf_counter() - start) / n
        for entry, probability in zip(maps, probabilities, strict=True):
            entry["baseline"] = probability
    seconds = {
        "first_stage": first,
        "fcn": fcn_seconds,
        "fcn_own": fcn_own_seconds,
        "baseline": baseline_seconds,
    }
    return [
        (entry, first_stage_evidence(gray, p, entry["graynet"], segmenter.config), seconds)
        for gray, p, entry in zip(grays, classes, maps, strict=True)
    ]


def _with_guide(segmenter: Segmenter, guide: str) -> Segmenter:
    if segmenter.config.fcn_guide == guide:
        return segmenter
    config = dataclasses.replace(segmenter.config, fcn_guide=guide)
    return Segmenter(segmenter.models, config, segmenter.device)


def _save_case(
    example: Example,
    maps: dict[str, np.ndarray],
    evidence: Evidence,
    seconds: dict[str, float | None],
    triage: TriageConfig,
    directory: Path,
) -> Case:
    record, truth = example.record, example.truth
    true_class, truth_score = triage_class(example.gray, truth, record.expert_class, triage)
    case = _base_case(record)
    p_normal, p_homogeneous, p_heterogeneous = evidence.class_probabilities
    spacing = _truth_spacing(record.path, truth)
    filled = {
        "height": int(truth.shape[0]),
        "width": int(truth.shape[1]),
        "has_tumor": bool(truth.any()),
        "truth_area_px": int(truth.sum()),
        "pixel_spacing_row_mm": None if spacing is None else spacing[0],
        "pixel_spacing_col_mm": None if spacing is None else spacing[1],
        "true_class": true_class,
        "true_class_source": "expert" if record.expert_class else "score",
        "truth_score": float(truth_score),
        "p_normal": p_normal,
        "p_homogeneous": p_homogeneous,
        "p_heterogeneous": p_heterogeneous,
        "map_peak": evidence.map_peak,
        "map_score": evidence.map_score,
        "seconds_first_stage": seconds["first_stage"],
        "seconds_fcn": seconds["fcn"],
        "seconds_fcn_own": seconds["fcn_own"],
        "seconds_baseline": seconds["baseline"],
    }
    case = dataclasses.replace(case, **filled)
    write_case_maps(directory, case.case_id, maps, truth)
    return case


def _truth_spacing(path: str, truth: np.ndarray) -> tuple[float, float] | None:
    """The pixel size of a DICOM source where the lesion is (the truth's box)."""
    from tumorseg.inference.result import bounding_box
    from tumorseg.io.spacing import spacing_of

    spacing = spacing_of(path)
    if spacing is None:
        return None
    return spacing.at(bounding_box(np.asarray(truth, bool)))


def write_case_maps(
    directory: str | Path, case_id: str, maps: dict[str, np.ndarray], truth: np.ndarray
) -> Path:
    """One case's maps (probabilities, quantised to uint8) and ground truth (bit-packed)."""
    unknown = set(maps) - set(MAP_NAMES)
    if unknown:
        raise ValueError(f"unknown maps {sorted(unknown)}; known: {list(MAP_NAMES)}")
    path = Path(directory) / MAPS_DIR / f"{case_id}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    quantised = {name: _quantise(m) for name, m in maps.items()}
    np.savez_compressed(path, truth=np.packbits(np.asarray(truth, bool).ravel()), **quantised)
    return path


def _quantise(probability: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(probability, 0.0, 1.0) * 255.0).astype(np.uint8)


def _base_case(record: ImageRecord) -> Case:
    return Case(
        case_id=case_id(record),
        image_id=record.image_id,
        path=record.path,
        mask_paths=tuple(record.mask_paths),
        frame=record.frame,
        label=record.label,
        patient_id=record.patient_id,
        expert_class=record.expert_class,
    )


def _error_case(record: ImageRecord, error: str) -> Case:
    return dataclasses.replace(_base_case(record), error=error)
