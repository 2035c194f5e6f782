"""Tile FCN (patent module 52): a small fully convolutional U-Net applied to every tile."""

from __future__ import annotations

from monai.networks.nets import UNet
from torch import nn

from tumorseg.config import NetworkConfig

#: Tile, context window, previous pass's map (see inference.multiscale.TILE_CHANNELS).
FCN_INPUT_CHANNELS = 3


def build_tile_fcn(config: NetworkConfig) -> nn.Module:
    """MONAI residual ``UNet``: convolutions only, so any tile size divisible by 2^depth works."""
    channels = config.fcn_channels
    return UNet(
        spatial_dims=2,
        in_channels=FCN_INPUT_CHANNELS,
        out_channels=1,
        channels=channels,
        strides=(2,) * (len(channels) - 1),
        num_res_units=1,
    )
