"""Classifier stage: which branch each image takes, and how sure the classifier is."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from tumorseg.config import ROUTES, NetworkConfig, Route
from tumorseg.inference.tensors import predict, softmax, stack_resized


def predict_routes(
    model: nn.Module,
    images: Sequence[np.ndarray],
    config: NetworkConfig,
    device: torch.device,
    chunk: int = 64,
) -> list[tuple[Route, float]]:
    """``(route, confidence)`` per image; confidence is the chosen route's probability."""
    if not images:
        return []
    probabilities = softmax(
        predict(model, stack_resized(images, config.classifier_size), device, chunk)
    )
    choices = probabilities.argmax(axis=1)
    return [(ROUTES[c], float(p[c])) for c, p in zip(choices, probabilities, strict=True)]
