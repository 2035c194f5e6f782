"""Grayscale triage and binarization: pure functions on 2-D uint8 arrays."""

from tumorseg.preprocessing.binarize import binarize
from tumorseg.preprocessing.grayscale import to_gray, to_grayscale, to_uint8
from tumorseg.preprocessing.heterogeneity import (
    class_from_score,
    heterogeneity_score,
    triage_class,
)

__all__ = [
    "binarize",
    "class_from_score",
    "heterogeneity_score",
    "to_gray",
    "to_grayscale",
    "to_uint8",
    "triage_class",
]
