"""Full-image baseline inference: one network on the grayscale image, no routing."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from tumorseg.config import NetworkConfig
from tumorseg.inference.tensors import predict_maps, resize, stack_resized


def segment_full_image(
    model: nn.Module,
    images: Sequence[np.ndarray],
    networks: NetworkConfig,
    device: torch.device,
    chunk: int = 16,
    flip_tta: bool = False,
) -> list[np.ndarray]:
    """Tumor probability maps at each image's own size (2-D uint8 grayscale inputs)."""
    if not images:
        return []
    inputs = stack_resized(images, networks.graynet_size)
    probabilities = predict_maps(model, inputs, device, chunk, flip_tta)
    return [resize(p, *image.shape) for p, image in zip(probabilities, images, strict=True)]
