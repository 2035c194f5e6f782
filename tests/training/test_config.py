from __future__ import annotations

import pytest

from tumorseg.training.config import PRESETS, TrainConfig, preset_config


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip_through_plain_data(name: str) -> None:
    config = PRESETS[name]
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_overrides() -> None:
    config = preset_config("cpu", num_workers=2, epochs=3, use_gpu=None)
    assert config.num_workers == 2 and config.use_gpu is False
    assert {config.budget(r).epochs for r in ("classifier", "graynet", "fcn", "baseline")} == {3}
    with pytest.raises(ValueError, match="unknown preset"):
        preset_config("huge")


def test_a_network_started_from_the_baseline_needs_the_baseline() -> None:
    config = preset_config("cpu")
    assert config.warm_started() == ("classifier", "graynet")
    with pytest.raises(ValueError, match="--graynet-init scratch"):
        preset_config("cpu", train_baseline=False)
    with pytest.raises(ValueError, match="--classifier-init scratch"):
        preset_config("cpu", train_baseline=False, graynet_init="scratch")
    config = preset_config(
        "cpu", train_baseline=False, graynet_init="scratch", classifier_init="scratch"
    )
    assert config.warm_started() == () and not config.train_baseline
    with pytest.raises(ValueError, match="graynet_init"):
        preset_config("smoke", graynet_init="imagenet")


def test_only_the_resnet_classifier_starts_from_the_baseline() -> None:
    assert preset_config("smoke").segmenter.networks.classifier_backbone == "cnn"
    with pytest.raises(ValueError, match="classifier_backbone='resnet'"):
        preset_config("smoke", classifier_init="baseline")
