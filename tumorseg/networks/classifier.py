"""Classifier: tumor presence and route (normal / homogeneous / heterogeneous) from the
whole image."""

from __future__ import annotations

from monai.networks.nets import Classifier
from torch import nn

from tumorseg.config import CLASSES, NetworkConfig


def build_route_classifier(config: NetworkConfig) -> nn.Module:
    """A strided residual CNN (MONAI ``Classifier``) with one logit per
    :data:`~tumorseg.config.CLASSES` entry: p(tumor) is one minus the first class's
    probability, p(heterogeneous | tumor) the last two's ratio."""
    size = config.classifier_size
    return Classifier(
        in_shape=(1, size, size),
        classes=len(CLASSES),
        channels=config.classifier_channels,
        strides=(2,) * len(config.classifier_channels),
        num_res_units=1,
        dropout=0.1,
    )
