"""The model deployments of the Serve app: Classifier, Binarizer, GrayNet, MultiScaleFCN.

Every image goes through the Classifier, the Binarizer and the GrayNet (the first
stage, which decides tumor presence and route); the MultiScaleFCN runs only on the
images routed to it.

Each one wraps a stage method of :class:`~tumorseg.inference.Segmenter` (the same
code as ``segment_batch`` and the bulk job) and batches concurrent requests with
``@serve.batch``, opportunistically: a batch takes the requests that queued while
the previous one ran and never waits for more (``batch_wait_timeout_s=0``): on a
lone request any wait is pure latency, and under load batches form anyway.
Each loads only its own network, from MLflow (``load_model_set``) or a model
folder. A deployment's ``user_config`` (``model_alias``/``model_version``/
``tracking_uri``/``model_folder``) switches the set of a running replica: the new
set is loaded next to the old one and swapped in one assignment, so requests in
flight finish on the set they started with and none is dropped. Network calls run
in a worker thread so the replica keeps answering health checks while it computes.
Deployment options come from :mod:`tumorseg.serving.options`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from ray import serve

from tumorseg.config import Route
from tumorseg.inference import FirstStageOutput, Segmenter
from tumorseg.inference.model_folder import read_folder_config
from tumorseg.inference.result import SegmentationResult
from tumorseg.serving.options import deployment_options
from tumorseg.serving.settings import ModelChoice, ServeSettings
from tumorseg.tracking import load_model_config, load_model_set

log = logging.getLogger("ray.serve")


class _Reconfigurable:
    """Serves one :class:`ModelChoice`; ``reconfigure`` (Serve's user_config) switches it.

    A switch that fails (a set that does not load, a bad user_config) leaves the
    replica serving the set it had (a new replica: the app's own, loaded first), says so
    in its readiness answer and logs why: raising would make Serve replace every
    replica, each of which would fail again. Every result names the versions it used.
    """

    def __init__(self, settings: ServeSettings) -> None:
        self._default = settings.models
        self.choice: ModelChoice | None = None
        self.switch_error = ""
        self._load(settings.models)

    def reconfigure(self, user_config: dict[str, Any] | None) -> None:
        try:
            choice = ModelChoice.from_user_config(user_config, self._default)
            if choice != self.choice:
                self._load(choice)
        except Exception as error:
            self.switch_error = f"{type(error).__name__}: {error}"[:500]
            log.error("%s keeps %s: the switch failed: %s", type(self).__name__, self.choice, error)
            return
        self.switch_error = ""

    def _load(self, choice: ModelChoice) -> None:
        raise NotImplementedError

    def _loaded(self) -> str:
        """What this replica serves; raises when it holds nothing."""
        raise NotImplementedError

    async def ready(self) -> str:
        """For the ingress's readiness check (with a failed switch, what failed)."""
        loaded = self._loaded()
        return f"{loaded} (switch failed: {self.switch_error})" if self.switch_error else loaded

    def check_health(self) -> None:
        """Serve's health check: a replica without its models is restarted."""
        self._loaded()


class _ModelStage(_Reconfigurable):
    """Holds a Segmenter for the current choice, with only the networks it runs."""

    #: The networks this deployment runs; the set's others are not loaded.
    roles: ClassVar[tuple[str, ...]]

    def __init__(self, settings: ServeSettings) -> None:
        if settings.torch_threads is not None:
            import torch

            torch.set_num_threads(settings.torch_threads)
        self.engine = settings.engine
        super().__init__(settings)

    def _load(self, choice: ModelChoice) -> None:
        # No device named: the replica's GPU when it was given one.
        if choice.model_folder:
            segmenter = Segmenter.from_folder(
                choice.model_folder, engine=self.engine, roles=self.roles
            )
        else:
            models, config = load_model_set(
                choice.tracking_uri,
                choice.selector,
                names=choice.names,
                device=None,
                roles=self.roles,
            )
            segmenter = Segmenter(models, config)
        self.segmenter, self.choice = segmenter, choice
        log.info("%s serves %s", type(self).__name__, segmenter.models.versions)

    def versions(self) -> dict[str, str]:
        return dict(self.segmenter.models.versions)

    def _loaded(self) -> str:
        versions = self.segmenter.models.versions
        for role in self.roles:
            self.segmenter.models.network(role)  # raises MissingNetworkError
        return ", ".join(versions[role] for role in self.roles)


@serve.deployment(**deployment_options("Classifier"))
class Classifier(_ModelStage):
    """Class probabilities (normal / homogeneous / heterogeneous) and its version."""

    roles = ("classifier",)

    async def classify(self, gray: np.ndarray) -> tuple[np.ndarray, str]:
        return _raised(await self._classify(gray))

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0)
    async def _classify(self, grays: list[np.ndarray]) -> list[tuple[np.ndarray, str] | Exception]:
        segmenter = self.segmenter
        version = segmenter.models.versions["classifier"]

        def run(batch: list[np.ndarray]) -> list[tuple[np.ndarray, str]]:
            return [(p, version) for p in segmenter.class_probabilities(batch)]

        return await asyncio.to_thread(each_alone_on_failure, run, grays)


@serve.deployment(**deployment_options("Binarizer"))
class Binarizer(_Reconfigurable):
    """The binarization module: no network, only the set's binarizer settings."""

    def _load(self, choice: ModelChoice) -> None:
        if choice.model_folder:
            config = read_folder_config(choice.model_folder)
        else:
            config, _ = load_model_config(choice.tracking_uri, choice.selector, names=choice.names)
        self.binarizer, self.choice = config.binarizer, choice

    def _loaded(self) -> str:
        return f"binarizer {self.binarizer.method}"

    async def binarize(self, gray: np.ndarray) -> np.ndarray:
        from tumorseg.inference.gray_branch import binarize_images

        return (await asyncio.to_thread(binarize_images, [gray], self.binarizer))[0]


@dataclass
class FirstStageOutcome:
    """What the GrayNet deployment answers: the first stage's output, and the finished
    result unless the FCN must run."""

    first: FirstStageOutput
    result: SegmentationResult | None


@serve.deployment(**deployment_options("GrayNet"))
class GrayNet(_ModelStage):
    """Gray recognition network on the binarized image, for every image; decides
    presence and route, and finishes the images that need no FCN."""

    roles = ("graynet",)  # the Classifier deployment's probabilities come with each request

    async def segment(
        self, request: tuple[np.ndarray, np.ndarray, tuple[np.ndarray, str], Route | None]
    ) -> FirstStageOutcome:
        return _raised(await self._segment(request))

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.0)
    async def _segment(
        self, requests: list[tuple[np.ndarray, np.ndarray, tuple[np.ndarray, str], Route | None]]
    ) -> list[FirstStageOutcome | Exception]:
        segmenter = self.segmenter

        def run(batch: list) -> list[FirstStageOutcome]:
            grays, binaries, classified, routes = (list(c) for c in zip(*batch, strict=True))
            classes, versions = (list(c) for c in zip(*classified, strict=True))
            firsts = segmenter.first_stage(
                grays, routes, classes=classes, classifier_versions=versions, binaries=binaries
            )
            return [
                FirstStageOutcome(first, None if first.needs_fcn else segmenter.finish(gray, first))
                for gray, first in zip(grays, firsts, strict=True)
            ]

        return await asyncio.to_thread(each_alone_on_failure, run, requests)


@serve.deployment(**deployment_options("MultiScaleFCN"))
class MultiScaleFCN(_ModelStage):
    """Iterative multi-scale FCN, its first pass guided by the gray net's map and every
    later pass by the last (heterogeneous route); fuses and finishes the image."""

    roles = ("fcn",)

    async def segment(self, request: tuple[np.ndarray, FirstStageOutput]) -> SegmentationResult:
        return _raised(await self._segment(request))

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.0)
    async def _segment(
        self, requests: list[tuple[np.ndarray, FirstStageOutput]]
    ) -> list[SegmentationResult | Exception]:
        segmenter = self.segmenter

        def run(batch: list) -> list[SegmentationResult]:
            grays, firsts = (list(c) for c in zip(*batch, strict=True))
            fcn_maps = segmenter.fcn_stage(grays, firsts)
            return [
                segmenter.finish(gray, first, fcn_map)
                for gray, first, fcn_map in zip(grays, firsts, fcn_maps, strict=True)
            ]

        return await asyncio.to_thread(each_alone_on_failure, run, requests)


def each_alone_on_failure(run: Callable[[list], list], items: list) -> list:
    """``run`` on the batch; if it raises, on each item alone, so that one bad request
    fails by itself and not every request batched with it (its error in its place)."""
    try:
        return run(items)
    except Exception:
        if len(items) == 1:
            raise
    answers: list = []
    for item in items:
        try:
            answers.extend(run([item]))
        except Exception as error:
            answers.append(error)
    return answers


def _raised(answer: Any) -> Any:
    if isinstance(answer, Exception):
        raise answer
    return answer
