"""`ray job submit` of jobs/train.py to a `ray start --head` cluster the test starts and stops."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient
from ray_nodes import RayNodes

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def head_node():
    nodes = RayNodes()
    nodes.start_head(num_cpus=2)
    yield nodes
    nodes.stop()


def test_ray_job_submit_trains_and_registers(head_node, busi24, tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    entrypoint = [
        "python", "jobs/train.py", "--preset", "smoke", "--epochs", "1", "--no-baseline",
        "--data", str(busi24), "--tracking-uri", uri, "--storage-path", str(tmp_path / "ray"),
    ]  # fmt: skip
    submit = head_node.submit(entrypoint, REPO, timeout=600)
    assert submit.returncode == 0, submit.stdout[-3000:] + submit.stderr[-3000:]
    assert "succeeded" in (submit.stdout + submit.stderr).lower()
    client = MlflowClient(uri)
    for name in ("tumorseg-classifier", "tumorseg-graynet", "tumorseg-fcn"):
        assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
