from __future__ import annotations

import numpy as np
import pytest

from tumorseg.config import BinarizerConfig
from tumorseg.data.phantom import make_phantom
from tumorseg.preprocessing import binarize


@pytest.mark.parametrize("denoise", ["median", "bilateral", "none"])
@pytest.mark.parametrize("method", ["otsu", "adaptive"])
def test_output_is_a_binary_map_of_the_input_size(method: str, denoise: str) -> None:
    phantom = make_phantom(1, 120, 150)
    binary = binarize(phantom.image, BinarizerConfig(method=method, denoise=denoise))
    assert binary.shape == phantom.image.shape and binary.dtype == np.uint8
    assert set(np.unique(binary)) <= {0, 1}


def test_otsu_separates_a_dark_lesion_from_tissue() -> None:
    phantom = make_phantom(4, 200, 240, kind="homogeneous")
    binary = binarize(phantom.image)
    assert binary[phantom.mask].mean() < 0.1  # hypoechoic lesion falls below the threshold
    assert binary[~phantom.mask].mean() > 0.5


def test_pure_function() -> None:
    phantom = make_phantom(2)
    before = phantom.image.copy()
    np.testing.assert_array_equal(binarize(phantom.image), binarize(phantom.image))
    np.testing.assert_array_equal(phantom.image, before)


def test_tiny_images_and_large_adaptive_blocks() -> None:
    image = np.random.default_rng(0).integers(0, 255, (7, 9), dtype=np.uint8)
    assert binarize(image, BinarizerConfig(method="adaptive", adaptive_block=101)).shape == (7, 9)


@pytest.mark.parametrize(
    ("image", "config", "match"),
    [
        (np.zeros((4, 4), np.float32), BinarizerConfig(), "uint8"),
        (np.zeros((4, 4, 3), np.uint8), BinarizerConfig(), "2-D"),
        (np.zeros((4, 4), np.uint8), BinarizerConfig(method="magic"), "method"),  # type: ignore[arg-type]
        (np.zeros((4, 4), np.uint8), BinarizerConfig(denoise="magic"), "denoiser"),  # type: ignore[arg-type]
    ],
)
def test_bad_input_is_rejected(image, config, match) -> None:
    with pytest.raises(ValueError, match=match):
        binarize(image, config)
