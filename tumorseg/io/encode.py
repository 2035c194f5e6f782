"""The one PNG encoder of outputs: masks, overlays and previews."""

from __future__ import annotations

import cv2
import numpy as np


def png_bytes(image: np.ndarray) -> bytes:
    """PNG of a 2-D mask (``bool``: 0 / 255), a 2-D ``uint8`` image or an ``(H, W, 3)``
    ``uint8`` RGB image."""
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"PNG output takes bool or uint8 2-D/RGB arrays, got {image.dtype}")
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"could not encode a {image.shape[1]}x{image.shape[0]} image as PNG")
    return encoded.tobytes()
