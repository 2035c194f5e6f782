"""Tile FCN (patent module 52): a small fully convolutional U-Net applied to every tile."""

from __future__ import annotations

from monai.networks.nets import UNet
from torch import nn

from tumorseg.config import NetworkConfig


def build_tile_fcn(config: NetworkConfig) -> nn.Module:
    """MONAI residual ``UNet``: convolutions only, so any tile size divisible by 2^depth works."""
    channels = config.fcn_channels
    return UNet(
        spatial_dims=2,
        in_channels=3,  # tile, context window, previous pass's map (see inference.multiscale)
        out_channels=1,
        channels=channels,
        strides=(2,) * (len(channels) - 1),
        num_res_units=1,
    )
