"""Everything ``jobs/evaluate.py`` does after parsing its flags."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import mlflow
from mlflow.artifacts import download_artifacts

from tumorseg.data import discover
from tumorseg.evaluation.evaluate import (
    DEFAULT_NORMAL_FP_MIN_AREA,
    EvaluationResult,
    evaluate_predictions,
)
from tumorseg.evaluation.examples import records_in_split
from tumorseg.evaluation.policy import compare_policies
from tumorseg.evaluation.predictions import load_predictions, predict_split
from tumorseg.evaluation.report import summary_table, write_report
from tumorseg.inference import Segmenter
from tumorseg.tracking import (
    ModelNames,
    ModelSelector,
    load_baseline,
    load_model_set,
    resolve_tracking_uri,
)
from tumorseg.tracking.loading import find_version
from tumorseg.tracking.uris import registry_client

log = logging.getLogger("tumorseg.evaluation")

SPLITS_ARTIFACT = "splits.json"
PREDICTIONS_DIR = "predictions"


@dataclass(frozen=True)
class EvaluateJobOptions:
    data: str
    output: str = "evaluation"
    models: ModelSelector = field(default_factory=ModelSelector)
    baseline_models: ModelSelector | None = None  # None: the fused set's selector
    baseline: bool = True
    tracking_uri: str | None = None
    experiment: str = "tumorseg"
    names: ModelNames = field(default_factory=ModelNames)
    split: str = "all"
    batch_size: int = 8
    limit: int | None = None
    device: str | None = None
    normal_fp_min_area: float = DEFAULT_NORMAL_FP_MIN_AREA
    examples: int = 2
    log_every: int = 50
    # Score the predictions already saved under OUTPUT/predictions instead of predicting.
    reuse_predictions: bool = False
    # SegmenterConfig policy settings replaced in the registered config (e.g. fusion="hard").
    policy: dict[str, Any] = field(default_factory=dict)
    compare: bool = True  # also score the policy's alternatives from the same predictions


def run_evaluate_job(options: EvaluateJobOptions) -> EvaluationResult:
    """Predict ``options.data`` once into ``OUTPUT/predictions`` (or reuse that), score it
    under the registered config, write the report, log it all to MLflow."""
    tracking_uri = resolve_tracking_uri(options.tracking_uri)
    models, config = load_model_set(tracking_uri, options.models, names=options.names, device="cpu")
    config = replace(config, **options.policy) if options.policy else config
    segmenter = Segmenter(models, config, device=options.device)
    output = Path(options.output)
    directory = output / PREDICTIONS_DIR
    if options.reuse_predictions:
        predictions = load_predictions(directory)
        log.info("scoring the %d saved predictions in %s", len(predictions.cases), directory)
    else:
        records = _records(options, tracking_uri)
        log.info("predicting %d images from %s on %s", len(records), options.data, segmenter.device)
        predictions = predict_split(
            records,
            segmenter,
            directory,
            _baseline(options, tracking_uri),
            batch_size=options.batch_size,
            log_every=options.log_every,
        )
    result = evaluate_predictions(
        predictions,
        config,
        normal_fp_min_area=options.normal_fp_min_area,
        model_versions=models.versions,
    )
    if options.compare:
        result.summary["alternatives"] = compare_policies(
            predictions, config, options.normal_fp_min_area
        )
    context = {
        "data": options.data,
        "model": options.models.describe(),
        "split": options.split,
        "tracking_uri": tracking_uri,
    }
    if options.policy:
        context["policy overrides"] = ", ".join(f"{k}={v}" for k, v in options.policy.items())
    result.summary["context"] = context
    paths = write_report(result, output, config=config, examples=options.examples, context=context)
    _log_to_mlflow(result, options, tracking_uri, output, segmenter, result.settings["baseline"])
    print(summary_table(result.summary))
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return result


def _records(options: EvaluateJobOptions, tracking_uri: str) -> list:
    records = discover(options.data)
    if options.split != "all":
        assigned = logged_splits(tracking_uri, options)
        records = records_in_split(records, options.split, assigned)
        log.info("%d images in the %s split", len(records), options.split)
    if options.limit is not None:
        records = records[: options.limit]
    return records


def _baseline(options: EvaluateJobOptions, tracking_uri: str):
    if not options.baseline:
        return None
    baseline = load_baseline(
        tracking_uri, options.baseline_models or options.models, names=options.names
    )
    if baseline is None:
        log.warning("no registered baseline found; evaluating the fused model only")
    return baseline


def logged_splits(tracking_uri: str, options: EvaluateJobOptions) -> dict[str, str]:
    """``{image_id: split}`` logged by the training run that registered the models."""
    client = registry_client(tracking_uri)
    name = options.names.classifier
    mv = find_version(client, name, options.models, tracking_uri)
    try:
        path = download_artifacts(
            run_id=mv.run_id, artifact_path=SPLITS_ARTIFACT, tracking_uri=tracking_uri
        )
    except Exception as error:
        raise LookupError(
            f"--split needs the training run's {SPLITS_ARTIFACT}, but run {mv.run_id} of "
            f"{name} version {mv.version} has none ({error})"
        ) from error
    return json.loads(Path(path).read_text())


def _log_to_mlflow(
    result: EvaluationResult,
    options: EvaluateJobOptions,
    tracking_uri: str,
    output: Path,
    segmenter: Segmenter,
    with_baseline: bool,
) -> None:
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(options.experiment)
    with mlflow.start_run(run_name="evaluate"):
        mlflow.set_tags({"job": "evaluate"})
        mlflow.log_params(
            {
                "data": options.data,
                "split": options.split,
                "model_alias": options.models.alias,
                "model_version": options.models.version,
                "baseline": with_baseline,
                "n_images": result.summary["n_images"],
                "normal_fp_min_area": options.normal_fp_min_area,
                **{f"version_{role}": v for role, v in segmenter.models.versions.items()},
            }
        )
        mlflow.log_metrics(summary_metrics(result.summary))
        mlflow.log_artifacts(str(output), artifact_path="evaluation")


def summary_metrics(summary: dict) -> dict[str, float]:
    """Flat MLflow metrics from a summary (``None`` figures are left out)."""
    metrics: dict[str, float] = {}
    for key in ("n_images", "n_evaluated", "n_tumor", "n_normal", "n_errors", "normal_fp_rate"):
        metrics[key] = summary[key]
    for method in ("fused", "baseline"):
        for name, value in (summary.get(method) or {}).items():
            metrics[f"{method}_{name}"] = value
    for group in ("per_route", "per_label"):
        for name, figures in summary[group].items():
            for metric in ("n", "dice", "iou", "hd95", "normal_fp_rate"):
                metrics[f"{group[4:]}_{_key(name)}_{metric}"] = figures[metric]
    metrics["routing_accuracy"] = summary["routing"]["accuracy"]
    metrics["routing_auc"] = summary["routing"]["auc"]
    metrics["presence_auc"] = summary["presence"]["auc"]
    metrics["miss_rate"] = summary["miss_rate"]
    for key in ("mean", "low", "high"):
        metrics[f"fused_minus_baseline_dice_{key}"] = (summary.get("bootstrap") or {}).get(key)
    return {k: float(v) for k, v in metrics.items() if v is not None}


def _key(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
