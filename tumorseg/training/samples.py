"""Training samples, built with the very functions inference uses.

One decoded image becomes the inputs and targets of every network that learns
from it. The classifier, gray net and baseline inputs come from
:mod:`tumorseg.inference` itself, so training sees exactly what serving will
see. FCN samples are tiles of the layering unit's partitions, cut both without a
guide and guided by perturbed ground truth (as the feedback unit guides each
pass), plus copies of the whole canvas as one tile (the coarse seed's input).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from tumorseg.config import CLASSES, SegmenterConfig
from tumorseg.inference.gray_branch import graynet_inputs
from tumorseg.inference.multiscale import tile_inputs, to_canvas, whole_canvas
from tumorseg.inference.tensors import resize, stack_resized
from tumorseg.partition import partition_squares
from tumorseg.training.config import TileSampling


def image_samples(gray: np.ndarray, mask: np.ndarray, route: str, config: SegmenterConfig) -> dict:
    """Whole-image inputs/targets for the classifier, gray net and baseline, plus the canvas."""
    networks = config.networks
    size = networks.graynet_size
    canvas_size = config.multiscale.canvas_size
    return {
        "classifier_input": stack_resized([gray], networks.classifier_size)[0],
        "class_index": class_index(route, bool(mask.any())),
        "graynet_input": graynet_inputs([gray], networks, config.binarizer)[0],
        "baseline_input": stack_resized([gray], size)[0],
        "seg_mask": resize_mask(mask, size)[None],
        "canvas": to_canvas(gray, canvas_size),
        "canvas_mask": resize_mask(mask, canvas_size),
    }


def class_index(route: str, has_tumor: bool) -> int:
    """The classifier's target: ``normal`` for a tumor-free image, else its route."""
    return CLASSES.index(route if has_tumor else "normal")


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Area-resampled mask, re-binarised at one half: ``float32`` {0, 1}."""
    return (resize(mask.astype(np.float32), size, size) >= 0.5).astype(np.float32)


def tile_samples(
    canvas: np.ndarray,
    canvas_mask: np.ndarray,
    passes: Sequence[int],
    sampling: TileSampling,
    tile_size: int,
    rng: np.random.Generator,
    coarse_seed: bool = False,
) -> dict[str, np.ndarray]:
    """FCN ``inputs (N, 3, t, t)`` and ``targets (N, 1, t, t)`` from one heterogeneous image,
    cut as each of ``passes`` (the segmenter's ``multiscale.pass_tiles``) cuts it.

    With ``coarse_seed``, ``sampling.seed_copies`` copies of the whole-canvas
    sample are added after subsampling (the workers augment each copy anew):
    one such sample per image would drown among a hundred tiles.
    """
    size = canvas.shape[0]
    inputs, targets = [], []
    for n_tiles in passes:
        guides = [None] + [perturbed_guide(canvas_mask, rng) for _ in range(sampling.guided_copies)]
        for guide in guides:
            tiles = partition_squares(size, size, n_tiles, guide)
            inputs.append(tile_inputs(canvas, guide, tiles, tile_size))
            targets.append(
                np.stack(
                    [resize_mask(canvas_mask[y : y + s, x : x + s], tile_size) for y, x, s in tiles]
                )[:, None]
            )
    x, y = np.concatenate(inputs), np.concatenate(targets)
    keep = _subsample(y, sampling.max_tiles_per_image, rng)
    x, y = x[keep], y[keep]
    if coarse_seed and sampling.seed_copies:
        seed_x = tile_inputs(canvas, None, whole_canvas(size), tile_size)
        seed_y = resize_mask(canvas_mask, tile_size)[None, None]
        x = np.concatenate([x, np.repeat(seed_x, sampling.seed_copies, axis=0)])
        y = np.concatenate([y, np.repeat(seed_y, sampling.seed_copies, axis=0)])
    return {"inputs": x, "targets": y}


def perturbed_guide(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible previous-pass probability map: the truth, shifted, grown or shrunk, blurred."""
    size = mask.shape[0]
    guide = mask.astype(np.float32)
    radius = int(rng.integers(0, max(2, size // 24)))
    if radius:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        operation = cv2.dilate if rng.random() < 0.5 else cv2.erode
        guide = operation(guide, kernel)
    shift = rng.integers(-size // 20, size // 20 + 1, size=2).astype(np.float32)
    guide = cv2.warpAffine(guide, np.float32([[1, 0, shift[1]], [0, 1, shift[0]]]), (size, size))
    guide = cv2.GaussianBlur(guide, (0, 0), float(rng.uniform(1.0, size / 32)))
    confidence = float(rng.uniform(0.5, 1.0))
    noise = rng.normal(0.0, 0.05, guide.shape).astype(np.float32)
    return np.clip(0.5 + (guide - 0.5) * confidence + noise, 0.0, 1.0)


def _subsample(targets: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Keep every tile that touches the lesion first, then random background tiles."""
    n = len(targets)
    if n <= limit:
        return np.arange(n)
    touching = np.flatnonzero(targets.reshape(n, -1).any(axis=1))
    background = np.setdiff1d(np.arange(n), touching)
    touching = rng.permutation(touching)[: limit * 2 // 3]
    chosen = np.concatenate([touching, rng.permutation(background)[: limit - len(touching)]])
    return np.sort(chosen)


def split_tile_row(row: dict[str, Any]) -> list[dict[str, Any]]:
    """One Ray Data row per tile (flat_map) from a row holding stacked tile arrays."""
    return [{"inputs": x, "targets": y} for x, y in zip(row["inputs"], row["targets"], strict=True)]
