"""Mask loading: every encoding of "lesion here", several files OR-ed, sizes checked."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from imaging_helpers import encode

from tumorseg.errors import InvalidImageError
from tumorseg.io import dicom_bytes, load_image, load_mask

SHAPE = (30, 40)


@pytest.fixture(scope="module")
def blob() -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=bool)
    mask[5:15, 10:25] = True
    return mask


@pytest.fixture(scope="module")
def other_blob() -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=bool)
    mask[18:28, 2:8] = True
    return mask


def _write(path: Path, array: np.ndarray) -> Path:
    path.write_bytes(encode(path.suffix, array))
    return path


@pytest.mark.parametrize(
    "encoding",
    ["gray255", "gray1", "bgr_red", "bgra_opaque", "bgra_transparent", "gray16", "bmp", "tif"],
)
def test_any_colour_channel_marks_foreground(tmp_path, blob, encoding) -> None:
    u8 = blob.astype(np.uint8)
    arrays = {
        "gray255": (".png", u8 * 255),
        "gray1": (".png", u8),  # label images store 1 for the lesion
        "bgr_red": (".png", np.dstack([0 * u8, 0 * u8, u8 * 200])),
        "bgra_opaque": (".png", np.dstack([u8 * 255] * 3 + [np.full(SHAPE, 255, np.uint8)])),
        # alpha is ignored: colour counts even where the pixel is transparent
        "bgra_transparent": (".png", np.dstack([u8 * 255] * 3 + [np.zeros(SHAPE, np.uint8)])),
        "gray16": (".png", blob.astype(np.uint16) * 3),
        "bmp": (".bmp", u8 * 255),
        "tif": (".tif", np.dstack([u8 * 9] * 3)),
    }
    ext, array = arrays[encoding]
    mask = load_mask(_write(tmp_path / f"m{ext}", array))
    assert mask.dtype == bool and mask.shape == SHAPE
    np.testing.assert_array_equal(mask, blob)


def test_opaque_black_rgba_is_background(tmp_path) -> None:
    black = np.dstack([np.zeros(SHAPE, np.uint8)] * 3 + [np.full(SHAPE, 255, np.uint8)])
    assert not load_mask(_write(tmp_path / "m.png", black)).any()


def test_pillow_bilevel_and_gray_alpha(blob) -> None:
    pil = pytest.importorskip("PIL.Image")
    for mode in ("1", "LA", "P"):
        buffer = io.BytesIO()
        pil.fromarray(blob.astype(np.uint8) * 255).convert(mode).save(buffer, "PNG")
        np.testing.assert_array_equal(load_mask(buffer.getvalue()), blob)


def test_several_masks_are_ored(tmp_path, blob, other_blob) -> None:
    first = _write(tmp_path / "x_mask.png", blob.astype(np.uint8) * 255)
    second = _write(tmp_path / "x_mask_1.png", other_blob.astype(np.uint8) * 255)
    union = blob | other_blob
    np.testing.assert_array_equal(load_mask([first, second]), union)
    np.testing.assert_array_equal(load_mask((str(first), str(second)), shape=SHAPE), union)
    np.testing.assert_array_equal(load_mask([first.read_bytes(), second]), union)


def test_dicom_mask(blob) -> None:
    np.testing.assert_array_equal(load_mask(dicom_bytes(blob.astype(np.uint8))), blob)


def test_sizes_must_agree(tmp_path, blob) -> None:
    first = _write(tmp_path / "a.png", blob.astype(np.uint8))
    small = _write(tmp_path / "b.png", np.zeros((10, 10), np.uint8))
    with pytest.raises(InvalidImageError, match=r"b\.png: mask is 10x10 pixels but 40x30"):
        load_mask([first, small])
    with pytest.raises(InvalidImageError, match=r"a\.png: mask is 40x30 pixels but 41x30"):
        load_mask(first, shape=(30, 41))


def test_bad_mask_inputs(tmp_path, blob) -> None:
    good = _write(tmp_path / "a.png", blob.astype(np.uint8))
    with pytest.raises(InvalidImageError, match="no mask files"):
        load_mask([])
    with pytest.raises(InvalidImageError, match=r"missing\.png: file does not exist"):
        load_mask([good, tmp_path / "missing.png"])
    with pytest.raises(InvalidImageError, match="truncated"):
        load_mask(good.read_bytes()[:-5])
    with pytest.raises(InvalidImageError, match="<int>"):
        load_mask(7)
    with pytest.raises(InvalidImageError, match="one frame"):
        load_mask(dicom_bytes([blob.astype(np.uint8)] * 2))


def test_busi_rgba_second_mask(busi_root: Path) -> None:
    """``benign (4)`` has an RGBA ``_mask_1``: opaque black background, white lesion."""
    folder = busi_root / "benign"
    image = load_image(folder / "benign (4).png")
    first = load_mask(folder / "benign (4)_mask.png")
    second = load_mask(folder / "benign (4)_mask_1.png")
    rgba = cv2.imread(str(folder / "benign (4)_mask_1.png"), cv2.IMREAD_UNCHANGED)
    assert rgba.shape[2] == 4 and (rgba[..., 3] == 255).all()
    assert first.any() and second.any() and not np.array_equal(first, second)
    paths = [folder / "benign (4)_mask.png", folder / "benign (4)_mask_1.png"]
    np.testing.assert_array_equal(load_mask(paths, shape=image.shape), first | second)
