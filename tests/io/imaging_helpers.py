"""Helpers shared by the I/O tests: encode arrays, craft structurally valid but hostile PNGs."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np


def encode(ext: str, image: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(ext, image)
    assert ok
    return buffer.tobytes()


def png_chunk(ctype: bytes, payload: bytes) -> bytes:
    """A PNG chunk with a correct CRC."""
    crc = zlib.crc32(ctype + payload)
    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", crc)


def png_claiming(width: int, height: int) -> bytes:
    """A structurally valid, tiny PNG whose IHDR claims ``width`` x ``height`` pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )
