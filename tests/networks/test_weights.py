"""Saved networks: tensors and a description round-trip; anything else is refused."""

from __future__ import annotations

import json

import pytest
import torch

from tumorseg.config import NetworkConfig
from tumorseg.errors import ModelArtifactError
from tumorseg.networks import build_network
from tumorseg.networks.weights import load_network, save_network

SMALL = NetworkConfig(graynet_size=64, graynet_width=8, graynet_input="binary+gray")


@pytest.mark.parametrize("role", ["classifier", "graynet", "fcn", "baseline"])
def test_every_role_round_trips(role, tmp_path) -> None:
    torch.manual_seed(0)
    model = build_network(role, SMALL).eval()
    save_network(model, role, SMALL, tmp_path)
    loaded = load_network(tmp_path, role=role)
    assert not loaded.training
    for (name, value), (other, got) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert name == other and torch.equal(value, got)


def test_wrong_role_bad_description_and_misfit_weights_are_refused(tmp_path) -> None:
    save_network(build_network("fcn", SMALL), "fcn", SMALL, tmp_path)
    with pytest.raises(ModelArtifactError, match="'fcn' network, not a 'graynet'"):
        load_network(tmp_path, role="graynet")
    description = json.loads((tmp_path / "network.json").read_text())
    wider = {**description, "networks": {**description["networks"], "fcn_channels": [32, 64]}}
    (tmp_path / "network.json").write_text(json.dumps(wider))
    with pytest.raises(ModelArtifactError, match="do not fit"):
        load_network(tmp_path)
    (tmp_path / "network.json").write_text(json.dumps({**description, "format": "other"}))
    with pytest.raises(ModelArtifactError, match="not a tumorseg-network/1"):
        load_network(tmp_path)
    with pytest.raises(ModelArtifactError, match=r"no weights\.safetensors"):
        load_network(tmp_path / "missing")
