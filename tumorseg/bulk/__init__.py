"""Bulk segmentation of archived studies on Ray Data (``jobs/segment.py``).

The pipeline (Ray Data, the MLflow registry) is imported on first use only: the
stage actors unpickle classes from :mod:`tumorseg.bulk.stages`, which imports this
package, and each of them would otherwise pay for imports it never uses.
"""

from typing import TYPE_CHECKING, Any

from tumorseg.bulk.config import SegmentJobConfig

if TYPE_CHECKING:
    from tumorseg.bulk.pipeline import SegmentSummary, run_segmentation

__all__ = ["SegmentJobConfig", "SegmentSummary", "run_segmentation"]


def __getattr__(name: str) -> Any:
    if name in ("SegmentSummary", "run_segmentation"):
        from tumorseg.bulk import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
