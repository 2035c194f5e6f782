"""Homogeneous branch: binarizer then gray recognition network."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from tumorseg.config import BinarizerConfig, NetworkConfig
from tumorseg.inference.tensors import predict, resize, sigmoid, stack_resized
from tumorseg.preprocessing.binarize import binarize


def graynet_inputs(
    images: Sequence[np.ndarray], networks: NetworkConfig, binarizer: BinarizerConfig
) -> np.ndarray:
    """``(N, C, S, S)`` network input: the binarized image, plus gray when configured."""
    size = networks.graynet_size
    binary = stack_resized([binarize(image, binarizer) * 255 for image in images], size)
    if networks.graynet_input == "binary":
        return binary
    return np.concatenate([binary, stack_resized(images, size)], axis=1)


def segment_homogeneous(
    model: nn.Module,
    images: Sequence[np.ndarray],
    networks: NetworkConfig,
    binarizer: BinarizerConfig,
    device: torch.device,
    chunk: int = 16,
) -> list[np.ndarray]:
    """Tumor probability maps at each image's own size."""
    if not images:
        return []
    logits = predict(model, graynet_inputs(images, networks, binarizer), device, chunk)
    probabilities = sigmoid(logits[:, 0])
    return [resize(p, *image.shape) for p, image in zip(probabilities, images, strict=True)]
