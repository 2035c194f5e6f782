from __future__ import annotations

import pytest
import torch

from tumorseg.config import NetworkConfig
from tumorseg.networks import build_network, transfer_weights

SMALL = NetworkConfig(graynet_input="binary+gray", graynet_size=64, graynet_width=8)


def test_gray_net_started_from_the_baseline_computes_what_the_baseline_computes() -> None:
    """The gray channel gets the baseline's first-layer weights, the binary channel zeros,
    so before any training the gray net's output is the baseline's on the gray image."""
    torch.manual_seed(0)
    baseline = build_network("baseline", SMALL).eval()
    graynet = build_network("graynet", SMALL).eval()
    transfer_weights(baseline.state_dict(), graynet, channels=(1,))
    gray = torch.rand(2, 1, 64, 64)
    binary = (torch.rand(2, 1, 64, 64) > 0.5).float()
    with torch.no_grad():
        expected = baseline(gray)
        got = graynet(torch.cat([binary, gray], dim=1))
    torch.testing.assert_close(got, expected)


def test_mismatched_architectures_are_refused() -> None:
    baseline = build_network("baseline", SMALL)
    with pytest.raises(ValueError, match="no tensors"):
        transfer_weights({}, baseline, channels=(0,))
    partial = dict(list(build_network("baseline", SMALL).state_dict().items())[1:])
    with pytest.raises(ValueError, match="lack 1 tensors"):
        transfer_weights(partial, baseline, channels=(0,))
    wider = build_network("baseline", NetworkConfig(graynet_size=64, graynet_width=16))
    with pytest.raises(ValueError, match="cannot start"):
        transfer_weights(wider.state_dict(), baseline, channels=(0,))
    fcn = build_network("fcn", NetworkConfig())
    with pytest.raises(ValueError):
        transfer_weights(fcn.state_dict(), baseline, channels=(0,))


def test_resnet_classifier_takes_the_baseline_encoder_only() -> None:
    """Its encoder then computes the baseline encoder's features; its head stays its own."""
    config = NetworkConfig(graynet_size=64, graynet_width=8, classifier_backbone="resnet")
    torch.manual_seed(0)
    baseline = build_network("baseline", config).eval()
    classifier = build_network("classifier", config).eval()
    head = {k: v.clone() for k, v in classifier.head.state_dict().items()}
    transfer_weights(baseline.state_dict(), classifier, channels=(0,), part="encoder.")
    gray = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(classifier.encoder(gray)[-1], baseline.encoder(gray)[-1])
        assert classifier(gray).shape == (2, 3)
    for name, value in classifier.head.state_dict().items():
        torch.testing.assert_close(value, head[name])
    with pytest.raises(ValueError, match="lack"):  # the cnn shares nothing
        transfer_weights(baseline.state_dict(), build_network("classifier", SMALL), (0,))
