"""DICOM Segmentation output: a SEG that references its ultrasound source."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from orthanc import dciodvfy_errors

from tumorseg.errors import InvalidImageError
from tumorseg.io.dicom import is_dicom_file, write_dicom
from tumorseg.io.dicom_seg import dicom_seg_bytes

VERSIONS = {"classifier": "tumorseg-classifier/3", "fcn": "tumorseg-fcn/3"}


def lesion(shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[20:40, 10:50] = True
    return mask


def test_seg_references_its_source_and_holds_the_mask(small_gray, tmp_path) -> None:
    source_path = write_dicom(tmp_path / "IM0001", small_gray, patient_id="P-7")
    mask = lesion(small_gray.shape)
    seg = pydicom.dcmread(io.BytesIO(dicom_seg_bytes(source_path, mask, VERSIONS)))
    source = pydicom.dcmread(source_path)
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    assert seg.PatientID == "P-7" and seg.StudyInstanceUID == source.StudyInstanceUID
    assert seg.SeriesInstanceUID != source.SeriesInstanceUID  # a series of its own
    (referenced,) = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    assert referenced.ReferencedSOPInstanceUID == source.SOPInstanceUID
    (segment,) = seg.SegmentSequence
    assert segment.SegmentLabel == "Tumor" and segment.SegmentAlgorithmType == "AUTOMATIC"
    assert (
        "tumorseg-fcn/3" in segment.SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion
    )
    np.testing.assert_array_equal(seg.pixel_array.astype(bool), mask)


def test_an_empty_mask_is_kept_as_a_finding(small_gray, tmp_path) -> None:
    source_path = write_dicom(tmp_path / "a.dcm", small_gray)
    empty = np.zeros(small_gray.shape, bool)
    seg = pydicom.dcmread(io.BytesIO(dicom_seg_bytes(source_path, empty, VERSIONS)))
    assert seg.NumberOfFrames == 1 and not seg.pixel_array.any()


def test_a_mask_of_the_wrong_size_is_refused(small_gray, tmp_path) -> None:
    source_path = write_dicom(tmp_path / "a.dcm", small_gray)
    with pytest.raises(ValueError, match="do not match"):
        dicom_seg_bytes(source_path, np.zeros((3, 3), bool), VERSIONS)
    cine = write_dicom(tmp_path / "cine.dcm", [small_gray, small_gray])
    with pytest.raises(ValueError, match="do not match"):  # a loop needs a mask per frame
        dicom_seg_bytes(cine, lesion(small_gray.shape), VERSIONS)


@pytest.mark.parametrize("frames", [1, 2])
def test_a_source_a_seg_cannot_reference_is_an_invalid_image(small_gray, tmp_path, frames) -> None:
    """Exports drop UIDs; the SEG's references need them: a clear InvalidImageError
    (HTTP 400, a bulk error row) naming what is missing, not an AttributeError."""
    source = pydicom.dcmread(write_dicom(tmp_path / "a.dcm", [small_gray] * frames))
    del source.StudyInstanceUID
    source.SOPInstanceUID = ""
    buffer = io.BytesIO()
    source.save_as(buffer, enforce_file_format=False)
    masks = np.zeros((frames, *small_gray.shape), bool)
    with pytest.raises(InvalidImageError, match="StudyInstanceUID, SOPInstanceUID, which it"):
        dicom_seg_bytes(buffer.getvalue(), masks if frames > 1 else masks[0], VERSIONS)


def test_a_cine_loop_gets_one_seg_with_a_frame_per_source_frame(small_gray, tmp_path) -> None:
    frames = [np.roll(small_gray, shift, axis=1) for shift in range(0, 25, 5)]
    cine = write_dicom(tmp_path / "cine.dcm", frames)
    masks = np.stack([np.roll(lesion(small_gray.shape), shift, axis=1) for shift in range(5)])
    masks[3] = False  # an empty frame is kept, in its place
    seg = pydicom.dcmread(io.BytesIO(dicom_seg_bytes(cine, masks, VERSIONS)))
    source = pydicom.dcmread(cine)
    assert seg.NumberOfFrames == 5
    np.testing.assert_array_equal(seg.pixel_array.astype(bool), masks)
    for number, group in enumerate(seg.PerFrameFunctionalGroupsSequence, start=1):
        (reference,) = group.DerivationImageSequence[0].SourceImageSequence
        assert reference.ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert reference.ReferencedSOPClassUID == source.SOPClassUID
        assert reference.ReferencedFrameNumber == number
        assert list(group.FrameContentSequence[0].DimensionIndexValues) == [1, number]
    (referenced,) = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    assert referenced.ReferencedSOPClassUID == source.SOPClassUID
    assert dciodvfy_errors(seg, tmp_path / "check.dcm") == []


def test_dicom_files_are_told_by_magic_or_by_extension(small_gray, tmp_path) -> None:
    assert is_dicom_file(write_dicom(tmp_path / "IM0001", small_gray))  # magic, no extension
    bare = write_dicom(tmp_path / "bare.dcm", small_gray, preamble=False)
    assert is_dicom_file(bare)  # no magic, DICOM extension
    png = tmp_path / "x.dcm"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))  # a PNG named .dcm is not DICOM
    assert not is_dicom_file(png)
