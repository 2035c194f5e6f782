"""Gray recognition network (patent module 40): ResNet encoder, U-Net decoder with skips."""

from __future__ import annotations

from monai.networks.nets import FlexibleUNet
from torch import nn

from tumorseg.config import NetworkConfig


def graynet_in_channels(config: NetworkConfig) -> int:
    """1 for the patent-faithful binary input, 2 when the grayscale image rides along."""
    return 2 if config.graynet_input == "binary+gray" else 1


def build_graynet(config: NetworkConfig) -> nn.Module:
    """MONAI ``FlexibleUNet`` on a randomly initialised ResNet (never pretrained: no hubs)."""
    width = config.graynet_width
    return FlexibleUNet(
        in_channels=graynet_in_channels(config),
        out_channels=1,
        backbone=f"resnet{config.graynet_resnet_depth}",
        pretrained=False,
        spatial_dims=2,
        decoder_channels=(width * 8, width * 4, width * 2, width, width // 2),
    )
