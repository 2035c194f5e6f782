from __future__ import annotations

import numpy as np
import pytest

from tumorseg.preprocessing import to_grayscale


def test_uint8_gray_passes_through() -> None:
    image = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert to_grayscale(image) is image


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_colour_and_alpha_become_gray(channels: int) -> None:
    image = np.zeros((5, 6, channels), np.uint8)
    image[..., 0] = 200
    gray = to_grayscale(image)
    assert gray.shape == (5, 6) and gray.dtype == np.uint8
    assert gray.max() == (200 if channels == 1 else round(0.299 * 200))


def test_wide_ranges_are_stretched_and_constant_maps_to_zero() -> None:
    image = np.array([[1000, 2000], [3000, 5000]], np.uint16)
    np.testing.assert_array_equal(to_grayscale(image), [[0, 64], [128, 255]])
    assert not to_grayscale(np.full((3, 3), 7.5)).any()


@pytest.mark.parametrize("shape", [(0, 4), (5,), (2, 2, 5), (2, 2, 2, 2)])
def test_bad_shapes(shape) -> None:
    with pytest.raises(ValueError):
        to_grayscale(np.zeros(shape, np.uint8))


def test_non_finite_values_count_as_the_minimum() -> None:
    np.testing.assert_array_equal(to_grayscale(np.array([[np.nan, 1.0, 3.0]])), [[0, 0, 255]])


def test_booleans_become_black_and_white() -> None:
    np.testing.assert_array_equal(to_grayscale(np.array([[True, False]])), [[255, 0]])
