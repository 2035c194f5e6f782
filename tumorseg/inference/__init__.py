"""The fused inference path shared by the batch job and the Serve application.

Names are imported on first use: the bulk job's writer reads result records
(:mod:`.result`) and decisions (:mod:`.fusion`) and never runs a network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tumorseg._lazy import lazy_exports

if TYPE_CHECKING:
    from tumorseg.inference.models import ModelSet
    from tumorseg.inference.result import SegmentationResult
    from tumorseg.inference.segmenter import FirstStageOutput, Segmenter

_DEFERRED = {
    "FirstStageOutput": "segmenter",
    "ModelSet": "models",
    "SegmentationResult": "result",
    "Segmenter": "segmenter",
}
__all__ = ["FirstStageOutput", "ModelSet", "SegmentationResult", "Segmenter"]


__getattr__ = lazy_exports(__name__, {n: f"{__name__}.{m}" for n, m in _DEFERRED.items()})
