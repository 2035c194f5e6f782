"""Fixtures for the image I/O tests: small real BUSI images in several encodings."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from imaging_helpers import encode

SMALL = (80, 64)  # (width, height): small enough to keep encode/decode and fuzzing fast


def _busi(busi_root: Path, relative: str, flags: int) -> np.ndarray:
    image = cv2.imread(str(busi_root / relative), flags)
    assert image is not None, relative
    return cv2.resize(image, SMALL, interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="session")
def small_gray(busi_root: Path) -> np.ndarray:
    """A real BUSI ultrasound image, gray, shrunk to 64x80."""
    return _busi(busi_root, "benign/benign (1).png", cv2.IMREAD_GRAYSCALE)


@pytest.fixture(scope="session")
def small_bgr(busi_root: Path) -> np.ndarray:
    """One of the BUSI images stored as RGB (with colour annotations), shrunk, BGR order."""
    return _busi(busi_root, "benign/benign (13).png", cv2.IMREAD_COLOR)


@pytest.fixture(scope="session")
def png_bytes(small_gray: np.ndarray) -> bytes:
    return encode(".png", small_gray)


@pytest.fixture(scope="session")
def jpeg_bytes(small_bgr: np.ndarray) -> bytes:
    return encode(".jpg", small_bgr)
