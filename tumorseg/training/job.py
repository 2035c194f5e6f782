"""Everything ``jobs/train.py`` does after parsing its flags."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import mlflow

from tumorseg.data import discover
from tumorseg.data.phantom import write_phantom_corpus
from tumorseg.runtime import init_ray
from tumorseg.tracking import ModelNames, resolve_tracking_uri
from tumorseg.training.config import TrainConfig
from tumorseg.training.pipeline import TrainingOutcome, run_training

log = logging.getLogger("tumorseg.training")


@dataclass(frozen=True)
class TrainJobOptions:
    config: TrainConfig
    data: str | None = None  # None: the built-in phantom corpus
    experiment: str = "tumorseg"
    tracking_uri: str | None = None
    address: str | None = None
    storage_path: str | None = None
    names: ModelNames = field(default_factory=ModelNames)
    phantom_images: int = 24


def run_train_job(options: TrainJobOptions) -> TrainingOutcome:
    """Connect to Ray and MLflow, find the data, train, and print what happened."""
    tracking_uri = resolve_tracking_uri(options.tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    storage = Path(options.storage_path or "outputs/ray_results").resolve()
    init_ray(options.address)
    with tempfile.TemporaryDirectory() as scratch:
        source = options.data or write_phantom_corpus(scratch, n=options.phantom_images)
        records = discover(source)
        if options.config.max_images:
            records = records[: options.config.max_images]
        log.info("training on %d images from %s; MLflow at %s", len(records), source, tracking_uri)
        outcome = run_training(
            records,
            options.config,
            experiment=options.experiment,
            names=options.names,
            storage_path=str(storage),
            source=options.data or "built-in phantom corpus",
        )
    print(format_outcome(outcome, tracking_uri))
    return outcome


def format_outcome(outcome: TrainingOutcome, tracking_uri: str) -> str:
    lines = [
        f"trained in {outcome.seconds:.0f} s; split {outcome.split_counts}; "
        f"{len(outcome.errors)} unreadable images",
    ]
    for role, fit in outcome.fits.items():
        lines.append(
            f"  {role:<10} best {fit.best_score:.4f} "
            f"after {len(fit.history)} epochs, {fit.restarts} restarts"
        )
    baseline = "n/a" if outcome.baseline_val_dice is None else f"{outcome.baseline_val_dice:.4f}"
    lines.append(f"fused validation Dice {outcome.fused_val_dice:.4f} (baseline {baseline})")
    versions = ", ".join(f"{role} v{v}" for role, v in outcome.versions.items())
    champion = "champion moved to these versions" if outcome.promoted else "champion unchanged"
    lines.append(f"registered {versions} as candidate; {champion}")
    lines.append(f"MLflow: {tracking_uri} (run {outcome.parent_run_id})")
    return "\n".join(lines)
