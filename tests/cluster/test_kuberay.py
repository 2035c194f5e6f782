"""The KubeRay manifests, the MLflow manifest and the Dockerfile they all use."""

from __future__ import annotations

import tomllib

import pytest
import yaml
from cluster_files import (
    ROOT,
    dockerfile_ray_version,
    load_documents,
    load_script,
    load_yaml,
    split_entrypoint,
)
from ray.serve.schema import ServeDeploySchema

RAYCLUSTER = "cluster/kuberay/raycluster.yaml"
RAYJOBS = {
    "train": "cluster/kuberay/rayjob-train.yaml",
    "segment": "cluster/kuberay/rayjob-segment.yaml",
}
RAYSERVICE = "cluster/kuberay/rayservice.yaml"
MLFLOW = "cluster/mlflow/mlflow.yaml"


def image_tag() -> str:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    return f"registry.example.com/tumorseg:{version}"


def containers(cluster_spec: dict) -> list[dict]:
    groups = [cluster_spec["headGroupSpec"], *cluster_spec["workerGroupSpecs"]]
    return [c for group in groups for c in group["template"]["spec"]["containers"]]


def gpu_groups(cluster_spec: dict) -> list[dict]:
    return [
        group
        for group in cluster_spec["workerGroupSpecs"]
        for container in group["template"]["spec"]["containers"]
        if "nvidia.com/gpu" in container["resources"].get("limits", {})
    ]


@pytest.mark.parametrize("path", [RAYCLUSTER, RAYSERVICE])
def test_clusters_autoscale_a_gpu_group_and_match_the_image(path: str) -> None:
    manifest = load_yaml(path)
    spec = (
        manifest["spec"]
        if manifest["kind"] == "RayCluster"
        else manifest["spec"]["rayClusterConfig"]
    )
    assert manifest["apiVersion"] == "ray.io/v1"
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["rayVersion"] == dockerfile_ray_version()
    (gpu,) = gpu_groups(spec)
    assert gpu["minReplicas"] <= gpu["replicas"] <= gpu["maxReplicas"] and gpu["maxReplicas"] >= 2
    for container in containers(spec):
        assert container["image"] == image_tag()
        env = {e["name"]: e for e in container["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token"  # the same mode on every node
        assert env["MLFLOW_TRACKING_URI"]["value"].startswith("http://mlflow.")
        limits = container["resources"]["limits"]
        assert limits.get("nvidia.com/gpu", "0") == container["resources"]["requests"].get(
            "nvidia.com/gpu", "0"
        )


@pytest.mark.parametrize("job", sorted(RAYJOBS))
def test_rayjobs_run_the_jobs_with_flags_the_jobs_accept(job: str) -> None:
    manifest = load_yaml(RAYJOBS[job])
    cluster = load_yaml(RAYCLUSTER)
    assert manifest["kind"] == "RayJob"
    assert manifest["spec"]["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}
    script, flags = split_entrypoint(manifest["spec"]["entrypoint"])
    assert script == f"jobs/{job}.py"
    args = load_script(script).parse_args(flags)  # argparse exits on an unknown flag
    if job == "train":
        assert args.use_gpu is True and args.num_workers >= 2 and args.preset == "gpu"
    else:
        assert args.num_gpus > 0 and args.model_alias == "champion"
    (submitter,) = manifest["spec"]["submitterPodTemplate"]["spec"]["containers"]
    assert {e["name"] for e in submitter["env"]} >= {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN"}


def test_the_rayservice_requires_the_api_token() -> None:
    """Its proxy listens on 0.0.0.0: every container that serves takes the token from a
    secret (not optional), so the app never starts open."""
    spec = load_yaml(RAYSERVICE)["spec"]["rayClusterConfig"]
    for container in containers(spec):
        env = {e["name"]: e for e in container["env"]}
        secret = env["TUMORSEG_API_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert secret["name"] and secret["key"] and not secret.get("optional", False)


def test_rayservice_runs_serve_config_yaml() -> None:
    sync = load_script("cluster/sync_rayservice.py")
    manifest_text = (ROOT / RAYSERVICE).read_text()
    serve_config = yaml.safe_load((ROOT / "serve" / "config.yaml").read_text())
    assert sync.synced_manifest(manifest_text, serve_config) == manifest_text, (
        "serveConfigV2 is stale: run python cluster/sync_rayservice.py"
    )
    embedded = yaml.safe_load(load_yaml(RAYSERVICE)["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(embedded)
    # Apart from the documented cluster changes, it is serve/config.yaml exactly.
    for app in embedded["applications"]:
        for deployment in app["deployments"]:
            if deployment["name"] in sync.GPU_DEPLOYMENTS:
                options = deployment.pop("ray_actor_options")
                assert options["num_gpus"] > 0 and options["num_cpus"] > 0
    assert embedded.pop("http_options")["host"] == "0.0.0.0"
    serve_config.pop("http_options")
    assert embedded == serve_config


def test_a_changed_serve_config_makes_the_rayservice_stale() -> None:
    sync = load_script("cluster/sync_rayservice.py")
    manifest_text = (ROOT / RAYSERVICE).read_text()
    serve_config = yaml.safe_load((ROOT / "serve" / "config.yaml").read_text())
    serve_config["applications"][0]["deployments"][0]["max_ongoing_requests"] = 7
    assert sync.synced_manifest(manifest_text, serve_config) != manifest_text


def test_mlflow_server_uses_postgres_and_s3_and_serves_artifacts() -> None:
    documents = {(d["kind"], d["metadata"]["name"]): d for d in load_documents(MLFLOW)}
    assert {("StatefulSet", "postgres"), ("StatefulSet", "minio"), ("Service", "mlflow")} <= set(
        documents
    )
    (server,) = documents[("Deployment", "mlflow")]["spec"]["template"]["spec"]["containers"]
    command = " ".join(server["args"])
    assert '--backend-store-uri "postgresql://' in command
    assert "--artifacts-destination s3://" in command and "--serve-artifacts" in command
    env = {e["name"] for e in server["env"]}
    assert {"MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= env
    # The Ray clusters reach it under the name its Service gives it.
    service = documents[("Service", "mlflow")]
    port = service["spec"]["ports"][0]["port"]
    url = f"http://{service['metadata']['name']}.{service['metadata']['namespace']}.svc:{port}"
    for path in (RAYCLUSTER, RAYSERVICE):
        assert url in (ROOT / path).read_text()


def test_dockerfile_installs_the_project_and_its_entry_points() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "pip install --no-cache-dir ." in text
    for folder in ("tumorseg/", "jobs/", "serve/"):
        assert f"COPY --chown=ray:users {folder}" in text
