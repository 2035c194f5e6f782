"""Bulk segmentation on Ray Data: list, skip what is done, stream every stage, summarise.

The plan is one streaming chain::

    listing → decode (tasks) → classify (actors) → gray net (actors) → FCN (actors) → write (tasks)

Each network stage is its own actor pool, so Ray Data scales the gray-net and FCN
pools to the traffic each route gets. Rows of the other route pass through a branch
stage untouched; that costs a copy of their pixels and keeps the chain linear (Ray
Data has no fan-out without recomputation). The driver holds only the listing
(paths and stats) and one small summary row per input, never the images.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import ray
import ray.data
from ray.data import ActorPoolStrategy

from tumorseg.bulk.config import SegmentJobConfig
from tumorseg.bulk.ledger import done_keys
from tumorseg.bulk.listing import list_inputs, listing_table
from tumorseg.bulk.stages import BranchStage, ClassifyStage, decode_batch, write_batch
from tumorseg.tracking import ModelNames, load_model_set, resolve_tracking_uri

log = logging.getLogger("tumorseg.bulk")

SUMMARY_FILE = "summary.json"


@dataclass
class SegmentSummary:
    """What one run did (a rerun counts only what it did itself)."""

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


def build_dataset(config: SegmentJobConfig, listing: ray.data.Dataset) -> ray.data.Dataset:
    """The streaming chain of stages over a listing dataset (see the module doc)."""
    actors = ActorPoolStrategy(min_size=1, max_size=config.concurrency)
    network = {
        "batch_size": config.batch_size,
        "batch_format": "pandas",
        "compute": actors,
        "num_cpus": config.cpus_per_actor,
        "num_gpus": config.num_gpus or None,
    }
    task = {
        "batch_size": config.batch_size,
        "batch_format": "pandas",
        "num_cpus": config.cpus_per_task,
    }
    return (
        listing.map_batches(decode_batch, fn_kwargs={"limits": config.limits}, **task)
        .map_batches(ClassifyStage, fn_constructor_kwargs={"config": config}, **network)
        .map_batches(
            BranchStage,
            fn_constructor_kwargs={"config": config, "route": "homogeneous"},
            **network,
        )
        .map_batches(
            BranchStage,
            fn_constructor_kwargs={"config": config, "route": "heterogeneous"},
            **network,
        )
        .map_batches(
            write_batch,
            fn_kwargs={"output": config.output, "dicom_seg": config.write_dicom_seg},
            **task,
        )
    )


def run_segmentation(config: SegmentJobConfig) -> SegmentSummary:
    """Segment every input of ``config.input`` not yet in ``config.output``."""
    start = time.perf_counter()
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    config = _resolved(config)
    _check_models(config)
    inputs = list_inputs(config.input)
    done = done_keys(output)
    todo = [item for item in inputs if item.input_key not in done]
    summary = SegmentSummary(inputs=len(inputs), already_done=len(inputs) - len(todo))
    log.info(
        "%d inputs under %s: %d already done, %d to segment into %s",
        len(inputs),
        config.input,
        summary.already_done,
        len(todo),
        output,
    )
    if todo:
        # One block per batch, so the decode and write tasks stream from the start.
        blocks = max(1, math.ceil(len(todo) / config.batch_size))
        listing = ray.data.from_arrow(listing_table(todo)).repartition(blocks)
        routes: Counter[str] = Counter()
        for batch in build_dataset(config, listing).iter_batches(
            batch_size=None, batch_format="pandas"
        ):
            ok = batch["status"] == "ok"
            summary.segmented += int(ok.sum())
            summary.errors += int((~ok).sum())
            routes.update(batch.loc[ok, "route"])
        summary.routes = dict(routes)
    summary.seconds = time.perf_counter() - start
    (output / SUMMARY_FILE).write_text(
        json.dumps({**asdict(summary), "images_per_second": summary.images_per_second}, indent=2)
    )
    return summary


def _resolved(config: SegmentJobConfig) -> SegmentJobConfig:
    """Workers may run in another directory (``ray job submit``): give them absolute
    paths and the tracking URI the driver sees."""
    return replace(
        config,
        output=str(Path(config.output).resolve()),
        tracking_uri=resolve_tracking_uri(config.tracking_uri),
    )


def _check_models(config: SegmentJobConfig) -> None:
    """Fail before any work with the registry's own error (which models, where) rather
    than as an actor that cannot start."""
    models, _ = load_model_set(
        config.tracking_uri,
        alias=config.model_alias,
        version=config.model_version,
        names=ModelNames.with_prefix(config.model_prefix),
        device="cpu",
    )
    log.info("segmenting with %s", models.versions)
