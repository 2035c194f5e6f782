"""One Ray Train ``TorchTrainer`` per network."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ray
import ray.data
import torch
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from tumorseg.training.config import TrainConfig
from tumorseg.training.loop import read_state, train_loop_per_worker


@dataclass
class FitResult:
    role: str
    best_weights: dict[str, torch.Tensor]
    history: list[dict[str, Any]]
    best_score: float
    restarts: int
    checkpoint_path: str


def build_trainer(
    role: str,
    datasets: dict[str, ray.data.Dataset],
    config: TrainConfig,
    storage_path: str,
    run_name: str,
    init_weights: ray.ObjectRef | None = None,
    class_weights: list[float] | None = None,
) -> TorchTrainer:
    """A trainer whose workers resume from their last checkpoint after a failure.

    ``init_weights`` (a state dict in the object store) starts the network from
    another's weights (see :func:`tumorseg.networks.transfer_weights`);
    ``class_weights`` weigh a classifier's cross-entropy per class.
    """
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "role": role,
            "train": config.to_dict(),
            "init_weights": init_weights,
            "class_weights": class_weights,
        },
        scaling_config=ScalingConfig(
            num_workers=config.num_workers,
            use_gpu=config.use_gpu,
            resources_per_worker={
                "CPU": config.cpus_per_worker,
                **({"GPU": 1} if config.use_gpu else {}),
            },
            placement_strategy=config.placement_strategy,
        ),
        run_config=RunConfig(
            name=run_name,
            storage_path=storage_path,
            failure_config=FailureConfig(max_failures=config.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=1),  # holds last and best weights
        ),
        datasets=datasets,
    )


def fit(trainer: TorchTrainer, role: str) -> FitResult:
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"training {role} reported no checkpoint")
    saved = read_state(result.checkpoint)
    return FitResult(
        role=role,
        best_weights=saved["best_model"] if saved["best_model"] is not None else saved["model"],
        history=saved["history"],
        best_score=float(saved["best_score"]),
        restarts=int(saved["restarts"]),
        checkpoint_path=result.checkpoint.path,
    )
