"""Tile FCN (patent module 52): a small fully convolutional U-Net applied to every tile."""

from __future__ import annotations

import torch
from monai.networks.nets import UNet
from torch import nn

from tumorseg.config import NetworkConfig

#: Tile, context window, previous pass's map (see inference.multiscale.TILE_CHANNELS).
FCN_INPUT_CHANNELS = 3
#: Index of the guide channel (the previous pass's probabilities) in the FCN's input.
GUIDE_CHANNEL = 2


class GuideResidual(nn.Module):
    """``fcn(x) + logit(guide)``: the FCN corrects the previous pass's map.

    A pass then starts from its guide and learns only where to move the boundary;
    a guide of one half (no previous pass) adds nothing. The guide is clipped to
    ``[eps, 1 - eps]`` so that a certain guide stays correctable.
    """

    def __init__(self, fcn: nn.Module, eps: float = 0.01) -> None:
        super().__init__()
        self.fcn = fcn
        self.eps = eps

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        guide = inputs[:, GUIDE_CHANNEL : GUIDE_CHANNEL + 1].float().clamp(self.eps, 1 - self.eps)
        return self.fcn(inputs) + (torch.log(guide) - torch.log1p(-guide)).to(inputs.dtype)


def build_tile_fcn(config: NetworkConfig) -> nn.Module:
    """MONAI residual ``UNet``: convolutions only, so any tile size divisible by 2^depth works;
    wrapped in :class:`GuideResidual` when ``config.fcn_residual_guide``."""
    channels = config.fcn_channels
    fcn = UNet(
        spatial_dims=2,
        in_channels=FCN_INPUT_CHANNELS,
        out_channels=1,
        channels=channels,
        strides=(2,) * (len(channels) - 1),
        num_res_units=1,
    )
    return GuideResidual(fcn) if config.fcn_residual_guide else fcn
