"""Hostile and messy inputs, as an archive or an attacker would send them.

``hostile_files`` gives file contents by name (the extension says what the file
claims to be); ``filesystem_oddities`` adds what only a folder can hold: links that
lead nowhere or in circles, a folder named like an image, names that are not UTF-8
or near the file-system's limit. The bulk job and the HTTP API must give each of
them exactly one answer, and never a 500.
``within`` runs a reader that such an input could block, failing instead of hanging.
"""

from __future__ import annotations

import io
import os
import struct
import threading
import zlib
from pathlib import Path

import cv2
import numpy as np
import pydicom
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEGBaseline8Bit

from tumorseg.io.dicom import dicom_bytes

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def png_claiming(width: int, height: int, extra_chunks: int = 0) -> bytes:
    """A PNG whose header claims ``width`` × ``height`` over a few bytes of data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    padding = _chunk(b"tEXt", b"") * extra_chunks
    return (
        PNG_MAGIC + _chunk(b"IHDR", header) + padding
        + _chunk(b"IDAT", zlib.compress(b"\0" * 16)) + _chunk(b"IEND", b"")
    )  # fmt: skip


def _cv(suffix: str, pixels: np.ndarray, *params: int) -> bytes:
    ok, data = cv2.imencode(suffix, pixels, list(params))
    assert ok, suffix
    return data.tobytes()


def _pil(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _dicom(dataset: pydicom.Dataset, **save) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, **save)
    return buffer.getvalue()


def _dataset(pixels, **kwargs) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(dicom_bytes(pixels, **kwargs)))


def _jpeg_claiming(jpeg: bytes, width: int, height: int) -> bytes:
    """``jpeg`` with its frame header (SOF0) claiming another size."""
    at = jpeg.index(b"\xff\xc0")
    return jpeg[: at + 5] + struct.pack(">HH", height, width) + jpeg[at + 9 :]


def _jpeg_dicom(jpeg: bytes, rows: int, columns: int) -> bytes:
    dataset = _dataset(np.zeros((rows, columns), np.uint8))
    dataset.PixelData = encapsulate([jpeg])
    dataset["PixelData"].VR = "OB"
    dataset.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    return _dicom(dataset, enforce_file_format=True)


def hostile_files(gray: np.ndarray) -> dict[str, bytes]:
    """Forty-four kinds of file, named by what they claim to be. ``gray`` is a real
    image (a small one keeps the run short)."""
    bgr = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    png = _cv(".png", gray)
    jpeg = _cv(".jpg", bgr)
    wide16 = gray.astype(np.uint16) * 257
    rng = np.random.default_rng(7)

    no_pixels = _dataset(gray)
    del no_pixels.PixelData
    huge_header = _dataset(gray)
    huge_header.add_new(0x00091010, "OB", b"\0" * 1_500_000)  # a private tag of 1.5 MB
    short = _dataset(gray)
    short.PixelData = short.PixelData[: len(short.PixelData) // 3]
    rescaled = _dataset(wide16)
    rescaled.RescaleSlope, rescaled.RescaleIntercept = 0.5, -100
    deflated = _dataset(np.zeros((2100, 2100), np.uint8))
    deflated.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian

    bad_crc = bytearray(png)
    bad_crc[20] ^= 0xFF  # inside IHDR's data: its CRC no longer matches
    garbage_idat = PNG_MAGIC + png[8:33] + _chunk(b"IDAT", rng.bytes(400)) + _chunk(b"IEND", b"")
    return {
        # PNG
        "empty.png": b"",
        "one-pixel.png": _cv(".png", np.full((1, 1), 128, np.uint8)),
        "strip.png": _cv(".png", np.tile(gray[:1], (1, 30))[:, :4000]),
        "column.png": _cv(".png", np.tile(gray[:, :1], (30, 1))[:4000]),
        "palette.png": _pil(Image.fromarray(gray).convert("P"), "PNG"),
        "gray-alpha.png": _pil(Image.fromarray(gray).convert("LA"), "PNG"),
        "rgba16.png": _cv(".png", np.dstack([wide16] * 4)),
        "gray16.png": _cv(".png", wide16),
        "truncated.png": png[: len(png) // 2],
        "bad-crc.png": bytes(bad_crc),
        "garbage-idat.png": garbage_idat,
        "claims-huge.png": png_claiming(3000, 3000),
        "claims-nothing.png": png_claiming(0, 0),
        "many-chunks.png": png_claiming(8, 8, extra_chunks=100_000),
        "text.png": b"not an image, whatever the name says\n",
        "random-with-magic.png": PNG_MAGIC + rng.bytes(4000),
        "gif-named.png": _pil(Image.fromarray(gray), "GIF"),
        "webp-named.png": _cv(".webp", gray),
        "zip-named.png": b"PK\x03\x04" + rng.bytes(500),
        "html-named.png": b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>",
        # JPEG
        "truncated.jpg": jpeg[: len(jpeg) // 3],
        "no-frame.jpg": b"\xff\xd8\xff\xd9",
        "progressive.jpg": _cv(".jpg", bgr, cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
        "cmyk.jpg": _pil(Image.fromarray(gray).convert("CMYK"), "JPEG"),
        "claims-huge.jpg": _jpeg_claiming(jpeg, 60_000, 60_000),
        # BMP, TIFF
        "gray.bmp": _cv(".bmp", gray),
        "truncated.bmp": _cv(".bmp", bgr)[:200],
        "multipage.tif": _pil(
            Image.fromarray(gray),
            "TIFF",
            save_all=True,
            append_images=[Image.fromarray(255 - gray)],
        ),
        "gray16.tif": _cv(".tif", wide16),
        "float32.tif": _pil(Image.fromarray(gray.astype(np.float32) / 255.0), "TIFF"),
        "too-wide.tif": _pil(Image.new("L", (70_000, 1)), "TIFF", compression="tiff_deflate"),
        # DICOM
        "no-pixels.dcm": _dicom(no_pixels, enforce_file_format=True),
        "cine.dcm": dicom_bytes([gray, 255 - gray, gray]),
        "huge-header.dcm": _dicom(huge_header, enforce_file_format=True),
        "deflate-bomb.dcm": _dicom(deflated, enforce_file_format=True),
        "jpeg-bomb.dcm": _jpeg_dicom(_cv(".jpg", np.zeros((4000, 4000), np.uint8)), 8, 8),
        "monochrome1.dcm": dicom_bytes(gray, photometric="MONOCHROME1"),
        "rgb.dcm": dicom_bytes(gray, photometric="RGB"),
        "ybr.dcm": dicom_bytes(gray, photometric="YBR_FULL"),
        "short-pixels.dcm": _dicom(short, enforce_file_format=True),
        "no-preamble.dcm": dicom_bytes(gray, preamble=False),
        "rescaled16.dcm": _dicom(rescaled, enforce_file_format=True),
        "pdf-named.dcm": b"%PDF-1.4\n" + rng.bytes(300),
        "too-long-loop.dcm": dicom_bytes([gray[:8, :8]] * 121),
    }


def filesystem_oddities(root: Path, good: bytes) -> list[str]:
    """Add what only a folder can hold to ``root``; returns the names that must each
    end as exactly one row (of the listing's own kinds: symlinks are listed as such)."""
    (root / "dangling.png").symlink_to(root / "missing.png")
    (root / "loop-a.png").symlink_to(root / "loop-b.png")
    (root / "loop-b.png").symlink_to(root / "loop-a.png")
    (root / "folder.png").mkdir()  # a folder named like an image, holding an image
    (root / "folder.png" / "inside.png").write_bytes(good)
    (root / "folder").write_bytes(good)  # extension-less: "folder" vs "folder.png/"
    long_name = "n" * 240 + ".png"  # near NAME_MAX: its mask name is longer still
    (root / long_name).write_bytes(good)
    odd = os.fsdecode(b"caf\xe9.png")  # Latin-1, not UTF-8
    (root / odd).write_bytes(good)
    os.mkfifo(root / "fifo.png")  # opening it would block until a writer came
    (root / "zero.dcm").symlink_to("/dev/zero")  # reading it would never end
    return [
        "dangling.png", "loop-a.png", "loop-b.png", "folder.png/inside.png", "folder",
        long_name, odd, "fifo.png", "zero.dcm",
    ]  # fmt: skip


def within(seconds: float, call):
    """``call()``'s outcome (its value or what it raised), failing the test instead of
    hanging it when it has not returned after ``seconds``."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as error:  # handed back to the test
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"still running after {seconds} s (blocked)"
    return outcome[0]
