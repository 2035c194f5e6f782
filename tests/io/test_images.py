"""Raster image loading: every supported encoding round-trips, every bad input is refused."""

from __future__ import annotations

import io
import os
import struct
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from imaging_helpers import encode, png_chunk, png_claiming

from tumorseg.config import ImageLimits
from tumorseg.data import discover_busi
from tumorseg.errors import InvalidImageError
from tumorseg.io import load_frames, load_image, load_mask, sniff_format

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def stretch(arr: np.ndarray) -> np.ndarray:
    """The documented mapping of wide data: own min..max → 0..255."""
    work = arr.astype(np.float64)
    return np.rint((work - work.min()) * 255.0 / (work.max() - work.min())).astype(np.uint8)


def loads_or_rejects(data: bytes, **kwargs) -> None:
    """The contract under fuzzing: valid 2-D uint8 frames, or InvalidImageError, nothing else."""
    try:
        frames = load_frames(data, **kwargs)
    except InvalidImageError as exc:
        assert exc.source and exc.reason
        return
    assert frames
    assert all(f.ndim == 2 and f.dtype == np.uint8 and f.size for f in frames)


# --------------------------------------------------------------------------- the real corpus


def test_reads_every_busi_image_and_mask(busi_root: Path) -> None:
    """All 624 images and their 636 masks (1-bit, RGB, RGBA; 12 images with two) load."""
    records = discover_busi(busi_root)
    assert len(records) == 624
    mask_files = Counter()
    for record in records:
        image = load_image(record.path)
        assert image.ndim == 2 and image.dtype == np.uint8
        mask = load_mask(record.mask_paths, shape=image.shape)
        assert mask.shape == image.shape and mask.dtype == bool
        assert mask.any() == (record.label != "normal"), record.path
        mask_files.update(_png_colour_type(Path(p)) for p in record.mask_paths)
    assert sum(len(r.mask_paths) == 2 for r in records) == 12
    assert mask_files[6] >= 1 and mask_files[2] >= 1 and mask_files[0] >= 1  # RGBA, RGB, gray
    assert len({r.image_id for r in records}) == len(records)  # no byte-identical images


def _png_colour_type(path: Path) -> int:
    with open(path, "rb") as handle:
        return handle.read(26)[25]


# --------------------------------------------------------------------------- round trips

CV2_CASES = [
    (".png", 8, 1),
    (".png", 8, 3),
    (".png", 8, 4),
    (".png", 16, 1),
    (".png", 16, 3),
    (".png", 16, 4),
    (".jpg", 8, 1),
    (".jpg", 8, 3),
    (".bmp", 8, 1),
    (".bmp", 8, 3),
    (".bmp", 8, 4),
    (".tif", 8, 1),
    (".tif", 8, 3),
    (".tif", 8, 4),
    (".tif", 16, 1),
    (".tif", 16, 3),
    (".tif", 16, 4),
]


def _variant(gray: np.ndarray, bgr: np.ndarray, depth: int, channels: int):
    """(array to encode, expected grayscale) for one depth/channel combination."""
    base = gray if channels == 1 else bgr
    if channels == 4:
        alpha = np.linspace(0, 255, base.size // 3, dtype=np.uint8).reshape(base.shape[:2])
        base = np.dstack([bgr, alpha])
    if depth == 16:
        wide = base.astype(np.uint16) * 200 + 1000
        luma = wide if channels == 1 else cv2.cvtColor(wide[..., :3], cv2.COLOR_BGR2GRAY)
        return wide, stretch(luma)
    return base, base if channels == 1 else cv2.cvtColor(base[..., :3], cv2.COLOR_BGR2GRAY)


@pytest.mark.parametrize("via", ["path", "bytes"])
@pytest.mark.parametrize(("ext", "depth", "channels"), CV2_CASES)
def test_cv2_encodings_round_trip(
    tmp_path, small_gray, small_bgr, ext, depth, channels, via
) -> None:
    array, expected = _variant(small_gray, small_bgr, depth, channels)
    data = encode(ext, array)
    if via == "path":
        source = tmp_path / f"image{ext}"
        source.write_bytes(data)
    else:
        source = data
    image = load_image(source)
    assert image.dtype == np.uint8 and image.shape == small_gray.shape
    diff = np.abs(image.astype(int) - expected.astype(int))
    if ext == ".jpg":
        assert diff.mean() < 3
    else:
        assert diff.max() <= 1


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [
        ("1", "PNG"),
        ("L", "PNG"),
        ("LA", "PNG"),
        ("P", "PNG"),
        ("RGBA", "PNG"),
        ("I;16", "PNG"),
        ("L", "JPEG"),
        ("RGB", "JPEG"),
        ("L", "BMP"),
        ("RGB", "BMP"),
        ("L", "TIFF"),
        ("RGB", "TIFF"),
        ("I;16", "TIFF"),
    ],
)
def test_pillow_encodings_round_trip(small_gray, small_bgr, mode, fmt) -> None:
    """Files from another encoder (palette, bilevel, gray+alpha, 16-bit TIFF…) decode too."""
    pil = pytest.importorskip("PIL.Image")
    rgb = cv2.cvtColor(small_bgr, cv2.COLOR_BGR2RGB)
    if mode == "I;16":
        source = pil.fromarray(small_gray.astype(np.uint16) * 100 + 7)
        expected = stretch(small_gray)
    elif mode in ("RGB", "RGBA"):
        source = pil.fromarray(rgb).convert(mode)
        expected = cv2.cvtColor(small_bgr, cv2.COLOR_BGR2GRAY)
    else:
        gray = small_gray if mode != "1" else np.where(small_gray > 80, 255, 0).astype(np.uint8)
        source = pil.fromarray(gray).convert(mode)
        expected = gray
    buffer = io.BytesIO()
    source.save(buffer, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    image = load_image(buffer.getvalue())
    diff = np.abs(image.astype(int) - expected.astype(int))
    assert image.shape == small_gray.shape
    assert diff.mean() < 3 if fmt == "JPEG" else diff.max() <= 1


def test_tiff_orientation_tag_is_honoured(small_gray) -> None:
    pil = pytest.importorskip("PIL.Image")
    exif = pil.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    buffer = io.BytesIO()
    pil.fromarray(small_gray).save(buffer, "TIFF", exif=exif.tobytes())
    np.testing.assert_array_equal(load_image(buffer.getvalue()), np.rot90(small_gray, -1))


def test_format_comes_from_content_not_extension(tmp_path, png_bytes, small_gray) -> None:
    misnamed = tmp_path / "scan.jpg"
    misnamed.write_bytes(png_bytes)
    np.testing.assert_array_equal(load_image(misnamed), small_gray)
    np.testing.assert_array_equal(load_image(str(misnamed)), small_gray)
    assert sniff_format(png_bytes) == "png"


def test_constant_wide_image_maps_to_zero() -> None:
    flat = np.full((20, 30), 4000, dtype=np.uint16)
    assert not load_image(encode(".png", flat)).any()


def test_eight_bit_values_are_kept_not_stretched() -> None:
    dim = np.full((10, 12), 40, dtype=np.uint8)
    dim[0, 0] = 60
    np.testing.assert_array_equal(load_image(encode(".png", dim)), dim)


def test_load_frames_of_a_raster_is_one_frame(png_bytes, small_gray) -> None:
    frames = load_frames(bytearray(png_bytes))
    assert len(frames) == 1
    np.testing.assert_array_equal(frames[0], small_gray)


# --------------------------------------------------------------------------- bad input


def _rejected(source, *fragments: str, **kwargs) -> InvalidImageError:
    with pytest.raises(InvalidImageError) as info:
        load_image(source, **kwargs)
    message = str(info.value).lower()
    for fragment in fragments:
        assert fragment.lower() in message, message
    return info.value


def test_empty_inputs(tmp_path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    _rejected(empty, str(empty), "empty")
    _rejected(b"", "<bytes>", "empty")


def test_missing_file_and_directory(tmp_path) -> None:
    _rejected(tmp_path / "nope.png", "nope.png", "does not exist")
    _rejected(str(tmp_path), "directory")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX named pipes")
def test_special_file_is_not_read(tmp_path) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    _rejected(fifo, "not a regular file")  # reading would block forever


def test_text_file_named_png(tmp_path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("this is not an image\n")
    _rejected(text, "notes.png", "not a recognised image format")


@pytest.mark.parametrize("source", [42, None, 3.5, ["a.png"], object(), {"path": "x"}])
def test_wrong_argument_types(source) -> None:
    error = _rejected(source, "expected a file path or the file's bytes")
    assert error.source == f"<{type(source).__name__}>"


def test_name_labels_bytes(png_bytes) -> None:
    _rejected(png_bytes[:40], "upload-7.png", "truncated", name="upload-7.png")


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tif"])
@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, -1])
def test_truncated_files(tmp_path, small_bgr, ext, keep) -> None:
    data = encode(ext, small_bgr)
    cut = len(data) - 1 if keep == -1 else int(len(data) * keep)
    path = tmp_path / f"cut{ext}"
    path.write_bytes(data[:cut])
    _rejected(path, str(path), "truncated")
    _rejected(data[:cut], "<bytes>", "truncated")


def test_huge_header_is_refused_before_decoding(monkeypatch) -> None:
    def no_decoding(*_args, **_kwargs):
        raise AssertionError("the decoder must not run")

    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    _rejected(png_claiming(100_000, 100_000), "too large", "100000x100000", "64000000")


def test_pixel_and_byte_limits(tmp_path, png_bytes) -> None:
    _rejected(png_bytes, "too large", "5120", limits=ImageLimits(max_pixels=5000))
    path = tmp_path / "ok.png"
    path.write_bytes(png_bytes)
    _rejected(path, "too large", "bytes", limits=ImageLimits(max_bytes=100))
    _rejected(png_bytes, "too large", "bytes", limits=ImageLimits(max_bytes=100))
    assert load_image(path, limits=ImageLimits(max_pixels=5120)).size == 5120


def test_corrupt_png_chunk_fails_crc(png_bytes) -> None:
    damaged = bytearray(png_bytes)
    damaged[60] ^= 0xFF  # inside the image data
    _rejected(bytes(damaged), "crc")


def test_png_with_garbage_image_data() -> None:
    ihdr = struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0)
    bogus = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", b"not zlib at all")
        + png_chunk(b"IEND", b"")
    )
    _rejected(bogus, "png")


def test_jpeg_without_frame_header() -> None:
    _rejected(b"\xff\xd8\xff\xda\x00\x02" + b"\x00" * 20 + b"\xff\xd9", "jpeg")


@pytest.mark.parametrize(
    "data",
    [b"GIF89a" + b"\x00" * 40, b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"%PDF-1.7\n", b"\x00" * 300],
)
def test_unsupported_formats(data) -> None:
    _rejected(data, "not a recognised image format")


def test_unexpected_decoder_exceptions_are_wrapped(monkeypatch, png_bytes) -> None:
    def explode(*_args, **_kwargs):
        raise cv2.error("simulated decoder failure")

    monkeypatch.setattr(cv2, "imdecode", explode)
    error = _rejected(png_bytes, "could not be decoded", "simulated decoder failure")
    assert isinstance(error.__cause__, cv2.error)


# --------------------------------------------------------------------------- fuzzing

MAGIC = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"II*\x00", b"MM\x00*"]


@FUZZ
@given(prefix=st.sampled_from(MAGIC), body=st.binary(max_size=1024))
def test_fuzz_random_bytes(prefix: bytes, body: bytes) -> None:
    loads_or_rejects(prefix + body)


@pytest.fixture(scope="session")
def encoded(small_gray, small_bgr) -> dict[str, bytes]:
    return {ext: encode(ext, small_bgr) for ext in (".png", ".jpg", ".bmp", ".tif")} | {
        ".png16": encode(".png", small_gray.astype(np.uint16) * 3),
        ".tif16": encode(".tif", small_gray.astype(np.uint16) * 3),
    }


@FUZZ
@given(kind=st.sampled_from([".png", ".jpg", ".bmp", ".tif", ".png16", ".tif16"]), data=st.data())
def test_fuzz_truncations(encoded, kind: str, data) -> None:
    raw = encoded[kind]
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(InvalidImageError):
        load_frames(raw[:cut])


@FUZZ
@given(kind=st.sampled_from([".png", ".jpg", ".bmp", ".tif"]), data=st.data())
def test_fuzz_corrupted_bytes(encoded, kind: str, data) -> None:
    raw = bytearray(encoded[kind])
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    loads_or_rejects(bytes(raw))
