"""The training job: corpus → four Ray Train runs → fused validation → MLflow registry.

``run_training`` is what ``jobs/train.py`` calls. MLflow is written from the
driver only (one parent run, one child run per network), so workers never touch
the tracking store; per-epoch metrics come from the histories the checkpoints
carry, which survive worker restarts.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import ray
from torch import nn

from tumorseg.config import CLASSES
from tumorseg.data import ImageRecord
from tumorseg.evaluation import (
    choose_policy,
    evaluate_predictions,
    predict_split,
    records_in_split,
    write_report,
)
from tumorseg.evaluation.evaluate import policy_settings
from tumorseg.inference import ModelSet, Segmenter
from tumorseg.networks import FUSED_ROLES, build_network, network_role
from tumorseg.tracking import ModelNames, promote_if_better, register_model_set
from tumorseg.tracking.plots import learning_curve_png
from tumorseg.training.config import TrainConfig
from tumorseg.training.corpus import PreparedCorpus, prepare_corpus, role_datasets
from tumorseg.training.loop import balanced_weights
from tumorseg.training.trainer import FitResult, build_trainer, fit

log = logging.getLogger("tumorseg.training")


@dataclass
class TrainingOutcome:
    """What one training job produced, for the job's summary and for tests."""

    parent_run_id: str
    fits: dict[str, FitResult]
    fused_val_dice: float
    baseline_val_dice: float | None
    versions: dict[str, str]
    promoted: bool
    split_counts: dict[str, int]
    errors: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


def run_training(
    records: list[ImageRecord],
    config: TrainConfig,
    *,
    experiment: str,
    names: ModelNames,
    storage_path: str,
    source: str = "",
) -> TrainingOutcome:
    """Train every network on its shard, validate the fused pipeline, register the models.
    ``source`` (the corpus's path) is tagged ``data`` on the run, for model cards."""
    start = time.perf_counter()
    roles = [*FUSED_ROLES, *(["baseline"] if config.train_baseline else [])]
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name="train", tags={"data": source}) as parent:
        corpus = prepare_corpus(records, config)
        split_counts = _log_corpus(corpus, config)
        fits = _fit_all(corpus, roles, config, storage_path, parent.info.run_id)
        models = {role: _restore(role, fits[role], config) for role in roles}
        for role in roles:
            _log_child(parent.info.run_id, fits[role], config)
        val_records = records_in_split(records, "val", corpus.splits)
        config, summary = _validate(models, config, val_records)
        fused_dice = _figure(summary.get("fused"), "dice")  # NaN: no tumor image in val
        baseline_dice = _figure(summary.get("baseline"), "dice")
        if np.isnan(fused_dice):
            log.warning("no tumor image in the validation split: the champion cannot move")
        mlflow.log_metrics(
            {"fused_val_dice": fused_dice, "baseline_val_dice": baseline_dice}, synchronous=True
        )
        versions = register_model_set(models, config.segmenter, names)
        promoted = promote_if_better(versions, fused_dice, names)
        mlflow.set_tags(
            {"champion_moved": str(promoted), **{f"version.{r}": v for r, v in versions.items()}}
        )
    return TrainingOutcome(
        parent_run_id=parent.info.run_id,
        fits=fits,
        fused_val_dice=fused_dice,
        baseline_val_dice=None if np.isnan(baseline_dice) else baseline_dice,
        versions=versions,
        promoted=promoted,
        split_counts=split_counts,
        errors=corpus.errors,
        seconds=time.perf_counter() - start,
    )


def _figure(section: dict[str, Any] | None, key: str) -> float:
    value = (section or {}).get(key)
    return float("nan") if value is None else float(value)


def _fit_all(
    corpus: PreparedCorpus, roles: list[str], config: TrainConfig, storage_path: str, run_id: str
) -> dict[str, FitResult]:
    """One trainer per network: concurrently when configured, else one after another.

    A network that starts from the baseline's weights trains after the baseline.
    """
    later = [r for r in roles if r in config.warm_started()]
    results = _fit_group(corpus, [r for r in roles if r not in later], config, storage_path, run_id)
    if later:
        log.info("%s start from the baseline's best weights", " and ".join(later))
        weights = ray.put(results["baseline"].best_weights)
        init = {role: weights for role in later}
        results.update(_fit_group(corpus, later, config, storage_path, run_id, init))
    return {role: results[role] for role in roles}


def _fit_group(
    corpus: PreparedCorpus,
    roles: list[str],
    config: TrainConfig,
    storage_path: str,
    run_id: str,
    init: dict[str, ray.ObjectRef] | None = None,
) -> dict[str, FitResult]:
    trainers = {}
    for role in roles:
        datasets = role_datasets(corpus, role, config)
        if datasets["train"].count() == 0:
            raise ValueError(f"no training data for {role}: its shard is empty (too few images?)")
        if datasets["val"].count() == 0:
            log.warning("%s: its validation shard is empty; its last epoch is kept", role)
        trainers[role] = build_trainer(
            role,
            datasets,
            config,
            storage_path,
            f"{run_id}-{role}",
            (init or {}).get(role),
            _class_weights(datasets["train"], role, config),
        )
    if config.concurrent:
        with ThreadPoolExecutor(len(roles)) as pool:
            futures = {role: pool.submit(fit, trainers[role], role) for role in roles}
            return {role: future.result() for role, future in futures.items()}
    results = {}
    for role in roles:
        log.info("training %s", role)
        results[role] = fit(trainers[role], role)
    return results


def _class_weights(train: ray.data.Dataset, role: str, config: TrainConfig) -> list[float] | None:
    """Inverse-frequency weights of a classifier's classes on its training shard (mean 1
    over the images), or None: unweighted."""
    spec = network_role(role)
    if spec.task != "classification" or not config.balance_classes:
        return None
    rows = train.select_columns([spec.target_column]).take_all()
    labels = [int(row[spec.target_column]) for row in rows]
    weights = balanced_weights(labels, len(CLASSES))
    log.info("%s: class weights %s", role, ", ".join(f"{w:.2f}" for w in weights))
    return weights


def _restore(role: str, result: FitResult, config: TrainConfig) -> nn.Module:
    model = build_network(role, config.segmenter.networks)
    model.load_state_dict(result.best_weights)
    return model.eval()


def _validate(
    models: dict[str, nn.Module],
    config: TrainConfig,
    val_records: list[ImageRecord],
) -> tuple[TrainConfig, dict[str, Any]]:
    """Predict the validation split once; choose the policy from those predictions
    (presence, route, fusion, post-processing) and score the pipeline under it.

    Returns the config with the chosen policy and the summary. The report (rows,
    summary, the choice's sweeps, overlays) is logged under ``validation/``; the
    validation figures are optimistic (the policy was chosen on the same images).
    """
    segmenter = _segmenter(models, config)
    with tempfile.TemporaryDirectory() as directory:
        predictions = predict_split(
            val_records, segmenter, Path(directory, "predictions"), models.get("baseline")
        )
        if config.choose_policy:
            chosen, choice = choose_policy(predictions, config.segmenter)
            config = replace(config, segmenter=chosen)
            mlflow.log_params({f"policy.{k}": v for k, v in policy_settings(chosen).items()})
            mlflow.log_dict(choice, "policy.json")
        result = evaluate_predictions(
            predictions, config.segmenter, model_versions=segmenter.models.versions
        )
        report = Path(directory, "report")
        write_report(
            result,
            report,
            config=config.segmenter,
            context={"split": "val", "models": "this run's"},
        )
        mlflow.log_artifacts(str(report), artifact_path="validation")
    return config, result.summary


def _segmenter(models: dict[str, nn.Module], config: TrainConfig) -> Segmenter:
    fused = ModelSet(**{role: models[role] for role in FUSED_ROLES})
    return Segmenter(fused, config.segmenter, device="cpu")


def _log_corpus(corpus: PreparedCorpus, config: TrainConfig) -> dict[str, int]:
    counts: dict[str, int] = {}
    for split in corpus.splits.values():
        counts[split] = counts.get(split, 0) + 1
    routes = [m["route"] for m in corpus.meta]
    mlflow.log_params(
        {
            "n_images": len(corpus.meta),
            "n_unreadable": len(corpus.errors),
            **{f"n_{split}": n for split, n in sorted(counts.items())},
            "n_homogeneous": routes.count("homogeneous"),
            "n_heterogeneous": routes.count("heterogeneous"),
            "num_workers": config.num_workers,
            "use_gpu": config.use_gpu,
        }
    )
    mlflow.log_dict(config.to_dict(), "train_config.json")
    mlflow.log_dict(corpus.splits, "splits.json")  # image_id → split, for evaluation
    for path, reason in corpus.errors:
        log.warning("unreadable: %s (%s)", path, reason)
    return counts


def _log_child(parent_id: str, result: FitResult, config: TrainConfig) -> None:
    """A nested run per network: its budget, per-epoch metrics and learning curves."""
    with mlflow.start_run(run_name=result.role, nested=True, parent_run_id=parent_id):
        budget = config.budget(result.role)
        init = config.initialisation(result.role)
        mlflow.log_params(
            {**vars(budget), "role": result.role, "restarts": result.restarts, "init": init}
        )
        for row in result.history:
            epoch = int(row["epoch"])
            values = {k: float(v) for k, v in row.items() if k != "epoch" and np.isfinite(v)}
            mlflow.log_metrics(values, step=epoch)
        mlflow.log_metric("best_score", result.best_score)
        curves = {
            k: [float(r[k]) for r in result.history] for k in result.history[0] if k != "epoch"
        }
        with tempfile.TemporaryDirectory() as directory:
            mlflow.log_artifact(
                str(learning_curve_png(curves, Path(directory) / "learning_curves.png"))
            )
            Path(directory, "history.json").write_text(json.dumps(result.history, indent=1))
            mlflow.log_artifact(str(Path(directory) / "history.json"))
