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


#: Elements converted at once by :func:`to_uint8`: its float64 work stays at 8 MiB
#: whatever the image's size (a 64-megapixel 16-bit image made several 512 MB copies).
CHUNK_ELEMENTS = 1 << 20


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """Map any numeric array to ``uint8``: 8-bit data unchanged, others min..max → 0..255.

    Wide data (16-bit, float, signed) have no agreed display range, so the image's
    own range is stretched linearly. A constant image maps to all zeros;
    non-finite values count as the minimum. Converted a chunk at a time, so the
    extra memory is the output plus ``CHUNK_ELEMENTS`` doubles.
    """
    if arr.dtype == np.uint8:
        return arr
    flat = np.ascontiguousarray(arr).reshape(-1)
    bounds = _finite_range(flat)
    out = np.zeros(flat.shape, dtype=np.uint8)
    if bounds is None:
        return out.reshape(arr.shape)
    low, high = bounds
    scale = 255.0 / (high - low)
    for start in range(0, flat.size, CHUNK_ELEMENTS):
        work = flat[start : start + CHUNK_ELEMENTS].astype(np.float64)
        work[~np.isfinite(work)] = low
        work -= low
        work *= scale
        out[start : start + CHUNK_ELEMENTS] = np.clip(np.rint(work), 0, 255)
    return out.reshape(arr.shape)


def _finite_range(flat: np.ndarray) -> tuple[float, float] | None:
    """``(min, max)`` over the finite values, or None when none or all equal."""
    if np.issubdtype(flat.dtype, np.integer) or flat.dtype == np.bool_:
        low, high = (float(flat.min()), float(flat.max())) if flat.size else (0.0, 0.0)
    else:
        lows, highs = [], []
        for start in range(0, flat.size, CHUNK_ELEMENTS):
            chunk = flat[start : start + CHUNK_ELEMENTS]
            finite = chunk[np.isfinite(chunk)]
            if finite.size:
                lows.append(float(finite.min()))
                highs.append(float(finite.max()))
        if not lows:
            return None
        low, high = min(lows), max(highs)
    return (low, high) if high > low else None
