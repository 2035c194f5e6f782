"""Homogeneous branch: binarizer then gray recognition network."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from tumorseg.config import BinarizerConfig, NetworkConfig
from tumorseg.inference.tensors import predict_maps, resize, stack_resized
from tumorseg.inference.threads import map_images
from tumorseg.preprocessing.binarize import binarize

if TYPE_CHECKING:
    import torch
    from torch import nn


def binarize_images(images: Sequence[np.ndarray], binarizer: BinarizerConfig) -> list[np.ndarray]:
    """The binarization module on each image: ``uint8`` {0, 1} masks at the image's size."""
    return map_images(lambda image: binarize(image, binarizer).astype(np.uint8), images)


def graynet_inputs(
    images: Sequence[np.ndarray],
    networks: NetworkConfig,
    binarizer: BinarizerConfig,
    binaries: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """``(N, C, S, S)`` network input: the binarized image, plus gray when configured.

    ``binaries`` are :func:`binarize_images` results computed elsewhere (the Serve
    app runs the binarizer as its own deployment); by default they are computed here.
    """
    size = networks.graynet_size
    if binaries is None:
        binaries = binarize_images(images, binarizer)
    if len(binaries) != len(images):
        raise ValueError(f"got {len(binaries)} binarized images for {len(images)} images")
    binary = stack_resized([np.asarray(b, dtype=np.uint8) * 255 for b in binaries], size)
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
    binaries: Sequence[np.ndarray] | None = None,
    flip_tta: bool = False,
) -> list[np.ndarray]:
    """Tumor probability maps at each image's own size."""
    if not images:
        return []
    inputs = graynet_inputs(images, networks, binarizer, binaries)
    probabilities = predict_maps(model, inputs, device, chunk, flip_tta)
    return map_images(lambda p, image: resize(p, *image.shape), probabilities, images)
