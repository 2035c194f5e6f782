"""Batch augmentation on the training workers (CPU or GPU tensors).

Ultrasound has a direction: depth runs down the image, so only left–right flips
are used. Geometry (flip, small rotation/scale/shift) moves inputs and targets
together; intensity (gain, gamma) and speckle apply only to gray-level channels,
never to binary maps or guides.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def augment_batch(
    inputs: torch.Tensor,
    targets: torch.Tensor | None,
    gray_channels: Sequence[int],
    generator: torch.Generator,
    *,
    max_rotation_deg: float = 10.0,
    max_scale: float = 0.1,
    max_shift: float = 0.05,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Randomly transformed copies of ``inputs (N, C, H, W)`` and ``targets (N, 1, H, W)``."""
    n = inputs.shape[0]
    theta = _random_affine(n, generator, max_rotation_deg, max_scale, max_shift).to(inputs)
    grid = F.affine_grid(theta, list(inputs.shape), align_corners=False)
    inputs = F.grid_sample(inputs, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if targets is not None:
        targets = F.grid_sample(targets.float(), grid, mode="nearest", align_corners=False)
    if gray_channels:
        inputs = _intensity(inputs, list(gray_channels), generator)
    return inputs, targets


def _random_affine(
    n: int, generator: torch.Generator, rotation: float, scale: float, shift: float
) -> torch.Tensor:
    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    angle = uniform(-rotation, rotation) * math.pi / 180
    zoom = uniform(1 - scale, 1 + scale)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos * flip, -sin
    theta[:, 1, 0], theta[:, 1, 1] = sin * flip, cos
    theta[:, 0, 2], theta[:, 1, 2] = uniform(-shift, shift), uniform(-shift, shift)
    return theta


def _intensity(
    inputs: torch.Tensor, channels: list[int], generator: torch.Generator
) -> torch.Tensor:
    n = inputs.shape[0]
    shape = (n, 1, 1, 1)
    gain = (0.8 + 0.4 * torch.rand(shape, generator=generator)).to(inputs)
    gamma = (0.7 + 0.6 * torch.rand(shape, generator=generator)).to(inputs)
    speckle_sigma = (0.15 * torch.rand(shape, generator=generator)).to(inputs)
    noise = torch.randn(inputs[:, channels].shape, generator=generator).to(inputs)
    gray = inputs[:, channels].clamp(0, 1) ** gamma * gain
    gray = gray * (1 + speckle_sigma * noise)
    out = inputs.clone()
    out[:, channels] = gray.clamp(0, 1)
    return out
