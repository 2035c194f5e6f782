"""Classifier: tumor presence and route (normal / homogeneous / heterogeneous) from the
whole image."""

from __future__ import annotations

import torch
from monai.networks.nets import Classifier
from monai.networks.nets.flexible_unet import FLEXUNET_BACKBONE
from torch import nn

from tumorseg.config import CLASSES, NetworkConfig


def build_route_classifier(config: NetworkConfig) -> nn.Module:
    """One logit per :data:`~tumorseg.config.CLASSES` entry: p(tumor) is one minus the
    first class's probability, p(heterogeneous | tumor) the last two's ratio."""
    if config.classifier_backbone == "resnet":
        return EncoderClassifier(f"resnet{config.graynet_resnet_depth}", len(CLASSES))
    size = config.classifier_size
    return Classifier(  # a strided residual CNN
        in_shape=(1, size, size),
        classes=len(CLASSES),
        channels=config.classifier_channels,
        strides=(2,) * len(config.classifier_channels),
        num_res_units=1,
        dropout=0.1,
    )


class EncoderClassifier(nn.Module):
    """The gray net's ResNet encoder (``FlexibleUNet``'s, same tensor names under
    ``encoder.``) with average- and max-pooled deepest features into a linear head.

    Max pooling keeps a small lesion's response that averaging over a mostly normal
    image would dilute.
    """

    def __init__(self, backbone: str, classes: int, dropout: float = 0.2) -> None:
        super().__init__()
        entry = FLEXUNET_BACKBONE.register_dict[backbone]
        parameters = {**entry["parameter"], "spatial_dims": 2, "in_channels": 1}
        self.encoder = entry["type"](**{**parameters, "pretrained": False})
        features = entry["feature_channel"][-1]
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * features, classes))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        deepest = self.encoder(inputs)[-1]
        pooled = torch.cat([deepest.mean(dim=(2, 3)), deepest.amax(dim=(2, 3))], dim=1)
        return self.head(pooled)
