"""A training worker killed mid-run: Ray Train restarts it and it resumes from its checkpoint."""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import replace

import pytest
from ray.util.state import list_actors

from tumorseg.data import discover
from tumorseg.training.config import preset_config
from tumorseg.training.corpus import prepare_corpus, role_datasets
from tumorseg.training.trainer import build_trainer, fit

pytestmark = pytest.mark.slow


EPOCHS = 12


def live_training_worker_pids(address: str) -> list[int]:
    """Process ids of the live Ray Train worker actors, asked of this Ray's state API."""
    actors = list_actors(
        address=address,
        filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")],
    )
    return [actor.pid for actor in actors if actor.pid]


def test_killed_worker_resumes_from_its_checkpoint(ray_session, busi24, tmp_path) -> None:
    config = replace(preset_config("smoke", epochs=EPOCHS, max_failures=2), train_baseline=False)
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
    workers = live_training_worker_pids(ray_session.get_runtime_context().gcs_address)
    assert len(workers) == 1, f"expected the one worker of this run, found {workers}"
    os.kill(workers[0], signal.SIGKILL)

    thread.join(timeout=300)
    result = outcome["result"]
    assert result.restarts >= 1  # the loop restored a checkpoint after the kill
    epochs = [row["epoch"] for row in result.history]
    assert epochs == list(range(EPOCHS))  # resumed, not restarted from scratch
