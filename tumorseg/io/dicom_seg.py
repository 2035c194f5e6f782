"""DICOM Segmentation objects (highdicom) for the masks of DICOM inputs.

A PACS stores a mask best as a SEG instance that references the image it was
computed from: same patient and study, a new series, the source's SOP instance
in its references. One binary segment, "Tumor", labelled as made by an automatic
algorithm with the model versions that produced it.

The SEG's UIDs are derived from the source's and the model versions: the SEGs of one
source series and model set share one SEG series, and segmenting an image again with
the same models gives the same SOP Instance UID, so a PACS keeps one copy.

A cine loop (a multi-frame source) gets one SEG with a frame per source frame.
highdicom builds SEGs of multi-frame images only inside a frame of reference, which
ultrasound loops lack (highdicom issue 284), so the loop's SEG is highdicom's SEG of
its first frame extended here: one per-frame functional group per source frame
(referencing that frame), and a second dimension, the temporal position, beside the
segment number.
"""

from __future__ import annotations

import copy
import io
import os
from collections.abc import Mapping

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.uid import UltrasoundImageStorage, generate_uid

from tumorseg.errors import InvalidImageError

#: Series number of the SEG series this tool writes (the source's series is kept apart).
SEG_SERIES_NUMBER = 900
SERIES_DESCRIPTION = "tumorseg tumor SEG - research use only"
#: Patient and study attributes a SEG copies from its source. DICOM lets them be empty
#: (type 2) but not absent; exports often drop them, so absent ones are filled empty.
COPIED_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)

#: What a SEG's references name; a source without one of them cannot be referenced.
REFERENCED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")


def segmentation_dataset(
    source: Dataset,
    mask: np.ndarray,
    model_versions: Mapping[str, str],
    name: str = "<dataset>",
) -> Dataset:
    """A binary SEG of ``mask`` referencing ``source``: rows × columns for a single
    frame, frames × rows × columns for a cine loop (one mask per source frame)."""
    missing = [uid for uid in REFERENCED_UIDS if not str(source.get(uid, "") or "").strip()]
    if missing:
        raise InvalidImageError(
            name, f"a SEG must reference its source's {', '.join(missing)}, which it lacks"
        )
    frames = int(getattr(source, "NumberOfFrames", 1) or 1)
    masks = np.asarray(mask, dtype=bool)
    if masks.ndim == 2:
        masks = masks[np.newaxis]
    shape = (frames, int(source.Rows), int(source.Columns))
    if masks.shape != shape:
        raise ValueError(f"masks of shape {masks.shape} do not match the source's {shape}")
    try:
        if frames == 1:
            return _single_frame_seg(source, masks, model_versions)
        return _cine_seg(source, masks, model_versions)
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        what = "image" if frames == 1 else "loop"
        raise InvalidImageError(
            name, f"cannot build a SEG for this {what} ({type(error).__name__}: {error})"
        ) from error


def _single_frame_seg(
    source: Dataset, masks: np.ndarray, model_versions: Mapping[str, str]
) -> Dataset:
    import highdicom as hd

    versions = ", ".join(f"{k}={v}" for k, v in sorted(model_versions.items())) or "unversioned"
    algorithm = hd.AlgorithmIdentificationSequence(
        name="tumorseg personalized fusion network",
        family=codes.DCM.ArtificialIntelligence,
        version=versions[:64],
    )
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="Tumor",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Tumor,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
    )
    source = _with_type2_defaults(source)
    seg = hd.seg.Segmentation(
        source_images=[source],
        pixel_array=masks,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment],
        series_instance_uid=generate_uid(
            entropy_srcs=["tumorseg-seg-series", str(source.SeriesInstanceUID), versions]
        ),
        series_number=SEG_SERIES_NUMBER,
        series_description=SERIES_DESCRIPTION,
        sop_instance_uid=generate_uid(
            entropy_srcs=["tumorseg-seg", str(source.SOPInstanceUID), versions]
        ),
        instance_number=_instance_number(source),
        manufacturer="tumorseg",
        manufacturer_model_name="tumorseg",
        software_versions=versions[:64],
        device_serial_number="0",
        omit_empty_frames=False,  # an empty mask is a finding too: keep its frame
    )
    # General Image's Patient Orientation (type 2C: an image without a plane
    # orientation, as a 2-D ultrasound frame): the source's, or empty.
    seg.PatientOrientation = source.get("PatientOrientation", "")
    return seg


#: Frame Content Sequence and its Temporal Position Index: the loop's second dimension.
_FRAME_CONTENT = 0x00209111
_TEMPORAL_POSITION_INDEX = 0x00209128
#: Attributes of a cine loop that a single frame does not have.
_CINE_ONLY = ("NumberOfFrames", "FrameIncrementPointer", "FrameTime", "FrameTimeVector")


def _cine_seg(source: Dataset, masks: np.ndarray, model_versions: Mapping[str, str]) -> Dataset:
    """The loop's SEG: its first frame's SEG, given a functional group per frame."""
    first_frame = copy.deepcopy(source)
    for keyword in _CINE_ONLY:
        if keyword in first_frame:
            delattr(first_frame, keyword)
    first_frame.SOPClassUID = UltrasoundImageStorage  # what highdicom accepts
    seg = _single_frame_seg(first_frame, masks[:1], model_versions)
    for reference in _instance_references(seg):
        reference.ReferencedSOPClassUID = source.SOPClassUID  # the loop's class again
    template = seg.PerFrameFunctionalGroupsSequence[0]
    groups = []
    for number in range(1, len(masks) + 1):  # DICOM numbers frames from 1
        group = copy.deepcopy(template)
        reference = group.DerivationImageSequence[0].SourceImageSequence[0]
        reference.ReferencedSOPClassUID = source.SOPClassUID
        reference.ReferencedFrameNumber = number
        content = group.FrameContentSequence[0]
        content.DimensionIndexValues = [1, number]  # segment, temporal position
        content.TemporalPositionIndex = number
        groups.append(group)
    seg.PerFrameFunctionalGroupsSequence = Sequence(groups)
    temporal = Dataset()
    temporal.DimensionOrganizationUID = seg.DimensionIndexSequence[0].DimensionOrganizationUID
    temporal.DimensionIndexPointer = _TEMPORAL_POSITION_INDEX
    temporal.FunctionalGroupPointer = _FRAME_CONTENT
    temporal.DimensionDescriptionLabel = "Temporal Position Index"
    seg.DimensionIndexSequence.append(temporal)
    seg.NumberOfFrames = len(masks)
    # BINARY frames are packed one after another, bit by bit, least significant first.
    pixels = np.packbits(masks.ravel(), bitorder="little").tobytes()
    seg.PixelData = pixels + b"\0" * (len(pixels) % 2)
    return seg


def _instance_references(seg: Dataset) -> list[Dataset]:
    references = list(seg.get("SourceImageSequence", []))
    for series in seg.get("ReferencedSeriesSequence", []):
        references.extend(series.get("ReferencedInstanceSequence", []))
    return references


def _instance_number(source: Dataset) -> int:
    try:
        return max(int(source.get("InstanceNumber", 1) or 1), 1)
    except (TypeError, ValueError):
        return 1


def _with_type2_defaults(source: Dataset) -> Dataset:
    missing = [name for name in COPIED_TYPE2 if name not in source]
    if not missing:
        return source
    completed = copy.deepcopy(source)
    for name in missing:
        setattr(completed, name, "")
    return completed


def source_segmentation(
    source: str | os.PathLike[str] | bytes,
    mask: np.ndarray,
    model_versions: Mapping[str, str],
    name: str | None = None,
) -> Dataset:
    """The SEG for a DICOM source, a path or the file's bytes (read without pixel data;
    files without the ``DICM`` preamble too, as decoding accepts them)."""
    label = name or (str(source) if not isinstance(source, bytes) else "<bytes>")
    try:
        readable = io.BytesIO(source) if isinstance(source, bytes) else source
        dataset = pydicom.dcmread(readable, stop_before_pixels=True, force=True)
    except Exception as error:
        raise InvalidImageError(label, f"unreadable DICOM ({error})") from error
    return segmentation_dataset(dataset, mask, model_versions, label)


def encode_dataset(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()


def dicom_seg_bytes(
    source: str | os.PathLike[str] | bytes,
    mask: np.ndarray,
    model_versions: Mapping[str, str],
) -> bytes:
    """The encoded SEG for a DICOM source (see :func:`source_segmentation`)."""
    return encode_dataset(source_segmentation(source, mask, model_versions))
