"""A training worker killed mid-run: Ray Train restarts it and it resumes from its checkpoint."""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import replace

import pytest
from ray.util.state import list_actors
from ray_nodes import registered_checkpoint

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

    # The worker is looked up first (the state API takes a second or so), so that the
    # kill follows the registration of a checkpoint at once. A checkpoint directory
    # appears before the controller registers it (a kill in between restarts from
    # scratch); the controller's snapshot file names the registered one.
    address = ray_session.get_runtime_context().gcs_address
    deadline = time.monotonic() + 240
    workers: list[int] = []
    while not workers and time.monotonic() < deadline:
        workers = live_training_worker_pids(address)
        time.sleep(0.1)
    assert len(workers) == 1, f"expected the one worker of this run, found {workers}"
    while not registered_checkpoint(tmp_path / "killed") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert registered_checkpoint(tmp_path / "killed"), "no checkpoint was ever registered"
    os.kill(workers[0], signal.SIGKILL)
    assert thread.is_alive(), "the kill must land mid-run"

    thread.join(timeout=300)
    result = outcome["result"]
    assert result.restarts >= 1  # the loop restored a checkpoint after the kill
    epochs = [row["epoch"] for row in result.history]
    assert epochs == list(range(EPOCHS))  # resumed, not restarted from scratch
