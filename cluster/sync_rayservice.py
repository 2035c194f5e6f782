"""Write serve/config.yaml into cluster/kuberay/rayservice.yaml's serveConfigV2.

serve/config.yaml is the one source of truth of the Serve application; the RayService
carries a copy of it with the two changes a Kubernetes cluster needs (see CLUSTER_CHANGES).

    python cluster/sync_rayservice.py           # rewrite the block
    python cluster/sync_rayservice.py --check   # exit 1 if the block is out of date
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from tumorseg.serving.options import DEPLOYMENT_OPTIONS, NETWORK_DEPLOYMENTS

ROOT = Path(__file__).resolve().parents[1]
SERVE_CONFIG = ROOT / "serve" / "config.yaml"
RAYSERVICE = ROOT / "cluster" / "kuberay" / "rayservice.yaml"
#: Deployments that run a network, and the share of a GPU each replica asks for.
GPU_DEPLOYMENTS = NETWORK_DEPLOYMENTS
GPU_PER_REPLICA = 0.25
CLUSTER_CHANGES = "proxy on 0.0.0.0; network replicas ask for a quarter of a GPU"
_BLOCK = re.compile(r"^(  serveConfigV2: \|\n)((?:    .*\n|\n)+)", re.MULTILINE)


def cluster_serve_config(serve_config: dict[str, Any]) -> dict[str, Any]:
    """serve/config.yaml as the cluster runs it."""
    config = copy.deepcopy(serve_config)
    config["http_options"] = {**config.get("http_options", {}), "host": "0.0.0.0"}
    for app in config["applications"]:
        for deployment in app.get("deployments", []):
            name = deployment["name"]
            if name in GPU_DEPLOYMENTS:
                # A config's ray_actor_options replace the code's whole: keep its CPUs.
                code = DEPLOYMENT_OPTIONS[name]["ray_actor_options"]
                options = deployment.setdefault("ray_actor_options", dict(code))
                options["num_gpus"] = GPU_PER_REPLICA
    return config


def render_block(serve_config: dict[str, Any]) -> str:
    class NoAliases(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    text = yaml.dump(
        cluster_serve_config(serve_config), Dumper=NoAliases, sort_keys=False, width=100
    )
    return "".join(f"    {line}\n" if line else "\n" for line in text.splitlines())


def synced_manifest(manifest: str, serve_config: dict[str, Any]) -> str:
    if not _BLOCK.search(manifest):
        raise ValueError(f"{RAYSERVICE} has no 'serveConfigV2: |' block under spec")
    return _BLOCK.sub(lambda m: m.group(1) + render_block(serve_config), manifest, count=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if stale")
    args = parser.parse_args()
    manifest = RAYSERVICE.read_text()
    synced = synced_manifest(manifest, yaml.safe_load(SERVE_CONFIG.read_text()))
    if args.check:
        if synced != manifest:
            print(f"{RAYSERVICE} is out of date: run python cluster/sync_rayservice.py")
            return 1
        return 0
    RAYSERVICE.write_text(synced)
    print(f"wrote serveConfigV2 of {RAYSERVICE} from {SERVE_CONFIG}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
