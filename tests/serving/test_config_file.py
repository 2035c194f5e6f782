"""serve/config.yaml is a valid Serve deploy config for this app's deployments."""

from __future__ import annotations

from pathlib import Path

import yaml
from ray.serve.schema import ServeDeploySchema

from tumorseg.serving.app import MODEL_DEPLOYMENTS, build_app

CONFIG = Path(__file__).resolve().parents[2] / "serve" / "config.yaml"


def test_config_file_validates_and_names_every_deployment() -> None:
    raw = yaml.safe_load(CONFIG.read_text())
    schema = ServeDeploySchema.model_validate(raw)
    (app,) = schema.applications
    assert app.import_path == "serve.app:build_app"
    assert {d.name for d in app.deployments} == {*MODEL_DEPLOYMENTS, "Ingress"}
    assert raw["http_options"] == {"host": "127.0.0.1", "port": 8000}
    for deployment in app.deployments:
        scaling = deployment.autoscaling_config
        assert scaling["min_replicas"] >= 1 and scaling["max_replicas"] >= 2


def test_the_builder_accepts_the_config_args() -> None:
    raw = yaml.safe_load(CONFIG.read_text())
    application = build_app(raw["applications"][0]["args"])
    assert application is not None
