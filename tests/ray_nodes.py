"""Separate Ray nodes on this machine, each a `ray start --block` process group.

A node started this way is stopped (or killed, like a lost machine) by signalling
its process group, never with `ray stop`, which would stop every Ray on the machine
(the test session's own local Ray included). Every port is chosen afresh: the
session's Ray holds the default ones. Every node gets its own temporary folder, as
on separate machines: nodes sharing one would share their runtime-environment
folders, and one node's clean-up would delete a job's working directory under the
other's feet. The state API is asked over the dashboard's HTTP address, never the
GCS address: given a GCS address, Ray points this process's global internal-KV
client at that cluster, and once the cluster is gone the test session's own Ray
driver exits after 60 s without a GCS.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

RAY_BIN = str(Path(sys.executable).with_name("ray"))
#: Ray on one machine without tokens; the head notices a dead node within a few seconds.
NODE_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def registered_checkpoint(run_dir: Path) -> bool:
    """Whether Ray Train's controller has registered a checkpoint of the run in ``run_dir``
    (a checkpoint directory appears before that; a worker killed in between restarts
    from scratch)."""
    snapshot = run_dir / "checkpoint_manager_snapshot.json"
    try:
        return json.loads(snapshot.read_text()).get("latest_checkpoint_result") is not None
    except (OSError, ValueError):  # not written yet, or caught mid-write
        return False


def _agent_ports() -> list[str]:
    return [
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--metrics-export-port={free_port()}",
    ]


@dataclass
class Node:
    process: subprocess.Popen
    node_id: str


@dataclass
class RayNodes:
    """A head (with dashboard and job server) and any number of worker nodes."""

    gcs_port: int = field(default_factory=free_port)
    dashboard_port: int = field(default_factory=free_port)
    processes: list[subprocess.Popen] = field(default_factory=list)
    temp_dirs: list[str] = field(default_factory=list)
    _temp_dir_of: dict[int, str] = field(default_factory=dict, repr=False)
    _last_error: str = field(default="", repr=False)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, **NODE_ENV}

    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def start_head(self, num_cpus: float = 2, timeout: float = 90) -> subprocess.Popen:
        head = self._start(
            "--head",
            f"--port={self.gcs_port}",
            f"--dashboard-port={self.dashboard_port}",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--num-cpus={num_cpus}",
        )
        up = self._wait(
            lambda: self._run("job", "list", "--address", self.dashboard_url), timeout, head
        ) and self._wait(self.alive_node_ids, timeout, head)  # its raylet may register later
        if not up:
            log = f"{self._last_error}\n{self._log_tail(head)}"
            self.stop()
            raise TimeoutError(f"the Ray head did not come up:\n{log}")
        return head

    def add_node(self, num_cpus: float = 2, timeout: float = 60, attempts: int = 3) -> Node:
        """A worker node joined to the head; returns once the head counts it alive.

        A node that exits or never registers within ``timeout`` is killed and started
        again with fresh ports; the error, if every attempt fails, holds what each one
        printed. (One node once failed to join in CI, with its output discarded.)
        """
        failures: list[str] = []
        for _ in range(attempts):
            before = set(self.alive_node_ids())
            process = self._start(f"--address={self.gcs_address}", f"--num-cpus={num_cpus}")

            def joined(known: set[str] = before) -> set[str]:
                return set(self.alive_node_ids()) - known

            if self._wait(joined, timeout, process):
                (node_id,) = joined()
                return Node(process, node_id)
            failures.append(f"{self._last_error}\n{self._log_tail(process)}")
            self._kill_group(process)
        reasons = "\n---\n".join(failures)
        raise TimeoutError(f"a Ray worker node did not come up in {attempts} attempts:\n{reasons}")

    def alive_node_ids(self) -> list[str]:
        from ray.util.state import list_nodes

        # Filtered here, not by the API: with a dead node about, its filter reports a
        # "truncation" and raises.
        nodes = list_nodes(address=self.dashboard_url, limit=1000, raise_on_missing_output=False)
        return [node.node_id for node in nodes if node.state == "ALIVE"]

    def kill(self, node: Node) -> None:
        """SIGKILL a node's whole process group, as if its machine were lost."""
        self._kill_group(node.process)

    def actors_on(self, node_id: str, class_prefix: str) -> list[str]:
        """Class names of the live actors on one node whose class name starts with a prefix."""
        from ray.util.state import list_actors

        actors = list_actors(
            address=self.dashboard_url,
            filters=[("node_id", "=", node_id), ("state", "=", "ALIVE")],
            limit=1000,
            raise_on_missing_output=False,
        )
        return [a.class_name for a in actors if a.class_name.startswith(class_prefix)]

    def stop(self) -> None:
        """SIGTERM every node, then SIGKILL what is left after five seconds: the cluster
        is thrown away, so waiting for a graceful stop only costs time."""
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for process in reversed(self.processes):
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        for folder in self.temp_dirs:
            shutil.rmtree(folder, ignore_errors=True)
        # A head stopped this way leaves its address behind; leave the machine as found.
        record = Path("/tmp/ray/ray_current_cluster")
        if record.exists() and str(self.gcs_port) in record.read_text():
            record.unlink()

    def submit(self, entrypoint: list[str], working_dir: Path, timeout: float = 900):
        """`ray job submit` and wait; retried while the head's job agent is not up yet."""
        runtime_env = (
            '{"excludes": [".venv", ".git", "outputs", "mlflow.db", "mlruns", "*.egg-info"]}'
        )
        command = [
            RAY_BIN, "job", "submit", "--address", self.dashboard_url,
            "--working-dir", str(working_dir), "--runtime-env-json", runtime_env, "--",
            *entrypoint,
        ]  # fmt: skip
        deadline = time.monotonic() + 120
        while True:
            done = subprocess.run(
                command, env=self.env, capture_output=True, text=True, timeout=timeout
            )
            if "No available agent to submit job" not in done.stderr:
                return done
            if time.monotonic() > deadline:
                return done
            time.sleep(3)

    def _start(self, *args: str) -> subprocess.Popen:
        # Short, under /tmp: Ray's socket paths must fit in 107 characters.
        temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
        self.temp_dirs.append(temp_dir)
        with open(Path(temp_dir) / "ray-start.log", "wb") as log:
            process = subprocess.Popen(
                [RAY_BIN, "start", "--block", f"--temp-dir={temp_dir}", *args, *_agent_ports()],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        self._temp_dir_of[process.pid] = temp_dir
        return process

    def _log_tail(self, process: subprocess.Popen, chars: int = 3000) -> str:
        """What `ray start` and the node's raylet printed: the reason a node failed."""
        temp_dir = Path(self._temp_dir_of[process.pid])
        exit_code = process.poll()
        parts = [f"`ray start` exit code: {'still running' if exit_code is None else exit_code}"]
        for log in (temp_dir / "ray-start.log", temp_dir / "session_latest/logs/raylet.out"):
            if log.exists():
                parts.append(f"{log.name}: ...{log.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    def _kill_group(self, process: subprocess.Popen) -> None:
        with contextlib.suppress(ProcessLookupError):  # the group has exited already
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def _run(self, *args: str) -> bool:
        return subprocess.run([RAY_BIN, *args], env=self.env, capture_output=True).returncode == 0

    def _wait(self, ready, timeout: float, process: subprocess.Popen) -> bool:
        """Whether ``ready()`` came true within ``timeout`` while ``process`` kept running."""
        deadline = time.monotonic() + timeout
        self._last_error = "last check: not ready"
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if ready():
                    return True
            except Exception as error:  # the node is not up yet
                self._last_error = f"last check raised {error!r}"
            time.sleep(1)
        return False
