"""The fused inference path shared by the batch job and the Serve application.

Names are imported on first use: the bulk job's writer reads result records
(:mod:`.result`) and decisions (:mod:`.fusion`) and never runs a network.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    if name not in _DEFERRED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_DEFERRED[name]}"), name)
    globals()[name] = value
    return value
