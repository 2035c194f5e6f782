"""MLflow tracking: where the store is, names and selectors, registration, promotion,
loading, and PNG figures.

Names are imported on first use: a job's config carries a :class:`ModelSelector`
into every Ray worker, which should not pay for MLflow and torch to read it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tumorseg._lazy import lazy_exports
from tumorseg.errors import ModelArtifactError
from tumorseg.tracking.names import (
    CANDIDATE,
    CHAMPION,
    InconsistentModelSetError,
    ModelNames,
    ModelNotFoundError,
    ModelSelector,
    RegistryUnreachableError,
)
from tumorseg.tracking.uris import resolve_tracking_uri

if TYPE_CHECKING:
    from tumorseg.tracking.loading import load_baseline, load_model_config, load_model_set
    from tumorseg.tracking.plots import learning_curve_png, overlay_array, overlay_png
    from tumorseg.tracking.promotion import DEFAULT_METRIC, promote_if_better
    from tumorseg.tracking.registry import CONFIG_ARTIFACT, register_model, register_model_set

_DEFERRED = {
    "load_baseline": "loading",
    "load_model_config": "loading",
    "load_model_set": "loading",
    "learning_curve_png": "plots",
    "overlay_array": "plots",
    "overlay_png": "plots",
    "DEFAULT_METRIC": "promotion",
    "promote_if_better": "promotion",
    "CONFIG_ARTIFACT": "registry",
    "register_model": "registry",
    "register_model_set": "registry",
}

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
    "RegistryUnreachableError",
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


__getattr__ = lazy_exports(__name__, {n: f"{__name__}.{m}" for n, m in _DEFERRED.items()})
