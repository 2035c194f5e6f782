"""MLflow tracking: where the store is, names and selectors, registration, promotion,
loading, and PNG figures."""

from __future__ import annotations

from tumorseg.errors import ModelArtifactError
from tumorseg.tracking.loading import load_baseline, load_model_config, load_model_set
from tumorseg.tracking.names import (
    CANDIDATE,
    CHAMPION,
    InconsistentModelSetError,
    ModelNames,
    ModelNotFoundError,
    ModelSelector,
)
from tumorseg.tracking.plots import learning_curve_png, overlay_array, overlay_png
from tumorseg.tracking.promotion import DEFAULT_METRIC, promote_if_better
from tumorseg.tracking.registry import CONFIG_ARTIFACT, register_model, register_model_set
from tumorseg.tracking.uris import resolve_tracking_uri

__all__ = [
    "CANDIDATE",
    "CHAMPION",
    "CONFIG_ARTIFACT",
    "DEFAULT_METRIC",
    "InconsistentModelSetError",
    "ModelArtifactError",
    "ModelNames",
    "ModelNotFoundError",
    "ModelSelector",
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
