"""Two Ray nodes on one machine, the second killed mid-run: training, bulk and serving
survive it, with models registered to and loaded from an `mlflow server` over HTTP.

The head and the second node are `ray start` processes (tests/ray_nodes.py); the jobs
go in with `ray job submit`, as on a real cluster. One module-scoped cluster and one
training run (which also produces the models the other tests load) keep it affordable.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from bulk_outputs import outcome_counts
from mlflow import MlflowClient
from ray_nodes import RayNodes, free_port, registered_checkpoint

from tumorseg.bulk.ledger import RESULTS_DIR
from tumorseg.bulk.listing import list_inputs
from tumorseg.data import discover_busi

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 3
MODELS = ("tumorseg-classifier", "tumorseg-graynet", "tumorseg-fcn")
DEPLOYMENTS = ("Ingress", "Classifier", "Binarizer", "GrayNet", "MultiScaleFCN")


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on loopback: sqlite backend store, local artifact root, artifacts
    proxied over HTTP (clients never touch the artifact folder themselves)."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("mlflow")), "server",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"), "--serve-artifacts",
    ]  # fmt: skip
    server = subprocess.Popen(
        command,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
        stdout=(root / "server.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            os.killpg(server.pid, signal.SIGKILL)
            pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
        time.sleep(1)
    yield url
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=30)


@pytest.fixture(scope="module")
def cluster():
    nodes = RayNodes()
    nodes.start_head(num_cpus=2)
    yield nodes
    nodes.stop()


@dataclass
class TrainedAcrossNodes:
    worker_nodes: set[str]  # nodes that held training workers before the kill
    second_node: str
    head_node: str
    job: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def trained(cluster, mlflow_server, busi24, tmp_path_factory) -> TrainedAcrossNodes:
    """jobs/train.py submitted with its workers spread over two nodes; the second node
    is killed once a checkpoint is registered and both nodes hold workers."""
    (head,) = cluster.alive_node_ids()
    second = cluster.add_node()
    storage = tmp_path_factory.mktemp("checkpoints")
    entrypoint = [
        "python", "jobs/train.py", "--preset", "smoke", "--epochs", str(EPOCHS),
        "--no-baseline", "--num-workers", "2", "--cpus-per-worker", "0.5",
        "--placement-strategy", "SPREAD", "--max-failures", "3",
        "--data", str(busi24), "--tracking-uri", mlflow_server,
        "--storage-path", str(storage), "--experiment", "multinode",
    ]  # fmt: skip
    with ThreadPoolExecutor(1) as pool:
        job = pool.submit(cluster.submit, entrypoint, REPO)
        nodes: set[str] = set()
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and not job.done():
            workers = {
                node for node in (head, second.node_id) if cluster.actors_on(node, "RayTrainWorker")
            }
            if workers == {head, second.node_id} and any(
                registered_checkpoint(run) for run in storage.iterdir() if run.is_dir()
            ):
                nodes = workers
                break
            time.sleep(0.2)
        if nodes:
            cluster.kill(second)
        done = job.result(timeout=900)
    return TrainedAcrossNodes(nodes, second.node_id, head, done)


def test_training_spreads_over_both_nodes_and_survives_losing_one(trained, mlflow_server):
    output = trained.job.stdout[-3000:] + trained.job.stderr[-3000:]
    assert trained.worker_nodes == {trained.head_node, trained.second_node}, (
        "training never had workers on both nodes with a checkpoint saved\n" + output
    )
    assert trained.job.returncode == 0 and "succeeded" in output.lower(), output
    client = MlflowClient(mlflow_server, registry_uri=mlflow_server)  # over HTTP
    for name in MODELS:
        assert client.get_model_version_by_alias(name, "champion").version == "1"
    (experiment,) = [e for e in client.search_experiments() if e.name == "multinode"]
    children = client.search_runs([experiment.experiment_id], "params.role != ''")
    restarts = {run.data.params["role"]: int(run.data.params["restarts"]) for run in children}
    assert max(restarts.values()) >= 1, f"no network resumed from a checkpoint: {restarts}"
    for run in children:  # every network ran all its epochs, resumed rather than restarted
        # (train_loss: on 24 images a network's validation shard may be empty, e.g. the
        # FCN's, which holds heterogeneous lesions only, and then has no val_loss)
        epochs = client.get_metric_history(run.info.run_id, "train_loss")
        assert sorted(m.step for m in epochs) == list(range(EPOCHS))


def test_bulk_segmentation_loses_and_repeats_nothing_when_a_node_dies(
    cluster, trained, mlflow_server, busi_root, tmp_path
):
    archive = tmp_path / "archive"
    archive.mkdir()
    for i, record in enumerate(discover_busi(busi_root)[:16]):
        shutil.copy(record.path, archive / f"{i:02d}.png")
    (archive / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    output = tmp_path / "segmented"
    second = cluster.add_node()
    entrypoint = [
        "python", "jobs/segment.py", "--input", str(archive), "--output", str(output),
        "--tracking-uri", mlflow_server, "--batch-size", "2", "--concurrency", "2",
        "--cpus-per-actor", "0.25",
    ]  # fmt: skip
    with ThreadPoolExecutor(1) as pool:
        job = pool.submit(cluster.submit, entrypoint, REPO)
        held_actors: list[str] = []
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not job.done():
            held_actors = cluster.actors_on(second.node_id, "MapWorker")
            if held_actors and any((output / RESULTS_DIR).glob("part-*.parquet")):
                break
            time.sleep(0.1)
        assert held_actors, "no bulk actor ever ran on the second node"
        done_at_kill = sum(outcome_counts(output).values())
        cluster.kill(second)
        done = job.result(timeout=900)
    output_text = done.stdout[-3000:] + done.stderr[-3000:]
    assert done.returncode == 0, output_text
    assert done_at_kill < 17, "the kill must land mid-run"
    counts = outcome_counts(output)
    assert counts == Counter({item.source_path: 1 for item in list_inputs(archive)})
    assert len(counts) == 17
    assert len(list((output / "masks").rglob("*.png"))) == 16


def post_with_retries(url: str, body: bytes, attempts: int = 30) -> tuple[int, int]:
    """(final status, retries) for one request; the client retries what a dying node
    breaks (connection errors, 5xx), as a PACS plug-in would."""
    for attempt in range(attempts):
        request = urllib.request.Request(
            url, data=body, headers={"Content-Type": "image/png"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return answer.status, attempt
        except urllib.error.HTTPError as error:
            if error.code < 500:
                return error.code, attempt
        except OSError:
            pass
        time.sleep(0.5)
    return 0, attempts


def test_serve_keeps_answering_when_a_replica_node_dies(cluster, trained, mlflow_server, busi_root):
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

    second = cluster.add_node()
    port = free_port()
    serve_client = ServeSubmissionClient(cluster.dashboard_url)
    serve_client.deploy_applications(
        {
            "proxy_location": "HeadOnly",  # one machine: two proxies would share a port
            "http_options": {"host": "127.0.0.1", "port": port},
            "applications": [
                {
                    "name": "tumorseg",
                    "route_prefix": "/",
                    "import_path": "tumorseg.serving.app:build_app",
                    "args": {"tracking_uri": mlflow_server},
                    "deployments": [
                        {"name": name, "num_replicas": 2, "ray_actor_options": {"num_cpus": 0.1}}
                        for name in DEPLOYMENTS
                    ],
                }
            ],
        }
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        app = serve_client.get_serve_details().get("applications", {}).get("tumorseg", {})
        if app.get("status") == "RUNNING":
            break
        time.sleep(1)
    else:
        pytest.fail(f"the app did not start: {serve_client.get_serve_details()}")
    on_second = cluster.actors_on(second.node_id, "ServeReplica:tumorseg:")
    assert on_second, "no replica was placed on the second node"

    images = [Path(r.path).read_bytes() for r in discover_busi(busi_root)[:6]]
    url = f"http://127.0.0.1:{port}/v1/segment"
    outcomes: list[tuple[int, int]] = []
    killed = threading.Event()

    def stream() -> None:
        for i in range(24):
            outcomes.append(post_with_retries(url, images[i % len(images)]))
            if i == 8:
                killed.wait(timeout=120)  # the rest are sent while and after it dies

    client = threading.Thread(target=stream)
    client.start()
    while len(outcomes) < 8:
        time.sleep(0.1)
    cluster.kill(second)
    killed.set()
    client.join(timeout=600)
    serve_client.delete_applications()
    assert len(outcomes) == 24
    assert [status for status, _ in outcomes] == [200] * 24, outcomes
