"""Networks saved as tensors plus a typed description, never as pickled code.

A saved network is a folder holding ``weights.safetensors`` (the state dict:
safetensors stores tensors and nothing that can execute) and ``network.json``
(format, role, input shape and the :class:`~tumorseg.config.NetworkConfig` it was
built from). Loading rebuilds the network with :func:`build_network` and loads the
tensors strictly, so a model moved between modules or versions still loads, and
anything else (a pickled module above all) is refused unread.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from tumorseg.config import NetworkConfig, dataclass_from_dict
from tumorseg.errors import ModelArtifactError
from tumorseg.networks import build_network, network_role

WEIGHTS_FILE = "weights.safetensors"
DESCRIPTION_FILE = "network.json"
FORMAT = "tumorseg-network/1"
#: Files that betray a pickled model (MLflow's pytorch flavour, torch.save).
_PICKLE_SIGNS = ("MLmodel", "data/model.pth", "model.pth", "model.pt", "model.pkl")


def save_network(
    model: nn.Module,
    role: str,
    networks: NetworkConfig,
    directory: str | Path,
) -> Path:
    """Write ``model``'s tensors and description (with the role's input shape) into
    ``directory`` (created)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {
        name: value.detach().cpu().contiguous() for name, value in model.state_dict().items()
    }
    save_file(tensors, str(directory / WEIGHTS_FILE))
    description = {
        "format": FORMAT,
        "role": role,
        # channels, height, width
        "input_shape": [int(n) for n in network_role(role).example_input(networks).shape[1:]],
        "networks": asdict(networks),
    }
    (directory / DESCRIPTION_FILE).write_text(json.dumps(description, indent=1, sort_keys=True))
    return directory


def read_description(directory: str | Path) -> dict:
    """``network.json`` of a saved network, checked; refuses pickled models unread."""
    directory = Path(directory)
    if not (directory / WEIGHTS_FILE).is_file():
        signs = [sign for sign in _PICKLE_SIGNS if (directory / sign).exists()]
        if signs:
            raise ModelArtifactError(
                f"{directory} holds a pickled model ({', '.join(signs)}), which tumorseg "
                "never loads: it could run arbitrary code. Register the set again from a "
                "training run of this version (weights + config), e.g. jobs/train.py"
            )
        raise ModelArtifactError(f"{directory} has no {WEIGHTS_FILE}: not a saved network")
    try:
        description = json.loads((directory / DESCRIPTION_FILE).read_text())
    except (OSError, ValueError) as error:
        raise ModelArtifactError(f"{directory}: unreadable {DESCRIPTION_FILE} ({error})") from None
    if not isinstance(description, dict) or description.get("format") != FORMAT:
        raise ModelArtifactError(f"{directory}: {DESCRIPTION_FILE} is not a {FORMAT} description")
    return description


def load_network(
    directory: str | Path,
    device: str | torch.device = "cpu",
    role: str | None = None,
) -> nn.Module:
    """The saved network in eval mode on ``device``; ``role`` checks what it is."""
    directory = Path(directory)
    description = read_description(directory)
    if role is not None and description.get("role") != role:
        raise ModelArtifactError(
            f"{directory} holds a {description.get('role')!r} network, not a {role!r} one"
        )
    try:
        networks = dataclass_from_dict(NetworkConfig, description["networks"])
        model = build_network(description["role"], networks)
    except (KeyError, TypeError, ValueError) as error:
        raise ModelArtifactError(f"{directory}: bad network description ({error})") from None
    try:
        tensors = load_file(str(directory / WEIGHTS_FILE), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelArtifactError(
            f"{directory / WEIGHTS_FILE} is not a safetensors file ({error})"
        ) from None
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        raise ModelArtifactError(
            f"{directory}: the weights do not fit the described network ({error})"
        ) from None
    return model.to(device).eval()
