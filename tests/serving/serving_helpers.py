"""Helpers of the serving tests: limits and the app's deploy config."""

from __future__ import annotations

from typing import Any

MAX_BYTES = 2_000_000
MAX_PIXELS = 4_000_000
UPLOAD_SECONDS = 3.0  # short, so that a test can outwait it
DEPLOYMENTS = ("Ingress", "Classifier", "Binarizer", "GrayNet", "MultiScaleFCN")


def app_config(store: str, port: int, user_config: dict[str, Any] | None = None) -> dict:
    """A ``serve deploy`` config (as serve/config.yaml) of the app for the tests: small
    limits and a tenth of a CPU per replica. Deploying by config makes a change of
    ``user_config`` alone a lightweight update: replicas reconfigure in place."""
    deployments = []
    for name in DEPLOYMENTS:
        deployment: dict[str, Any] = {"name": name, "ray_actor_options": {"num_cpus": 0.1}}
        if user_config is not None and name != "Ingress":
            deployment["user_config"] = user_config
        deployments.append(deployment)
    return {
        "http_options": {"host": "127.0.0.1", "port": port},
        "applications": [
            {
                "name": "tumorseg",
                "route_prefix": "/",
                "import_path": "tumorseg.serving.app:build_app",
                "args": {
                    "tracking_uri": store,
                    "max_bytes": MAX_BYTES,
                    "max_pixels": MAX_PIXELS,
                    "upload_seconds": UPLOAD_SECONDS,
                },
                "deployments": deployments,
            }
        ],
    }


def deploy(config: dict, timeout_s: float = 180) -> None:
    """``serve deploy`` through the dashboard's REST API, then wait until it runs."""
    import time

    import ray
    from ray import serve
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

    client = ServeSubmissionClient(f"http://{ray._private.worker.get_dashboard_url()}")
    client.deploy_applications(config)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(1)
        status = serve.status().applications.get("tumorseg")
        if (
            status is not None
            and status.status == "RUNNING"
            and all(d.status == "HEALTHY" for d in status.deployments.values())
        ):
            return
    raise TimeoutError(f"the app did not become healthy in {timeout_s} s: {serve.status()}")
