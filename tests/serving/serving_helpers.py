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


def app_for_tests(store: str, **kwargs: Any):
    """The app as the tests deploy it: small limits, a tenth of a CPU per replica."""
    from tumorseg.serving.app import build_app

    return build_app(
        {"tracking_uri": store, "max_bytes": MAX_BYTES, "max_pixels": MAX_PIXELS},
        options={name: {"ray_actor_options": {"num_cpus": 0.1}} for name in DEPLOYMENTS},
        **kwargs,
    )
