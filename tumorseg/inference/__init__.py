"""The fused inference path shared by the batch job and the Serve application."""

from tumorseg.inference.models import ModelSet
from tumorseg.inference.result import SegmentationResult
from tumorseg.inference.segmenter import FirstStageOutput, Segmenter

__all__ = ["FirstStageOutput", "ModelSet", "SegmentationResult", "Segmenter"]
