"""Evaluate a registered model set (and the no-routing baseline) on a labeled corpus.

Loads the fused models by alias or version from the MLflow registry, predicts
every image of ``--data`` once (every network's maps saved in
``OUTPUT/predictions``), scores the predictions under the registered config and
writes into ``--output``: ``rows.parquet`` (one row per image), ``summary.json``,
``report.md`` with the tables, a Dice histogram and overlays.
The same files and the headline metrics are logged to an MLflow run named
``evaluate``.

    python jobs/evaluate.py --data ../shared/data/busi --output eval/
    python jobs/evaluate.py --data manifest.csv --model-version 3 --no-baseline
    python jobs/evaluate.py --data ../shared/data/busi --split test --output eval-test \
        --reuse-predictions --policy fusion=hard      # rescore, no network runs again
"""

from __future__ import annotations

import argparse

from tumorseg.cli import HelpFormatter


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tumorseg evaluate", description=__doc__, formatter_class=HelpFormatter
    )
    parser.add_argument(
        "--data", required=True, help="BUSI-layout folder, manifest (CSV/Parquet) or DICOM folder"
    )
    parser.add_argument(
        "--output", default="evaluation", help="output folder (default: evaluation)"
    )
    parser.add_argument("--model-alias", help="registry alias (default: champion)")
    parser.add_argument("--model-version", help="registry version (instead of an alias)")
    parser.add_argument(
        "--baseline-alias", help="alias of tumorseg-baseline (default: the fused set's choice)"
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
        help="evaluate only the images the training run put in this split (its logged "
        "splits.json); --data must be the corpus it trained on (default: all)",
    )
    parser.add_argument("--batch-size", type=int, default=8, help="images per network call")
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
    parser.add_argument(
        "--reuse-predictions",
        action="store_true",
        help="score the predictions saved in OUTPUT/predictions by an earlier run instead of "
        "running the networks again",
    )
    parser.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="replace a setting of the registered config, e.g. fusion=hard, "
        "presence_source=none, route_threshold=0.6 (repeatable)",
    )
    parser.add_argument(
        "--no-compare", action="store_true", help="skip the table of alternative policies"
    )
    return parser.parse_args(argv)


def parse_policy(items: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` strings as SegmenterConfig settings (numbers and booleans parsed,
    comma-separated values as tuples)."""
    import json

    from tumorseg.config import SegmenterConfig

    defaults = SegmenterConfig()
    policy: dict[str, object] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not hasattr(defaults, key):
            raise SystemExit(
                f"error: --policy wants KEY=VALUE with a SegmenterConfig key, got {item!r}"
            )
        if isinstance(getattr(defaults, key), tuple):
            policy[key] = tuple(v for v in text.split(",") if v)
            continue
        try:
            policy[key] = json.loads(text.lower() if text.lower() in ("true", "false") else text)
        except json.JSONDecodeError:
            policy[key] = text
    return policy


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    from tumorseg.evaluation.job import EvaluateJobOptions, run_evaluate_job
    from tumorseg.runtime import log_progress
    from tumorseg.tracking import ModelNames, ModelNotFoundError, ModelSelector

    log_progress()
    try:
        models = ModelSelector(args.model_alias, args.model_version)
        baseline_models = (
            ModelSelector(args.baseline_alias, args.baseline_version)
            if args.baseline_alias or args.baseline_version
            else None
        )
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    options = EvaluateJobOptions(
        data=args.data,
        output=args.output,
        models=models,
        baseline_models=baseline_models,
        baseline=not args.no_baseline,
        tracking_uri=args.tracking_uri,
        experiment=args.experiment,
        names=ModelNames.with_prefix(args.model_prefix),
        split=args.split,
        batch_size=args.batch_size,
        limit=args.limit,
        device=args.device,
        normal_fp_min_area=args.normal_fp_min_area,
        examples=args.examples,
        log_every=args.log_every,
        reuse_predictions=args.reuse_predictions,
        policy=parse_policy(args.policy),
        compare=not args.no_compare,
    )
    try:
        result = run_evaluate_job(options)
    except (ModelNotFoundError, LookupError, ValueError) as error:
        raise SystemExit(f"error: {error}") from error
    return 0 if result.summary["n_evaluated"] else 1
