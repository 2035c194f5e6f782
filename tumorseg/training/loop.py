"""The Ray Train loop every network shares (``train_loop_per_worker``).

Each worker reads its shard of the role's datasets, trains with AdamW and a
cosine schedule (mixed precision on GPU), validates every epoch, and reports
metrics with a checkpoint holding both the last and the best weights. After a
worker dies, Ray restarts the workers and this loop resumes from the last
reported checkpoint.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from monai.losses import DiceCELoss
from monai.metrics import DiceMetric, compute_roc_auc
from torch import nn

from tumorseg.networks import NetworkRole, build_network, network_role, transfer_weights
from tumorseg.training.augment import augment_batch
from tumorseg.training.config import TrainConfig

STATE_FILE = "state.pt"


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    role: str = loop_config["role"]
    config = TrainConfig.from_dict(loop_config["train"])
    spec = network_role(role)
    budget = config.budget(role)
    networks = config.segmenter.networks
    torch.manual_seed(config.seed)
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    device = ray.train.torch.get_device()

    network = build_network(role, networks)
    if loop_config.get("init_weights") is not None:  # a checkpoint, if any, overrides it below
        source = ray.get(loop_config["init_weights"])
        channels = spec.gray_channels(networks) or (0,)
        transfer_weights(source, network, channels, spec.warm_start_part)
    model = ray.train.torch.prepare_model(network)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=budget.learning_rate, weight_decay=budget.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(budget.epochs, 1))
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
    loss_fn = _loss(spec, loop_config.get("class_weights")).to(device)
    state = _restore(model, optimizer, scheduler)
    generator = torch.Generator().manual_seed(
        config.seed + ray.train.get_context().get_world_rank()
    )

    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val")
    for epoch in range(state["epoch"] + 1, budget.epochs):
        model.train()
        losses = []
        for batch in train_shard.iter_torch_batches(batch_size=budget.batch_size, device=device):
            inputs, targets = _unpack(batch, spec)
            inputs, seg_targets = augment_batch(
                inputs,
                targets if spec.task == "segmentation" else None,
                spec.gray_channels(networks),
                generator,
            )
            targets = seg_targets if spec.task == "segmentation" else targets
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, enabled=device.type == "cuda"):
                loss = loss_fn(model(inputs), targets)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            losses.append(loss.item())
        scheduler.step()
        metrics = {
            "epoch": epoch,
            "train_loss": _mean_across_workers(losses),
            "lr": scheduler.get_last_lr()[0],
        }
        metrics.update(_validate(model, val_shard, spec, loss_fn, budget.batch_size, device))
        score = metrics[spec.score_name]
        state["history"].append(metrics)
        if score >= state["best_score"]:
            state["best_score"], state["best_epoch"] = score, epoch
            state["best_model"] = _cpu_state(model)
        state["epoch"] = epoch
        metrics.update(
            best_score=state["best_score"],
            best_epoch=state["best_epoch"],
            restarts=state["restarts"],
        )
        _report(metrics, model, optimizer, scheduler, state)


def balanced_weights(labels: Sequence[int], classes: int) -> list[float]:
    """Inverse-frequency class weights, ``n / (classes * count)`` (scikit-learn's
    "balanced"); a class absent from ``labels`` gets weight 1."""
    if len(labels) == 0:
        return [1.0] * classes
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=classes)[:classes]
    return [len(labels) / (classes * c) if c else 1.0 for c in counts.tolist()]


def _loss(spec: NetworkRole, class_weights: Sequence[float] | None = None) -> nn.Module:
    if spec.task == "classification":
        weight = None if class_weights is None else torch.tensor(class_weights)
        return nn.CrossEntropyLoss(weight=weight)
    return DiceCELoss(sigmoid=True, squared_pred=True, smooth_nr=1e-5, smooth_dr=1e-5)


def _unpack(batch: dict[str, torch.Tensor], spec: NetworkRole) -> tuple[torch.Tensor, torch.Tensor]:
    inputs = batch[spec.input_column].float()
    targets = batch[spec.target_column]
    return inputs, targets.long() if spec.task == "classification" else targets.float()


@torch.no_grad()
def _validate(
    model, shard, spec: NetworkRole, loss_fn, batch_size: int, device
) -> dict[str, float]:
    model.eval()
    losses, scores, labels = [], [], []
    dice = DiceMetric(include_background=True, reduction="none", ignore_empty=True)
    for batch in shard.iter_torch_batches(batch_size=batch_size, device=device):
        inputs, targets = _unpack(batch, spec)
        outputs = model(inputs)
        losses.append(loss_fn(outputs, targets).item())
        if spec.task == "classification":
            scores.append(torch.softmax(outputs.float(), dim=1).cpu())
            labels.append(targets.cpu())
        else:
            dice(y_pred=(torch.sigmoid(outputs) >= 0.5).float(), y=targets)
    result = {"val_loss": _mean_across_workers(losses)}
    if spec.task == "classification":
        result.update(_classifier_scores(_gather(torch.cat(scores)), _gather(torch.cat(labels))))
    else:
        values = dice.get_buffer() if dice.get_buffer() is not None else torch.empty(0)
        values = values.flatten().cpu()
        total = _sum_across_workers(
            [float(values.nan_to_num(0.0).sum()), float((~values.isnan()).sum())]
        )
        result["val_dice"] = total[0] / total[1] if total[1] else 0.0
    return result


def _classifier_scores(probs: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """Accuracy over the three classes, the AUC of tumor presence (normal vs tumor) and
    of the route among tumor images; ``val_auc``, the checkpoint score, is their mean."""
    p_tumor = 1.0 - probs[:, 0]
    tumor = truth > 0
    p_het = probs[tumor, 2] / (probs[tumor, 1] + probs[tumor, 2]).clamp_min(1e-12)
    presence_auc = _auc(p_tumor, tumor.long())
    route_auc = _auc(p_het, (truth[tumor] == 2).long())
    return {
        "val_accuracy": float((probs.argmax(dim=1) == truth).float().mean()),
        "val_presence_auc": presence_auc,
        "val_route_auc": route_auc,
        "val_auc": (presence_auc + route_auc) / 2,
    }


def _auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """ROC AUC; 0.5 (chance) when only one class is present."""
    if labels.unique().numel() < 2:
        return 0.5
    return float(compute_roc_auc(scores, labels))


def _report(metrics, model, optimizer, scheduler, state) -> None:
    """Every worker reports; rank 0 attaches the checkpoint (last + best weights)."""
    with tempfile.TemporaryDirectory() as directory:
        checkpoint = None
        if ray.train.get_context().get_world_rank() == 0:
            torch.save(
                {
                    "model": _cpu_state(model),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    **state,
                },
                os.path.join(directory, STATE_FILE),
            )
            checkpoint = ray.train.Checkpoint.from_directory(directory)
        ray.train.report(metrics, checkpoint=checkpoint)


def _restore(model, optimizer, scheduler) -> dict[str, Any]:
    """Fresh state, or the last checkpoint's (after a worker failure or a resumed job)."""
    state: dict[str, Any] = {
        "epoch": -1,
        "best_score": -np.inf,
        "best_epoch": -1,
        "best_model": None,
        "history": [],
        "restarts": 0,
    }
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return state
    saved = read_state(checkpoint)
    _unwrap(model).load_state_dict(saved.pop("model"))
    optimizer.load_state_dict(saved.pop("optimizer"))
    scheduler.load_state_dict(saved.pop("scheduler"))
    state.update(saved)
    state["restarts"] += 1
    return state


def read_state(checkpoint: ray.train.Checkpoint) -> dict[str, Any]:
    """Everything a checkpoint of this loop holds: weights (last, best), optimizer, history."""
    with checkpoint.as_directory() as directory:
        return torch.load(
            os.path.join(directory, STATE_FILE), map_location="cpu", weights_only=False
        )


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in _unwrap(model).state_dict().items()}


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _sum_across_workers(values: list[float]) -> list[float]:
    tensor = torch.tensor(values, dtype=torch.float64)
    if _distributed():
        dist.all_reduce(tensor)
    return tensor.tolist()


def _mean_across_workers(values: list[float]) -> float:
    total, count = _sum_across_workers([float(np.sum(values)), float(len(values))])
    return total / count if count else float("nan")


def _gather(tensor: torch.Tensor) -> torch.Tensor:
    if not _distributed():
        return tensor
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, tensor)
    return torch.cat(parts)
