"""Shared fixtures: where the real BUSI corpus lives, and a quiet, offline environment."""

from __future__ import annotations

import csv
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


def write_busi_manifest(busi_root: Path, path: Path, per_label: int) -> Path:
    """A manifest of the first ``per_label`` real BUSI images of each label."""
    from tumorseg.data import discover_busi

    by_label: dict[str, list] = {}
    for record in discover_busi(busi_root):
        by_label.setdefault(record.label, []).append(record)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "mask", "label"])
        for label in sorted(by_label):
            for record in by_label[label][:per_label]:
                writer.writerow([record.path, ";".join(record.mask_paths), label])
    return path


@pytest.fixture(scope="session")
def busi24(busi_root, tmp_path_factory) -> Path:
    """24 real BUSI images (8 benign, 8 malignant, 8 normal) as a CSV manifest."""
    return write_busi_manifest(busi_root, tmp_path_factory.mktemp("busi") / "busi24.csv", 8)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (3–5 s to start; shared by every Ray test).

    Two logical CPUs as on the CI machine; the dashboard stays on because Ray Train
    needs it.
    """
    import ray

    if not ray.is_initialized():
        # "local": never join a cluster another test (or a stale address file) points at.
        ray.init(address="local", num_cpus=2, include_dashboard=True, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch) -> str:
    """A fresh MLflow sqlite store for one test, made the process' tracking URI."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    return uri


@pytest.fixture(scope="session")
def champion_store(tmp_path_factory) -> str:
    """A sqlite MLflow store with two untrained tiny model sets: version 1 is
    ``champion``, version 2 only ``candidate`` (for live model switches).

    For jobs that load models by alias (bulk segmentation, serving); untrained
    weights make their outputs meaningless, so tests built on it check plumbing only.
    """
    import mlflow

    from tumorseg.inference.models import ModelSet
    from tumorseg.networks import FUSED_ROLES
    from tumorseg.tracking import ModelNames, promote_if_better, register_model_set
    from tumorseg.training.config import preset_config

    root = tmp_path_factory.mktemp("champion")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    config = preset_config("smoke").segmenter
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.create_experiment(
            "champion", artifact_location=(root / "artifacts").as_uri()
        )
        for seed in (0, 1):
            models = ModelSet.untrained(config.networks, seed=seed)
            with mlflow.start_run(experiment_id=experiment):
                versions = register_model_set(
                    {role: getattr(models, role) for role in FUSED_ROLES},
                    config,
                    ModelNames(),
                )
                if seed == 0:
                    promote_if_better(versions, 0.0, ModelNames())
    finally:
        mlflow.set_tracking_uri(previous)
    return uri
