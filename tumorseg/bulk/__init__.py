"""Bulk segmentation of archived studies on Ray Data (``jobs/segment.py``)."""

from tumorseg.bulk.config import SegmentJobConfig
from tumorseg.bulk.pipeline import SegmentSummary, run_segmentation

__all__ = ["SegmentJobConfig", "SegmentSummary", "run_segmentation"]
