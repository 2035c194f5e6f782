"""MLflow tracking: tracking URI, model registry (register, promote, load) and PNG figures."""

from __future__ import annotations

from tumorseg.tracking.plots import learning_curve_png, overlay_array, overlay_png
from tumorseg.tracking.registry import (
    CANDIDATE,
    CHAMPION,
    CONFIG_ARTIFACT,
    DEFAULT_METRIC,
    InconsistentModelSetError,
    ModelNames,
    ModelNotFoundError,
    load_baseline,
    load_model_config,
    load_model_set,
    promote_if_better,
    register_model,
    register_model_set,
    resolve_tracking_uri,
)

__all__ = [
    "CANDIDATE",
    "CHAMPION",
    "CONFIG_ARTIFACT",
    "DEFAULT_METRIC",
    "InconsistentModelSetError",
    "ModelNames",
    "ModelNotFoundError",
    "learning_curve_png",
    "load_baseline",
    "load_model_config",
    "load_model_set",
    "overlay_array",
    "overlay_png",
    "promote_if_better",
    "register_model",
    "register_model_set",
    "resolve_tracking_uri",
]
