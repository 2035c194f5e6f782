"""The model deployments load a model folder as they load a registered set."""

from __future__ import annotations

from tumorseg.inference.model_folder import save_model_folder
from tumorseg.inference.models import ModelSet
from tumorseg.serving.deployments import Binarizer, Classifier, GrayNet, MultiScaleFCN
from tumorseg.serving.settings import ServeSettings
from tumorseg.training.config import preset_config


def test_every_model_deployment_serves_a_model_folder(tmp_path) -> None:
    config = preset_config("smoke").segmenter
    models = ModelSet.untrained(config.networks, seed=3)
    save_model_folder(tmp_path / "model", models, config)
    settings = ServeSettings.from_args({"model_folder": str(tmp_path / "model")})
    for deployment in (Classifier, GrayNet, MultiScaleFCN):
        replica = deployment.func_or_class(settings)
        assert replica.versions() == models.versions
        assert replica.segmenter.config == config
    binarizer = Binarizer.func_or_class(settings)
    assert binarizer.binarizer == config.binarizer
