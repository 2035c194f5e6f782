"""Model registry helpers against a real SQLite MLflow store under a temporary folder.

One store is shared by the module: two model sets of tiny real networks are
registered in it (set 1 with a baseline, promoted with fused Dice 0.70; set 2
without a baseline, Dice 0.50, so it stays a candidate). Promotion rules are
tested on their own registered names with bare versions (no weights needed).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from mlflow import MlflowClient
from torch import nn

from tumorseg import Segmenter
from tumorseg.config import MultiScaleConfig, NetworkConfig, SegmenterConfig
from tumorseg.data.phantom import make_phantom
from tumorseg.inference.models import ModelSet
from tumorseg.networks import FUSED_ROLES, build_network
from tumorseg.tracking import (
    CONFIG_ARTIFACT,
    InconsistentModelSetError,
    ModelArtifactError,
    ModelNames,
    ModelNotFoundError,
    ModelSelector,
    RegistryUnreachableError,
    load_baseline,
    load_model_set,
    promote_if_better,
    register_model,
    register_model_set,
    resolve_tracking_uri,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
NETWORKS = NetworkConfig(
    classifier_size=64,
    classifier_channels=(8, 16),
    graynet_size=64,
    graynet_resnet_depth=18,
    graynet_width=8,
    fcn_channels=(8, 16),
)
CONFIG = SegmenterConfig(
    networks=NETWORKS, multiscale=MultiScaleConfig(canvas_size=128, pass_tiles=(10, 16))
)
NAMES = ModelNames()
INPUT_SIZE = {
    "classifier": NETWORKS.classifier_size,
    "graynet": NETWORKS.graynet_size,
    "baseline": NETWORKS.graynet_size,
    "fcn": NETWORKS.fcn_tile_size,
}


def tiny_models(seed: int, roles) -> dict[str, nn.Module]:
    torch.manual_seed(seed)
    return {role: build_network(role, NETWORKS).eval() for role in roles}


def in_channels(role: str) -> int:
    """Read from the network itself (the FCN's input stack may change)."""
    first = next(m for m in build_network(role, NETWORKS).modules() if isinstance(m, nn.Conv2d))
    return first.in_channels


CHANNELS = {role: in_channels(role) for role in INPUT_SIZE}


def fixed_input(role: str, batch: int = 2) -> np.ndarray:
    size = INPUT_SIZE[role]
    shape = (batch, CHANNELS[role], size, size)
    return np.random.default_rng(7).random(shape, dtype=np.float32)


@torch.no_grad()
def outputs(model: nn.Module, role: str) -> np.ndarray:
    return model.eval()(torch.from_numpy(fixed_input(role))).numpy()


@dataclass
class Store:
    uri: str
    root: Path
    parent_run_ids: list[str]
    models: list[dict[str, nn.Module]]  # per set
    versions: list[dict[str, str]]  # per set
    promoted: list[bool]
    expected: list[dict[str, np.ndarray]]  # per set: each model's output on fixed_input


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    previous_env = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.create_experiment(
            "tracking-tests", artifact_location=(root / "artifacts").as_uri()
        )
        sets = [tiny_models(0, (*FUSED_ROLES, "baseline")), tiny_models(1, FUSED_ROLES)]
        expected = [{role: outputs(m, role) for role, m in models.items()} for models in sets]
        store = Store(uri, root, [], sets, [], [], expected)
        for models, dice in zip(sets, (0.70, 0.50), strict=True):
            with mlflow.start_run(experiment_id=experiment) as parent:
                versions = register_model_set(models, CONFIG, NAMES)
                store.promoted.append(promote_if_better(versions, dice, NAMES))
            store.parent_run_ids.append(parent.info.run_id)
            store.versions.append(versions)
        yield store
    finally:
        mlflow.set_tracking_uri(None)  # also unsets $MLFLOW_TRACKING_URI, which it had set
        if previous_env is not None:
            os.environ["MLFLOW_TRACKING_URI"] = previous_env


# --------------------------------------------------------------------------- URIs, names


def test_resolve_tracking_uri_precedence(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert resolve_tracking_uri() == "http://mlflow:5000"
    assert resolve_tracking_uri("sqlite:////data/x.db") == "sqlite:////data/x.db"
    # relative SQLite paths become absolute, so workers in other folders agree
    assert (
        resolve_tracking_uri("sqlite:///runs/m.db") == f"sqlite:///{tmp_path.resolve()}/runs/m.db"
    )


def test_model_names_are_configurable():
    names = ModelNames(fcn="lab-fcn")
    assert names.for_role("fcn") == "lab-fcn"
    assert names.for_role("classifier") == "tumorseg-classifier"
    assert names.for_role("baseline") == "tumorseg-baseline"
    with pytest.raises(ValueError, match="unknown network role"):
        names.for_role("decoder")


# --------------------------------------------------------------------------- registration


def test_sets_register_in_lockstep_with_candidate_alias(store):
    assert store.versions[0] == {r: "1" for r in (*FUSED_ROLES, "baseline")}
    assert store.versions[1] == {r: "2" for r in FUSED_ROLES}
    client = MlflowClient(store.uri, store.uri)
    for role in FUSED_ROLES:
        assert str(client.get_registered_model(NAMES.for_role(role)).aliases["candidate"]) == "2"
    # the baseline was only in set 1, so its candidate is still version 1
    assert str(client.get_registered_model(NAMES.baseline).aliases["candidate"]) == "1"


def test_versions_are_weights_and_a_description_with_config_set_id_and_role(store):
    client = MlflowClient(store.uri, store.uri)
    for role, version in store.versions[0].items():
        mv = client.get_model_version(NAMES.for_role(role), version)
        assert mv.tags["role"] == role
        assert mv.tags["model_set_id"] == store.parent_run_ids[0]
        assert SegmenterConfig.from_dict(json.loads(mv.tags["segmenter_config"])) == CONFIG
        assert mv.run_id == store.parent_run_ids[0]
        local = Path(mlflow.artifacts.download_artifacts(mv.source, tracking_uri=store.uri))
        assert sorted(p.name for p in local.iterdir()) == ["network.json", "weights.safetensors"]
        description = json.loads((local / "network.json").read_text())
        assert description["role"] == role
        assert description["input_shape"] == [CHANNELS[role], INPUT_SIZE[role], INPUT_SIZE[role]]
    local = client.download_artifacts(store.parent_run_ids[0], CONFIG_ARTIFACT, str(store.root))
    assert SegmenterConfig.from_dict(json.loads(Path(local).read_text())) == CONFIG


def test_data_parallel_wrappers_are_unwrapped():
    from tumorseg.tracking.registry import _unwrap

    fcn = build_network("fcn", NETWORKS)
    assert _unwrap(nn.DataParallel(fcn)) is fcn
    assert _unwrap(fcn) is fcn


def test_register_needs_a_run(store):
    with pytest.raises(ValueError, match="active MLflow run"):
        register_model(store.models[0]["fcn"], "fcn", NAMES, CONFIG)


def test_register_set_needs_the_fused_roles():
    with pytest.raises(ValueError, match="missing \\['fcn'\\]"):
        register_model_set(tiny_models(0, ("classifier", "graynet")), CONFIG, NAMES)


# --------------------------------------------------------------------------- loading


def test_first_set_is_champion_and_loads_by_alias(store):
    assert store.promoted == [True, False]
    model_set, config = load_model_set(store.uri)  # alias "champion" by default
    assert isinstance(model_set, ModelSet) and config == CONFIG
    assert model_set.versions == {r: f"{NAMES.for_role(r)}/1" for r in FUSED_ROLES}
    for role in FUSED_ROLES:
        loaded = getattr(model_set, role)
        assert not loaded.training
        np.testing.assert_array_equal(outputs(loaded, role), store.expected[0][role])


@pytest.mark.parametrize("selector", [{"version": 2}, {"version": "2"}, {"alias": "candidate"}])
def test_second_set_loads_by_version_or_candidate(store, selector):
    model_set, config = load_model_set(store.uri, ModelSelector(**selector))
    assert config == CONFIG
    assert model_set.versions == {r: f"{NAMES.for_role(r)}/2" for r in FUSED_ROLES}
    for role in FUSED_ROLES:
        got = outputs(getattr(model_set, role), role)
        np.testing.assert_array_equal(got, store.expected[1][role])
        assert not np.array_equal(got, store.expected[0][role])


def test_a_stage_loads_only_its_network_and_still_names_the_set(store):
    model_set, _ = load_model_set(store.uri, roles=("fcn",))
    assert model_set.classifier is None and model_set.graynet is None
    np.testing.assert_array_equal(outputs(model_set.fcn, "fcn"), store.expected[0]["fcn"])
    assert model_set.versions == {r: f"{NAMES.for_role(r)}/1" for r in FUSED_ROLES}


def test_a_store_that_does_not_exist_is_named_not_created(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ModelNotFoundError, match=r"no MLflow store at .*mlflow\.db"):
        load_model_set()  # the default ./mlflow.db, absent here
    assert not (tmp_path / "mlflow.db").exists()


def test_a_server_that_does_not_answer_fails_at_once_by_name():
    import socket
    import time

    with socket.socket() as listener:  # a free port, closed again: nobody listens there
        listener.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{listener.getsockname()[1]}"
    started = time.monotonic()
    with pytest.raises(RegistryUnreachableError, match=f"MLflow server at {uri} did not answer"):
        load_model_set(uri)
    assert time.monotonic() - started < 10  # not MLflow's minutes of retries


def test_tracking_uri_argument_beats_the_process_default(store, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the default ./mlflow.db would be empty here
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/other.db")
    model_set, _ = load_model_set(store.uri, ModelSelector(version=1))
    assert model_set.versions["fcn"] == "tumorseg-fcn/1"


def test_segmenter_from_loaded_set_segments_an_image(store):
    model_set, config = load_model_set(store.uri, ModelSelector("champion"))
    segmenter = Segmenter(model_set, config, device="cpu")
    image = make_phantom(3, height=96, width=120).image
    results = segmenter.segment_batch([image, image], ["homogeneous", "heterogeneous"])
    auto = segmenter.segment(image)
    for result in [*results, auto]:
        assert result.mask.shape == image.shape and result.mask.dtype == bool
        assert result.model_versions == model_set.versions
    assert results[1].pass_tiles == (10, 16)


def test_fresh_process_loads_with_only_the_uri(store, tmp_path):
    script = textwrap.dedent(
        """
        import sys, numpy as np, torch
        from tumorseg.tracking import load_model_set
        model_set, config = load_model_set(sys.argv[1])
        size, channels = config.networks.fcn_tile_size, int(sys.argv[3])
        x = np.random.default_rng(7).random((2, channels, size, size), dtype=np.float32)
        with torch.no_grad():
            y = model_set.fcn(torch.from_numpy(x)).numpy()
        np.save(sys.argv[2], y)
        print(model_set.versions["fcn"], config.multiscale.pass_tiles)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    out = tmp_path / "fcn.npy"
    done = subprocess.run(
        [sys.executable, "-c", script, store.uri, str(out), str(CHANNELS["fcn"])],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "tumorseg-fcn/1 (10, 16)"
    np.testing.assert_array_equal(np.load(out), store.expected[0]["fcn"])


def test_baseline_loads_or_is_none(store):
    baseline = load_baseline(store.uri)
    assert isinstance(baseline, nn.Module)
    np.testing.assert_array_equal(outputs(baseline, "baseline"), store.expected[0]["baseline"])
    assert load_baseline(store.uri, ModelSelector(version=1)) is not None
    assert load_baseline(store.uri, names=ModelNames(baseline="no-such-baseline")) is None
    assert load_baseline(store.uri, ModelSelector("no-such-alias")) is None
    with pytest.raises(ModelNotFoundError, match="no version 2"):
        load_baseline(store.uri, ModelSelector(version=2))


# --------------------------------------------------------------------------- errors


def test_missing_model_alias_version_are_named(store):
    with pytest.raises(ModelNotFoundError, match="no registered model 'nope'") as error:
        load_model_set(store.uri, names=ModelNames(graynet="nope"))
    assert store.uri in str(error.value)
    with pytest.raises(ModelNotFoundError, match=r"no alias 'staging'.*candidate→2, champion→1"):
        load_model_set(store.uri, ModelSelector("staging"))
    with pytest.raises(ModelNotFoundError, match="'tumorseg-classifier' has no version 9"):
        load_model_set(store.uri, ModelSelector(version=9))
    empty = f"sqlite:///{store.root}/empty.db"
    with pytest.raises(ModelNotFoundError, match="no MLflow store at"):
        load_model_set(empty)
    MlflowClient(empty).search_experiments()  # now a store, with no model in it
    with pytest.raises(ModelNotFoundError, match=r"registered model 'tumorseg-classifier'"):
        load_model_set(empty)
    assert issubclass(ModelNotFoundError, LookupError)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alias": "candidate", "version": 1}, "not both"),
        ({"alias": " "}, "must not be empty"),
        ({"version": "latest"}, "positive integer"),
        ({"version": 0}, "positive integer"),
    ],
)
def test_bad_selectors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelSelector(**kwargs)


def test_a_selector_names_the_champion_by_default():
    assert ModelSelector() == ModelSelector("champion")
    assert ModelSelector(version=3).describe() == "version 3" and ModelSelector().alias
    assert ModelSelector(version=" 03").version == "3"


def test_mixed_versions_are_refused(store):
    client = MlflowClient(store.uri, store.uri)
    client.set_registered_model_alias(NAMES.classifier, "mixed", "1")
    client.set_registered_model_alias(NAMES.graynet, "mixed", "2")
    client.set_registered_model_alias(NAMES.fcn, "mixed", "2")
    with pytest.raises(InconsistentModelSetError, match="do not belong to one model set"):
        load_model_set(store.uri, ModelSelector("mixed"))


# --------------------------------------------------------------------------- promotion


@pytest.fixture
def bare_versions(store, request):
    """``add()`` registers one bare version per role under names unique to the test."""
    prefix = request.node.name.replace("[", "-").replace("]", "")
    names = ModelNames(
        classifier=f"{prefix}-c", graynet=f"{prefix}-g", fcn=f"{prefix}-f", baseline=f"{prefix}-b"
    )
    client = MlflowClient(store.uri, store.uri)

    def add(roles=FUSED_ROLES) -> dict[str, str]:
        versions = {}
        for role in roles:
            name = names.for_role(role)
            if not client.search_registered_models(f"name = '{name}'"):
                client.create_registered_model(name)
            versions[role] = client.create_model_version(name, "file:///nowhere").version
        return {role: str(version) for role, version in versions.items()}

    return names, client, add


def champions(client, names, roles=FUSED_ROLES) -> dict[str, str]:
    return {
        role: str(client.get_registered_model(names.for_role(role)).aliases.get("champion"))
        for role in roles
    }


def test_promotion_moves_only_when_at_least_as_good(store, bare_versions, caplog):
    names, client, add = bare_versions
    caplog.set_level(logging.INFO, logger="tumorseg.tracking")

    assert promote_if_better(add(), 0.7011, names, tracking_uri=store.uri)  # no champion yet
    assert champions(client, names) == dict.fromkeys(FUSED_ROLES, "1")
    assert "champion moved to version 1 (fused_val_dice 0.7011, no champion before)" in caplog.text

    caplog.clear()
    assert not promote_if_better(add(), 0.65, names, tracking_uri=store.uri)
    assert champions(client, names) == dict.fromkeys(FUSED_ROLES, "1")
    assert "champion stays at version 1 (version 2 has fused_val_dice 0.6500 < 0.7011)" in (
        caplog.text
    )
    assert client.get_model_version(names.fcn, "2").tags["fused_val_dice"] == "0.65"

    caplog.clear()
    assert promote_if_better(add(), 0.7011, names, tracking_uri=store.uri)  # equal moves
    assert champions(client, names) == dict.fromkeys(FUSED_ROLES, "3")
    assert "champion moved to version 3 (fused_val_dice 0.7011 ≥ 0.7011)" in caplog.text

    caplog.clear()
    assert promote_if_better(add(), 0.7412, names, tracking_uri=store.uri)
    assert champions(client, names) == dict.fromkeys(FUSED_ROLES, "4")
    assert "champion moved to version 4 (fused_val_dice 0.7412 ≥ 0.7011)" in caplog.text

    assert not promote_if_better(add(), float("nan"), names, tracking_uri=store.uri)
    assert champions(client, names) == dict.fromkeys(FUSED_ROLES, "4")


def test_promotion_moves_every_role_given_and_names_uneven_versions(store, bare_versions, caplog):
    names, client, add = bare_versions
    caplog.set_level(logging.INFO, logger="tumorseg.tracking")
    add(("classifier",))  # classifier now one version ahead of the others
    versions = add((*FUSED_ROLES, "baseline"))
    assert versions == {"classifier": "2", "graynet": "1", "fcn": "1", "baseline": "1"}
    assert promote_if_better(versions, 0.5, names, metric="val_dice", tracking_uri=store.uri)
    assert champions(client, names, (*FUSED_ROLES, "baseline")) == versions
    assert "versions classifier=2, graynet=1, fcn=1, baseline=1" in caplog.text
    assert client.get_model_version(names.baseline, "1").tags["val_dice"] == "0.5"


def test_promotion_of_unknown_versions_fails_clearly(store, bare_versions):
    names, _, add = bare_versions
    add()
    with pytest.raises(ModelNotFoundError, match="has no version 5"):
        promote_if_better({"classifier": "5"}, 0.9, names, tracking_uri=store.uri)


# --------------------------------------------------------------------------- hostile artifacts


class _TouchOnUnpickle:
    """Unpickling this creates ``marker``: proof that a loader unpickled it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _register_hostile_set(store: Store, prefix: str, files: dict[str, bytes]) -> ModelNames:
    """Every fused role of ``PREFIX-…`` gets a version whose artifact folder holds ``files``,
    with the tags of a real set, as someone who can write to the registry could do."""
    names = ModelNames.with_prefix(prefix)
    client = MlflowClient(store.uri, store.uri)
    folder = store.root / prefix
    for path, content in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(content)
    tags = {"model_set_id": prefix, "segmenter_config": json.dumps(CONFIG.to_dict())}
    for role in FUSED_ROLES:
        name = names.for_role(role)
        client.create_registered_model(name)
        version = client.create_model_version(name, folder.as_uri(), tags={"role": role, **tags})
        client.set_registered_model_alias(name, "champion", version.version)
    return names


@pytest.mark.parametrize(
    ("disguise", "message"),
    [
        ("weights.safetensors", "not a safetensors file"),  # a pickle under the right name
        ("data/model.pth", "holds a pickled model"),  # MLflow's old pickle flavour
    ],
)
def test_a_pickled_artifact_is_refused_without_being_unpickled(store, tmp_path, disguise, message):
    import pickle

    from tumorseg.networks.weights import save_network

    marker = tmp_path / "unpickled"
    payload = pickle.dumps(_TouchOnUnpickle(marker))
    real = save_network(store.models[0]["classifier"], "classifier", NETWORKS, tmp_path)
    files = {disguise: payload, "network.json": (real / "network.json").read_bytes()}
    if disguise == "data/model.pth":
        files["MLmodel"] = b"flavors:\n  pytorch:\n    serialization_format: pickle\n"
    prefix = "hostile-" + disguise.replace("/", "-").replace(".", "-")
    names = _register_hostile_set(store, prefix, files)
    with pytest.raises(ModelArtifactError, match=message):
        load_model_set(store.uri, names=names)
    assert not marker.exists()
    pickle.loads(payload)  # the payload is live: unpickling it does create the marker
    assert marker.exists()
