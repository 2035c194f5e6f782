"""The networks of the fused method, behind one table of roles (:mod:`.roles`).

The builders are imported on first use: the role table is read by processes that
never build a network (decoders, writers, listings) and need neither torch nor MONAI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tumorseg._lazy import lazy_exports
from tumorseg.networks.roles import (
    ALL_ROLES,
    FUSED_ROLES,
    ROLES,
    NetworkRole,
    build_network,
    network_role,
)

if TYPE_CHECKING:
    from tumorseg.networks.baseline import build_baseline
    from tumorseg.networks.classifier import build_route_classifier
    from tumorseg.networks.graynet import build_graynet, graynet_in_channels
    from tumorseg.networks.tile_fcn import build_tile_fcn
    from tumorseg.networks.warm_start import transfer_weights

_DEFERRED = {
    "build_baseline": "baseline",
    "build_graynet": "graynet",
    "build_route_classifier": "classifier",
    "build_tile_fcn": "tile_fcn",
    "graynet_in_channels": "graynet",
    "transfer_weights": "warm_start",
}

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


__getattr__ = lazy_exports(__name__, {n: f"{__name__}.{m}" for n, m in _DEFERRED.items()})
