"""Evaluate a registered model set (and the no-routing baseline) on a labeled corpus.

Loads the fused models by alias or version from the MLflow registry, segments
every image of ``--data``, and writes into ``--output``: ``rows.parquet`` (one row
per image), ``summary.json``, ``report.md`` with a Dice histogram and overlays.
The same files and the headline metrics are logged to an MLflow run named
``evaluate``.

    python jobs/evaluate.py --data ../shared/data/busi --output eval/
    python jobs/evaluate.py --data manifest.csv --model-version 3 --no-baseline
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

log = logging.getLogger("evaluate")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", required=True, help="BUSI-layout folder, manifest (CSV/Parquet) or DICOM folder"
    )
    parser.add_argument(
        "--output", default="evaluation", help="output folder (default: evaluation)"
    )
    parser.add_argument(
        "--model-alias", default="champion", help="registry alias (default: champion)"
    )
    parser.add_argument("--model-version", help="registry version; wins over --model-alias")
    parser.add_argument(
        "--baseline-alias", help="alias of tumorseg-baseline (default: --model-alias)"
    )
    parser.add_argument("--baseline-version", help="version of tumorseg-baseline")
    parser.add_argument("--no-baseline", action="store_true", help="skip the baseline")
    parser.add_argument(
        "--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite)"
    )
    parser.add_argument("--experiment", default="tumorseg", help="MLflow experiment")
    parser.add_argument("--model-prefix", default="tumorseg", help="registered names: PREFIX-ROLE")
    parser.add_argument(
        "--split",
        choices=("all", "train", "val", "test"),
        default="all",
        help="evaluate only the images the model's training run put in this split; --data must "
        "be the corpus it trained on (default: all)",
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--limit", type=int, help="evaluate only the first N images")
    parser.add_argument("--device", help="torch device (default: first GPU, else CPU)")
    parser.add_argument(
        "--normal-fp-min-area",
        type=float,
        default=0.001,
        help="share of the image the largest predicted component must cover to count as a "
        "false positive on a tumor-free image (default: 0.001 = 0.1 %%)",
    )
    parser.add_argument(
        "--examples", type=int, default=2, help="overlays per best/median/worst (default 2)"
    )
    parser.add_argument("--log-every", type=int, default=50, help="progress line every N images")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    import mlflow

    from tumorseg.data import discover
    from tumorseg.evaluation import (
        evaluate_corpus,
        records_in_split,
        summary_table,
        write_report,
    )
    from tumorseg.inference import Segmenter
    from tumorseg.tracking import (
        ModelNames,
        ModelNotFoundError,
        load_baseline,
        load_model_set,
        resolve_tracking_uri,
    )

    tracking_uri = resolve_tracking_uri(args.tracking_uri)
    names = ModelNames(
        *(f"{args.model_prefix}-{r}" for r in ("classifier", "graynet", "fcn", "baseline"))
    )
    try:
        models, config = load_model_set(
            tracking_uri,
            alias=args.model_alias,
            version=args.model_version,
            names=names,
            device="cpu",
        )
    except ModelNotFoundError as error:
        raise SystemExit(f"error: {error}") from error
    segmenter = Segmenter(models, config, device=args.device)
    baseline = None
    if not args.no_baseline:
        baseline = load_baseline(
            tracking_uri,
            alias=args.baseline_alias or args.model_alias,
            version=args.baseline_version,
            names=names,
        )
        if baseline is None:
            log.warning("no registered baseline found; evaluating the fused model only")

    records = discover(args.data)
    if args.split != "all":
        train_config = training_config(tracking_uri, names, args.model_alias, args.model_version)
        if train_config.max_images:
            records = records[: train_config.max_images]  # as the training job did
        records = records_in_split(records, args.split, train_config)
        log.info("%d images in the %s split", len(records), args.split)
    if args.limit is not None:
        records = records[: args.limit]
    log.info("evaluating %d images from %s on %s", len(records), args.data, segmenter.device)
    result = evaluate_corpus(
        records,
        segmenter,
        baseline,
        batch_size=args.batch_size,
        normal_fp_min_area=args.normal_fp_min_area,
        log_every=args.log_every,
    )
    context = {
        "data": args.data,
        "model": f"version {args.model_version}"
        if args.model_version
        else f"alias {args.model_alias}",
        "split": args.split,
        "tracking_uri": tracking_uri,
    }
    result.summary["context"] = context
    output = Path(args.output)
    paths = write_report(
        result,
        output,
        segmenter=segmenter,
        baseline=baseline,
        examples=args.examples,
        context=context,
    )

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(args.experiment)
    with mlflow.start_run(run_name="evaluate"):
        mlflow.set_tags({"job": "evaluate"})
        mlflow.log_params(
            {
                "data": args.data,
                "split": args.split,
                "model_alias": args.model_alias,
                "model_version": args.model_version,
                "baseline": baseline is not None,
                "n_images": len(records),
                "normal_fp_min_area": args.normal_fp_min_area,
                **{f"version_{role}": v for role, v in segmenter.models.versions.items()},
            }
        )
        mlflow.log_metrics(summary_metrics(result.summary))
        mlflow.log_artifacts(str(output), artifact_path="evaluation")

    print(summary_table(result.summary))
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0 if result.summary["n_evaluated"] else 1


def training_config(tracking_uri: str, names, alias: str, version: str | None):
    """The TrainConfig logged (``train_config.json``) by the run that registered the models."""
    import json

    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts

    from tumorseg.training.config import TrainConfig

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    name = names.classifier
    mv = (
        client.get_model_version(name, str(version))
        if version is not None
        else client.get_model_version_by_alias(name, alias)
    )
    try:
        path = download_artifacts(
            run_id=mv.run_id, artifact_path="train_config.json", tracking_uri=tracking_uri
        )
    except Exception as error:
        raise SystemExit(
            f"--split needs the training run's train_config.json to rebuild its split, but run "
            f"{mv.run_id} of {name} version {mv.version} has none ({error})"
        ) from error
    return TrainConfig.from_dict(json.loads(Path(path).read_text()))


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
    return {k: float(v) for k, v in metrics.items() if v is not None}


def _key(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


if __name__ == "__main__":
    sys.exit(main())
