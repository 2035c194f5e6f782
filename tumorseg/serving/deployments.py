"""The model deployments of the Serve app: Classifier, Binarizer, GrayNet, MultiScaleFCN.

Each one wraps a stage method of :class:`~tumorseg.inference.Segmenter` (the same
code as ``segment_batch`` and the bulk job) and batches concurrent requests with
``@serve.batch``, opportunistically: a batch takes the requests that queued while
the previous one ran and never waits for more (``batch_wait_timeout_s=0``): on a
lone request any wait is pure latency, and under load batches form anyway.
The models come from MLflow through ``load_model_set``; a deployment's
``user_config`` (``model_alias``/``model_version``/``tracking_uri``) switches the
set of a running replica: the new set is loaded next to the old one and swapped in
one assignment, so requests in flight finish on the set they started with and none
is dropped. Network calls run in a worker thread so the
replica keeps answering health checks while it computes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np
from ray import serve

from tumorseg.config import Route
from tumorseg.inference import Segmenter
from tumorseg.inference.result import SegmentationResult
from tumorseg.serving.settings import ModelChoice, ServeSettings
from tumorseg.tracking import load_model_config, load_model_set

log = logging.getLogger("ray.serve")

#: Defaults sized for one small machine (fractional CPUs); serve/config.yaml overrides.
NETWORK_OPTIONS: dict[str, Any] = {
    "ray_actor_options": {"num_cpus": 0.3},
    "max_ongoing_requests": 16,
    "max_queued_requests": 64,
    "autoscaling_config": {
        "min_replicas": 1,
        "max_replicas": 2,
        "target_ongoing_requests": 4,
        "upscale_delay_s": 2,
        "downscale_delay_s": 15,
        "metrics_interval_s": 1,
        "look_back_period_s": 5,
    },
}


class _Reconfigurable:
    """Serves one :class:`ModelChoice`; ``reconfigure`` (Serve's user_config) switches it."""

    def __init__(self, settings: ServeSettings) -> None:
        self._default = settings.models
        self.choice: ModelChoice | None = None
        self._load(settings.models)

    def reconfigure(self, user_config: dict[str, Any] | None) -> None:
        choice = ModelChoice.from_user_config(user_config, self._default)
        if choice != self.choice:
            self._load(choice)

    def _load(self, choice: ModelChoice) -> None:
        raise NotImplementedError


class _ModelStage(_Reconfigurable):
    """Holds a Segmenter for the current choice."""

    def __init__(self, settings: ServeSettings) -> None:
        if settings.torch_threads is not None:
            import torch

            torch.set_num_threads(settings.torch_threads)
        super().__init__(settings)

    def _load(self, choice: ModelChoice) -> None:
        models, config = load_model_set(
            choice.tracking_uri,
            **choice.registry_query(),
            device=None,  # the replica's GPU when it was given one
        )
        self.segmenter, self.choice = Segmenter(models, config), choice
        log.info("%s serves %s", type(self).__name__, models.versions)

    def versions(self) -> dict[str, str]:
        return dict(self.segmenter.models.versions)


@serve.deployment(name="Classifier", **NETWORK_OPTIONS)
class Classifier(_ModelStage):
    """Routes each image: ``(route, confidence, classifier version)``."""

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0)
    async def classify(self, grays: list[np.ndarray]) -> list[tuple[Route, float, str]]:
        segmenter = self.segmenter
        decided = await asyncio.to_thread(segmenter.classify, grays)
        version = segmenter.models.versions["classifier"]
        return [(route, confidence, version) for route, confidence in decided]


@serve.deployment(
    name="Binarizer",
    ray_actor_options={"num_cpus": 0.1},
    max_ongoing_requests=32,
    max_queued_requests=128,
    autoscaling_config={**NETWORK_OPTIONS["autoscaling_config"], "target_ongoing_requests": 8},
)
class Binarizer(_Reconfigurable):
    """The binarization module: no network, only the set's binarizer settings."""

    def _load(self, choice: ModelChoice) -> None:
        config, _ = load_model_config(choice.tracking_uri, **choice.registry_query())
        self.binarizer, self.choice = config.binarizer, choice

    async def binarize(self, gray: np.ndarray) -> np.ndarray:
        from tumorseg.inference.gray_branch import binarize_images

        return (await asyncio.to_thread(binarize_images, [gray], self.binarizer))[0]


class _BranchStage(_ModelStage):
    route: Route

    async def _segment(
        self,
        grays: list[np.ndarray],
        confidences: list[float],
        binaries: list[np.ndarray] | None = None,
    ) -> list[SegmentationResult]:
        segmenter, route = self.segmenter, self.route

        def run() -> list[SegmentationResult]:
            probabilities = segmenter.branch_probabilities(route, grays, binaries)
            return [
                segmenter.finish(gray, probability, route, confidence)
                for gray, probability, confidence in zip(
                    grays, probabilities, confidences, strict=True
                )
            ]

        return await asyncio.to_thread(run)


@serve.deployment(name="GrayNet", **NETWORK_OPTIONS)
class GrayNet(_BranchStage):
    """Gray recognition network on the binarized image (homogeneous route)."""

    route: Route = "homogeneous"

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.0)
    async def segment(
        self, requests: list[tuple[np.ndarray, np.ndarray, float]]
    ) -> list[SegmentationResult]:
        grays, binaries, confidences = (list(column) for column in zip(*requests, strict=True))
        return await self._segment(grays, confidences, binaries)


@serve.deployment(name="MultiScaleFCN", **NETWORK_OPTIONS)
class MultiScaleFCN(_BranchStage):
    """Iterative multi-scale FCN, every pass guided by the last (heterogeneous route)."""

    route: Route = "heterogeneous"

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.0)
    async def segment(self, requests: list[tuple[np.ndarray, float]]) -> list[SegmentationResult]:
        grays, confidences = (list(column) for column in zip(*requests, strict=True))
        return await self._segment(grays, confidences)
