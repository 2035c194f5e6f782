from __future__ import annotations

import math

import numpy as np
import pytest

from tumorseg.metrics import dice, hd95, iou, score_masks


def square(size: int, y: int, x: int, side: int) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[y : y + side, x : x + side] = True
    return mask


def test_known_overlap() -> None:
    a, b = square(40, 0, 0, 10), square(40, 0, 5, 10)  # 50 px shared of 100 + 100
    assert dice(a, b) == pytest.approx(0.5)
    assert iou(a, b) == pytest.approx(50 / 150)
    assert hd95(a, a) == 0.0
    assert 4.0 <= hd95(a, b) <= 5.0


def test_empty_mask_conventions() -> None:
    empty, lesion = np.zeros((30, 40), bool), square(40, 5, 5, 5)[:30]
    assert score_masks(empty, empty) == (score_masks(empty, empty).__class__(1.0, 1.0, 0.0))
    for pred, truth in ((empty, lesion), (lesion, empty)):
        scores = score_masks(pred, truth)
        assert (scores.dice, scores.iou) == (0.0, 0.0)
        assert scores.hd95 == pytest.approx(math.hypot(30, 40))


def test_shape_mismatch() -> None:
    with pytest.raises(ValueError):
        score_masks(np.zeros((3, 3)), np.zeros((3, 4)))


def test_hd95_in_mm_follows_the_spacing() -> None:
    truth = np.zeros((40, 40), bool)
    truth[10:20, 10:20] = True
    prediction = np.roll(truth, 4, axis=0)  # 4 rows off
    pixels = score_masks(prediction, truth)
    assert pixels.hd95_mm is None
    assert score_masks(prediction, truth, (1.0, 1.0)).hd95_mm == pytest.approx(pixels.hd95)
    assert score_masks(prediction, truth, (0.5, 3.0)).hd95_mm == pytest.approx(0.5 * pixels.hd95)
    assert score_masks(np.zeros_like(truth), truth, (0.5, 0.5)).hd95_mm == pytest.approx(
        0.5 * np.hypot(40, 40)
    )
