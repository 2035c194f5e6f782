"""cluster/launcher/aws.yaml against the cluster-config schema that Ray ships."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import ray.autoscaler
from cluster_files import load_yaml

LAUNCHER = "cluster/launcher/aws.yaml"


def ray_cluster_schema() -> dict:
    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def test_launcher_config_validates_against_rays_schema() -> None:
    config = load_yaml(LAUNCHER)
    jsonschema.validate(config, ray_cluster_schema())  # raises with the offending path
    assert config["provider"]["type"] == "aws"
    assert config["head_node_type"] in config["available_node_types"]


def test_the_schema_is_strict_enough_to_catch_a_typo() -> None:
    config = load_yaml(LAUNCHER)
    config["available_node_types"]["gpu-worker"]["min_worker"] = 1  # not a field
    try:
        jsonschema.validate(config, ray_cluster_schema())
    except jsonschema.ValidationError as error:
        assert "min_worker" in str(error)
    else:
        raise AssertionError("a misspelt node-type field passed Ray's schema")


def test_node_types_scale_cpu_and_gpu_workers_and_the_head_trains_nothing() -> None:
    config = load_yaml(LAUNCHER)
    types = config["available_node_types"]
    head = types.pop(config["head_node_type"])
    assert head["resources"] == {"CPU": 0}
    gpu = [t for t in types.values() if t["resources"].get("GPU", 0) >= 1]
    cpu = [t for t in types.values() if not t["resources"].get("GPU")]
    assert gpu and cpu
    for node_type in types.values():
        assert 0 <= node_type["min_workers"] <= node_type["max_workers"]
    assert sum(t["max_workers"] for t in types.values()) <= config["max_workers"]
