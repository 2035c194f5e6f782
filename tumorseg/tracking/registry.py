"""MLflow model registry helpers: register a trained model set, promote it, load it back.

Conventions (what training, batch segmentation and serving rely on):

* Every role has its own registered model (:class:`ModelNames`, names configurable):
  ``tumorseg-classifier``, ``tumorseg-graynet``, ``tumorseg-fcn`` and the optional
  ``tumorseg-baseline``.
* A training job registers its models *together* with :func:`register_model_set`:
  each new version carries the tags ``role``, ``model_set_id`` (the job's parent run
  id) and ``segmenter_config`` (the :class:`SegmenterConfig` as JSON), the run gets a
  ``segmenter_config.json`` artifact, and every new version gets the alias
  ``candidate``.
* :func:`promote_if_better` moves the alias ``champion`` on all roles at once, so
  ``champion`` always names one consistent set.
* Because the three fused models are always registered together, their version
  numbers move in lockstep: "version N" of the set means version N of each fused
  model. :func:`load_model_set` checks that those versions really share one
  ``model_set_id`` and refuses to mix sets.
* Models are logged with MLflow's ``pickle`` serialization (the full ``nn.Module``):
  the ``pt2`` default of MLflow 3 gives a ``torch.export`` graph module on which
  ``.eval()`` raises and whose batch size is fixed by the example.

Only the tracking URI is needed to load a set, so Ray workers and Serve replicas
in other processes (and other working directories) can call :func:`load_model_set`.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import mlflow
import mlflow.artifacts
import mlflow.pytorch
import numpy as np
import torch
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from torch import nn

from tumorseg.config import SegmenterConfig
from tumorseg.inference.models import ModelSet
from tumorseg.inference.tensors import select_device
from tumorseg.networks import FUSED_ROLES

logger = logging.getLogger("tumorseg.tracking")

#: Alias put on every newly registered version.
CANDIDATE = "candidate"
#: Alias of the set that batch segmentation and serving use by default.
CHAMPION = "champion"
#: Version tags written by :func:`register_model_set`.
TAG_ROLE = "role"
TAG_MODEL_SET_ID = "model_set_id"
TAG_SEGMENTER_CONFIG = "segmenter_config"
#: Run artifact holding the :class:`SegmenterConfig` of the registered set.
CONFIG_ARTIFACT = "segmenter_config.json"
#: Default metric that decides promotion.
DEFAULT_METRIC = "fused_val_dice"


class ModelNotFoundError(LookupError):
    """A registered model, alias or version asked for does not exist in the registry."""


class InconsistentModelSetError(ModelNotFoundError):
    """The versions found for the roles do not belong to one registered model set."""


# --------------------------------------------------------------------------- names, URIs


def resolve_tracking_uri(explicit: str | None = None) -> str:
    """The MLflow tracking URI: ``explicit`` > ``$MLFLOW_TRACKING_URI`` > ``./mlflow.db``.

    The default is ``sqlite:///<absolute path of ./mlflow.db>``; relative SQLite paths
    (``sqlite:///mlflow.db``) are made absolute too, so that Ray workers running in
    other working directories open the same database.
    """
    uri = explicit or os.environ.get("MLFLOW_TRACKING_URI") or ""
    if not uri.strip():
        return f"sqlite:///{Path('mlflow.db').resolve()}"
    return _absolute_sqlite(uri.strip())


def _absolute_sqlite(uri: str) -> str:
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return uri
    path = uri[len(prefix) :]
    if not path or path.startswith("/") or path.startswith(":memory:"):
        return uri
    return f"{prefix}{Path(path).resolve()}"


@dataclass(frozen=True)
class ModelNames:
    """Registered model name of each network role."""

    classifier: str = "tumorseg-classifier"
    graynet: str = "tumorseg-graynet"
    fcn: str = "tumorseg-fcn"
    baseline: str = "tumorseg-baseline"

    @classmethod
    def with_prefix(cls, prefix: str) -> ModelNames:
        """``PREFIX-classifier``, ``PREFIX-graynet``, … (the jobs' ``--model-prefix``)."""
        return cls(*(f"{prefix}-{f.name}" for f in fields(cls)))

    def for_role(self, role: str) -> str:
        if role not in _ALL_ROLES:
            raise ValueError(f"unknown network role {role!r}; known: {list(_ALL_ROLES)}")
        return getattr(self, role)


#: Every role with a registered model: the fused three first, then the baseline.
_ALL_ROLES: tuple[str, ...] = tuple(f.name for f in fields(ModelNames))


# --------------------------------------------------------------------------- registration


def register_model(
    model: nn.Module,
    role: str,
    names: ModelNames,
    example_input: np.ndarray,
    *,
    run_id: str | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    """Log ``model`` in the active (or given) run, register it, alias it ``candidate``.

    The signature is inferred from ``example_input`` (an ``(N, C, H, W)`` float array;
    the batch dimension is left free) and the model's output on it. A CPU copy in
    eval mode is logged (unwrapped from ``DistributedDataParallel``, as Ray Train's
    ``prepare_model`` returns it); ``model`` itself is left untouched. Logging goes to the
    process's current MLflow tracking URI (the one the run lives in). ``tags`` are
    set on the new version besides ``role``. Returns the new version number.
    """
    name = names.for_role(role)
    run_id = _require_run(run_id)
    example = np.ascontiguousarray(example_input, dtype=np.float32)
    cpu_model = copy.deepcopy(_unwrap(model)).cpu().eval()
    with torch.no_grad():
        output = cpu_model(torch.from_numpy(example))
    signature = infer_signature(example, _as_numpy(output))
    info = mlflow.pytorch.log_model(
        cpu_model,
        name=role,
        registered_model_name=name,
        signature=signature,
        serialization_format="pickle",
        pip_requirements=_pip_requirements(),
        run_id=run_id,
    )
    version = info.registered_model_version
    if version is None:  # pragma: no cover - registration is synchronous in OSS MLflow
        raise RuntimeError(f"MLflow did not report the version registered for {name!r}")
    version = str(version)
    client = MlflowClient()
    for key, value in {TAG_ROLE: role, **(tags or {})}.items():
        client.set_model_version_tag(name, version, key, value)
    client.set_registered_model_alias(name, CANDIDATE, version)
    logger.info("registered %s version %s (alias %s)", name, version, CANDIDATE)
    return version


def register_model_set(
    models: dict[str, nn.Module],
    config: SegmenterConfig,
    names: ModelNames,
    examples: dict[str, np.ndarray],
    *,
    run_id: str | None = None,
    model_set_id: str | None = None,
) -> dict[str, str]:
    """Register the three fused models (and the baseline when given) as one set.

    Logs ``segmenter_config.json`` in the run and tags every new version with the
    config (JSON) and ``model_set_id`` (defaults to the run id: use the job's parent
    run). All new versions get the alias ``candidate``. Returns ``{role: version}``.
    """
    missing = [role for role in FUSED_ROLES if role not in models]
    unknown = sorted(set(models) - set(_ALL_ROLES))
    if missing or unknown:
        raise ValueError(
            f"a model set needs {list(FUSED_ROLES)} (+ optional baseline); "
            f"missing {missing}, unknown {unknown}"
        )
    no_example = [role for role in models if role not in examples]
    if no_example:
        raise ValueError(f"no example input for roles {no_example}")
    run_id = _require_run(run_id)
    config_dict = config.to_dict()
    mlflow.log_dict(config_dict, CONFIG_ARTIFACT, run_id=run_id)
    tags = {
        TAG_SEGMENTER_CONFIG: json.dumps(config_dict, sort_keys=True),
        TAG_MODEL_SET_ID: model_set_id or run_id,
    }
    versions = {
        role: register_model(models[role], role, names, examples[role], run_id=run_id, tags=tags)
        for role in _ALL_ROLES
        if role in models
    }
    fused = {versions[role] for role in FUSED_ROLES}
    if len(fused) > 1:
        logger.warning(
            "fused model versions are not in lockstep (%s): load this set by alias, "
            "not by version number",
            _describe_versions({r: versions[r] for r in FUSED_ROLES}),
        )
    return versions


def _require_run(run_id: str | None) -> str:
    if run_id:
        return run_id
    active = mlflow.active_run()
    if active is None:
        raise ValueError("registering a model needs an active MLflow run or an explicit run_id")
    return active.info.run_id


def _unwrap(model: nn.Module) -> nn.Module:
    """The network inside (Distributed)DataParallel wrappers (Ray Train's prepare_model)."""
    while isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    return model


def _as_numpy(output: Any) -> np.ndarray:
    if isinstance(output, (tuple, list)):
        output = output[0]
    return output.detach().cpu().numpy()


def _pip_requirements() -> list[str]:
    """Pinned requirements without MLflow's slow inference subprocess (no local tags)."""
    import monai

    return [
        f"torch=={torch.__version__.split('+')[0]}",
        f"monai=={monai.__version__.split('+')[0]}",
        f"numpy=={np.__version__}",
        f"mlflow=={mlflow.__version__}",
    ]


# --------------------------------------------------------------------------- promotion


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
    client = _client(uri)
    for role, version in versions.items():
        _get_version(client, names.for_role(role), str(version), uri)
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


# --------------------------------------------------------------------------- loading


def load_model_set(
    tracking_uri: str | None = None,
    *,
    alias: str | None = CHAMPION,
    version: str | int | None = None,
    names: ModelNames | None = None,
    device: str | torch.device | None = "cpu",
) -> tuple[ModelSet, SegmenterConfig]:
    """Load classifier, gray net and tile FCN by alias (default ``champion``) or version.

    Give an alias or a version: a ``version`` wins over the default alias, and
    version N means version N of each of the three fused models (a training job
    registers them together, so their numbers move in lockstep; the versions must
    share one ``model_set_id`` tag). The config is rebuilt from the classifier
    version's ``segmenter_config`` tag. Models come back in eval mode on ``device``
    (``None``: the first GPU when there is one). ``ModelSet.versions`` maps each
    role to ``"<registered name>/<version>"``. Needs only the tracking URI, so it
    works in a fresh process. Raises :class:`ModelNotFoundError` naming what was
    looked for and where.
    """
    names = names or ModelNames()
    uri = resolve_tracking_uri(tracking_uri)
    client = _client(uri)
    selector = _selector(alias, version)
    found = {role: _find(client, names.for_role(role), selector, uri) for role in FUSED_ROLES}
    _check_one_set(found, uri)
    config = _config_of(found["classifier"], uri)
    torch_device = select_device(device)
    models = {role: _load_weights(client, mv, uri, torch_device) for role, mv in found.items()}
    versions = {role: f"{mv.name}/{mv.version}" for role, mv in found.items()}
    logger.info("loaded model set %s from %s", versions, uri)
    return ModelSet(**models, versions=versions), config


def load_model_config(
    tracking_uri: str | None = None,
    *,
    alias: str | None = CHAMPION,
    version: str | int | None = None,
    names: ModelNames | None = None,
) -> tuple[SegmenterConfig, str]:
    """The :class:`SegmenterConfig` of a registered set, without loading any weights.

    For stages that need the method's settings but no network (the Serve binarizer).
    Returns the config and the classifier's ``"<name>/<version>"`` label.
    """
    names = names or ModelNames()
    uri = resolve_tracking_uri(tracking_uri)
    mv = _find(_client(uri), names.classifier, _selector(alias, version), uri)
    return _config_of(mv, uri), f"{mv.name}/{mv.version}"


def load_baseline(
    tracking_uri: str | None = None,
    *,
    alias: str | None = CHAMPION,
    version: str | int | None = None,
    names: ModelNames | None = None,
    device: str | torch.device | None = "cpu",
) -> nn.Module | None:
    """The baseline network by alias or version; ``None`` when none is registered.

    ``None`` also when the baseline model exists but has no such alias (jobs may
    skip the baseline, so it can lag behind the fused set); an explicit version that
    does not exist raises :class:`ModelNotFoundError`. Baseline version numbers are
    its own (it is optional, so they need not match the fused models').
    """
    names = names or ModelNames()
    uri = resolve_tracking_uri(tracking_uri)
    client = _client(uri)
    selector = _selector(alias, version)
    name = names.baseline
    try:
        mv = _find(client, name, selector, uri)
    except ModelNotFoundError as error:
        if selector[0] == "version" and _exists(client, name):
            raise
        logger.info("no baseline loaded: %s", error)
        return None
    return _load_weights(client, mv, uri, select_device(device))


def _client(uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _selector(alias: str | None, version: str | int | None) -> tuple[str, str]:
    if version is not None:
        if alias not in (None, CHAMPION):
            raise ValueError(
                f"give an alias or a version, not both (alias={alias!r}, version={version!r})"
            )
        text = str(version).strip()
        if not text.isdigit() or int(text) < 1:
            raise ValueError(f"a model version is a positive integer, got {version!r}")
        return "version", str(int(text))
    if not alias:
        raise ValueError("give an alias or a version")
    return "alias", alias


def _exists(client: MlflowClient, name: str) -> bool:
    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return True


def _find(client: MlflowClient, name: str, selector: tuple[str, str], uri: str) -> ModelVersion:
    kind, value = selector
    try:
        registered = client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise ModelNotFoundError(
                f"no registered model {name!r} in the MLflow registry at {uri}"
            ) from None
        raise
    if kind == "alias":
        if value not in registered.aliases:
            known = ", ".join(f"{a}→{v}" for a, v in sorted(registered.aliases.items()))
            raise ModelNotFoundError(
                f"registered model {name!r} has no alias {value!r} at {uri} "
                f"(aliases: {known or 'none'})"
            )
        value = str(registered.aliases[value])
    return _get_version(client, name, value, uri, asked=f"{kind} {selector[1]!r}")


def _get_version(
    client: MlflowClient, name: str, version: str, uri: str, asked: str | None = None
) -> ModelVersion:
    try:
        mv = client.get_model_version(name, version)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise ModelNotFoundError(
                f"registered model {name!r} has no version {version} at {uri}"
                + (f" (looked up by {asked})" if asked else "")
            ) from None
        raise
    if mv.status != "READY":
        raise ModelNotFoundError(f"{name!r} version {version} at {uri} is {mv.status}, not READY")
    return mv


def _check_one_set(found: dict[str, ModelVersion], uri: str) -> None:
    set_ids = {role: mv.tags.get(TAG_MODEL_SET_ID) for role, mv in found.items()}
    if None in set_ids.values() or len(set(set_ids.values())) == 1:
        return
    described = ", ".join(
        f"{mv.name}/{mv.version} (model_set_id {set_ids[role]})" for role, mv in found.items()
    )
    raise InconsistentModelSetError(
        f"the versions found at {uri} do not belong to one model set: {described}"
    )


def _config_of(mv: ModelVersion, uri: str) -> SegmenterConfig:
    raw = mv.tags.get(TAG_SEGMENTER_CONFIG)
    if raw is None:
        raise ModelNotFoundError(
            f"{mv.name!r} version {mv.version} at {uri} has no {TAG_SEGMENTER_CONFIG!r} tag: "
            "register model sets with register_model_set"
        )
    return SegmenterConfig.from_dict(json.loads(raw))


def _load_weights(
    client: MlflowClient, mv: ModelVersion, uri: str, device: torch.device
) -> nn.Module:
    # ``models:/name/version`` URIs resolve against the process-wide registry URI, not
    # ``uri``; go through the version's storage location with an explicit tracking URI.
    source = client.get_model_version_download_uri(mv.name, str(mv.version))
    with tempfile.TemporaryDirectory(prefix="tumorseg-model-") as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=source, dst_path=tmp, tracking_uri=uri
        )
        model = mlflow.pytorch.load_model(local, map_location=device)
    return model.to(device).eval()
