"""The deployment options of the Serve app, in one place.

Sized so that one replica of each fills a two-core machine: a network replica claims
0.6 CPU (it computes on one thread), the ingress and the binarizer 0.1 each. There a
second replica, which could only share the same two cores, cannot be placed, and the
app holds its throughput under load instead of losing it to replicas starting and
contending; on larger nodes the autoscaler adds replicas (up to two each) as CPUs
allow. The ingress takes 16 requests at once and queues 16 more: beyond that, Serve
answers 503 at once instead of queueing for seconds. The
deployments are declared with these; a deploy config (``serve/config.yaml``) lists
only what it changes, and Serve takes an option given there over the one here
(``ray_actor_options`` as a whole: give ``num_cpus`` beside ``num_gpus``).
"""

from __future__ import annotations

import copy
from typing import Any

_AUTOSCALING: dict[str, Any] = {
    "min_replicas": 1,
    "max_replicas": 2,
    "upscale_delay_s": 2,
    "downscale_delay_s": 15,
    "metrics_interval_s": 1,
    "look_back_period_s": 5,
}


def _options(num_cpus: float, ongoing: int, queued: int, target: int) -> dict[str, Any]:
    return {
        "ray_actor_options": {"num_cpus": num_cpus},
        "max_ongoing_requests": ongoing,
        "max_queued_requests": queued,  # beyond this, 503
        "autoscaling_config": {**_AUTOSCALING, "target_ongoing_requests": target},
    }


_NETWORK = _options(num_cpus=0.6, ongoing=16, queued=64, target=4)

#: Options by deployment name; the network deployments run a model, the others do not.
DEPLOYMENT_OPTIONS: dict[str, dict[str, Any]] = {
    "Ingress": _options(num_cpus=0.1, ongoing=16, queued=16, target=8),
    "Classifier": _NETWORK,
    "Binarizer": _options(num_cpus=0.1, ongoing=32, queued=128, target=8),
    "GrayNet": _NETWORK,
    "MultiScaleFCN": _NETWORK,
}
NETWORK_DEPLOYMENTS = ("Classifier", "GrayNet", "MultiScaleFCN")


def deployment_options(name: str) -> dict[str, Any]:
    """A copy of one deployment's options, as ``serve.deployment`` takes them."""
    return {"name": name, **copy.deepcopy(DEPLOYMENT_OPTIONS[name])}
