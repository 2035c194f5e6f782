"""One spec per network role: how it is built, what it takes in, what it trains on,
how it is scored and under which name it is registered.

Training (shards, columns, loss, score, warm start), inference (example inputs),
the registry (names, the fused set) and the bulk job (the versions it records) all
read :data:`ROLES`; a new role is one entry here plus its builder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from tumorseg.config import NetworkConfig

if TYPE_CHECKING:
    from torch import nn

#: Which images a role trains on (see tumorseg.training.corpus).
Shard = Literal["all", "homogeneous+normal", "heterogeneous"]


@dataclass(frozen=True)
class NetworkRole:
    """Everything that differs between the networks of the method."""

    name: str
    build: Callable[[NetworkConfig], nn.Module]
    input_channels: Callable[[NetworkConfig], int]
    input_size: Callable[[NetworkConfig], int]
    fused: bool  # part of the fused set; else the evaluation-only baseline
    shard: Shard
    input_column: str  # the training dataset's columns
    target_column: str
    task: Literal["segmentation", "classification"]
    score_name: str  # the validation metric that picks the best epoch
    warm_start_part: str = ""  # which of the baseline's tensors a warm start takes ("": all)

    def example_input(self, networks: NetworkConfig) -> np.ndarray:
        """One zero input ``(1, C, S, S)``, shaped as inference feeds it."""
        size = self.input_size(networks)
        return np.zeros((1, self.input_channels(networks), size, size), np.float32)

    def gray_channels(self, networks: NetworkConfig) -> tuple[int, ...]:
        """Input channels holding gray levels (augmented in intensity during training)."""
        if self.name == "graynet":
            return (1,) if networks.graynet_input == "binary+gray" else ()
        if self.name == "fcn":  # tile and context, not the guide
            return (0, 1)
        return (0,)


def _one(networks: NetworkConfig) -> int:
    return 1


def _deferred(module: str, name: str) -> Callable[[NetworkConfig], Any]:
    """``module.name(networks)``, imported on the first call: the processes that read
    this table without building a network (decoders, writers, the listing) need
    neither torch nor MONAI."""

    def call(networks: NetworkConfig) -> Any:
        return getattr(import_module(f"tumorseg.networks.{module}"), name)(networks)

    call.__name__ = call.__qualname__ = name
    return call


def _fcn_input_channels(networks: NetworkConfig) -> int:
    return import_module("tumorseg.networks.tile_fcn").FCN_INPUT_CHANNELS


ROLES: dict[str, NetworkRole] = {
    role.name: role
    for role in (
        NetworkRole(
            name="classifier",
            build=_deferred("classifier", "build_route_classifier"),
            input_channels=_one,
            input_size=lambda n: n.classifier_size,
            fused=True,
            shard="all",
            input_column="classifier_input",
            target_column="class_index",
            task="classification",
            score_name="val_auc",
            warm_start_part="encoder.",
        ),
        NetworkRole(
            name="graynet",
            build=_deferred("graynet", "build_graynet"),
            input_channels=_deferred("graynet", "graynet_in_channels"),
            input_size=lambda n: n.graynet_size,
            fused=True,
            shard="homogeneous+normal",
            input_column="graynet_input",
            target_column="seg_mask",
            task="segmentation",
            score_name="val_dice",
        ),
        NetworkRole(
            name="fcn",
            build=_deferred("tile_fcn", "build_tile_fcn"),
            input_channels=_fcn_input_channels,
            input_size=lambda n: n.fcn_tile_size,
            fused=True,
            shard="heterogeneous",
            input_column="inputs",
            target_column="targets",
            task="segmentation",
            score_name="val_dice",
        ),
        NetworkRole(
            name="baseline",
            build=_deferred("baseline", "build_baseline"),
            input_channels=_one,
            input_size=lambda n: n.graynet_size,
            fused=False,
            shard="all",
            input_column="baseline_input",
            target_column="seg_mask",
            task="segmentation",
            score_name="val_dice",
        ),
    )
}
#: The roles a fused segmenter needs, in registration order (the baseline is optional).
FUSED_ROLES: tuple[str, ...] = tuple(name for name, role in ROLES.items() if role.fused)
ALL_ROLES: tuple[str, ...] = tuple(ROLES)


def network_role(name: str) -> NetworkRole:
    try:
        return ROLES[name]
    except KeyError:
        raise ValueError(f"unknown network role {name!r}; known: {list(ROLES)}") from None


def build_network(role: str, config: NetworkConfig) -> nn.Module:
    return network_role(role).build(config)
