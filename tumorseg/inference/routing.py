"""Classifier stage: which branch each image takes, and how sure the classifier is."""

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
    """``(N, 3)`` classifier probabilities over :data:`~tumorseg.config.CLASSES`."""
    if not images:
        return np.empty((0, len(CLASSES)), dtype=np.float32)
    return softmax(predict(model, stack_resized(images, config.classifier_size), device, chunk))


def tumor_probability(probabilities: np.ndarray) -> np.ndarray:
    """p(tumor) per row of :func:`class_probabilities`."""
    return 1.0 - probabilities[:, CLASSES.index("normal")]


def heterogeneity_probability(probabilities: np.ndarray) -> np.ndarray:
    """p(heterogeneous | tumor) per row of :func:`class_probabilities`."""
    homogeneous = probabilities[:, CLASSES.index("homogeneous")]
    heterogeneous = probabilities[:, CLASSES.index("heterogeneous")]
    return heterogeneous / np.maximum(homogeneous + heterogeneous, 1e-12)


def predict_routes(
    model: nn.Module,
    images: Sequence[np.ndarray],
    config: NetworkConfig,
    device: torch.device,
    chunk: int = 64,
    threshold: float = 0.5,
) -> list[tuple[Route, float]]:
    """``(route, confidence)`` per image; confidence is the chosen route's probability.

    An image is heterogeneous when the classifier's p(heterogeneous | tumor) exceeds
    ``threshold``.
    """
    p_het = heterogeneity_probability(class_probabilities(model, images, config, device, chunk))
    return [route_for(float(p), threshold) for p in p_het]


def route_for(p_heterogeneous: float, threshold: float) -> tuple[Route, float]:
    """The route a probability of heterogeneity takes, and that route's probability."""
    if p_heterogeneous > threshold:
        return "heterogeneous", p_heterogeneous
    return "homogeneous", 1.0 - p_heterogeneous


def heterogeneous_probability(route: Route, confidence: float) -> float:
    """Inverse of :func:`route_for`: p(heterogeneous) from a route and its confidence."""
    return confidence if route == "heterogeneous" else 1.0 - confidence
