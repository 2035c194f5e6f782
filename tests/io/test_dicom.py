"""Ultrasound DICOM: photometric interpretations, frames, LUTs, limits and damaged files."""

from __future__ import annotations

import contextlib
import io
import re
import struct

import cv2
import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.uid import RLELossless

from tumorseg.config import ImageLimits
from tumorseg.errors import InvalidImageError
from tumorseg.io import dicom_bytes, is_dicom, load_frames, load_image, write_dicom
from tumorseg.io.dicom import is_dicom_file
from tumorseg.io.headers import sniff_format

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _dataset(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def _bytes_of(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1", "RGB", "YBR_FULL"])
def test_gray_round_trip(tmp_path, small_gray, photometric) -> None:
    path = write_dicom(tmp_path / "study" / "image.dcm", small_gray, photometric=photometric)
    assert is_dicom(path.read_bytes())
    assert _dataset(path.read_bytes()).PhotometricInterpretation == photometric
    np.testing.assert_array_equal(load_image(path), small_gray)


def test_monochrome1_is_stored_inverted_and_read_upright(small_gray) -> None:
    data = dicom_bytes(small_gray, photometric="MONOCHROME1")
    np.testing.assert_array_equal(_dataset(data).pixel_array, 255 - small_gray)
    np.testing.assert_array_equal(load_image(data), small_gray)


@pytest.mark.parametrize("photometric", ["RGB", "YBR_FULL"])
def test_colour_becomes_luma(small_bgr, photometric) -> None:
    rgb = cv2.cvtColor(small_bgr, cv2.COLOR_BGR2RGB)
    expected = cv2.cvtColor(small_bgr, cv2.COLOR_BGR2GRAY)
    image = load_image(dicom_bytes(rgb, photometric=photometric))
    # YBR_FULL is stored with 8-bit rounding, so allow a level of difference.
    assert np.abs(image.astype(int) - expected.astype(int)).max() <= 1


def test_multi_frame_gives_one_image_per_frame(tmp_path, small_gray) -> None:
    frames = [small_gray, 255 - small_gray, np.flipud(small_gray).copy()]
    path = write_dicom(tmp_path / "loop.dcm", frames)
    loaded = load_frames(path)
    assert len(loaded) == 3
    for got, want in zip(loaded, frames, strict=True):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(InvalidImageError, match="load_frames"):
        load_image(path)


def test_multi_frame_colour(small_bgr) -> None:
    rgb = cv2.cvtColor(small_bgr, cv2.COLOR_BGR2RGB)
    loaded = load_frames(dicom_bytes([rgb, rgb[::-1].copy()], photometric="RGB"))
    assert [f.shape for f in loaded] == [small_bgr.shape[:2]] * 2


def test_sixteen_bit_is_stretched_over_all_frames(small_gray) -> None:
    wide = small_gray.astype(np.uint16) * 100 + 500
    loaded = load_frames(dicom_bytes([wide, wide // 2]))
    low, high = float(wide.min() // 2), float(wide.max())
    for got, frame in zip(loaded, [wide, wide // 2], strict=True):
        expected = np.rint((frame - low) * 255.0 / (high - low))
        assert np.abs(got.astype(int) - expected).max() <= 1


def test_modality_lut_is_applied(small_gray) -> None:
    ds = _dataset(dicom_bytes(small_gray.astype(np.uint16) * 10))
    ds.RescaleSlope, ds.RescaleIntercept = -1, 0  # a negative slope inverts the image
    image = load_image(_bytes_of(ds))
    expected = 255 - (small_gray.astype(float) - small_gray.min()) * 255 / np.ptp(small_gray)
    assert np.abs(image - np.rint(expected)).max() <= 1


def test_luts_work_in_float32_and_agree_with_pydicom(small_gray) -> None:
    """No float64 copy of a whole cine loop: 4 bytes a pixel, pydicom's values."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    from tumorseg.io.dicom import _apply_luts

    ds = _dataset(dicom_bytes([small_gray.astype(np.uint16) * 10] * 3))
    ds.RescaleSlope, ds.RescaleIntercept = 0.5, -20
    ds.WindowCenter, ds.WindowWidth = 300, 400
    frames = ds.pixel_array
    got = _apply_luts(frames, ds)
    assert got.dtype == np.float32 and got.shape == frames.shape
    rescaled = apply_modality_lut(frames, ds)
    expected = np.stack([apply_voi_lut(frame, ds) for frame in rescaled])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)
    ds.RescaleIntercept = "-1e308"  # beyond float32: a clear error, not a black image
    with pytest.raises(InvalidImageError, match=r"rescale .* is out of range"):
        load_image(_bytes_of(ds))


def test_voi_window_is_applied(small_gray) -> None:
    ds = _dataset(dicom_bytes(small_gray))
    ds.WindowCenter, ds.WindowWidth = 100, 40
    image = load_image(_bytes_of(ds))
    assert (image[small_gray < 70] == 0).all()
    assert (image[small_gray > 130] == 255).all()


def test_palette_colour_goes_through_the_palette(small_gray) -> None:
    ds = _dataset(dicom_bytes(small_gray))
    ds.PhotometricInterpretation = "PALETTE COLOR"
    inverted = ((255 - np.arange(256)) * 257).astype("<u2").tobytes()
    for offset in range(3):  # red, green, blue: descriptor (0028,110x), data (0028,120x)
        ds.add_new(0x00281101 + offset, "US", [256, 0, 16])
        ds.add_new(0x00281201 + offset, "OW", inverted)
    low, high = float(small_gray.min()), float(small_gray.max())
    expected = np.rint(255 - (small_gray - low) * 255 / (high - low))
    assert np.abs(load_image(_bytes_of(ds)) - expected).max() <= 1


def test_compressed_transfer_syntax(small_gray) -> None:
    ds = _dataset(dicom_bytes(small_gray))
    ds.compress(RLELossless, encoding_plugin="pydicom")
    np.testing.assert_array_equal(load_image(_bytes_of(ds)), small_gray)


def test_detected_by_content_whatever_the_name(tmp_path, small_gray) -> None:
    path = tmp_path / "IM000001"  # archives often have no extension, or a wrong one
    path.write_bytes(dicom_bytes(small_gray))
    np.testing.assert_array_equal(load_image(path), small_gray)
    misnamed = tmp_path / "image.png"
    misnamed.write_bytes(dicom_bytes(small_gray))
    np.testing.assert_array_equal(load_image(misnamed), small_gray)


def test_dicom_without_preamble_is_told_by_its_first_element(tmp_path, small_gray) -> None:
    """Archives export bare datasets under any name, often with no extension at all."""
    bare = dicom_bytes(small_gray, preamble=False)
    assert not is_dicom(bare) and sniff_format(bare) == "dicom"
    for name in ("scan.DCM", "IM000123", "scan.png"):
        path = tmp_path / name
        path.write_bytes(bare)
        assert is_dicom_file(path)
        np.testing.assert_array_equal(load_image(path), small_gray)
    np.testing.assert_array_equal(load_image(bare), small_gray)


def test_bytes_that_only_resemble_a_dataset_are_refused(tmp_path) -> None:
    """Group 0008 but a length no element has: neither DICOM nor any other format."""
    lookalike = b"\x08\x00\x05\x00" + (1 << 30).to_bytes(4, "little") + bytes(64)
    assert sniff_format(lookalike) is None
    with pytest.raises(InvalidImageError, match="not a recognised image format"):
        load_image(lookalike)


@pytest.mark.parametrize("implicit", [True, False])
def test_bare_dataset_without_file_meta(small_gray, implicit) -> None:
    """Some archives hold bare datasets: no preamble, no file meta, no transfer syntax."""
    bare = pydicom.Dataset()
    bare.update(_dataset(dicom_bytes(small_gray)))
    buffer = io.BytesIO()
    bare.save_as(buffer, enforce_file_format=False, implicit_vr=implicit, little_endian=True)
    np.testing.assert_array_equal(load_image(buffer.getvalue(), name="bare.dcm"), small_gray)


def test_patient_id_is_written(small_gray) -> None:
    assert _dataset(dicom_bytes(small_gray, patient_id="P-042")).PatientID == "P-042"


def test_writer_rejects_bad_arguments(small_gray) -> None:
    with pytest.raises(ValueError, match="photometric"):
        dicom_bytes(small_gray, photometric="PALETTE COLOR")
    with pytest.raises(ValueError, match="uint8/uint16"):
        dicom_bytes(small_gray.astype(np.float32))
    with pytest.raises(ValueError, match="same shape"):
        dicom_bytes([small_gray, small_gray[:10]])


# --------------------------------------------------------------------------- bad DICOM


def test_dicom_without_pixel_data(small_gray) -> None:
    ds = _dataset(dicom_bytes(small_gray))
    del ds.PixelData
    with pytest.raises(InvalidImageError, match="no pixel data"):
        load_image(_bytes_of(ds), name="nopixels.dcm")


def test_dicom_pixel_limit_is_checked_before_decoding(small_gray) -> None:
    ds = _dataset(dicom_bytes([small_gray] * 3))
    with pytest.raises(InvalidImageError, match=r"too large: 80x64x3 frames = 15360"):
        load_frames(_bytes_of(ds), limits=ImageLimits(max_pixels=15_000))
    ds.Rows, ds.Columns = 60_000, 60_000  # the pixel data are far too short for that
    with pytest.raises(InvalidImageError, match="too large"):
        load_frames(_bytes_of(ds))


def test_pixel_data_shorter_than_declared(small_gray) -> None:
    ds = _dataset(dicom_bytes(small_gray))
    ds.Rows = ds.Rows * 2
    with pytest.raises(InvalidImageError, match="could not be decoded"):
        load_image(_bytes_of(ds))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_unreadable_dicom() -> None:
    data = b"\x00" * 128 + b"DICM" + b"\xff" * 64
    with pytest.raises(InvalidImageError):
        load_image(data)


def test_text_named_dcm(tmp_path) -> None:
    path = tmp_path / "report.dcm"
    path.write_text("Patient report, no images here.\n" * 20)
    with pytest.raises(InvalidImageError, match=re.escape(str(path))):
        load_image(path)


@pytest.fixture(scope="session")
def dicom_samples(small_gray, small_bgr) -> dict[str, bytes]:
    rgb = cv2.cvtColor(small_bgr, cv2.COLOR_BGR2RGB)
    return {
        "mono": dicom_bytes(small_gray),
        "ybr": dicom_bytes(rgb, photometric="YBR_FULL"),
        "multi": dicom_bytes([small_gray, small_gray]),
    }


@pytest.mark.filterwarnings("ignore::UserWarning")
@FUZZ
@given(kind=st.sampled_from(["mono", "ybr", "multi"]), data=st.data())
def test_fuzz_truncated_dicom(dicom_samples, kind: str, data) -> None:
    raw = dicom_samples[kind]
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(InvalidImageError):
        load_frames(raw[:cut], name="cut.dcm")


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about mangled values
@FUZZ
@given(kind=st.sampled_from(["mono", "ybr", "multi"]), data=st.data())
def test_fuzz_corrupted_dicom_header(dicom_samples, kind: str, data) -> None:
    raw = bytearray(dicom_samples[kind])
    header_end = raw.find(b"\xe0\x7f\x10\x00") + 12  # up to the pixel data element's value
    for _ in range(data.draw(st.integers(1, 6))):
        raw[data.draw(st.integers(0, header_end))] = data.draw(st.integers(0, 255))
    try:
        frames = load_frames(bytes(raw), name="fuzz.dcm")
    except InvalidImageError:
        return
    assert all(f.ndim == 2 and f.dtype == np.uint8 for f in frames)


#: Elements whose values decide how pixels are read, with values a hostile or broken
#: file may give them (None: the element is removed).
PIXEL_ELEMENTS = {
    "Rows": st.sampled_from([None, 0, 1, 7, 65535]),
    "Columns": st.sampled_from([None, 0, 1, 9, 65535]),
    "BitsAllocated": st.sampled_from([None, 0, 1, 7, 8, 12, 16, 32, 64]),
    "BitsStored": st.sampled_from([None, 0, 1, 8, 12, 16, 40]),
    "HighBit": st.sampled_from([None, 0, 7, 15, 63]),
    "SamplesPerPixel": st.sampled_from([None, 0, 1, 2, 3, 4, 255]),
    "PixelRepresentation": st.sampled_from([None, 0, 1, 2]),
    "PlanarConfiguration": st.sampled_from([None, 0, 1, 7]),
    "NumberOfFrames": st.sampled_from([None, "0", "1", "2", "-1", "100000", "x"]),
    "PhotometricInterpretation": st.sampled_from(
        [None, "MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "PALETTE COLOR", "XYZ", ""]
    ),
    "RescaleSlope": st.sampled_from([None, "0", "-1", "1e308", "nan"]),
    "RescaleIntercept": st.sampled_from([None, "-1e308", "inf", "3"]),
    "WindowCenter": st.sampled_from([None, "0", "1e308", "nan"]),
    "WindowWidth": st.sampled_from([None, "0", "-5", "1e-300"]),
}


@pytest.fixture(scope="module")
def structured_samples() -> dict[str, bytes]:
    gray = np.random.default_rng(0).integers(0, 255, (12, 10), np.uint8)
    rle = _dataset(dicom_bytes(gray))
    rle.compress(RLELossless, encoding_plugin="pydicom")
    return {
        "mono": dicom_bytes(gray),
        "multi": dicom_bytes([gray, gray]),
        "rgb": dicom_bytes(np.stack([gray] * 3, axis=-1), photometric="RGB"),
        "rle": _bytes_of(rle),
    }


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about odd values
@FUZZ
@given(kind=st.sampled_from(["mono", "multi", "rgb", "rle"]), data=st.data())
def test_fuzz_pixel_describing_elements(structured_samples, kind: str, data) -> None:
    """Element-level mutations, not byte flips: each file still parses, but what it says
    about its pixels is wrong. Frames of the promised kind, or InvalidImageError."""
    ds = _dataset(structured_samples[kind])
    chosen = data.draw(st.lists(st.sampled_from(sorted(PIXEL_ELEMENTS)), min_size=1, max_size=4))
    for keyword in chosen:
        value = data.draw(PIXEL_ELEMENTS[keyword])
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            with contextlib.suppress(ValueError, TypeError, OverflowError):
                setattr(ds, keyword, value)  # what pydicom cannot hold, no file holds here
    try:
        raw = _bytes_of(ds)
    except (ValueError, TypeError, OverflowError, struct.error):
        return  # pydicom cannot even write such a value: no file to read
    try:
        frames = load_frames(raw, name="fuzz.dcm")
    except InvalidImageError as exc:
        assert exc.reason
        return
    assert frames
    assert all(f.ndim == 2 and f.dtype == np.uint8 and f.size for f in frames)
