"""Binarizer of the homogeneous branch (patent module 30).

Speckle is reduced first (median filter by default), then Otsu's global
threshold, or a local Gaussian-weighted threshold for images with strong
depth-dependent gain. Output is ``uint8`` in {0, 1}: the gray net's input.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from tumorseg.config import BinarizerConfig

Denoiser = Callable[[np.ndarray, int], np.ndarray]

DENOISERS: dict[str, Denoiser] = {
    "median": lambda img, k: cv2.medianBlur(img, _odd(k)),
    "bilateral": lambda img, k: cv2.bilateralFilter(img, _odd(k), 40.0, float(k)),
    "none": lambda img, k: img,
}


def binarize(image: np.ndarray, config: BinarizerConfig | None = None) -> np.ndarray:
    """Denoise and threshold a 2-D ``uint8`` grayscale image into a {0, 1} ``uint8`` map."""
    config = config or BinarizerConfig()
    image = np.asarray(image)
    if image.ndim != 2 or image.dtype != np.uint8 or image.size == 0:
        raise ValueError(
            f"binarize needs a non-empty 2-D uint8 image, got {image.dtype} {image.shape}"
        )
    if config.denoise not in DENOISERS:
        raise ValueError(f"unknown denoiser {config.denoise!r}; choose from {sorted(DENOISERS)}")
    smooth = DENOISERS[config.denoise](image, config.denoise_size)
    if config.method == "otsu":
        _, binary = cv2.threshold(smooth, 0, 1, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    elif config.method == "adaptive":
        block = _odd(min(config.adaptive_block, _largest_odd_below(min(image.shape))))
        binary = cv2.adaptiveThreshold(
            smooth,
            1,
            cv2.ADAPTIVE_THRESH_GAUSSIAN_C,
            cv2.THRESH_BINARY,
            max(block, 3),
            config.adaptive_offset,
        )
    else:
        raise ValueError(f"unknown binarization method {config.method!r}")
    return binary.astype(np.uint8)


def _odd(k: int) -> int:
    return max(1, int(k) | 1)


def _largest_odd_below(n: int) -> int:
    return n if n % 2 else n - 1
