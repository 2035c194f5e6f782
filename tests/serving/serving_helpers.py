"""Helpers of the serving tests: limits, a free port, a second model set, the app."""

from __future__ import annotations

import socket
from typing import Any

import mlflow

from tumorseg.inference.models import ModelSet, example_inputs
from tumorseg.networks import FUSED_ROLES
from tumorseg.tracking import ModelNames, register_model_set
from tumorseg.training.config import preset_config

MAX_BYTES = 2_000_000
MAX_PIXELS = 4_000_000
DEPLOYMENTS = ("Ingress", "Classifier", "Binarizer", "GrayNet", "MultiScaleFCN")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def register_candidate(uri: str) -> None:
    """A second set (version 2) with the alias ``candidate``, for the live switch."""
    config = preset_config("smoke").segmenter
    models = ModelSet.untrained(config.networks, seed=1)
    client = mlflow.MlflowClient(uri)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        experiment = client.get_experiment_by_name("champion").experiment_id
        with mlflow.start_run(experiment_id=experiment):
            register_model_set(
                {role: getattr(models, role) for role in FUSED_ROLES},
                config,
                ModelNames(),
                example_inputs(config.networks, FUSED_ROLES),
            )
    finally:
        mlflow.set_tracking_uri(previous)


def app_config(store: str, port: int, user_config: dict[str, Any] | None = None) -> dict:
    """A ``serve deploy`` config (as serve/config.yaml) of the app for the tests: small
    limits and a tenth of a CPU per replica. Deploying by config makes a change of
    ``user_config`` alone a lightweight update: replicas reconfigure in place."""
    deployments = []
    for name in DEPLOYMENTS:
        deployment: dict[str, Any] = {"name": name, "ray_actor_options": {"num_cpus": 0.1}}
        if user_config is not None and name != "Ingress":
            deployment["user_config"] = user_config
        deployments.append(deployment)
    return {
        "http_options": {"host": "127.0.0.1", "port": port},
        "applications": [
            {
                "name": "tumorseg",
                "route_prefix": "/",
                "import_path": "tumorseg.serving.app:build_app",
                "args": {"tracking_uri": store, "max_bytes": MAX_BYTES, "max_pixels": MAX_PIXELS},
                "deployments": deployments,
            }
        ],
    }


def deploy(config: dict, timeout_s: float = 180) -> None:
    """``serve deploy`` through the dashboard's REST API, then wait until it runs."""
    import time

    import ray
    from ray import serve
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

    client = ServeSubmissionClient(f"http://{ray._private.worker.get_dashboard_url()}")
    client.deploy_applications(config)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(1)
        status = serve.status().applications.get("tumorseg")
        if (
            status is not None
            and status.status == "RUNNING"
            and all(d.status == "HEALTHY" for d in status.deployments.values())
        ):
            return
    raise TimeoutError(f"the app did not become healthy in {timeout_s} s: {serve.status()}")
