"""Ultrasound DICOM: decode to 8-bit grayscale frames, and write test/interchange files.

Archived ultrasound studies arrive as DICOM: monochrome or colour (RGB, YBR_*),
often multi-frame cine loops, sometimes with a modality or VOI LUT. Decoding
brings all of them to the one representation the method uses: 2-D ``uint8``
grayscale frames.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import (
    apply_color_lut,
    apply_modality_lut,
    apply_voi_lut,
    convert_color_space,
    pixel_array,
    set_pixel_data,
)
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

from tumorseg.config import ImageLimits
from tumorseg.errors import ImageTooLargeError, InvalidImageError
from tumorseg.io.files import open_regular
from tumorseg.io.headers import check_size, is_dicom, raster_size, sniff_format
from tumorseg.preprocessing.grayscale import to_gray, to_uint8

_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
PHOTOMETRICS = ("MONOCHROME2", "MONOCHROME1", "RGB", "YBR_FULL")
#: Extensions that mark a file without the ``DICM`` preamble as DICOM.
DICOM_SUFFIXES = (".dcm", ".dicom")


def is_dicom_file(path: str | os.PathLike[str]) -> bool:
    """A DICOM file by its ``DICM`` magic or its first element (a bare dataset), or by
    its extension when neither tells.

    Reads 132 bytes only; the same rule as decoding (:func:`tumorseg.io.load_image`).
    """
    with open_regular(path) as handle:
        head = handle.read(132)
    return looks_like_dicom(head, os.fspath(path))


def looks_like_dicom(data: bytes, name: str) -> bool:
    """The rule of :func:`is_dicom_file` for bytes (of which the first 132 are read) and
    the name they came under."""
    return decodes_as_dicom(sniff_format(bytes(data[:132])), Path(name).suffix)


def decodes_as_dicom(fmt: str | None, suffix: str) -> bool:
    """The one rule every reader follows: DICOM when the content says so (the ``DICM``
    magic or a bare dataset's first element), or when the content names no format and
    the name has a DICOM extension."""
    return fmt == "dicom" or (fmt is None and suffix.lower() in DICOM_SUFFIXES)


def read_dataset(data: bytes, source: str, *, force: bool = False) -> Dataset:
    """Parse DICOM bytes; ``force`` accepts files without the 128-byte preamble."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=force)
    except Exception as exc:  # pydicom raises many types for damaged files
        raise InvalidImageError(source, f"unreadable DICOM ({_describe(exc)})") from exc
    _ensure_transfer_syntax(ds)
    return ds


_DEFLATED = b"1.2.840.10008.1.2.1.99"
_LONG_LENGTH_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN",
                              b"UR", b"UT"})  # fmt: skip


def check_inflation(data: bytes, source: str, limit: int) -> None:
    """A Deflated Explicit VR Little Endian file is inflated whole by the reader, before
    any size can be checked (50 KB can hold gigabytes): inflate it here first, at most
    ``limit`` bytes, and refuse it beyond."""
    body = _deflated_body(data)
    if body is None:
        return
    inflater, pending, total = zlib.decompressobj(-zlib.MAX_WBITS), body, 0
    try:
        while pending:  # a megabyte at a time, counted and dropped
            out = inflater.decompress(pending, 1 << 20)
            total += len(out)
            if total > limit:
                raise ImageTooLargeError(
                    source, f"deflated DICOM inflates beyond {limit} bytes, its limit"
                )
            if not out and pending == inflater.unconsumed_tail:
                break
            pending = inflater.unconsumed_tail
    except zlib.error as exc:
        raise InvalidImageError(source, f"corrupt deflated DICOM ({exc})") from exc


def _deflated_body(data: bytes) -> bytes | None:
    """The deflated dataset after the file meta, or ``None`` for any other encoding.

    Reads the meta group by hand (explicit VR little endian, PS3.10 7.1): the reader
    would inflate before returning it.
    """
    if not is_dicom(data):
        return None
    pos = 132
    try:
        group_length = struct.unpack_from("<I", data, pos + 8)[0]
        end, pos = pos + 12 + group_length, pos + 12
        while pos + 8 <= min(end, len(data)):
            group, element = struct.unpack_from("<HH", data, pos)
            vr = bytes(data[pos + 4 : pos + 6])
            if vr in _LONG_LENGTH_VRS:
                length, header = struct.unpack_from("<I", data, pos + 8)[0], 12
            else:
                length, header = struct.unpack_from("<H", data, pos + 6)[0], 8
            if (group, element) == (0x0002, 0x0010):
                syntax = bytes(data[pos + header : pos + header + length]).rstrip(b"\0 ")
                return bytes(data[end:]) if syntax == _DEFLATED else None
            pos += header + length
    except struct.error:
        return None  # a damaged meta group: the reader will say so
    return None


def _ensure_transfer_syntax(ds: Dataset) -> None:
    """Bare datasets (no file meta) are uncompressed: record the encoding they were read in.

    pydicom needs the transfer syntax to decode pixels; without file meta the only
    possibility is a native encoding, which the reader has already detected.
    """
    meta = getattr(ds, "file_meta", None) or FileMetaDataset()
    if "TransferSyntaxUID" in meta:
        return
    implicit, little = ds.original_encoding
    if implicit is not False:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    ds.file_meta = meta


def frame_count(ds: Dataset) -> int:
    """Number of frames the dataset declares (1 when the tag is absent or empty)."""
    try:
        return max(int(ds.get("NumberOfFrames", 1) or 1), 1)
    except (TypeError, ValueError):
        return 1


def decode_dicom(
    data: bytes, source: str, limits: ImageLimits, *, force: bool = False
) -> list[np.ndarray]:
    """Decode every frame of a DICOM file to a 2-D ``uint8`` grayscale array.

    The pixel limit counts the pixels of all frames together, since that is what
    gets allocated. Colour (RGB, YBR_*, or PALETTE COLOR through its palette) becomes
    luma. Monochrome data go through the modality LUT (rescale) and VOI
    LUT (window) when the file has them. Data that are not 8-bit after that are
    scaled linearly from their own minimum..maximum over all frames to 0..255 (one
    scale for the whole cine loop, so frames stay comparable). MONOCHROME1 is
    inverted so that bright always means echogenic.
    """
    check_inflation(data, source, limits.max_decoded_bytes + limits.max_bytes)
    ds = read_dataset(data, source, force=force)
    _check_pixels(ds, source, limits)
    frames = _decoded_pixels(ds, source)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if photometric == "PALETTE COLOR":
        frames = apply_color_lut(frames, ds)  # indices → RGB through the file's palette
    if frames.ndim == 4:
        gray = np.stack([to_gray(frame, order="rgb") for frame in frames])
    else:
        gray = _apply_luts(frames, ds, source)
    gray8 = to_uint8(gray)
    if photometric == "MONOCHROME1":
        gray8 = 255 - gray8
    return [np.ascontiguousarray(frame) for frame in gray8]


def _check_pixels(ds: Dataset, source: str, limits: ImageLimits) -> None:
    """Refuse datasets without pixels, or with more pixels than allowed, before decoding."""
    if not any(tag in ds for tag in _PIXEL_TAGS):
        raise InvalidImageError(source, "DICOM file has no pixel data (PixelData is missing)")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows <= 0 or cols <= 0:
        raise InvalidImageError(source, "DICOM file gives no image size (Rows/Columns)")
    check_size(source, cols, rows, _bytes_per_pixel(ds), frame_count(ds), limits)
    _check_jpeg_frames(ds, rows, cols, source)


#: JPEG (ISO 10918) transfer syntaxes: each frame is a JPEG whose SOF gives its size.
_JPEG_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.4.57",
        "1.2.840.10008.1.2.4.70",
    }
)


def _check_jpeg_frames(ds: Dataset, rows: int, cols: int, source: str) -> None:
    """An encapsulated JPEG frame decodes at its own size, whatever Rows × Columns say:
    refuse a frame whose header disagrees, before any is decoded. (Other compressed
    syntaxes are left to their decoders, whose output size is checked after.)"""
    syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", ""))
    if syntax not in _JPEG_SYNTAXES or "PixelData" not in ds:
        return
    from pydicom.encaps import generate_frames

    try:
        frames = generate_frames(ds.PixelData, number_of_frames=frame_count(ds))
        for index, frame in enumerate(frames):
            width, height = raster_size(frame, "jpeg", source)
            if (height, width) != (rows, cols):
                raise InvalidImageError(
                    source,
                    f"DICOM frame {index} is a {width}x{height} JPEG but the file declares "
                    f"{cols}x{rows}",
                )
    except InvalidImageError:
        raise
    except Exception as exc:  # fragments pydicom cannot split into frames
        raise InvalidImageError(
            source, f"corrupt encapsulated pixel data ({_describe(exc)})"
        ) from exc


def _bytes_per_pixel(ds: Dataset) -> int:
    """What a decoded pixel takes: samples (a palette expands to RGB) × stored bytes."""
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if str(ds.get("PhotometricInterpretation", "")).strip().upper() == "PALETTE COLOR":
        samples = 3
    bits = int(ds.get("BitsAllocated", 8) or 8)
    return max(samples, 1) * max((bits + 7) // 8, 1)


def _decoded_pixels(ds: Dataset, source: str) -> np.ndarray:
    """Pixel array shaped (frames, rows, cols[, samples]); colour comes back as RGB."""
    try:
        arr = pixel_array(ds)  # converts YBR_* to RGB (as_rgb defaults to True)
    except Exception as exc:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise InvalidImageError(
            source, f"DICOM pixel data could not be decoded ({syntax}: {_describe(exc)})"
        ) from exc
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    single_frame_ndim = 2 if samples == 1 else 3
    return arr[np.newaxis] if arr.ndim == single_frame_ndim else arr


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _apply_luts(frames: np.ndarray, ds: Dataset, source: str = "<dataset>") -> np.ndarray:
    """Modality LUT (rescale) then VOI LUT (window), only when the file asks for them.

    Results are float32 (4 bytes a pixel): a rescale in place on one copy, LUT
    sequences and windows through pydicom a frame at a time into one output, since
    pydicom's own functions return float64 copies of the whole cine loop.
    """
    out = frames
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    if not all(abs(v) <= _FLOAT32_MAX for v in (slope, intercept)):  # nan and inf too
        raise InvalidImageError(
            source, f"DICOM rescale (slope {slope}, intercept {intercept}) is out of range"
        )
    if "ModalityLUTSequence" in ds:
        out = _per_frame(apply_modality_lut, out, ds)
    elif slope != 1 or intercept:
        out = out.astype(np.float32)
        out *= np.float32(slope)
        out += np.float32(intercept)
    if "WindowCenter" in ds or "VOILUTSequence" in ds:
        out = _per_frame(apply_voi_lut, out, ds)
    return out


def _per_frame(
    lut: Callable[[np.ndarray, Dataset], np.ndarray], frames: np.ndarray, ds: Dataset
) -> np.ndarray:
    out = np.empty(frames.shape, dtype=np.float32)
    for i, frame in enumerate(frames):
        out[i] = lut(frame, ds)
    return out


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# --------------------------------------------------------------------------- writing


def dicom_bytes(
    image: np.ndarray | Sequence[np.ndarray],
    *,
    photometric: str = "MONOCHROME2",
    patient_id: str | None = None,
    preamble: bool = True,
) -> bytes:
    """Encode an image (or a list of frames) as an uncompressed ultrasound DICOM file.

    ``image`` is one frame, (H, W) gray or (H, W, 3) RGB, ``uint8`` or ``uint16``;
    a list/tuple of such frames makes a multi-frame file. ``photometric`` chooses
    the stored encoding: ``MONOCHROME2`` as is, ``MONOCHROME1`` stores the inverse
    (so that a viewer, and :func:`decode_dicom`, show the original), ``RGB`` and
    ``YBR_FULL`` store colour (gray input is replicated to three channels).
    ``preamble=False`` writes a bare dataset without the ``DICM`` header, as some
    archives do.
    """
    if photometric not in PHOTOMETRICS:
        raise ValueError(f"photometric must be one of {PHOTOMETRICS}, got {photometric!r}")
    frames = _as_frames(image)
    pixels = _encode_pixels(frames, photometric)
    ds = _new_dataset(multi_frame=len(frames) > 1, patient_id=patient_id)
    bits = 8 if pixels.dtype == np.uint8 else 16
    set_pixel_data(ds, pixels if len(frames) > 1 else pixels[0], photometric, bits)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=preamble, implicit_vr=False, little_endian=True)
    return buffer.getvalue()


def write_dicom(
    path: str | os.PathLike[str],
    image: np.ndarray | Sequence[np.ndarray],
    *,
    photometric: str = "MONOCHROME2",
    patient_id: str | None = None,
    preamble: bool = True,
) -> Path:
    """Write :func:`dicom_bytes` to ``path`` and return it (parents are created)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(
        dicom_bytes(image, photometric=photometric, patient_id=patient_id, preamble=preamble)
    )
    return target


def _as_frames(image: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    frames = [np.asarray(f) for f in image] if isinstance(image, list | tuple) else [image]
    if not frames:
        raise ValueError("no frames to write")
    first = frames[0]
    if first.dtype not in (np.uint8, np.uint16) or first.ndim not in (2, 3):
        raise ValueError("frames must be uint8/uint16 arrays shaped (H, W) or (H, W, 3)")
    if any(f.shape != first.shape or f.dtype != first.dtype for f in frames):
        raise ValueError("all frames must have the same shape and dtype")
    return frames


def _encode_pixels(frames: list[np.ndarray], photometric: str) -> np.ndarray:
    """Stack frames into the array stored for ``photometric``."""
    stack = np.stack(frames)
    colour = photometric in ("RGB", "YBR_FULL")
    if colour and stack.ndim == 3:
        stack = np.repeat(stack[..., np.newaxis], 3, axis=-1)
    if not colour and stack.ndim == 4:
        stack = np.stack([to_gray(f, order="rgb") for f in stack])
    if photometric == "MONOCHROME1":
        stack = np.iinfo(stack.dtype).max - stack
    if photometric == "YBR_FULL":
        stack = convert_color_space(stack, "RGB", "YBR_FULL")
    return np.ascontiguousarray(stack)


def _new_dataset(*, multi_frame: bool, patient_id: str | None) -> Dataset:
    sop_class = UltrasoundMultiFrameImageStorage if multi_frame else UltrasoundImageStorage
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "US"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    for name in _EMPTY_TYPE2:  # required, may be empty: a viewer and dciodvfy want them
        setattr(ds, name, "")
    ds.PatientID = patient_id or ""
    return ds


_EMPTY_TYPE2 = (
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "Laterality",
    "Manufacturer",
    "PatientOrientation",
)
