"""How jobs start: their progress log, and the Ray cluster they join."""

from __future__ import annotations

import logging
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


def log_progress(level: int = logging.INFO) -> None:
    """Print the package's log lines (``tumorseg.*``) on stderr.

    Not ``logging.basicConfig``: some library imported by the jobs installs a root
    handler first, which makes ``basicConfig`` a no-op and left the training job's
    progress lines unprinted.
    """
    logger = logging.getLogger("tumorseg")
    if not any(getattr(handler, "tumorseg_progress", False) for handler in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
        handler.tumorseg_progress = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
