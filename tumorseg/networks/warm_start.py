"""Start one network from another's weights (the gray net and classifier from the baseline).

No pretrained weights may come from hubs, so the training job pretrains in-house:
the baseline (the gray net's architecture on the grayscale image, trained on every
image) gives the gray net its starting point, and the gray net is then trained on
its own class's images only. The two differ only in the first convolution's input
channels (binary, or binary + gray, against gray alone). The ResNet classifier takes
the baseline's encoder only (``part="encoder."``); its head starts at random.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn


def transfer_weights(
    source: Mapping[str, torch.Tensor],
    target: nn.Module,
    channels: Sequence[int],
    part: str = "",
) -> nn.Module:
    """Load ``source`` into ``target`` in place, mapping input channels where they differ.

    Only tensors whose names start with ``part`` take part, on both sides (``""``: all).

    Tensors of equal shape are copied. A tensor that differs only in dimension 1
    (a first convolution's input channels) gets the source's channels at the
    target positions ``channels`` and zeros elsewhere, so the target starts by
    computing exactly what the source computes from those channels. Anything else
    that does not match raises: the two networks are not the same architecture.
    """
    state = target.state_dict()
    source = {name: value for name, value in source.items() if name.startswith(part)}
    if not source:
        raise ValueError(f"source weights hold no tensors under {part!r}")
    missing = sorted(name for name in state if name.startswith(part) and name not in source)
    if missing:
        raise ValueError(f"source weights lack {len(missing)} tensors, first: {missing[:3]}")
    for name, value in source.items():
        if name not in state:
            raise ValueError(f"source tensor {name!r} has no counterpart in the target")
        own = state[name]
        if own.shape == value.shape:
            state[name] = value.detach().clone()
        elif _differs_in_input_channels(own, value) and value.shape[1] == len(channels):
            mapped = torch.zeros_like(own)
            mapped[:, list(channels)] = value
            state[name] = mapped
        else:
            raise ValueError(
                f"{name}: source shape {tuple(value.shape)} cannot start target "
                f"{tuple(own.shape)} (input channels {list(channels)})"
            )
    target.load_state_dict(state)
    return target


def _differs_in_input_channels(own: torch.Tensor, value: torch.Tensor) -> bool:
    return (
        own.dim() == value.dim() >= 2
        and own.shape[0] == value.shape[0]
        and own.shape[2:] == value.shape[2:]
        and own.shape[1] != value.shape[1]
    )
