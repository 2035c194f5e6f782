"""The networks of the fused method, behind one table of roles (:mod:`.roles`)."""

from __future__ import annotations

from tumorseg.networks.baseline import build_baseline
from tumorseg.networks.classifier import build_route_classifier
from tumorseg.networks.graynet import build_graynet, graynet_in_channels
from tumorseg.networks.roles import (
    ALL_ROLES,
    FUSED_ROLES,
    ROLES,
    NetworkRole,
    build_network,
    network_role,
)
from tumorseg.networks.tile_fcn import build_tile_fcn
from tumorseg.networks.warm_start import transfer_weights

__all__ = [
    "ALL_ROLES",
    "FUSED_ROLES",
    "ROLES",
    "NetworkRole",
    "build_baseline",
    "build_graynet",
    "build_network",
    "build_route_classifier",
    "build_tile_fcn",
    "graynet_in_channels",
    "network_role",
    "transfer_weights",
]
