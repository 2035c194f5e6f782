"""Compose the application: Ingress → Classifier → Binarizer → GrayNet, or → MultiScaleFCN."""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from tumorseg.serving.deployments import Binarizer, Classifier, GrayNet, MultiScaleFCN
from tumorseg.serving.ingress import Ingress
from tumorseg.serving.settings import ServeSettings

MODEL_DEPLOYMENTS = {
    "Classifier": Classifier,
    "Binarizer": Binarizer,
    "GrayNet": GrayNet,
    "MultiScaleFCN": MultiScaleFCN,
}


def build_app(args: dict[str, Any] | None = None) -> Application:
    """The application builder of ``serve run``/``serve deploy`` (``import_path``):
    ``args`` are the config file's application args (see :class:`ServeSettings`)."""
    return compose_app(ServeSettings.from_args(args))


def compose_app(
    settings: ServeSettings,
    options: dict[str, dict[str, Any]] | None = None,
    user_config: dict[str, Any] | None = None,
) -> Application:
    """The bound application, for Python callers: ``options`` overrides deployment
    options by deployment name, ``user_config`` sets the model choice of the four
    model deployments (as the config file's per-deployment ``user_config`` does)."""
    options = options or {}
    unknown = sorted(set(options) - {*MODEL_DEPLOYMENTS, "Ingress"})
    if unknown:
        raise ValueError(f"unknown deployments {unknown}")
    bound = {}
    for name, deployment in MODEL_DEPLOYMENTS.items():
        chosen = dict(options.get(name, {}))
        if user_config is not None:
            chosen["user_config"] = user_config
        bound[name] = (deployment.options(**chosen) if chosen else deployment).bind(settings)
    ingress = Ingress.options(**options["Ingress"]) if "Ingress" in options else Ingress
    return ingress.bind(
        bound["Classifier"], bound["Binarizer"], bound["GrayNet"], bound["MultiScaleFCN"], settings
    )
