"""Bulk segmentation on Ray Data: list, skip what is done, stream every stage, summarise.

The plan is one streaming chain::

    listing → decode → first stage (actors) → FCN (actors) → write (actors)

Decoding is fused into the first stage's actors (classifier and gray net on every
image, presence and route decided there). Each network stage is its own actor
pool, so each can be sized to its traffic. Rows that need no FCN pass through its
stage untouched; that costs a copy of their row and keeps the chain linear (Ray
Data has no fan-out without recomputation). The
driver holds only the listing (paths and stats), the model set it shares with the
actors, and one small summary row per input, never the images.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import ray
import ray.data
from ray.data import ActorPoolStrategy

from tumorseg.bulk.config import SegmentJobConfig
from tumorseg.bulk.dicomweb import DicomWebQuery, connect, iter_instances
from tumorseg.bulk.ledger import done_keys, output_lock, sweep_temporaries
from tumorseg.bulk.listing import InputFile, list_inputs, listing_table
from tumorseg.bulk.stages import (
    FCNStage,
    FirstStage,
    SharedModels,
    WriteStage,
    decode_batch,
)
from tumorseg.config import SegmenterConfig
from tumorseg.inference.model_folder import load_model_folder
from tumorseg.inference.models import ModelSet
from tumorseg.tracking import ModelNames, load_model_set, resolve_tracking_uri

log = logging.getLogger("tumorseg.bulk")

SUMMARY_FILE = "summary.json"


@dataclass
class SegmentSummary:
    """What one run did (a rerun counts only what it did itself). Inputs are files or
    instances; ``segmented`` counts images, each frame of a cine loop one."""

    inputs: int = 0
    already_done: int = 0
    segmented: int = 0
    errors: int = 0
    seconds: float = 0.0
    routes: dict[str, int] = field(default_factory=dict)

    @property
    def processed(self) -> int:
        return self.segmented + self.errors

    @property
    def images_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else math.nan

    def describe(self) -> str:
        routes = ", ".join(f"{route} {n}" for route, n in sorted(self.routes.items())) or "none"
        return (
            f"{self.inputs} inputs: {self.already_done} already done, {self.segmented} "
            f"segmented, {self.errors} errors in {self.seconds:.1f} s "
            f"({self.images_per_second:.2f} images/s); routes: {routes}"
        )


def build_dataset(
    config: SegmentJobConfig,
    listing: ray.data.Dataset,
    models: ModelSet,
    segmenter_config: SegmenterConfig,
) -> ray.data.Dataset:
    """The streaming chain of stages over a listing dataset (see the module doc).

    Every stage is a pool of actors (sizes: see :class:`SegmentJobConfig`), so no
    batch waits for a worker process to start and import torch.
    """
    network = {
        "batch_size": config.batch_size,
        "batch_format": "pandas",
        "num_cpus": config.cpus_per_actor,
        "num_gpus": config.num_gpus or None,
        "memory": round(config.memory_per_actor_gib * 2**30),
    }
    pool = _pool(config.concurrency)
    shared = SharedModels(ray.put(models))
    shipped = {"config": config, "models": shared, "segmenter_config": segmenter_config}
    # A policy that routes nothing to the FCN gets no FCN stage (its actors would
    # idle); the first stage may take their places instead.
    routes = segmenter_config.routes_to_fcn
    first_pool = pool if routes else _pool(config.concurrency + config.fcn_actors)
    segmented = listing.map_batches(
        decode_batch,
        fn_kwargs={"limits": config.limits, "dicomweb": config.dicomweb},
        batch_size=config.batch_size,
        batch_format="pandas",
        num_cpus=config.cpus_per_task,
    ).map_batches(FirstStage, fn_constructor_kwargs=shipped, compute=first_pool, **network)
    if routes:
        segmented = segmented.map_batches(
            FCNStage,
            fn_constructor_kwargs=shipped,
            compute=_pool(config.fcn_actors),
            **network,
        )
    return segmented.map_batches(
        WriteStage,
        fn_constructor_kwargs={
            "output": config.output,
            "dicom_seg": config.write_dicom_seg,
            "dicomweb": config.dicomweb,
        },
        batch_size=config.batch_size,
        batch_format="pandas",
        num_cpus=config.cpus_per_task,
        compute=pool,
    )


def _pool(size: int) -> ActorPoolStrategy:
    """One actor to start with, up to ``size`` under load (see SegmentJobConfig)."""
    return ActorPoolStrategy(min_size=1, max_size=size)


def listing_dataset(todo: list[InputFile], batch_size: int) -> ray.data.Dataset:
    """The inputs to do, one block per batch, so the stages stream from the start.

    Built block by block rather than repartitioned: a repartition is a task that
    wants a whole CPU, which the stages' actors may already hold on a small machine.
    """
    table = listing_table(todo)
    return ray.data.from_arrow(
        [table.slice(start, batch_size) for start in range(0, table.num_rows, batch_size)]
    )


def run_segmentation(config: SegmentJobConfig) -> SegmentSummary:
    """Segment every input of ``config.input`` not yet in ``config.output``.

    A folder or manifest is listed at once (listing only stats files); a PACS is
    listed and segmented ``listing_chunk`` instances at a time. The run holds the
    output's lock throughout, and leaves no temporary behind, a killed run's included.
    """
    start = time.perf_counter()
    output = Path(config.output)
    _refuse_output_inside_input(config)
    output.mkdir(parents=True, exist_ok=True)
    with output_lock(output):
        swept = sweep_temporaries(output)
        if swept:
            log.info("removed %d temporaries an interrupted run left in %s", swept, output)
        summary = _segment(_resolved(config), output)
        # A killed run's actors may still have been writing when this one swept.
        sweep_temporaries(output)
    summary.seconds = time.perf_counter() - start
    (output / SUMMARY_FILE).write_text(
        json.dumps({**asdict(summary), "images_per_second": summary.images_per_second}, indent=2)
    )
    return summary


def _segment(config: SegmentJobConfig, output: Path) -> SegmentSummary:
    models, segmenter_config = _load_models(config)
    done = done_keys(output)
    summary = SegmentSummary()
    routes: Counter[str] = Counter()
    for chunk in _listing_chunks(config):
        todo = [item for item in chunk if item.input_key not in done]
        summary.inputs += len(chunk)
        summary.already_done += len(chunk) - len(todo)
        log.info(
            "%d inputs listed from %s: %d already done, %d to segment into %s",
            summary.inputs,
            _describe(config.input),
            summary.already_done,
            len(todo),
            output,
        )
        if not todo:
            continue
        listing = listing_dataset(todo, config.batch_size)
        dataset = build_dataset(config, listing, models, segmenter_config)
        for batch in dataset.iter_batches(batch_size=None, batch_format="pandas"):
            ok = batch["status"] == "ok"
            summary.segmented += int(ok.sum())
            summary.errors += int((~ok).sum())
            routes.update(batch.loc[ok, "route"])
    summary.routes = dict(routes)
    return summary


def _refuse_output_inside_input(config: SegmentJobConfig) -> None:
    """A folder input's next run would list its own output as inputs."""
    if config.dicomweb is not None or not Path(config.input).is_dir():
        return
    source, output = Path(config.input).resolve(), Path(config.output).resolve()
    if output == source or source in output.parents:
        raise ValueError(
            f"--output {config.output} is inside --input {config.input}: put it elsewhere"
        )


def _listing_chunks(config: SegmentJobConfig) -> Iterator[list[InputFile]]:
    query = config.dicomweb
    if query is None:
        yield list_inputs(config.input, allow_outside_root=config.allow_outside_root)
        return
    instances = iter_instances(connect(query), query)
    while chunk := list(itertools.islice(instances, config.listing_chunk)):
        yield chunk


def _describe(source: str | DicomWebQuery) -> str:
    return source if isinstance(source, str) else f"the PACS at {source.url}"


def _resolved(config: SegmentJobConfig) -> SegmentJobConfig:
    """Workers may run in another directory (``ray job submit``) and on other nodes:
    give them absolute paths, the tracking URI and the PACS credentials the driver sees."""
    query = config.dicomweb
    return replace(
        config,
        input=config.input if query is None else query.with_environment_credentials(),
        output=str(Path(config.output).resolve()),
        tracking_uri=resolve_tracking_uri(config.tracking_uri),
    )


def _load_models(config: SegmentJobConfig) -> tuple[ModelSet, SegmenterConfig]:
    """Resolve the alias once, here: a missing model fails the job before any work with
    the registry's own error (which models, where) rather than as an actor that
    cannot start, and every actor gets these very weights."""
    if config.model_folder:
        models, segmenter_config = load_model_folder(config.model_folder)
        log.info("segmenting with %s from %s", models.versions, config.model_folder)
        return models, segmenter_config
    models, segmenter_config = load_model_set(
        config.tracking_uri,
        config.models,
        names=ModelNames.with_prefix(config.model_prefix),
        device="cpu",
    )
    log.info("segmenting with %s", models.versions)
    return models, segmenter_config
