"""A training worker killed mid-run: Ray Train restarts it and it resumes from its checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import replace

import pytest

from tumorseg.data import discover
from tumorseg.training.config import preset_config
from tumorseg.training.corpus import prepare_corpus, role_datasets
from tumorseg.training.trainer import build_trainer, fit

pytestmark = pytest.mark.slow


def training_worker_pids() -> list[int]:
    """Ray names worker processes after their actor class (``ray::RayTrainWorker…``)."""
    found = subprocess.run(["pgrep", "-f", "^ray::RayTrainWorker"], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


def test_killed_worker_resumes_from_its_checkpoint(ray_session, busi24, tmp_path) -> None:
    config = replace(preset_config("smoke", epochs=8, max_failures=2), train_baseline=False)
    corpus = prepare_corpus(discover(busi24)[:12], config)
    trainer = build_trainer(
        "baseline", role_datasets(corpus, "baseline", config), config, str(tmp_path), "killed"
    )
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(result=fit(trainer, "baseline")))
    thread.start()

    # A checkpoint directory appears before Ray Train registers it; once a second one
    # appears, the first has been reported and is what a restart resumes from.
    run_dir = tmp_path / "killed"
    seen: set[str] = set()
    deadline = time.monotonic() + 240
    while len(seen) < 2 and time.monotonic() < deadline:
        seen.update(p.name for p in run_dir.glob("checkpoint_*"))
        time.sleep(0.1)
    assert len(seen) >= 2, "training never reported two checkpoints"
    workers = training_worker_pids()
    assert workers, "no live training worker to kill"
    os.kill(workers[0], signal.SIGKILL)

    thread.join(timeout=300)
    result = outcome["result"]
    assert result.restarts >= 1  # the loop restored a checkpoint after the kill
    epochs = [row["epoch"] for row in result.history]
    assert epochs == list(range(8))  # resumed, not restarted from scratch
