"""Array ↔ tensor plumbing shared by every inference stage (and by training).

torch is imported where a tensor is made, not with the module: the training corpus's
decoding tasks prepare every network's inputs with the array helpers here, and a
task worker that imported torch for nothing paid 3 s each.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import nn


def select_device(device: str | torch.device | None = None) -> torch.device:
    """The requested device, else the first GPU when there is one, else the CPU."""
    import torch

    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area interpolation when shrinking (no aliasing of speckle), linear when enlarging."""
    if image.shape[:2] == (height, width):
        return image
    shrinking = image.shape[0] >= height and image.shape[1] >= width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)


def stack_resized(images: Sequence[np.ndarray], size: int) -> np.ndarray:
    """``(N, 1, size, size)`` float32 in [0, 1] from 2-D uint8 images of any size."""
    out = np.empty((len(images), 1, size, size), dtype=np.float32)
    for i, image in enumerate(images):
        out[i, 0] = resize(image.astype(np.float32), size, size) / 255.0
    return out


def predict_tensor(model: nn.Module, batch: torch.Tensor, chunk: int) -> torch.Tensor:
    """Float outputs of ``model`` over a batch already on its device, ``chunk`` at a time."""
    import torch

    model.eval()
    with torch.inference_mode():
        outputs = [model(batch[s : s + chunk]).float() for s in range(0, len(batch), chunk)]
    return torch.cat(outputs) if outputs else batch.new_empty((0,))


def predict(model: nn.Module, batch: np.ndarray, device: torch.device, chunk: int) -> np.ndarray:
    """Run ``model`` over ``batch``, ``chunk`` at a time (bounded activations); float32 out."""
    import torch

    inputs = torch.from_numpy(np.ascontiguousarray(batch)).to(device)
    return predict_tensor(model, inputs, chunk).cpu().numpy()


def predict_maps(
    model: nn.Module, batch: np.ndarray, device: torch.device, chunk: int, flip: bool = False
) -> np.ndarray:
    """``(N, H, W)`` probabilities of a one-channel segmentation network; with ``flip``,
    averaged with the mirrored prediction of the left-right flipped input (the only
    flip training uses: depth runs down an ultrasound image)."""
    probabilities = sigmoid(predict(model, batch, device, chunk)[:, 0])
    if flip:
        mirrored = sigmoid(predict(model, np.ascontiguousarray(batch[..., ::-1]), device, chunk))
        probabilities = (probabilities + mirrored[:, 0, :, ::-1]) / 2
    return probabilities


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))).astype(np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)
