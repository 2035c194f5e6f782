"""serve/config.yaml is a valid Serve deploy config for this app's deployments."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from tumorseg.serving.app import MODEL_DEPLOYMENTS, build_app
from tumorseg.serving.ingress import Ingress
from tumorseg.serving.options import DEPLOYMENT_OPTIONS
from tumorseg.serving.settings import ENV_TORCH_THREADS, ServeSettings

CONFIG = Path(__file__).resolve().parents[2] / "serve" / "config.yaml"


def test_config_file_validates_and_names_every_deployment() -> None:
    raw = yaml.safe_load(CONFIG.read_text())
    schema = ServeDeploySchema.model_validate(raw)
    (app,) = schema.applications
    assert app.import_path == "serve.app:build_app"
    assert {d.name for d in app.deployments} == {*MODEL_DEPLOYMENTS, "Ingress"}
    # Serve's own end-to-end timeout: a stuck request ends as a 408, cancelled downstream
    assert raw["http_options"] == {"host": "127.0.0.1", "port": 8000, "request_timeout_s": 60}
    # The file repeats no option of the code's: the defaults live in one place.
    for deployment in raw["applications"][0]["deployments"]:
        assert set(deployment) <= {"name", "user_config"}


def test_every_deployment_is_declared_with_the_options_table() -> None:
    deployments = {**MODEL_DEPLOYMENTS, "Ingress": Ingress}
    assert set(deployments) == set(DEPLOYMENT_OPTIONS)
    for name, deployment in deployments.items():
        options = DEPLOYMENT_OPTIONS[name]
        assert deployment.name == name
        assert deployment.ray_actor_options == options["ray_actor_options"]
        assert deployment.max_ongoing_requests == options["max_ongoing_requests"]
        assert deployment.max_queued_requests == options["max_queued_requests"]
        scaling = deployment._deployment_config.autoscaling_config
        assert scaling.min_replicas >= 1 and scaling.max_replicas >= 2
        assert (
            scaling.target_ongoing_requests
            == (options["autoscaling_config"]["target_ongoing_requests"])
        )


def test_the_builder_accepts_the_config_args_and_they_repeat_no_default() -> None:
    raw = yaml.safe_load(CONFIG.read_text())
    args = raw["applications"][0]["args"]
    assert build_app(args) is not None
    defaults = ServeSettings.from_args({})
    repeated = {k: v for k, v in args.items() if getattr(defaults, k, object()) == v}
    assert not repeated, f"serve/config.yaml repeats ServeSettings' defaults: {repeated}"


def test_torch_threads_come_from_args_then_the_environment(monkeypatch) -> None:
    monkeypatch.delenv(ENV_TORCH_THREADS, raising=False)
    assert ServeSettings.from_args({}).torch_threads is None  # Ray's own default
    assert ServeSettings.from_args({"torch_threads": 2}).torch_threads == 2
    monkeypatch.setenv(ENV_TORCH_THREADS, "3")
    assert ServeSettings.from_args({}).torch_threads == 3
    with pytest.raises(ValueError, match="at least 1"):
        ServeSettings.from_args({"torch_threads": 0})


def test_upload_and_decode_seconds_come_from_args_and_must_be_positive() -> None:
    settings = ServeSettings.from_args({"upload_seconds": 5, "decode_seconds": 2.5})
    assert (settings.upload_seconds, settings.decode_seconds) == (5.0, 2.5)
    assert settings.limits.max_decode_seconds == 2.5  # what each request decodes under
    for name in ("upload_seconds", "decode_seconds"):
        with pytest.raises(ValueError, match=f"{name} must be positive"):
            ServeSettings.from_args({name: 0})


def test_the_onnx_engine_needs_a_model_folder() -> None:
    assert ServeSettings.from_args({}).engine == "torch"
    folder = ServeSettings.from_args({"engine": "onnx", "model_folder": "/models/set"})
    assert folder.engine == "onnx"
    with pytest.raises(ValueError, match="give model_folder"):
        ServeSettings.from_args({"engine": "onnx", "model_alias": "champion"})
    with pytest.raises(ValueError, match="engine must be one of"):
        ServeSettings.from_args({"engine": "tensorrt", "model_folder": "/models/set"})
