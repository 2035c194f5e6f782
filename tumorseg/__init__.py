"""tumorseg: breast-ultrasound tumor segmentation with a personalized fusion network.

A classifier routes each image either to a binarizer + ResNet-encoder segmentation
network (uniform lesions) or to an iterative multi-scale FCN over exact square
tilings (non-uniform lesions). See the README.

Top-level names are imported lazily: a Ray worker that only decodes images does
not pay for importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tumorseg._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "InvalidImageError": "tumorseg.errors",
    "ModelSet": "tumorseg.inference",
    "SegmentationResult": "tumorseg.inference",
    "Segmenter": "tumorseg.inference",
    "load_image": "tumorseg.io",
    "partition_squares": "tumorseg.partition",
}
__all__ = [
    "InvalidImageError",
    "ModelSet",
    "SegmentationResult",
    "Segmenter",
    "load_image",
    "partition_squares",
]

if TYPE_CHECKING:
    from tumorseg.errors import InvalidImageError
    from tumorseg.inference import ModelSet, SegmentationResult, Segmenter
    from tumorseg.io import load_image
    from tumorseg.partition import partition_squares


__getattr__ = lazy_exports(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return sorted([*__all__, "__version__"])
