"""Serving latency and throughput over HTTP on loopback, and autoscaling under load.

    python benchmarks/bench_serve.py --data ../shared/data/busi --tracking-uri sqlite:///mlflow.db
    python benchmarks/bench_serve.py --data ../shared/data/busi --model-folder model/

Starts a local Ray and the Serve app (models by alias from MLflow, or a model folder), then:
1. times an in-process ``Segmenter.segment`` call (decode included) on the images;
2. sends ``--requests`` POST /v1/segment requests at each concurrency (default 1, 4,
   16, 64) from an async client, and prints p50/p95/p99 latency, requests/s, and the
   count and p95 latency of the errors (beyond capacity: Serve's 503s);
3. prints serve p50 at concurrency 1 divided by the in-process p50, and the p50 of
   Serve's own floor: an app of the same shape (HTTP, ingress, two hops at once, one
   after) whose deployments do no work, so the framework's share is plain;
4. samples the running replicas of every network deployment before, during and
   after the load (waiting for the downscale) to show autoscaling at work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import threading
import time
from pathlib import Path

import aiohttp
import numpy as np
import ray
import torch
from ray import serve
from ray.serve.handle import DeploymentHandle
from segmenters import add_model_arguments, load_segmenter

from tumorseg.bulk.listing import list_inputs
from tumorseg.io import load_image
from tumorseg.serving.app import build_app

NETWORKS = ("Classifier", "Binarizer", "GrayNet", "MultiScaleFCN")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="../shared/data/busi")
    parser.add_argument("--images", type=int, default=40, help="distinct images, cycled")
    parser.add_argument(
        "--requests", type=int, default=300, help="requests per concurrency (long enough to scale)"
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    add_model_arguments(parser)
    parser.add_argument("--settle-s", type=float, default=60, help="max wait for downscale")
    parser.add_argument("--torch-threads", type=int, help="per model replica (default: Ray's)")
    return parser.parse_args()


def percentiles(latencies: list[float]) -> str:
    p50, p95, p99 = np.percentile(np.asarray(latencies) * 1000, [50, 95, 99])
    return f"p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  p99 {p99:7.1f} ms"


def replicas() -> dict[str, int]:
    """Running replicas per network deployment."""
    deployments = serve.status().applications["tumorseg"].deployments
    return {name: deployments[name].replica_states.get("RUNNING", 0) for name in NETWORKS}


class ReplicaSampler:
    """The largest replica count of each deployment seen while a block runs."""

    def __init__(self) -> None:
        self.peak = dict.fromkeys(NETWORKS, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for name, count in replicas().items():
                self.peak[name] = max(self.peak[name], count)

    def __enter__(self) -> ReplicaSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


async def load(url: str, bodies: list[bytes], requests: int, concurrency: int, steps=None):
    """Latencies of answered and of refused requests, and the seconds it all took;
    ``steps`` (a list) receives each JSON answer's ``timings_ms`` and ``work_ms``."""
    latencies, errors = [], []
    limit = asyncio.Semaphore(concurrency)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def one(i: int) -> None:
            async with limit:
                start = time.perf_counter()
                async with session.post(
                    f"{url}/v1/segment",
                    data=bodies[i % len(bodies)],
                    headers={"Content-Type": "image/png"},
                ) as response:
                    body = await response.read()
                    taken = time.perf_counter() - start
                    (latencies if response.status == 200 else errors).append(taken)
                    if steps is not None and response.status == 200:
                        answer = json.loads(body)
                        steps.append((answer["timings_ms"], answer["work_ms"]))

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(requests)))
    return latencies, errors, time.perf_counter() - start


@serve.deployment(ray_actor_options={"num_cpus": 0})  # no work: needs no CPU of the app
class Echo:
    async def __call__(self, image: np.ndarray) -> np.ndarray:
        return image


@serve.deployment(ray_actor_options={"num_cpus": 0})  # no work: needs no CPU of the app
class EchoIngress:
    """The app's critical path without its work: read the body, call two deployments
    at once (classifier, binarizer), then one (gray net), by value, answer JSON. It
    passes the raw body, smaller than the app's decoded image: a lower bound."""

    def __init__(self, *stages: DeploymentHandle) -> None:
        self.stages = [stage.options(_by_reference=False) for stage in stages]

    async def __call__(self, request) -> dict[str, int]:  # a Starlette request
        image = np.frombuffer(await request.body(), np.uint8)
        first, second, third = self.stages
        await asyncio.gather(first.remote(image), second.remote(image))
        return {"bytes": int((await third.remote(image)).size)}


def step_medians(steps: list[tuple[dict, dict]]) -> str:
    """Median ms of each step as the ingress saw it (hop included) and, in brackets,
    of the replicas' own compute for it."""
    seen, work = {}, {}
    for timings, computed in steps:
        for name, ms in timings.items():
            seen.setdefault(name, []).append(ms)
        for name, ms in computed.items():
            work.setdefault(name, []).append(ms)
    return "  ".join(
        f"{name} {np.median(seen[name]):.1f}"
        + (f" (work {np.median(work[name]):.1f})" if name in work else "")
        for name in seen
    )


def in_process_latencies(
    bodies: list[bytes], args: argparse.Namespace, threads: int | None = None
) -> list[float]:
    """``Segmenter.segment`` on each decoded body, on ``threads`` torch threads (this
    process's own count when ``None``)."""
    own = torch.get_num_threads()
    torch.set_num_threads(threads or own)
    try:
        segmenter = load_segmenter(args)
        segmenter.segment(load_image(bodies[0]))  # warm-up
        latencies = []
        for body in bodies:
            start = time.perf_counter()
            segmenter.segment(load_image(body))
            latencies.append(time.perf_counter() - start)
        return latencies
    finally:
        torch.set_num_threads(own)


def main() -> None:
    args = parse_args()
    if not (args.tracking_uri or args.model_folder):
        raise SystemExit("give the models: --tracking-uri or --model-folder")
    paths = [Path(item.absolute_path) for item in list_inputs(args.data)]
    step = max(1, len(paths) // args.images)
    bodies = [p.read_bytes() for p in paths[::step][: args.images]]
    print(f"{len(bodies)} images from {args.data}")
    local = in_process_latencies(bodies, args)
    print(f"in-process Segmenter.segment: {percentiles(local)}")
    # A replica's share of the CPU (0.6 on two cores) gives torch one thread.
    replica_threads = args.torch_threads or 1
    one = in_process_latencies(bodies, args, replica_threads)
    print(f"same, {replica_threads} torch thread(s) as each model replica: {percentiles(one)}")

    ray.init(address="local", log_to_driver=False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(
        build_app(
            {
                **(
                    {"model_folder": str(Path(args.model_folder).resolve()), "engine": args.engine}
                    if args.model_folder
                    else {"model_alias": args.model_alias, "tracking_uri": args.tracking_uri}
                ),
                **({"torch_threads": args.torch_threads} if args.torch_threads else {}),
            }
        ),
        name="tumorseg",
        route_prefix="/",
    )
    serve.run(
        EchoIngress.bind(*(Echo.options(name=f"Echo{i}").bind() for i in range(3))),
        name="floor",
        route_prefix="/floor",
    )
    url = f"http://127.0.0.1:{port}"
    asyncio.run(load(url, bodies[:4], 8, 1))  # warm-up
    asyncio.run(load(f"{url}/floor", bodies[:4], 8, 1))
    floor, _, _ = asyncio.run(load(f"{url}/floor", bodies, args.requests, 1))
    serve.delete("floor")
    print(f"Serve floor (same hops, no work), concurrency 1: {percentiles(floor)}")
    print(f"replicas before load: {replicas()}")
    p50_serve = None
    for concurrency in args.concurrency:
        with ReplicaSampler() as sampler:
            steps: list = []
            latencies, errors, seconds = asyncio.run(
                load(url, bodies, args.requests, concurrency, steps)
            )
        rate = len(latencies) / seconds
        refused = f" (p95 {np.percentile(errors, 95) * 1000:.0f} ms)" if errors else ""
        print(
            f"concurrency {concurrency:3d}: {percentiles(latencies)}  {rate:6.2f} req/s  "
            f"errors {len(errors)}{refused}  peak replicas {sampler.peak}"
        )
        if concurrency == 1:
            p50_serve = float(np.median(latencies))
            print(f"  each step at concurrency 1, p50: {step_medians(steps)}")
    if p50_serve is not None:
        print(f"serve p50 / in-process p50 at concurrency 1: {p50_serve / np.median(local):.2f}")
    print(f"floor p50 / in-process p50: {np.median(floor) / np.median(local):.2f}")
    deadline = time.monotonic() + args.settle_s
    while time.monotonic() < deadline and any(n > 1 for n in replicas().values()):
        time.sleep(1)
    print(f"replicas after load (waited up to {args.settle_s:.0f} s): {replicas()}")
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
