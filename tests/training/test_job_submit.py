"""`ray job submit` of jobs/train.py to a `ray start --head` cluster the test starts and stops."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def head_node(tmp_path):
    """A separate Ray head on its own ports; ``--block`` lets us stop it without `ray stop`."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    port, dashboard = free_port(), free_port()
    ray_bin = str(Path(sys.executable).with_name("ray"))
    # Every port of its own: the test session's local Ray holds the default agent ports.
    ports = [
        f"--port={port}",
        f"--dashboard-port={dashboard}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--metrics-export-port={free_port()}",
    ]
    head = subprocess.Popen(
        [ray_bin, "start", "--head", "--block", "--num-cpus=2", "--include-dashboard=true",
         "--dashboard-host=127.0.0.1", *ports],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    address = f"http://127.0.0.1:{dashboard}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        probe = subprocess.run(
            [ray_bin, "job", "list", "--address", address], env=env, capture_output=True, text=True
        )
        if probe.returncode == 0:
            break
        time.sleep(1)
    else:
        head.kill()
        pytest.fail("the Ray head did not come up")
    yield address, env, ray_bin
    os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)
    # A head stopped this way leaves its address behind; leave the machine as we found it.
    record = Path("/tmp/ray/ray_current_cluster")
    if record.exists() and str(port) in record.read_text():
        record.unlink()


def test_ray_job_submit_trains_and_registers(head_node, busi24, tmp_path) -> None:
    address, env, ray_bin = head_node
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runtime_env = {"excludes": [".venv", ".git", "outputs", "mlflow.db", "*.egg-info"]}
    command = [
        ray_bin, "job", "submit", "--address", address, "--working-dir", str(REPO),
        "--runtime-env-json", json.dumps(runtime_env), "--",
        "python", "jobs/train.py", "--preset", "smoke", "--epochs", "1", "--no-baseline",
        "--data", str(busi24), "--tracking-uri", uri, "--storage-path", str(tmp_path / "ray"),
    ]  # fmt: skip
    deadline = time.monotonic() + 120
    while True:  # the head's job agent starts a little after its dashboard answers
        submit = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        not_ready = "No available agent to submit job" in submit.stderr
        if not not_ready or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert submit.returncode == 0, submit.stdout[-3000:] + submit.stderr[-3000:]
    assert "succeeded" in (submit.stdout + submit.stderr).lower()
    client = MlflowClient(uri)
    for name in ("tumorseg-classifier", "tumorseg-graynet", "tumorseg-fcn"):
        assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
