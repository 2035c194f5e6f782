from __future__ import annotations

import pytest
import torch

from tumorseg.config import NetworkConfig
from tumorseg.networks import FUSED_ROLES, ROLES, build_network
from tumorseg.networks.tile_fcn import GUIDE_CHANNEL, GuideResidual


def test_classifier_gives_one_logit_per_class() -> None:
    config = NetworkConfig()
    model = build_network("classifier", config).eval()
    out = model(torch.zeros(3, 1, config.classifier_size, config.classifier_size))
    assert out.shape == (3, 3)  # normal, homogeneous, heterogeneous


@pytest.mark.parametrize(("inputs", "channels"), [("binary", 1), ("binary+gray", 2)])
def test_graynet_is_a_resnet_unet_with_the_configured_inputs(inputs: str, channels: int) -> None:
    config = NetworkConfig(graynet_input=inputs, graynet_size=64)  # type: ignore[arg-type]
    model = build_network("graynet", config).eval()
    assert any("resnet" in type(m).__name__.lower() for m in model.modules())
    with torch.no_grad():
        out = model(torch.zeros(2, channels, 64, 64))
    assert out.shape == (2, 1, 64, 64)


@pytest.mark.parametrize("size", [32, 64, 96])
def test_tile_fcn_is_fully_convolutional(size: int) -> None:
    model = build_network("fcn", NetworkConfig()).eval()
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())
    with torch.no_grad():
        assert model(torch.zeros(2, 3, size, size)).shape == (2, 1, size, size)


def test_the_residual_tile_fcn_corrects_the_logit_of_its_guide() -> None:
    model = build_network("fcn", NetworkConfig(fcn_residual_guide=True)).eval()
    assert isinstance(model, GuideResidual)
    inputs = torch.rand(2, 3, 32, 32)
    inputs[0, GUIDE_CHANNEL] = 0.5  # no previous pass: the guide adds nothing
    inputs[1, GUIDE_CHANNEL] = 1.0  # a certain guide stays correctable (clipped)
    with torch.no_grad():
        correction = model.fcn(inputs)
        out = model(inputs)
    torch.testing.assert_close(out[0], correction[0])
    expected = correction[1] + torch.logit(torch.tensor(0.99))
    torch.testing.assert_close(out[1], expected)


def test_registry_names_and_errors() -> None:
    assert set(ROLES) == {"classifier", "graynet", "fcn", "baseline"}
    assert FUSED_ROLES == ("classifier", "graynet", "fcn")
    small = NetworkConfig(graynet_size=64, classifier_size=64)
    for role in ROLES.values():  # the table's input shape is what the network takes
        with torch.no_grad():
            role.build(small).eval()(torch.from_numpy(role.example_input(small)))
    with pytest.raises(ValueError, match="unknown network role"):
        build_network("transformer", NetworkConfig())


def test_baseline_is_the_graynet_architecture_on_one_gray_channel() -> None:
    config = NetworkConfig(graynet_input="binary+gray", graynet_size=64)
    baseline = build_network("baseline", config).eval()
    assert type(baseline) is type(build_network("graynet", config))
    with torch.no_grad():
        assert baseline(torch.zeros(1, 1, 64, 64)).shape == (1, 1, 64, 64)
