"""Decoding stays within a budget of bytes and sides, not of pixels alone, checked
from the headers before any pixel is decoded."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tumorseg.config import ImageLimits
from tumorseg.errors import DecodeTimeoutError, ImageTooLargeError, InvalidImageError
from tumorseg.io import load_frames, load_image
from tumorseg.io.dicom import dicom_bytes
from tumorseg.io.headers import raster_header


def encoded(suffix: str, pixels: np.ndarray) -> bytes:
    ok, data = cv2.imencode(suffix, pixels)
    assert ok
    return data.tobytes()


@pytest.mark.parametrize(
    ("suffix", "pixels", "per_pixel"),
    [
        (".png", np.zeros((20, 30), np.uint8), 1),
        (".png", np.zeros((20, 30, 4), np.uint16), 8),
        (".png", np.zeros((20, 30, 3), np.uint8), 3),
        (".jpg", np.zeros((20, 30), np.uint8), 1),
        (".jpg", np.zeros((20, 30, 3), np.uint8), 3),
        (".bmp", np.zeros((20, 30, 3), np.uint8), 3),
        (".tiff", np.zeros((20, 30), np.uint8), 8),  # not read: the worst case
    ],
)
def test_headers_tell_what_a_pixel_decodes_to(suffix, pixels, per_pixel) -> None:
    fmt = {".jpg": "jpeg"}.get(suffix, suffix[1:])
    assert raster_header(encoded(suffix, pixels), fmt, "x") == (30, 20, per_pixel)


def test_a_deep_png_within_the_pixel_limit_is_refused_by_its_bytes() -> None:
    deep = encoded(".png", np.zeros((100, 100, 4), np.uint16))  # 80 000 bytes decoded
    limits = ImageLimits(max_pixels=10_000, max_decoded_bytes=50_000)
    with pytest.raises(ImageTooLargeError, match="8 bytes a pixel decodes to 80000 bytes"):
        load_image(deep, limits=limits)
    assert load_image(encoded(".png", np.zeros((100, 100), np.uint8)), limits=limits).shape == (
        100,
        100,
    )


def test_a_side_beyond_the_limit_is_refused_before_decoding() -> None:
    strip = encoded(".png", np.zeros((1, 70_000), np.uint8))
    with pytest.raises(ImageTooLargeError, match="65535 pixels a side"):
        load_image(strip)


def test_dicom_counts_its_stored_bytes_and_frames() -> None:
    frames = [np.zeros((50, 40), np.uint16)] * 3  # 3 × 2 000 pixels × 2 bytes
    limits = ImageLimits(max_decoded_bytes=11_000)
    with pytest.raises(ImageTooLargeError, match="40x50x3 frames at 2 bytes a pixel"):
        load_image(dicom_bytes(frames), limits=limits)


def test_a_loop_longer_than_the_frame_limit_is_refused_before_decoding() -> None:
    frames = [np.zeros((8, 8), np.uint8)] * 5
    with pytest.raises(ImageTooLargeError, match="5 frames, the limit is 4"):
        load_frames(dicom_bytes(frames), limits=ImageLimits(max_frames=4))
    assert len(load_frames(dicom_bytes(frames), limits=ImageLimits(max_frames=5))) == 5


def jpeg_dicom(jpeg: bytes, rows: int, columns: int) -> bytes:
    """A JPEG Baseline DICOM whose one frame is ``jpeg``, declaring ``rows`` × ``columns``."""
    import io

    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    dataset = pydicom.dcmread(io.BytesIO(dicom_bytes(np.zeros((rows, columns), np.uint8))))
    dataset.PixelData = encapsulate([jpeg])
    dataset["PixelData"].VR = "OB"
    dataset.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    dataset.PhotometricInterpretation = "MONOCHROME2"
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_a_jpeg_frame_larger_than_the_dicom_declares_is_refused_undecoded() -> None:
    bomb = jpeg_dicom(encoded(".jpg", np.zeros((4000, 4000), np.uint8)), rows=8, columns=8)
    with pytest.raises(InvalidImageError, match="4000x4000 JPEG but the file declares 8x8"):
        load_image(bomb, limits=ImageLimits(max_pixels=100))
    honest = np.full((16, 24), 120, np.uint8)
    decoded = load_image(jpeg_dicom(encoded(".jpg", honest), rows=16, columns=24))
    assert decoded.shape == (16, 24) and abs(int(decoded.mean()) - 120) <= 2


def deflated_dicom(pixels: np.ndarray) -> bytes:
    import io

    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    dataset = pydicom.dcmread(io.BytesIO(dicom_bytes(pixels)))
    dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_a_deflated_dicom_is_inflated_within_its_budget_or_refused() -> None:
    bomb = deflated_dicom(np.zeros((2000, 2000), np.uint8))  # 4 MB in a few KB
    assert len(bomb) < 50_000
    limits = ImageLimits(max_bytes=500_000, max_decoded_bytes=1_000_000)
    with pytest.raises(ImageTooLargeError, match="inflates beyond 1500000 bytes"):
        load_image(bomb, limits=limits)
    small = np.arange(40 * 30, dtype=np.uint8).reshape(40, 30)
    np.testing.assert_array_equal(load_image(deflated_dicom(small), limits=limits), small)


def split_png(data: bytes, pieces: int, empty: int = 0) -> bytes:
    """``data`` with its image data re-cut into ``pieces`` IDAT chunks and ``empty``
    empty ancillary chunks before IEND."""
    import struct

    from imaging_helpers import png_chunk

    pos, head, idat = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype, payload = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if ctype == b"IDAT":
            idat += payload
        elif ctype != b"IEND":
            head += data[pos : pos + 12 + length]
        pos += 12 + length
    step = -(-len(idat) // pieces)
    chunks = [png_chunk(b"IDAT", idat[i : i + step]) for i in range(0, len(idat), step)]
    filler = png_chunk(b"tEXt", b"") * empty
    return data[:8] + head + b"".join(chunks) + filler + png_chunk(b"IEND", b"")


def test_a_png_of_very_many_chunks_is_refused_before_its_walk_costs_seconds() -> None:
    pixels = np.random.default_rng(0).integers(0, 255, (200, 200), np.uint8)
    data = encoded(".png", pixels)
    many_idat = split_png(data, 5_000)  # small IDAT chunks, as some encoders write: kept
    np.testing.assert_array_equal(load_image(many_idat), pixels)
    with pytest.raises(InvalidImageError, match="more than 10000 chunks"):
        load_image(split_png(data, 1, empty=20_000))


def test_a_progressive_jpeg_of_very_many_scans_is_refused() -> None:
    pixels = np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)
    ok, buffer = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert ok
    data = buffer.tobytes()
    assert load_image(data).shape == (64, 64)  # an encoder's progressive file: kept
    last_scan = data.rindex(b"\xff\xda")
    scan = data[last_scan : data.rindex(b"\xff\xd9")]
    bomb = data[:last_scan] + scan * 200 + b"\xff\xd9"  # the last refinement, 200 times
    with pytest.raises(InvalidImageError, match=r"progressive scans \(at most 100\)"):
        load_image(bomb)


def test_a_decode_longer_than_the_time_limit_is_refused() -> None:
    # A 4000 x 4000 noise PNG takes tens of milliseconds to decode: far beyond 1 ms.
    noise = np.random.default_rng(0).integers(0, 256, (4000, 4000), dtype=np.uint8)
    data = encoded(".png", noise)
    with pytest.raises(DecodeTimeoutError, match=r"longer than 0\.001 s to decode"):
        load_frames(data, limits=ImageLimits(max_decode_seconds=0.001), name="slow.png")
    # The same file decodes within the default limit, and with none.
    assert load_image(data).shape == (4000, 4000)
    assert load_image(data, limits=ImageLimits(max_decode_seconds=None)).shape == (4000, 4000)


def test_a_decoder_error_inside_the_time_limit_is_still_the_decoder_error() -> None:
    with pytest.raises(InvalidImageError, match="not a recognised image format"):
        load_frames(b"plain text, not an image", limits=ImageLimits(max_decode_seconds=5.0))


@pytest.mark.parametrize("seconds", [0.0, -1.0])
def test_the_time_limit_must_be_positive(seconds) -> None:
    with pytest.raises(ValueError, match="max_decode_seconds must be positive"):
        ImageLimits(max_decode_seconds=seconds)
