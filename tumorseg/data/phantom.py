"""Seeded synthetic ultrasound phantoms with exact masks.

For geometry tests and the demo only — never evidence of accuracy. An image is
a depth-attenuated speckle background (Rayleigh-distributed, smoothed like a
beamformed envelope) with one hypoechoic elliptical lesion whose interior is
either uniform (``homogeneous``) or mixed with bright and dark blobs
(``heterogeneous``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tumorseg.config import ROUTES, Route


@dataclass(frozen=True)
class Phantom:
    image: np.ndarray  # uint8 (H, W)
    mask: np.ndarray  # bool (H, W)
    kind: Route


def make_phantom(
    seed: int, height: int = 256, width: int = 320, kind: Route | None = None
) -> Phantom:
    """One phantom; ``kind`` defaults to a seeded coin flip."""
    rng = np.random.default_rng(seed)
    kind = kind or ROUTES[int(rng.integers(2))]
    if kind not in ROUTES:
        raise ValueError(f"kind must be one of {ROUTES}, got {kind!r}")
    mask = _lesion_mask(rng, height, width)
    tissue = _background(rng, height, width)
    lesion = _lesion_interior(rng, height, width, kind)
    echo = np.where(mask, lesion, tissue)
    speckle = rng.rayleigh(1.0, (height, width)).astype(np.float32)
    envelope = cv2.GaussianBlur(echo * speckle, (0, 0), 1.2)
    image = np.clip(envelope * 110.0, 0, 255).astype(np.uint8)
    return Phantom(image=image, mask=mask, kind=kind)


def phantom_corpus(n: int, seed: int = 0, height: int = 256, width: int = 320) -> list[Phantom]:
    """``n`` phantoms alternating homogeneous / heterogeneous, deterministic for a seed."""
    return [make_phantom(seed * 100_003 + i, height, width, ROUTES[i % 2]) for i in range(n)]


def write_phantom_corpus(root: str | Path, n: int = 24, seed: int = 0) -> Path:
    """Write phantoms in the BUSI layout (``phantom/X.png`` + ``X_mask.png``) under ``root``."""
    folder = Path(root) / "phantom"
    folder.mkdir(parents=True, exist_ok=True)
    for i, phantom in enumerate(phantom_corpus(n, seed)):
        cv2.imwrite(str(folder / f"phantom ({i}).png"), phantom.image)
        cv2.imwrite(str(folder / f"phantom ({i})_mask.png"), phantom.mask.astype(np.uint8) * 255)
    return Path(root)


def _lesion_mask(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    cy = rng.uniform(0.35, 0.65) * height
    cx = rng.uniform(0.3, 0.7) * width
    ry = rng.uniform(0.08, 0.2) * height
    rx = rng.uniform(0.1, 0.25) * width
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    depth = np.linspace(1.0, rng.uniform(0.45, 0.7), height, dtype=np.float32)[:, None]
    texture = cv2.GaussianBlur(rng.normal(1.0, 0.25, (height, width)).astype(np.float32), (0, 0), 6)
    return np.clip(depth * texture, 0.2, 2.0)


def _lesion_interior(rng: np.random.Generator, height: int, width: int, kind: Route) -> np.ndarray:
    base = np.full((height, width), rng.uniform(0.2, 0.35), dtype=np.float32)
    if kind == "homogeneous":
        return base
    blobs = cv2.GaussianBlur(rng.normal(0.0, 1.0, (height, width)).astype(np.float32), (0, 0), 4)
    return np.clip(base + 3.0 * blobs / (np.abs(blobs).max() + 1e-6), 0.02, 1.6)
