from __future__ import annotations

import numpy as np
import pytest

from tumorseg.preprocessing import to_grayscale
from tumorseg.preprocessing.grayscale import CHUNK_ELEMENTS, to_uint8


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


def reference_uint8(arr: np.ndarray) -> np.ndarray:
    """The whole-image float64 formula that the chunked conversion must equal."""
    work = arr.astype(np.float64)
    finite = np.isfinite(work)
    low, high = work[finite].min(), work[finite].max()
    scaled = (np.where(finite, work, low) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.int32, np.float32, np.float64])
def test_chunked_conversion_equals_the_whole_image_formula(dtype) -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(-300, 40_000, size=(1500, 1500)).astype(dtype)  # over two chunks
    if np.issubdtype(dtype, np.floating):
        arr[3, 4], arr[-1, -1] = np.nan, np.inf
    if dtype == np.uint16:
        arr = np.clip(arr, 0, None)
    np.testing.assert_array_equal(to_uint8(arr), reference_uint8(arr))


def test_a_wide_image_converts_without_whole_image_copies() -> None:
    import tracemalloc

    wide = np.arange(4096 * 4096, dtype=np.uint16).reshape(4096, 4096)  # 32 MiB
    tracemalloc.start()
    try:
        to_uint8(wide)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the 16 MiB output and a few chunks of doubles; the whole-image formula took ~500 MiB
    assert peak < 16 * 2**20 + 6 * CHUNK_ELEMENTS * 8
