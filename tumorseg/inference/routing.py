"""Classifier stage: its probabilities per image, and the route a probability takes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from tumorseg.config import CLASSES, NetworkConfig, Route
from tumorseg.inference.tensors import predict, softmax, stack_resized


def class_probabilities(
    model: nn.Module,
    images: Sequence[np.ndarray],
    config: NetworkConfig,
    device: torch.device,
    chunk: int = 64,
) -> np.ndarray:
    """``(N, 3)`` classifier probabilities over :data:`~tumorseg.config.CLASSES`
    (p(tumor) and p(heterogeneous | tumor): :class:`tumorseg.inference.fusion.Evidence`)."""
    if not images:
        return np.empty((0, len(CLASSES)), dtype=np.float32)
    return softmax(predict(model, stack_resized(images, config.classifier_size), device, chunk))


def route_for(p_heterogeneous: float, threshold: float) -> tuple[Route, float]:
    """The route a probability of heterogeneity takes, and that route's probability."""
    if p_heterogeneous > threshold:
        return "heterogeneous", p_heterogeneous
    return "homogeneous", 1.0 - p_heterogeneous
