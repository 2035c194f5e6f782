"""Route classifier: predicts homogeneous vs heterogeneous from the whole image."""

from __future__ import annotations

from monai.networks.nets import Classifier
from torch import nn

from tumorseg.config import NetworkConfig


def build_route_classifier(config: NetworkConfig) -> nn.Module:
    """A strided residual CNN (MONAI ``Classifier``) with two logits, index = route."""
    size = config.classifier_size
    return Classifier(
        in_shape=(1, size, size),
        classes=2,
        channels=config.classifier_channels,
        strides=(2,) * len(config.classifier_channels),
        num_res_units=1,
        dropout=0.1,
    )
