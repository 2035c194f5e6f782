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
    threshold: float = 0.5,
) -> list[tuple[Route, float]]:
    """``(route, confidence)`` per image; confidence is the chosen route's probability.

    An image is heterogeneous when the classifier's p(heterogeneous) exceeds
    ``threshold``.
    """
    if not images:
        return []
    probabilities = softmax(
        predict(model, stack_resized(images, config.classifier_size), device, chunk)
    )
    return [route_for(float(p[HETEROGENEOUS]), threshold) for p in probabilities]


HETEROGENEOUS = ROUTES.index("heterogeneous")


def route_for(p_heterogeneous: float, threshold: float) -> tuple[Route, float]:
    """The route a probability of heterogeneity takes, and that route's probability."""
    if p_heterogeneous > threshold:
        return "heterogeneous", p_heterogeneous
    return "homogeneous", 1.0 - p_heterogeneous


def heterogeneous_probability(route: Route, confidence: float) -> float:
    """Inverse of :func:`route_for`: p(heterogeneous) from a route and its confidence."""
    return confidence if route == "heterogeneous" else 1.0 - confidence
