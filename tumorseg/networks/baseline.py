"""Baseline without routing: the gray net's architecture on the grayscale image.

It is trained on all images with the same budget as the branches, so that what
the fused method adds is measured against a standard full-image network.
"""

from __future__ import annotations

from dataclasses import replace

from torch import nn

from tumorseg.config import NetworkConfig
from tumorseg.networks.graynet import build_graynet


def build_baseline(config: NetworkConfig) -> nn.Module:
    return build_graynet(replace(config, graynet_input="binary"))  # one input channel: gray
