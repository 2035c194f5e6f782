"""Run the Ray Serve application (``serve run``) with a Serve config file.

    tumorseg serve                         # serve/config.yaml: 127.0.0.1:8000
    tumorseg serve --config my-config.yaml

Stops on SIGTERM (or Ctrl-C in a terminal). The models come from the config's
``args`` or from $MLFLOW_TRACKING_URI and $TUMORSEG_MODEL_ALIAS (README, "Serve").
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from tumorseg.cli import HelpFormatter


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tumorseg serve", description=__doc__, formatter_class=HelpFormatter
    )
    parser.add_argument(
        "--config", default="serve/config.yaml", help="Serve config (from the repository root)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not os.path.isfile(args.config):
        raise SystemExit(f"tumorseg serve: error: no Serve config at {args.config}")
    serve = shutil.which("serve")
    if serve is None:
        raise SystemExit("tumorseg serve: error: Ray Serve's `serve` command is not installed")
    os.execv(serve, [serve, "run", args.config])
    return 0  # pragma: no cover - execv does not return


if __name__ == "__main__":
    sys.exit(main())
