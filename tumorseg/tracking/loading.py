"""Load a registered model set (or its config, or the baseline) back from MLflow.

Only the tracking URI is needed, so Ray workers and Serve replicas in other
processes (and other working directories) can load a set. Versions are saved
networks (:mod:`tumorseg.networks.weights`); anything else is refused unread.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import mlflow.artifacts
import torch
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from torch import nn

from tumorseg.config import SegmenterConfig
from tumorseg.errors import ModelArtifactError
from tumorseg.inference.models import ModelSet
from tumorseg.inference.tensors import select_device
from tumorseg.networks import FUSED_ROLES
from tumorseg.networks.weights import load_network
from tumorseg.tracking.names import (
    InconsistentModelSetError,
    ModelNames,
    ModelNotFoundError,
    ModelSelector,
    RegistryUnreachableError,
)
from tumorseg.tracking.registry import TAG_MODEL_SET_ID, TAG_SEGMENTER_CONFIG
from tumorseg.tracking.uris import registry_client, resolve_tracking_uri, sqlite_path

logger = logging.getLogger("tumorseg.tracking")


def load_model_set(
    tracking_uri: str | None = None,
    selector: ModelSelector | None = None,
    *,
    names: ModelNames | None = None,
    device: str | torch.device | None = "cpu",
    roles: Sequence[str] = FUSED_ROLES,
) -> tuple[ModelSet, SegmenterConfig]:
    """Load classifier, gray net and tile FCN chosen by ``selector`` (default: champion).

    ``roles`` loads only those networks (the others stay ``None``); every role's
    version is still found, checked to be one set, and named in ``versions``.

    By version, the three fused models must share one ``model_set_id`` tag (a
    training job registers them together). The config is rebuilt from the classifier
    version's ``segmenter_config`` tag. Models come back in eval mode on ``device``
    (``None``: the first GPU when there is one). ``ModelSet.versions`` maps each role
    to ``"<registered name>/<version>"``. Raises :class:`ModelNotFoundError` naming
    what was looked for and where, :class:`~tumorseg.errors.ModelArtifactError` for a
    version that is not a saved network (a pickled one is refused unread).
    """
    names = names or ModelNames()
    selector = selector or ModelSelector()
    uri = existing_store(resolve_tracking_uri(tracking_uri))
    client = registry_client(uri)
    found = {
        role: find_version(client, names.for_role(role), selector, uri) for role in FUSED_ROLES
    }
    _check_one_set(found, uri)
    config = _config_of(found["classifier"], uri)
    torch_device = select_device(device)
    models = {
        role: _load_network(client, mv, role, uri, torch_device) if role in roles else None
        for role, mv in found.items()
    }
    versions = {role: f"{mv.name}/{mv.version}" for role, mv in found.items()}
    logger.info("loaded model set %s from %s", versions, uri)
    return ModelSet(**models, versions=versions), config


def load_model_config(
    tracking_uri: str | None = None,
    selector: ModelSelector | None = None,
    *,
    names: ModelNames | None = None,
) -> tuple[SegmenterConfig, str]:
    """The :class:`SegmenterConfig` of a registered set, without loading any weights.

    Returns the config and the classifier's ``"<name>/<version>"`` label.
    """
    names = names or ModelNames()
    uri = existing_store(resolve_tracking_uri(tracking_uri))
    client = registry_client(uri)
    mv = find_version(client, names.classifier, selector or ModelSelector(), uri)
    return _config_of(mv, uri), f"{mv.name}/{mv.version}"


def load_baseline(
    tracking_uri: str | None = None,
    selector: ModelSelector | None = None,
    *,
    names: ModelNames | None = None,
    device: str | torch.device | None = "cpu",
) -> nn.Module | None:
    """The baseline network chosen by ``selector``; ``None`` when none is registered.

    ``None`` also when the baseline model exists but has no such alias (jobs may
    skip the baseline, so it can lag behind the fused set); an explicit version that
    does not exist raises :class:`ModelNotFoundError`. Baseline version numbers are
    its own (it is optional, so they need not match the fused models').
    """
    names = names or ModelNames()
    selector = selector or ModelSelector()
    uri = existing_store(resolve_tracking_uri(tracking_uri))
    client = registry_client(uri)
    name = names.baseline
    try:
        mv = find_version(client, name, selector, uri)
    except ModelNotFoundError as error:
        if selector.by_version and _exists(client, name):
            raise
        logger.info("no baseline loaded: %s", error)
        return None
    return _load_network(client, mv, "baseline", uri, select_device(device))


def find_version(
    client: MlflowClient, name: str, selector: ModelSelector, uri: str
) -> ModelVersion:
    """The version of ``name`` that ``selector`` names, READY, or ModelNotFoundError."""
    try:
        registered = client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise ModelNotFoundError(
                f"no registered model {name!r} in the MLflow registry at {uri}"
            ) from None
        raise
    version = selector.version
    if not selector.by_version:
        if selector.alias not in registered.aliases:
            known = ", ".join(f"{a}→{v}" for a, v in sorted(registered.aliases.items()))
            raise ModelNotFoundError(
                f"registered model {name!r} has no alias {selector.alias!r} at {uri} "
                f"(aliases: {known or 'none'})"
            )
        version = str(registered.aliases[selector.alias])
    return get_version(client, name, str(version), uri, asked=selector.describe())


def get_version(
    client: MlflowClient, name: str, version: str, uri: str, asked: str | None = None
) -> ModelVersion:
    """Version ``version`` of ``name``, READY, or ModelNotFoundError."""
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


def _exists(client: MlflowClient, name: str) -> bool:
    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return True


#: How long a tracking server may take to answer the first question.
REACHABLE_TIMEOUT_S = 5.0


def existing_store(uri: str) -> str:
    """``uri``, unless it names a SQLite file that does not exist (loading from it would
    create an empty store there and then report every model missing) or a server that
    does not answer (MLflow's client would retry for minutes)."""
    path = sqlite_path(uri)
    if path is not None and not Path(path).is_file():
        raise ModelNotFoundError(
            f"no MLflow store at {path}: pass --tracking-uri (or set MLFLOW_TRACKING_URI) "
            "to the store the training job registered its models in"
        )
    if uri.startswith(("http://", "https://")):
        _check_answers(uri)
    return uri


def _check_answers(uri: str) -> None:
    """Any HTTP answer will do (even 401 or 404): only silence is refused."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=REACHABLE_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return
    except (OSError, ValueError) as error:  # refused, unresolvable, timed out, bad URL
        raise RegistryUnreachableError(
            f"the MLflow server at {uri} did not answer within {REACHABLE_TIMEOUT_S:.0f} s "
            f"({error}): start it, or pass the right --tracking-uri / MLFLOW_TRACKING_URI"
        ) from None


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


def _load_network(
    client: MlflowClient, mv: ModelVersion, role: str, uri: str, device: torch.device
) -> nn.Module:
    # ``models:/name/version`` URIs resolve against the process-wide registry URI, not
    # ``uri``; go through the version's storage location with an explicit tracking URI.
    source = client.get_model_version_download_uri(mv.name, str(mv.version))
    with tempfile.TemporaryDirectory(prefix="tumorseg-model-") as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=source, dst_path=tmp, tracking_uri=uri
        )
        try:
            return load_network(local, device, role=role)
        except ModelArtifactError as error:
            raise ModelArtifactError(f"{mv.name}/{mv.version} at {uri}: {error}") from None
