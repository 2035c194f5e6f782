"""Write a registered model set as a model folder that leaves the registry.

    tumorseg export -o model/                          # the champion, with its baseline
    tumorseg export -o model/ --model-version 3 --onnx --evaluation eval-test/summary.json

The folder holds each network's weights (safetensors) and description, the segmenter
config, ONNX graphs with ``--onnx`` (each checked against torch), and a model card
(``metadata.json``, ``MODEL_CARD.md``: intended use, provenance, training data and
split, validation figures, and test figures from ``--evaluation``). ``tumorseg
predict -m DIR`` and ``tumorseg segment --model-folder DIR`` load it without MLflow.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from tumorseg.cli import HelpFormatter


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tumorseg export", description=__doc__, formatter_class=HelpFormatter
    )
    parser.add_argument("-o", "--output", required=True, help="the model folder to write")
    parser.add_argument("--model-alias", help="registry alias (default: champion)")
    parser.add_argument("--model-version", help="registry version (instead of an alias)")
    parser.add_argument("--model-prefix", default="tumorseg", help="registered names PREFIX-ROLE")
    parser.add_argument(
        "--tracking-uri", help="default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db"
    )
    parser.add_argument(
        "--onnx", action="store_true", help="also write an ONNX graph per fused network"
    )
    parser.add_argument(
        "--evaluation", help="a summary.json of tumorseg evaluate: its figures go in the card"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from mlflow.exceptions import MlflowException

    from tumorseg.inference.model_folder import save_model_folder
    from tumorseg.tracking import (
        ModelArtifactError,
        ModelNames,
        ModelNotFoundError,
        ModelSelector,
        load_baseline,
        load_model_set,
        resolve_tracking_uri,
    )

    try:
        selector = ModelSelector(args.model_alias, args.model_version)
        uri = resolve_tracking_uri(args.tracking_uri)
        names = ModelNames.with_prefix(args.model_prefix)
        models, config = load_model_set(uri, selector, names=names)
        baseline = load_baseline(uri, selector, names=names)
        card = _card(uri, selector, names, models.versions, args.evaluation)
    except (ValueError, ModelNotFoundError, ModelArtifactError, MlflowException) as error:
        raise SystemExit(f"tumorseg export: error: {error}") from None
    folder = save_model_folder(
        args.output, models, config, baseline=baseline, card=card, onnx=args.onnx
    )
    if args.onnx:
        differences = json.loads((folder / "metadata.json").read_text())["onnx_max_difference"]
        print("ONNX graphs checked against torch:", differences)
    print(f"wrote {folder} ({', '.join(sorted(models.versions.values()))})")
    return 0


def _card(uri: str, selector, names, versions: dict[str, str], evaluation: str | None) -> dict:
    """Provenance, data and figures of the set, from its training run (the one that
    registered the classifier version ``selector`` names, as evaluation's splits)."""
    from tumorseg.tracking.loading import find_version
    from tumorseg.tracking.uris import registry_client

    client = registry_client(uri)
    run = client.get_run(find_version(client, names.classifier, selector, uri).run_id)
    params, metrics = run.data.params, run.data.metrics
    card = {
        "tumorseg_version": _version(),
        "git_commit": _git_commit(),
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": f"{uri} ({', '.join(sorted(versions.values()))})",
        "training_run_id": run.info.run_id,
        "training_data": run.data.tags.get("data") or params.get("data", ""),
        "split_counts": {k: int(v) for k, v in params.items() if k.startswith("n_")},
        "figures": {k: float(v) for k, v in metrics.items() if k.endswith("_val_dice")},
    }
    if evaluation:
        summary = json.loads(Path(evaluation).read_text())
        card["figures"].update(_evaluation_figures(summary, evaluation))
    return card


def _evaluation_figures(summary: dict, source: str) -> dict[str, float | str]:
    split = (summary.get("context") or {}).get("split", "evaluation")
    figures: dict[str, float | str] = {f"{split}_source": source}
    for method in ("fused", "baseline"):
        for key in ("dice", "hd95", "miss_rate", "normal_fp_rate"):
            value = (summary.get(method) or {}).get(key)
            if isinstance(value, (int, float)):
                figures[f"{split}_{method}_{key}"] = float(value)
    return figures


def _version() -> str:
    try:
        return metadata.version("tumorseg")
    except metadata.PackageNotFoundError:
        return "unknown"


def _git_commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown"


if __name__ == "__main__":
    sys.exit(main())
