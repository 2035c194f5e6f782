"""Shared fixtures: where the real BUSI corpus lives, and a quiet, offline environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
BUSI_ROOT = Path(os.environ.get("TUMORSEG_BUSI", REPO_ROOT.parent / "shared" / "data" / "busi"))

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(scope="session")
def busi_root() -> Path:
    """The real BUSI corpus (``../shared/data/busi`` beside the repo, or ``$TUMORSEG_BUSI``)."""
    if not (BUSI_ROOT / "benign").is_dir():
        pytest.skip(f"BUSI corpus not found at {BUSI_ROOT}")
    return BUSI_ROOT
