"""Train the classifier, gray net, tile FCN (and baseline) on Ray; register them in MLflow.

    python jobs/train.py                                  # smoke preset, phantom corpus
    python jobs/train.py --preset cpu --data ../shared/data/busi
    ray job submit --working-dir . -- python jobs/train.py --preset gpu --data /data/busi

--data takes a BUSI-layout folder, a manifest (CSV/Parquet) or a DICOM folder, on a
path every node sees (README, "Scale out").
"""

from __future__ import annotations

import argparse

from tumorseg.cli import HelpFormatter
from tumorseg.runtime import log_progress
from tumorseg.tracking import ModelNames
from tumorseg.training.config import PRESETS, TrainConfig, preset_config
from tumorseg.training.job import TrainJobOptions, run_train_job


def _switch(parser: argparse.ArgumentParser, flag: str, text: str) -> None:
    """``--flag`` / ``--no-flag``; unset (``None``) keeps the preset's value."""
    parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tumorseg train", description=__doc__, formatter_class=HelpFormatter
    )
    parser.add_argument("--data", help="corpus; default: a built-in phantom corpus (demo only)")
    parser.add_argument(
        "--preset", choices=sorted(PRESETS), default="smoke", help="budgets and sizes"
    )
    parser.add_argument("--num-workers", type=int, help="Ray Train workers per network")
    parser.add_argument(
        "--use-gpu",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="train on GPUs (default: the preset's)",
    )
    parser.add_argument(
        "--cpus-per-worker", type=float, help="CPUs of each Ray Train worker (default: preset's)"
    )
    parser.add_argument(
        "--placement-strategy",
        choices=["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"],
        help="where a network's workers go: PACK (default) few nodes, SPREAD many",
    )
    parser.add_argument("--epochs", type=int, help="override every network's epochs")
    parser.add_argument("--max-images", type=int, help="use only the first N images")
    parser.add_argument("--max-failures", type=int, help="worker failures tolerated per network")
    _switch(parser, "--concurrent", "train the networks at the same time (needs the resources)")
    _switch(parser, "--baseline", "also train the unrouted baseline network (default: on)")
    parser.add_argument(
        "--graynet-init",
        choices=["scratch", "baseline"],
        help="start the gray net from the baseline's weights or from scratch (default: preset's)",
    )
    parser.add_argument(
        "--classifier-init",
        choices=["scratch", "baseline"],
        help="start the ResNet classifier from the baseline's encoder or from scratch "
        "(default: preset's)",
    )
    _switch(
        parser,
        "--balance-classes",
        "weigh the classifier's loss by inverse class frequency (default: preset's)",
    )
    _switch(
        parser,
        "--choose-policy",
        "choose presence, route and fusion settings on the validation split (default: on)",
    )
    parser.add_argument("--seed", type=int, help="split, initialisation and sampling seed")
    parser.add_argument("--experiment", default="tumorseg", help="MLflow experiment")
    parser.add_argument(
        "--tracking-uri", help="default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db"
    )
    parser.add_argument("--address", help="Ray cluster address; default: $RAY_ADDRESS or local")
    parser.add_argument("--storage-path", help="Ray Train checkpoints (shared storage on clusters)")
    parser.add_argument("--model-prefix", default="tumorseg", help="registered names: PREFIX-ROLE")
    return parser.parse_args(argv)


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The preset with the flags that were given; a contradiction exits with its reason."""
    try:
        return preset_config(
            args.preset,
            num_workers=args.num_workers,
            use_gpu=args.use_gpu,
            cpus_per_worker=args.cpus_per_worker,
            placement_strategy=args.placement_strategy,
            epochs=args.epochs,
            max_images=args.max_images,
            max_failures=args.max_failures,
            concurrent=args.concurrent,
            train_baseline=args.baseline,
            graynet_init=args.graynet_init,
            classifier_init=args.classifier_init,
            balance_classes=args.balance_classes,
            choose_policy=args.choose_policy,
            seed=args.seed,
        )
    except ValueError as error:  # flags that contradict each other or the preset
        raise SystemExit(f"tumorseg train: error: {error}") from None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log_progress()
    config = train_config(args)
    run_train_job(
        TrainJobOptions(
            config=config,
            data=args.data,
            experiment=args.experiment,
            tracking_uri=args.tracking_uri,
            address=args.address,
            storage_path=args.storage_path,
            names=ModelNames.with_prefix(args.model_prefix),
        )
    )
    return 0
