"""Image I/O: decode PNG/JPEG/BMP/TIFF/DICOM into grayscale frames and masks; encode PNGs.

Bad input always raises :class:`tumorseg.errors.InvalidImageError`.
"""

from tumorseg.io.dicom import decode_dicom, dicom_bytes, write_dicom
from tumorseg.io.encode import png_bytes
from tumorseg.io.headers import is_dicom, sniff_format
from tumorseg.io.images import load_frames, load_image, load_mask, source_name

__all__ = [
    "decode_dicom",
    "dicom_bytes",
    "is_dicom",
    "load_frames",
    "load_image",
    "load_mask",
    "png_bytes",
    "sniff_format",
    "source_name",
    "write_dicom",
]
