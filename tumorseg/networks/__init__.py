"""The three networks of the fused method, behind a registry of builders."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from tumorseg.config import NetworkConfig
from tumorseg.networks.baseline import build_baseline
from tumorseg.networks.classifier import build_route_classifier
from tumorseg.networks.graynet import build_graynet, graynet_in_channels
from tumorseg.networks.tile_fcn import build_tile_fcn
from tumorseg.networks.warm_start import transfer_weights

#: Role name → builder. Training, registry and serving refer to models by these names.
NETWORK_BUILDERS: dict[str, Callable[[NetworkConfig], nn.Module]] = {
    "classifier": build_route_classifier,
    "graynet": build_graynet,
    "fcn": build_tile_fcn,
    "baseline": build_baseline,
}
#: The roles a fused segmenter needs (the baseline is only for evaluation).
FUSED_ROLES: tuple[str, ...] = ("classifier", "graynet", "fcn")


def build_network(role: str, config: NetworkConfig) -> nn.Module:
    try:
        builder = NETWORK_BUILDERS[role]
    except KeyError:
        raise ValueError(
            f"unknown network role {role!r}; known: {sorted(NETWORK_BUILDERS)}"
        ) from None
    return builder(config)


__all__ = [
    "FUSED_ROLES",
    "NETWORK_BUILDERS",
    "build_baseline",
    "build_graynet",
    "build_network",
    "build_route_classifier",
    "build_tile_fcn",
    "graynet_in_channels",
    "transfer_weights",
]
