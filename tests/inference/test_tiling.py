"""The batched cut and paste equal the NumPy/OpenCV ones training cuts with."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tumorseg.inference.multiscale import paste_tiles as reference_paste
from tumorseg.inference.multiscale import tile_inputs, whole_canvas
from tumorseg.inference.tensors import resize
from tumorseg.inference.tiling import cut_tiles, paste_tiles, resample_boxes
from tumorseg.partition import partition_squares

#: OpenCV's float resize differs from exact area/linear weights by rounding only.
TOLERANCE = 5e-4


@pytest.fixture(scope="module")
def images() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    canvases = rng.random((2, 128, 128)).astype(np.float32)
    yy, xx = np.mgrid[:128, :128]
    lesion = (((yy - 50) ** 2 + (xx - 70) ** 2) < 30**2).astype(np.float32)
    guides = np.stack([lesion, rng.random((128, 128)).astype(np.float32)])
    return canvases, guides


@pytest.mark.parametrize("n_tiles", [10, 50, 100])
def test_cut_and_paste_equal_the_per_tile_resizes(images, n_tiles: int) -> None:
    canvases, guides = images
    layouts = [partition_squares(128, 128, n_tiles, g) for g in guides]
    expected = np.concatenate(
        [tile_inputs(c, g, t, 24) for c, g, t in zip(canvases, guides, layouts, strict=True)]
    )
    cut = cut_tiles(torch.from_numpy(canvases), torch.from_numpy(guides), layouts, 24)
    np.testing.assert_allclose(cut.numpy(), expected, atol=TOLERANCE)
    outputs = np.random.default_rng(1).random((len(expected), 1, 24, 24)).astype(np.float32)
    pasted = paste_tiles(torch.from_numpy(outputs), layouts, 128).numpy()
    offsets = np.cumsum([0] + [len(t) for t in layouts])
    for b, tiles in enumerate(layouts):
        own = outputs[offsets[b] : offsets[b + 1]]
        np.testing.assert_allclose(pasted[b], reference_paste(own, tiles, 128), atol=TOLERANCE)


def test_without_a_guide_the_guide_channel_is_unknown_and_the_seed_is_the_canvas(images) -> None:
    canvases, _ = images
    layouts = [whole_canvas(128)] * 2
    cut = cut_tiles(torch.from_numpy(canvases), None, layouts, 32).numpy()
    expected = np.concatenate(
        [tile_inputs(c, None, t, 32) for c, t in zip(canvases, layouts, strict=True)]
    )
    np.testing.assert_allclose(cut, expected, atol=TOLERANCE)
    assert (cut[:, 2] == 0.5).all()


def test_images_with_different_tile_counts_share_one_batch(images) -> None:
    canvases, guides = images
    layouts = [partition_squares(128, 128, 10), partition_squares(128, 128, 64, guides[0])]
    cut = cut_tiles(torch.from_numpy(canvases), None, layouts, 16)
    assert cut.shape == (74, 3, 16, 16)
    np.testing.assert_allclose(
        cut[10:].numpy(), tile_inputs(canvases[1], None, layouts[1], 16), atol=TOLERANCE
    )


def test_area_averaging_is_exact_for_fractional_boxes() -> None:
    source = torch.arange(36, dtype=torch.float32).reshape(1, 1, 6, 6)
    # a 6-pixel box to 4 pixels: each output averages 1.5 × 1.5 source pixels
    i, j = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    args = [torch.zeros(1, 16), torch.zeros(1, 16), torch.full((1, 16), 6)]
    out = resample_boxes(source, *args, i.reshape(1, -1), j.reshape(1, -1), torch.full((1, 16), 4))
    expected = resize(source[0, 0].numpy(), 4, 4)
    np.testing.assert_allclose(out.reshape(4, 4).numpy(), expected, atol=1e-5)
    assert out[0, 0, 0] == pytest.approx((0 + 0.5 * 1 + 0.5 * 6 + 0.25 * 7) / 2.25)
