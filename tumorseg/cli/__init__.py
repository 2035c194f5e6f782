"""``tumorseg train | evaluate | segment | predict | export | serve``.

Each subcommand is a module of this package with ``parse_args`` and ``main``;
``jobs/*.py`` wrap the Ray jobs so that ``ray job submit -- python jobs/train.py``
keeps working from a working directory.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, str] = {
    "train": "train the networks on Ray and register them in MLflow",
    "evaluate": "score a registered set (and the baseline) on a labeled corpus",
    "segment": "segment an archive on Ray Data (exactly once per input)",
    "predict": "segment a folder on this machine from a model folder (no MLflow, no Ray)",
    "export": "write a registered set as a model folder (weights, config, ONNX, card)",
    "serve": "run the Ray Serve application (serve/config.yaml)",
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Keeps the docstring's layout and shows every flag's default (flags whose default
    is "unset" say in their help what unset means)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default in (None, argparse.SUPPRESS) or "(default" in text:
            return text
        return super()._get_help_string(action)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        lines = [f"  {name:<9} {text}" for name, text in COMMANDS.items()]
        print("usage: tumorseg COMMAND [flags]   (tumorseg COMMAND --help)\n\ncommands:")
        print("\n".join(lines))
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    command = importlib.import_module(f"tumorseg.cli.{argv[0]}")
    return int(command.main(argv[1:]) or 0)
