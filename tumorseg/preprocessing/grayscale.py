"""Turn any decoded pixel array into the 2-D ``uint8`` grayscale the method works on.

Decoders (:mod:`tumorseg.io`) and callers handing over arrays (the segmenter,
Serve) share these conversions, so an image means the same thing on every path.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

_CV_DEPTHS = (np.uint8, np.uint16, np.float32)


def to_grayscale(pixels: np.ndarray, *, order: Literal["bgr", "rgb"] = "rgb") -> np.ndarray:
    """Gray (H, W), gray+alpha, RGB or RGBA (H, W, C) of any numeric dtype → ``uint8`` (H, W).

    Validates the shape, then :func:`to_gray` and :func:`to_uint8`. Arrays from
    callers are taken as RGB (numpy/PIL convention); booleans become 0/255.
    """
    pixels = np.asarray(pixels)
    colour = pixels.ndim == 3 and pixels.shape[2] in (1, 2, 3, 4)
    if not (pixels.ndim == 2 or colour) or pixels.size == 0:
        raise ValueError(
            f"expected a gray, RGB or RGBA image, got an array of shape {pixels.shape}"
        )
    if pixels.dtype == np.bool_:
        pixels = pixels.astype(np.uint8) * 255
    return to_uint8(to_gray(pixels, order=order))


def to_gray(pixels: np.ndarray, *, order: Literal["bgr", "rgb"] = "bgr") -> np.ndarray:
    """Collapse colour to luma (0.299 R + 0.587 G + 0.114 B, as cv2 does); alpha is dropped.

    ``order`` says how the decoder laid out the channels: OpenCV gives BGR(A),
    pydicom gives RGB. 2-D input is returned unchanged.
    """
    if pixels.ndim == 2:
        return pixels
    channels = pixels.shape[2]
    if channels in (1, 2):  # gray, gray + alpha
        return np.ascontiguousarray(pixels[..., 0])
    work = pixels if pixels.dtype in _CV_DEPTHS else pixels.astype(np.float32)
    code = cv2.COLOR_BGR2GRAY if order == "bgr" else cv2.COLOR_RGB2GRAY
    return cv2.cvtColor(np.ascontiguousarray(work[..., :3]), code)


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """Map any numeric array to ``uint8``: 8-bit data unchanged, others min..max → 0..255.

    Wide data (16-bit, float, signed) have no agreed display range, so the image's
    own range is stretched linearly. A constant image maps to all zeros;
    non-finite values count as the minimum.
    """
    if arr.dtype == np.uint8:
        return arr
    work = arr.astype(np.float64)
    finite = np.isfinite(work)
    if not finite.any():
        return np.zeros(arr.shape, dtype=np.uint8)
    low, high = float(work[finite].min()), float(work[finite].max())
    if high <= low:
        return np.zeros(arr.shape, dtype=np.uint8)
    scaled = (np.where(finite, work, low) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
