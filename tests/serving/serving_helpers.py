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


def token_app(store: str, variable: str, token: str, route_prefix: str) -> dict[str, Any]:
    """A second application of the same app that asks for ``token`` (read by the app
    from ``variable``, set in its runtime environment), for the tests of the token path."""
    (application,) = app_config(store, 0)["applications"]
    application.update(name="tumorseg-token", route_prefix=route_prefix)
    application["args"]["api_token_env"] = variable
    application["runtime_env"] = {"env_vars": {variable: token}}
    return application


def deploy(config: dict, timeout_s: float = 180) -> None:
    """``serve deploy`` through the dashboard's REST API, then wait until every
    application of ``config`` runs (one it no longer names is deleted)."""
    import time

    import ray
    from ray import serve
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

    client = ServeSubmissionClient(f"http://{ray._private.worker.get_dashboard_url()}")
    client.deploy_applications(config)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(1)
        applications = serve.status().applications
        statuses = [applications.get(app["name"]) for app in config["applications"]]
        if all(
            status is not None
            and status.status == "RUNNING"
            and all(d.status == "HEALTHY" for d in status.deployments.values())
            for status in statuses
        ):
            return
    raise TimeoutError(f"the app did not become healthy in {timeout_s} s: {serve.status()}")
