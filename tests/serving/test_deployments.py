"""The model deployments load a model folder as they load a registered set, each
with only the network it runs."""

from __future__ import annotations

import numpy as np
import pytest

from tumorseg.data.phantom import make_phantom
from tumorseg.inference.model_folder import save_model_folder
from tumorseg.inference.models import MissingNetworkError, ModelSet
from tumorseg.networks import FUSED_ROLES
from tumorseg.serving.deployments import Binarizer, Classifier, GrayNet, MultiScaleFCN
from tumorseg.serving.settings import ServeSettings
from tumorseg.training.config import preset_config


def test_every_model_deployment_serves_a_model_folder_with_its_own_network(tmp_path) -> None:
    config = preset_config("smoke").segmenter
    models = ModelSet.untrained(config.networks, seed=3)
    save_model_folder(tmp_path / "model", models, config)
    settings = ServeSettings.from_args({"model_folder": str(tmp_path / "model")})
    for deployment in (Classifier, GrayNet, MultiScaleFCN):
        replica = deployment.func_or_class(settings)
        assert replica.versions() == models.versions  # the whole set's, for the results
        assert replica.segmenter.config == config
        loaded = {role for role in FUSED_ROLES if getattr(replica.segmenter.models, role)}
        assert loaded == set(replica.roles)
    binarizer = Binarizer.func_or_class(settings)
    assert binarizer.binarizer == config.binarizer


def test_the_onnx_engine_serves_the_folders_graphs_with_the_same_maps(tmp_path) -> None:
    from tumorseg.inference.onnx_engine import OnnxNetwork

    config = preset_config("smoke").segmenter
    models = ModelSet.untrained(config.networks, seed=3)
    save_model_folder(tmp_path / "model", models, config, onnx=True)
    folder = str(tmp_path / "model")
    engines = {
        engine: GrayNet.func_or_class(
            ServeSettings.from_args({"model_folder": folder, "engine": engine})
        )
        for engine in ("torch", "onnx")
    }
    onnx = engines["onnx"].segmenter
    assert isinstance(onnx.models.graynet, OnnxNetwork) and onnx.device.type == "cpu"
    gray = make_phantom(5, height=96, width=120).image
    maps = [r.segmenter.graynet_probabilities([gray])[0] for r in engines.values()]
    np.testing.assert_allclose(maps[0], maps[1], atol=1e-4)


def test_a_switch_that_fails_keeps_the_set_the_replica_serves(tmp_path) -> None:
    import asyncio

    config = preset_config("smoke").segmenter
    models = ModelSet.untrained(config.networks, seed=3)
    save_model_folder(tmp_path / "model", models, config)
    settings = ServeSettings.from_args({"model_folder": str(tmp_path / "model")})
    for deployment in (GrayNet, Binarizer):
        replica = deployment.func_or_class(settings)
        before = asyncio.run(replica.ready())
        replica.reconfigure({"model_folder": str(tmp_path / "missing")})  # does not raise
        replica.reconfigure({"alias": "x"})  # nor does a bad key
        assert replica.choice == settings.models
        answer = asyncio.run(replica.ready())
        assert answer.startswith(before) and "switch failed: ValueError" in answer
        replica.reconfigure(None)  # back to the app's own set: the failure is over
        assert asyncio.run(replica.ready()) == before


def test_a_stage_without_its_network_says_which_is_missing(tmp_path) -> None:
    config = preset_config("smoke").segmenter
    save_model_folder(tmp_path / "model", ModelSet.untrained(config.networks), config)
    settings = ServeSettings.from_args({"model_folder": str(tmp_path / "model")})
    graynet = GrayNet.func_or_class(settings).segmenter
    image = make_phantom(1, height=96, width=120).image
    (first,) = graynet.first_stage([image], classes=np.array([[0.1, 0.8, 0.1]]))
    assert first.graynet_map.shape == image.shape
    with pytest.raises(MissingNetworkError, match="without its classifier network"):
        graynet.first_stage([image])


def test_check_health_fails_a_replica_that_lost_its_network(tmp_path) -> None:
    """Serve calls ``check_health`` on every replica and restarts one that raises: a
    replica whose network is gone must raise, one that holds it must not."""
    config = preset_config("smoke").segmenter
    save_model_folder(tmp_path / "model", ModelSet.untrained(config.networks), config)
    settings = ServeSettings.from_args({"model_folder": str(tmp_path / "model")})
    for deployment in (Classifier, GrayNet, MultiScaleFCN):
        replica = deployment.func_or_class(settings)
        replica.check_health()  # healthy: returns
        setattr(replica.segmenter.models, replica.roles[0], None)
        with pytest.raises(MissingNetworkError, match=f"without its {replica.roles[0]}"):
            replica.check_health()
    Binarizer.func_or_class(settings).check_health()


def test_a_bad_request_fails_alone_not_its_whole_batch() -> None:
    """The rule each batched deployment method applies (``serve.batch`` itself runs only
    inside a replica): a batch that raises is run again item by item."""
    from tumorseg.serving.deployments import each_alone_on_failure

    def run(items: list[int]) -> list[float]:
        if 0 in items:
            raise ZeroDivisionError("division by zero")
        return [1 / item for item in items]

    assert each_alone_on_failure(run, [1, 2]) == [1.0, 0.5]
    first, bad, third = each_alone_on_failure(run, [1, 0, 4])
    assert (first, third) == (1.0, 0.25) and isinstance(bad, ZeroDivisionError)
    with pytest.raises(ZeroDivisionError):  # alone, it raises as itself
        each_alone_on_failure(run, [0])
