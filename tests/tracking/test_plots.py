"""PNG helpers: learning curves and contour overlays (decoded back and checked)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from tumorseg.tracking import learning_curve_png, overlay_array, overlay_png
from tumorseg.tracking.plots import PREDICTION_COLOR, TRUTH_COLOR

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def read_rgb(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def disc(shape, center, radius) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


def test_learning_curve_png_has_two_panels_for_losses_and_scores(tmp_path):
    history = {
        "train_loss": [0.9, 0.6, 0.4, 0.35],
        "val_loss": [1.0, 0.7, math.nan, 0.5],  # a gap, not a crash
        "val_dice": [0.2, 0.4, 0.55, 0.6],
    }
    path = learning_curve_png(history, tmp_path / "nested" / "curves.png", title="fcn")
    assert path == tmp_path / "nested" / "curves.png"
    assert path.read_bytes()[:8] == PNG_MAGIC
    both = read_rgb(path)
    single = read_rgb(learning_curve_png({"val_dice": [0.1, 0.2]}, tmp_path / "one.png"))
    assert both.shape[1] > 1.5 * single.shape[1]  # the loss and score panels side by side
    assert both.std() > 0  # something was drawn


def test_learning_curve_png_long_history_and_empty(tmp_path):
    long = {"loss": list(np.linspace(1, 0, 200))}
    assert learning_curve_png(long, str(tmp_path / "long.png")).stat().st_size > 0
    with pytest.raises(ValueError, match="at least one metric"):
        learning_curve_png({"loss": []}, tmp_path / "empty.png")


def test_overlay_draws_truth_green_and_prediction_red(tmp_path):
    image = np.full((120, 160), 90, dtype=np.uint8)
    truth = disc(image.shape, (60, 50), 25)
    prediction = disc(image.shape, (60, 110), 25)
    path = overlay_png(image, truth, prediction, tmp_path / "out" / "overlay.png")
    assert path.read_bytes()[:8] == PNG_MAGIC
    rgb = read_rgb(path)
    assert rgb.shape == (*image.shape, 3)
    np.testing.assert_array_equal(rgb, overlay_array(image, truth, prediction))  # lossless
    # contour pixels lie on the masks' borders; interiors and background stay gray
    assert tuple(rgb[60, 25]) == TRUTH_COLOR  # left edge of the truth disc
    assert tuple(rgb[60, 135]) == PREDICTION_COLOR  # right edge of the prediction disc
    assert tuple(rgb[60, 50]) == (90, 90, 90)
    assert tuple(rgb[5, 5]) == (90, 90, 90)
    colours = {tuple(c) for c in rgb.reshape(-1, 3)}
    assert colours == {(90, 90, 90), TRUTH_COLOR, PREDICTION_COLOR}


def test_overlay_without_truth_and_empty_prediction():
    image = np.arange(64 * 64, dtype=np.uint32).reshape(64, 64).astype(np.uint8)
    rgb = overlay_array(image, None, np.zeros_like(image, dtype=bool))
    np.testing.assert_array_equal(rgb, np.repeat(image[:, :, None], 3, axis=2))
    red_only = overlay_array(image, None, disc(image.shape, (32, 32), 10))
    assert (np.all(red_only == PREDICTION_COLOR, axis=2)).any()
    assert not (np.all(red_only == TRUTH_COLOR, axis=2)).any()


def test_overlay_thickness_grows_with_the_image():
    small = overlay_array(np.zeros((100, 100), np.uint8), None, disc((100, 100), (50, 50), 30))
    large = overlay_array(
        np.zeros((1000, 1000), np.uint8), None, disc((1000, 1000), (500, 500), 300)
    )
    small_px = np.all(small == PREDICTION_COLOR, axis=2).sum() / 30
    large_px = np.all(large == PREDICTION_COLOR, axis=2).sum() / 300
    assert large_px > 2 * small_px  # contour pixels per unit of radius: thicker line


@pytest.mark.parametrize(
    ("image", "mask", "message"),
    [
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), bool), "2-D uint8"),
        (np.zeros((8, 8), np.float32), np.zeros((8, 8), bool), "2-D uint8"),
        (np.zeros((8, 8), np.uint8), np.zeros((8, 9), bool), "prediction mask has shape"),
    ],
)
def test_overlay_rejects_bad_inputs(image, mask, message):
    with pytest.raises(ValueError, match=message):
        overlay_array(image, None, mask)
