"""Turn untrusted image files into 2-D ``uint8`` grayscale arrays and masks into bool arrays.

The method works on grayscale (patent step 1), so every decoder ends at the same
representation whatever the container: PNG, JPEG, BMP, TIFF (8/16-bit, gray, RGB,
RGBA) or ultrasound DICOM. The format is detected from the bytes' magic numbers,
never from the file name, because archives mislabel files; a DICOM dataset
without the 128-byte preamble is told by its first element, or by a ``.dcm`` name
when that does not tell.

Every failure (missing or empty file, truncated or corrupt data, unsupported
format, DICOM without pixels, too many pixels or bytes, longer than
``ImageLimits.max_decode_seconds`` to decode, wrong argument type) is
raised as :class:`~tumorseg.errors.InvalidImageError` naming the source, so a
batch job can turn it into an error row and a server into an HTTP 4xx without
catching anything else.

Conversions, in order: colour → luma with the standard weights (cv2), alpha
dropped; 8-bit data kept as is; any other depth scaled linearly from the image's
own minimum..maximum to 0..255 (a constant image becomes 0). EXIF orientation is
not applied to JPEG/PNG (ultrasound frames are stored upright); OpenCV does honour
a TIFF Orientation tag, so such a TIFF comes back rotated. Only the first page of a
multi-page TIFF is read; multi-frame DICOM gives one array per frame.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import cv2
import numpy as np

from tumorseg.config import ImageLimits
from tumorseg.errors import DecodeTimeoutError, ImageTooLargeError, InvalidImageError
from tumorseg.io.dicom import decode_dicom, decodes_as_dicom
from tumorseg.io.files import NotARegularFileError, open_regular
from tumorseg.io.headers import check_size, is_dicom, raster_header, sniff_format
from tumorseg.preprocessing.grayscale import to_gray, to_uint8

ImageSource = str | os.PathLike[str] | bytes | bytearray | memoryview
_BYTES_TYPES = (bytes, bytearray, memoryview)
log = logging.getLogger("tumorseg.io")
_T = TypeVar("_T")


def load_frames(
    source: ImageSource, *, limits: ImageLimits | None = None, name: str | None = None
) -> list[np.ndarray]:
    """Decode every frame of ``source`` (a path or the file's bytes) to ``uint8`` gray.

    ``name`` labels the source in error messages (useful for bytes from a request)
    and lets a preamble-less DICOM be recognised by a ``.dcm`` name.
    """
    limits = limits or ImageLimits()
    label = source_name(source, name)
    data = read_source(source, label, limits)
    suffix = _suffix(source, name)
    return _within_time(
        label,
        limits.max_decode_seconds,
        lambda: _guarded(label, lambda: _decode_frames(data, label, limits, suffix)),
    )


def load_image(
    source: ImageSource, *, limits: ImageLimits | None = None, name: str | None = None
) -> np.ndarray:
    """Decode a single-frame image; a multi-frame DICOM is refused (use :func:`load_frames`)."""
    frames = load_frames(source, limits=limits, name=name)
    if len(frames) != 1:
        raise InvalidImageError(
            source_name(source, name),
            f"multi-frame DICOM with {len(frames)} frames; use load_frames to read each frame",
        )
    return frames[0]


def load_mask(
    paths: ImageSource | Sequence[ImageSource],
    *,
    shape: tuple[int, int] | None = None,
    limits: ImageLimits | None = None,
) -> np.ndarray:
    """Read one or more mask files and OR them into one 2-D bool mask.

    A pixel is foreground when any colour channel is above zero (alpha is ignored,
    so an opaque black RGBA pixel is background). Several files are the several
    lesions of one image (BUSI ``X_mask.png``, ``X_mask_1.png``…). Every file must
    have the size ``shape`` (rows, cols) when given, else the size of the first.
    """
    limits = limits or ImageLimits()
    sources = _as_source_list(paths)
    masks = [(source_name(s, None), _load_one_mask(s, limits)) for s in sources]
    expected = tuple(shape) if shape is not None else masks[0][1].shape
    for label, mask in masks:
        if mask.shape != expected:
            raise InvalidImageError(
                label, f"mask is {_wxh(mask.shape)} pixels but {_wxh(expected)} was expected"
            )
    return np.logical_or.reduce([mask for _, mask in masks])


def source_name(source: object, name: str | None = None) -> str:
    """How a source is named in error messages: ``name``, the path, or ``<bytes>``."""
    if name:
        return name
    if isinstance(source, _BYTES_TYPES):
        return "<bytes>"
    if isinstance(source, str | os.PathLike):
        try:
            return os.fsdecode(os.fspath(source))
        except TypeError:
            pass
    return f"<{type(source).__name__}>"


def read_source(source: object, label: str, limits: ImageLimits) -> bytes:
    """Get the encoded bytes of ``source``, enforcing the byte limit and refusing empty input."""
    if isinstance(source, _BYTES_TYPES):
        data = bytes(source)
    elif isinstance(source, str | os.PathLike):
        data = _read_file(source, label, limits)
    else:
        raise InvalidImageError(
            label, f"expected a file path or the file's bytes, got {type(source).__name__}"
        )
    if not data:
        raise InvalidImageError(label, "empty input (0 bytes)")
    if len(data) > limits.max_bytes:
        raise ImageTooLargeError(
            label, f"too large: {len(data)} bytes, the limit is {limits.max_bytes}"
        )
    return data


def _read_file(path: str | os.PathLike[str], label: str, limits: ImageLimits) -> bytes:
    """Read a regular file, checking its size on disk first so a huge file is never
    loaded (a FIFO or a device is refused before any read: one would block, the
    other never end)."""
    try:
        handle = open_regular(path)
    except IsADirectoryError:
        raise InvalidImageError(label, "is a directory, not an image file") from None
    except NotARegularFileError as exc:
        raise InvalidImageError(label, f"is not a regular file ({exc.kind})") from None
    except FileNotFoundError:
        raise InvalidImageError(label, "file does not exist") from None
    except (OSError, TypeError, ValueError) as exc:
        raise InvalidImageError(label, f"file cannot be opened ({exc})") from exc
    with handle:
        size = os.fstat(handle.fileno()).st_size
        if size > limits.max_bytes:
            raise ImageTooLargeError(
                label, f"file is too large: {size} bytes, the limit is {limits.max_bytes}"
            )
        try:
            return handle.read(limits.max_bytes + 1)
        except OSError as exc:
            raise InvalidImageError(label, f"file cannot be read ({exc.strerror or exc})") from exc


def _within_time(label: str, seconds: float | None, decode: Callable[[], _T]) -> _T:
    """Run ``decode`` in a thread of its own and give up waiting after ``seconds``.

    A decoder in C cannot be interrupted, so a timed-out thread runs on to its end
    (bounded by the byte and pixel budgets) while the caller moves on to its next
    input; the thread is a daemon, so it never holds a process open.
    """
    if seconds is None:
        return decode()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = decode()
        except BaseException as error:  # re-raised in the caller's thread
            outcome["error"] = error

    worker = threading.Thread(target=run, name="tumorseg-decode", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        log.warning("%s: gave up decoding after %.3g s; its thread runs on", label, seconds)
        raise DecodeTimeoutError(label, f"took longer than {seconds:g} s to decode")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _guarded(label: str, decode: Callable[[], _T]) -> _T:
    """Run a decoder, turning any unexpected exception into :class:`InvalidImageError`."""
    try:
        return decode()
    except InvalidImageError:
        raise
    except Exception as exc:
        raise InvalidImageError(
            label, f"could not be decoded ({type(exc).__name__}: {exc})"
        ) from exc


def _decode_frames(data: bytes, label: str, limits: ImageLimits, suffix: str) -> list[np.ndarray]:
    fmt = sniff_format(data)
    if decodes_as_dicom(fmt, suffix):
        return decode_dicom(data, label, limits, force=not is_dicom(data))
    return [to_uint8(to_gray(_decode_raster(data, fmt, label, limits)))]


def _decode_raster(data: bytes, fmt: str | None, label: str, limits: ImageLimits) -> np.ndarray:
    """Decode PNG/JPEG/BMP/TIFF with OpenCV after the header checks; BGR(A) channel order."""
    if fmt is None:
        raise InvalidImageError(
            label, "not a recognised image format (expected PNG, JPEG, BMP, TIFF or DICOM)"
        )
    width, height, bytes_per_pixel = raster_header(data, fmt, label)
    check_size(label, width, height, bytes_per_pixel, 1, limits)
    pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.size == 0:
        raise InvalidImageError(label, f"corrupt {fmt.upper()} data: the decoder rejected it")
    if pixels.shape[:2] not in ((height, width), (width, height)):  # TIFF may be rotated
        raise InvalidImageError(
            label, f"decoded {_wxh(pixels.shape)} pixels but the header says {width}x{height}"
        )
    return pixels


def _load_one_mask(source: ImageSource, limits: ImageLimits) -> np.ndarray:
    label = source_name(source, None)
    data = read_source(source, label, limits)
    return _guarded(label, lambda: _decode_mask(data, label, limits, _suffix(source, None)))


def _decode_mask(data: bytes, label: str, limits: ImageLimits, suffix: str) -> np.ndarray:
    """Foreground = any colour channel above zero; alpha ignored."""
    fmt = sniff_format(data)
    if decodes_as_dicom(fmt, suffix):
        frames = decode_dicom(data, label, limits, force=not is_dicom(data))
        if len(frames) != 1:
            raise InvalidImageError(label, f"a mask must have one frame, this has {len(frames)}")
        return frames[0] > 0
    pixels = _decode_raster(data, fmt, label, limits)
    if pixels.ndim == 2:
        return pixels > 0
    colour = pixels[..., :-1] if pixels.shape[2] in (2, 4) else pixels
    return np.any(colour > 0, axis=2)


def _as_source_list(paths: object) -> list[ImageSource]:
    """One source or a sequence of sources, as a non-empty list."""
    if isinstance(paths, (str, os.PathLike, *_BYTES_TYPES)):
        return [paths]  # type: ignore[list-item]
    if isinstance(paths, Sequence):
        if not paths:
            raise InvalidImageError("<mask>", "no mask files were given")
        return list(paths)
    return [paths]  # type: ignore[list-item]  # read_source reports the wrong type


def _suffix(source: object, name: str | None) -> str:
    """Lower-case file extension of ``name`` or of the path (only a hint for bare DICOM)."""
    text = name or (source_name(source) if isinstance(source, str | os.PathLike) else "")
    return os.path.splitext(text)[1].lower()


def _wxh(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[0]}"
