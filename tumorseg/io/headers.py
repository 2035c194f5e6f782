"""Cheap structural checks on encoded image bytes, run before any pixel is decoded.

Decoders are happy to return half an image from a truncated file, and a few
hundred bytes can claim a 10-gigapixel canvas. Reading the format's own header
(PNG IHDR, JPEG SOF, BMP info header, TIFF first IFD) gives the true size without
decoding, and checking that the file reaches its own end marker (PNG IEND, JPEG
EOI, BMP pixel array, TIFF strips) catches truncation, so that only whole files of
an acceptable size ever reach the decoder.
"""

from __future__ import annotations

import struct
import zlib

from tumorseg.config import ImageLimits
from tumorseg.errors import ImageTooLargeError, InvalidImageError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_DICOM_MAGIC_OFFSET = 128

# JPEG start-of-frame markers carry the image size; C4, C8 and CC share the range
# but are a Huffman table, a reserved marker and an arithmetic-coding table.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_JPEG_SOS, _JPEG_EOI = 0xDA, 0xD9
# Progressive and lossless-progressive frames: each scan is a pass over the whole image.
_JPEG_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})

#: More chunks than this is refused: the walk over them is Python, and encoders write
#: IDAT in 8-64 KB chunks (a 32 MB PNG has a few thousand), so only a hostile file
#: comes near it (200 000 empty chunks took 2 s to walk).
MAX_PNG_CHUNKS = 10_000
#: More scans than this in a progressive JPEG is refused: the decoder passes over the
#: whole image once per scan (encoders write about ten; libjpeg-turbo's fuzzers stop
#: at 500), so a small file of many scans costs seconds of CPU.
MAX_JPEG_SCANS = 100

# TIFF tags read from the first IFD, and the field types they may use.
_TIFF_WIDTH, _TIFF_HEIGHT = 256, 257
_TIFF_STRIP_OFFSETS, _TIFF_STRIP_COUNTS = 273, 279
_TIFF_TILE_OFFSETS, _TIFF_TILE_COUNTS = 324, 325
_TIFF_TAGS = frozenset(
    {
        _TIFF_WIDTH,
        _TIFF_HEIGHT,
        _TIFF_STRIP_OFFSETS,
        _TIFF_STRIP_COUNTS,
        _TIFF_TILE_OFFSETS,
        _TIFF_TILE_COUNTS,
    }
)
_TIFF_TYPES = {1: "B", 3: "H", 4: "I"}  # BYTE, SHORT, LONG
# Bytes per value of every classic TIFF field type (RATIONAL, DOUBLE… take 8).
_TIFF_TYPE_SIZES = {
    1: 1,
    2: 1,
    3: 2,
    4: 4,
    5: 8,
    6: 1,
    7: 1,
    8: 2,
    9: 4,
    10: 8,
    11: 4,
    12: 8,
    13: 4,
}


def is_dicom(data: bytes) -> bool:
    """True when ``data`` carries the DICOM Part 10 magic ``DICM`` after the preamble."""
    return bytes(data[_DICOM_MAGIC_OFFSET : _DICOM_MAGIC_OFFSET + 4]) == b"DICM"


#: Value representations an explicit-VR dataset's first element may carry.
_VRS = frozenset(
    b"AE AS AT CS DA DS DT FL FD IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL "
    b"UN UR US UT UV".split()
)
#: Groups a dataset opens with: file meta (0002) or identification (0008).
_OPENING_GROUPS = (0x0002, 0x0008)


def is_bare_dicom(data: bytes) -> bool:
    """True for a DICOM dataset written without the preamble and ``DICM`` (older devices
    and some archive exports, often without an extension either): its first element,
    little endian, is in group 0002 or 0008 with a low element number and either a
    known VR (explicit VR) or a short even length (implicit VR)."""
    head = bytes(data[:8])
    if len(head) < 8:
        return False
    group, element = struct.unpack("<HH", head[:4])
    if group not in _OPENING_GROUPS or element > 0x0020:
        return False
    if head[4:6] in _VRS:
        return True
    (length,) = struct.unpack("<I", head[4:8])
    return length <= 1024 and length % 2 == 0


def sniff_format(data: bytes) -> str | None:
    """Name the container format from its magic number, never from a file name.

    Returns ``"png"``, ``"jpeg"``, ``"bmp"``, ``"tiff"``, ``"dicom"`` (with the ``DICM``
    magic, or a bare dataset: :func:`is_bare_dicom`) or ``None``.
    """
    head = bytes(data[:8])
    if head.startswith(PNG_SIGNATURE):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"BM"):
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if is_dicom(data) or is_bare_dicom(data):
        return "dicom"
    return None


def raster_size(data: bytes, fmt: str, source: str) -> tuple[int, int]:
    """Return ``(width, height)`` of a PNG/JPEG/BMP/TIFF after checking it is complete.

    Raises :class:`InvalidImageError` when the file is truncated or its header is
    malformed.
    """
    width, height, _ = raster_header(data, fmt, source)
    return width, height


def raster_header(data: bytes, fmt: str, source: str) -> tuple[int, int, int]:
    """``(width, height, bytes per decoded pixel)``: :func:`raster_size` plus what the
    decoder will allocate per pixel (channels × bytes per sample as OpenCV returns
    them; TIFF, whose sample layout is not read, counts the worst case, 16-bit RGBA)."""
    readers = {"png": _png_size, "jpeg": _jpeg_size, "bmp": _bmp_size, "tiff": _tiff_size}
    width, height, bytes_per_pixel = readers[fmt](memoryview(data), source)
    if width <= 0 or height <= 0:
        raise InvalidImageError(
            source, f"{fmt.upper()} header gives an empty size {width}x{height}"
        )
    return width, height, bytes_per_pixel


# PNG colour type → channels OpenCV decodes it to (palettes expand to BGR, gray+alpha to BGRA).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 4, 6: 4}
#: TIFF's sample layout is not read: its pixels count as the worst case, 16-bit RGBA.
_TIFF_BYTES_PER_PIXEL = 8


def _truncated(source: str, fmt: str, what: str) -> InvalidImageError:
    return InvalidImageError(source, f"truncated {fmt} file: {what}")


def _unpack(fmt: str, data: memoryview, pos: int, source: str, kind: str) -> tuple[int, ...]:
    """``struct.unpack_from`` that reports reading past the end as truncation."""
    if pos < 0 or pos + struct.calcsize(fmt) > len(data):
        raise _truncated(source, kind, f"header ends early at byte {len(data)}")
    return struct.unpack_from(fmt, data, pos)


def _png_size(data: memoryview, source: str) -> tuple[int, int, int]:
    """Walk every chunk (length, type, CRC) up to IEND; the size, depth and colour type
    come from IHDR."""
    pos, size = len(PNG_SIGNATURE), None
    for _ in range(MAX_PNG_CHUNKS):
        length, ctype = _unpack(">I4s", data, pos, source, "PNG")
        end = pos + 12 + length
        if end > len(data):
            raise _truncated(source, "PNG", f"chunk {ctype!r} runs past the end of the file")
        (crc,) = struct.unpack_from(">I", data, end - 4)
        if zlib.crc32(data[pos + 4 : end - 4]) != crc:
            raise InvalidImageError(source, f"corrupt PNG: chunk {ctype!r} fails its CRC check")
        if size is None:
            if ctype != b"IHDR" or length != 13:
                raise InvalidImageError(source, "corrupt PNG: the first chunk is not IHDR")
            width, height, depth, colour = struct.unpack_from(">IIBB", data, pos + 8)
            size = (width, height, _PNG_CHANNELS.get(colour, 4) * (2 if depth == 16 else 1))
        if ctype == b"IEND":
            return size
        pos = end
    raise InvalidImageError(
        source, f"refused PNG: more than {MAX_PNG_CHUNKS} chunks before its end (IEND)"
    )


def _jpeg_size(data: memoryview, source: str) -> tuple[int, int, int]:
    """Walk the header segments to the first scan; the scan must reach an EOI marker.
    The frame header gives the size, the sample precision and the components."""
    pos, size, progressive = 2, None, False
    while True:
        marker, pos = _jpeg_marker(data, pos, source)
        if marker == _JPEG_EOI:
            raise InvalidImageError(source, "corrupt JPEG: the file ends before any image data")
        if marker in _JPEG_STANDALONE:
            continue
        (length,) = _unpack(">H", data, pos, source, "JPEG")
        if length < 2 or pos + length > len(data):
            raise _truncated(source, "JPEG", f"segment 0x{marker:02X} runs past the end")
        if marker in _JPEG_SOF:
            precision, height, width, components = _unpack(">BHHB", data, pos + 2, source, "JPEG")
            size = (width, height, components * (2 if precision > 8 else 1))
            progressive = marker in _JPEG_PROGRESSIVE
        if marker == _JPEG_SOS:
            _jpeg_check_scans(data, pos, progressive, source)
            return _jpeg_check_end(data, pos + length, size, source)
        pos += length


def _jpeg_marker(data: memoryview, pos: int, source: str) -> tuple[int, int]:
    """Read the marker at ``pos`` (skipping fill bytes); return it and the next position."""
    if pos >= len(data):
        raise _truncated(source, "JPEG", "the file ends inside the header")
    if data[pos] != 0xFF:
        raise InvalidImageError(source, f"corrupt JPEG: no segment marker at byte {pos}")
    while pos < len(data) and data[pos] == 0xFF:
        pos += 1
    if pos >= len(data):
        raise _truncated(source, "JPEG", "the file ends inside the header")
    return data[pos], pos + 1


def _jpeg_check_scans(data: memoryview, first_scan: int, progressive: bool, source: str) -> None:
    """Count the scans of a progressive JPEG: start-of-scan markers (entropy-coded data
    stuffs every 0xFF with 0x00, so the marker bytes occur nowhere else)."""
    if progressive:
        scans = bytes(data[first_scan:]).count(b"\xff\xda") + 1
        if scans > MAX_JPEG_SCANS:
            raise InvalidImageError(
                source, f"refused JPEG: {scans} progressive scans (at most {MAX_JPEG_SCANS})"
            )


def _jpeg_check_end(
    data: memoryview, scan_start: int, size: tuple[int, int, int] | None, source: str
) -> tuple[int, int, int]:
    if size is None:
        raise InvalidImageError(source, "corrupt JPEG: image data comes before the frame header")
    if size[1] == 0:
        raise InvalidImageError(source, "unsupported JPEG: the height is only given after the data")
    if bytes(data[scan_start:]).find(b"\xff\xd9") < 0:
        raise _truncated(source, "JPEG", "the end-of-image marker is missing")
    return size


def _bmp_size(data: memoryview, source: str) -> tuple[int, int, int]:
    """Read the info header; uncompressed pixel arrays must fit in the file."""
    (offset, dib_size) = _unpack("<II", data, 10, source, "BMP")
    if dib_size == 12:  # OS/2 BITMAPCOREHEADER
        width, height, _, bpp = _unpack("<HHHH", data, 18, source, "BMP")
        compression = 0
    elif dib_size >= 40:
        width, height, _, bpp, compression = _unpack("<iiHHI", data, 18, source, "BMP")
    else:
        raise InvalidImageError(source, f"corrupt BMP: unknown info header size {dib_size}")
    height = abs(height)
    if compression in (0, 3, 6) and bpp in (1, 4, 8, 16, 24, 32) and width > 0:
        needed = offset + (width * bpp + 31) // 32 * 4 * height
        if needed > len(data):
            raise _truncated(
                source, "BMP", f"pixel data needs {needed} bytes, file has {len(data)}"
            )
    return width, height, 4 if bpp == 32 else 3  # OpenCV decodes to BGR, 32-bit to BGRA


def _tiff_size(data: memoryview, source: str) -> tuple[int, int, int]:
    """Read the first IFD; every strip or tile it points to must lie inside the file."""
    order = "<" if bytes(data[:2]) == b"II" else ">"
    (magic, ifd) = _unpack(order + "HI", data, 2, source, "TIFF")
    if magic != 42:
        raise InvalidImageError(source, "unsupported TIFF variant (BigTIFF)")
    tags = _tiff_tags(data, order, ifd, source)
    if _TIFF_WIDTH not in tags or _TIFF_HEIGHT not in tags:
        raise InvalidImageError(source, "corrupt TIFF: the first image has no width or height")
    offsets = tags.get(_TIFF_STRIP_OFFSETS) or tags.get(_TIFF_TILE_OFFSETS) or ()
    counts = tags.get(_TIFF_STRIP_COUNTS) or tags.get(_TIFF_TILE_COUNTS) or ()
    if not offsets or len(offsets) != len(counts):
        raise InvalidImageError(source, "corrupt TIFF: missing or mismatched strip/tile tables")
    if any(o + c > len(data) for o, c in zip(offsets, counts, strict=True)):
        raise _truncated(source, "TIFF", "image data runs past the end of the file")
    return tags[_TIFF_WIDTH][0], tags[_TIFF_HEIGHT][0], _TIFF_BYTES_PER_PIXEL


def _tiff_tags(data: memoryview, order: str, ifd: int, source: str) -> dict[int, tuple[int, ...]]:
    """Values of the tags in :data:`_TIFF_TAGS` from the IFD at ``ifd``.

    Every entry's out-of-line values, and the next-IFD pointer, must lie inside
    the file: a truncated TIFF usually loses the IFD itself or its values.
    """
    (count,) = _unpack(order + "H", data, ifd, source, "TIFF")
    _unpack(order + "I", data, ifd + 2 + 12 * count, source, "TIFF")  # next-IFD pointer
    tags: dict[int, tuple[int, ...]] = {}
    for i in range(count):
        entry = ifd + 2 + 12 * i
        tag, ftype, n, pointer = _unpack(order + "HHII", data, entry, source, "TIFF")
        nbytes = _TIFF_TYPE_SIZES.get(ftype, 1) * n
        if nbytes > 4 and pointer + nbytes > len(data):
            raise _truncated(source, "TIFF", f"the values of tag {tag} run past the end")
        if tag in _TIFF_TAGS:
            tags[tag] = _tiff_values(data, order, ftype, n, entry + 8, source)
    return tags


def _tiff_values(
    data: memoryview, order: str, ftype: int, n: int, field: int, source: str
) -> tuple[int, ...]:
    """Decode ``n`` integers stored inline (4 bytes or fewer) or at the offset in ``field``."""
    code = _TIFF_TYPES.get(ftype)
    if code is None:
        raise InvalidImageError(source, f"corrupt TIFF: unexpected field type {ftype}")
    nbytes = struct.calcsize(code) * n
    pos = field if nbytes <= 4 else _unpack(order + "I", data, field, source, "TIFF")[0]
    if pos + nbytes > len(data):
        raise _truncated(source, "TIFF", "a tag's values run past the end of the file")
    return struct.unpack_from(f"{order}{n}{code}", data, pos)


def check_size(
    label: str, width: int, height: int, bytes_per_pixel: int, frames: int, limits: ImageLimits
) -> None:
    """Refuse, before decoding, what the limits do not allow: pixels, side, bytes."""
    pixels = width * height * frames
    shape = f"{width}x{height}" + (f"x{frames} frames" if frames > 1 else "")
    if frames > limits.max_frames:
        raise ImageTooLargeError(
            label, f"cine loop is too long: {frames} frames, the limit is {limits.max_frames}"
        )
    if pixels > limits.max_pixels:
        raise ImageTooLargeError(
            label,
            f"image is too large: {shape} = {pixels} pixels, the limit is {limits.max_pixels}",
        )
    if max(width, height) > limits.max_side:
        raise ImageTooLargeError(
            label, f"image is too large: {shape}, the limit is {limits.max_side} pixels a side"
        )
    decoded = pixels * bytes_per_pixel
    if decoded > limits.max_decoded_bytes:
        raise ImageTooLargeError(
            label,
            f"image is too large: {shape} at {bytes_per_pixel} bytes a pixel decodes to "
            f"{decoded} bytes, the limit is {limits.max_decoded_bytes}",
        )
