"""Paths and loaders shared by the tests of cluster/ (files only: no cloud, no Kubernetes)."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"


def load_yaml(relative: str) -> Any:
    return yaml.safe_load((ROOT / relative).read_text())


def load_documents(relative: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((ROOT / relative).read_text()) if doc]


def load_script(relative: str) -> ModuleType:
    """A script that is not part of the package (jobs/…, cluster/…), imported by path."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def split_entrypoint(entrypoint: str) -> tuple[str, list[str]]:
    """``("jobs/train.py", [flags…])`` from ``python jobs/train.py flags…``."""
    words = shlex.split(entrypoint)
    assert words[0] == "python", f"entrypoint should start with python: {entrypoint}"
    return words[1], words[2:]


def dockerfile_ray_version() -> str:
    """The Ray version of the image's base (``FROM rayproject/ray:<version>-…``)."""
    match = re.search(
        r"^FROM rayproject/ray:(\d+\.\d+\.\d+)", (ROOT / "Dockerfile").read_text(), re.M
    )
    assert match, "the Dockerfile should build FROM rayproject/ray:<version>-…"
    return match.group(1)
