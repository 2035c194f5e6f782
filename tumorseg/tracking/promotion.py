"""Move the ``champion`` alias to a newly registered set when it scores at least as well.

``champion`` moves on every role of a set at once, so it always names one
consistent set.
"""

from __future__ import annotations

import logging
import math

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from tumorseg.tracking.loading import get_version
from tumorseg.tracking.names import CHAMPION, ModelNames
from tumorseg.tracking.uris import registry_client

logger = logging.getLogger("tumorseg.tracking")

#: Default metric that decides promotion.
DEFAULT_METRIC = "fused_val_dice"


def promote_if_better(
    versions: dict[str, str],
    fused_dice: float,
    names: ModelNames,
    *,
    metric: str = DEFAULT_METRIC,
    tracking_uri: str | None = None,
) -> bool:
    """Move ``champion`` to ``versions`` when they are at least as good as the champion.

    The new versions are tagged ``metric=fused_dice``. The current champion's value
    is the tag of the classifier's champion version (the set's reference; the first
    role of ``versions`` when it has no classifier). The alias moves on *every* role
    of ``versions`` when there is no champion yet, the champion has no value for
    ``metric``, or ``fused_dice >= champion's``. A NaN score never promotes. The
    decision is logged either way. ``tracking_uri`` defaults to MLflow's current
    one (where the versions were just registered). Returns whether it moved.
    """
    if not versions:
        raise ValueError("no versions to promote")
    uri = tracking_uri or mlflow.get_tracking_uri()
    client = registry_client(uri)
    for role, version in versions.items():
        get_version(client, names.for_role(role), str(version), uri)
        client.set_model_version_tag(names.for_role(role), str(version), metric, repr(fused_dice))
    reference = "classifier" if "classifier" in versions else next(iter(versions))
    label = _describe_versions(versions)
    if math.isnan(fused_dice):
        logger.warning("champion not moved: %s of %s is NaN", metric, label)
        return False
    champion = _champion(client, names.for_role(reference))
    if champion is None:
        reason = f"{metric} {fused_dice:.4f}, no champion before"
    else:
        raw = champion.tags.get(metric)
        current = _to_float(raw)
        if current is None:
            reason = (
                f"{metric} {fused_dice:.4f}; champion version {champion.version} "
                f"had no usable {metric} tag ({raw!r})"
            )
        elif fused_dice >= current:
            reason = f"{metric} {fused_dice:.4f} ≥ {current:.4f}"
        else:
            logger.info(
                "champion stays at version %s (%s has %s %.4f < %.4f)",
                champion.version,
                label,
                metric,
                fused_dice,
                current,
            )
            return False
    for role, version in versions.items():
        client.set_registered_model_alias(names.for_role(role), CHAMPION, str(version))
    logger.info("champion moved to %s (%s)", label, reason)
    return True


def _champion(client: MlflowClient, name: str) -> ModelVersion | None:
    try:
        aliases = client.get_registered_model(name).aliases
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    if CHAMPION not in aliases:
        return None
    return client.get_model_version(name, str(aliases[CHAMPION]))


def _to_float(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return None if math.isnan(value) else value


def _describe_versions(versions: dict[str, str]) -> str:
    distinct = {str(v) for v in versions.values()}
    if len(distinct) == 1:
        return f"version {distinct.pop()}"
    return "versions " + ", ".join(f"{role}={version}" for role, version in versions.items())
