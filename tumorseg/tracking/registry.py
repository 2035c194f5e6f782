"""Register a trained model set in the MLflow registry, as weights + config.

Conventions (what training, batch segmentation and serving rely on):

* Every role has its own registered model (:class:`ModelNames`, names configurable):
  ``tumorseg-classifier``, ``tumorseg-graynet``, ``tumorseg-fcn`` and the optional
  ``tumorseg-baseline``.
* A training job registers its models *together* with :func:`register_model_set`:
  each new version carries the tags ``role``, ``model_set_id`` (the job's parent run
  id) and ``segmenter_config`` (the :class:`SegmenterConfig` as JSON), the run gets a
  ``segmenter_config.json`` artifact, and every new version gets the alias
  ``candidate``. :mod:`tumorseg.tracking.promotion` moves ``champion``;
  :mod:`tumorseg.tracking.loading` loads a set back.
* A version's artifact is a saved network (:mod:`tumorseg.networks.weights`):
  safetensors tensors plus a JSON description, never a pickled module, so loading
  a version cannot run code that whoever registered it put there.
"""

from __future__ import annotations

import copy
import json
import logging
import tempfile

import mlflow
from mlflow.exceptions import MlflowException
from torch import nn

from tumorseg.config import SegmenterConfig
from tumorseg.networks import ALL_ROLES, FUSED_ROLES
from tumorseg.networks.weights import save_network
from tumorseg.tracking.names import CANDIDATE, ModelNames
from tumorseg.tracking.uris import registry_client

logger = logging.getLogger("tumorseg.tracking")

#: Version tags written by :func:`register_model_set`.
TAG_ROLE = "role"
TAG_MODEL_SET_ID = "model_set_id"
TAG_SEGMENTER_CONFIG = "segmenter_config"
#: Run artifact holding the :class:`SegmenterConfig` of the registered set.
CONFIG_ARTIFACT = "segmenter_config.json"


def register_model(
    model: nn.Module,
    role: str,
    names: ModelNames,
    config: SegmenterConfig,
    *,
    run_id: str | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    """Save ``model``'s weights in the active (or given) run, register them, alias the
    new version ``candidate``.

    The network description records ``config.networks`` and the role's input shape
    (:class:`~tumorseg.networks.NetworkRole`). A CPU copy is saved, unwrapped from
    ``DistributedDataParallel`` (as Ray Train's ``prepare_model`` returns it);
    ``model`` itself is left untouched. Logging goes to the process's current MLflow
    tracking URI (the one the run lives in). ``tags`` are set on the new version
    besides ``role``. Returns the new version number.
    """
    name = names.for_role(role)
    run_id = _require_run(run_id)
    cpu_model = copy.deepcopy(_unwrap(model)).cpu().eval()
    client = registry_client(mlflow.get_tracking_uri())
    with tempfile.TemporaryDirectory(prefix="tumorseg-weights-") as directory:
        save_network(cpu_model, role, config.networks, directory)
        mlflow.log_artifacts(directory, artifact_path=role, run_id=run_id)
    source = f"{client.get_run(run_id).info.artifact_uri}/{role}"
    _ensure_registered(client, name)
    version = client.create_model_version(
        name, source=source, run_id=run_id, tags={TAG_ROLE: role, **(tags or {})}
    ).version
    version = str(version)
    client.set_registered_model_alias(name, CANDIDATE, version)
    logger.info("registered %s version %s (alias %s)", name, version, CANDIDATE)
    return version


def register_model_set(
    models: dict[str, nn.Module],
    config: SegmenterConfig,
    names: ModelNames,
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
    unknown = sorted(set(models) - set(ALL_ROLES))
    if missing or unknown:
        raise ValueError(
            f"a model set needs {list(FUSED_ROLES)} (+ optional baseline); "
            f"missing {missing}, unknown {unknown}"
        )
    run_id = _require_run(run_id)
    config_dict = config.to_dict()
    mlflow.log_dict(config_dict, CONFIG_ARTIFACT, run_id=run_id)
    tags = {
        TAG_SEGMENTER_CONFIG: json.dumps(config_dict, sort_keys=True),
        TAG_MODEL_SET_ID: model_set_id or run_id,
    }
    versions = {
        role: register_model(models[role], role, names, config, run_id=run_id, tags=tags)
        for role in ALL_ROLES
        if role in models
    }
    if len({versions[role] for role in FUSED_ROLES}) > 1:
        logger.warning(
            "fused model versions are not in lockstep (%s): load this set by alias, "
            "not by version number",
            ", ".join(f"{role}={versions[role]}" for role in FUSED_ROLES),
        )
    return versions


def _ensure_registered(client, name: str) -> None:
    try:
        client.create_registered_model(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


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
