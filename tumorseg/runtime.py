"""How jobs join Ray: the cluster they are given, else a fresh local one."""

from __future__ import annotations

import os

import ray


def init_ray(address: str | None = None) -> None:
    """Join ``address`` or ``$RAY_ADDRESS`` (e.g. under ``ray job submit``), else start locally.

    Without either, a fresh local Ray is started (``"local"``) rather than joining
    whatever cluster ``/tmp/ray`` last recorded: that record can be stale. A Ray that
    is already initialised in this process (tests, notebooks) is used as it is.
    """
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address=address or os.environ.get("RAY_ADDRESS") or "local", log_to_driver=True)
