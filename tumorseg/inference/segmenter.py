"""The fused pipeline: classifier → (binarizer + gray net) or iterative multi-scale FCN.

:class:`Segmenter` is the one inference path: the batch job and the Serve
deployments call these same stage functions.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from tumorseg.config import Route, SegmenterConfig
from tumorseg.inference.gray_branch import segment_homogeneous
from tumorseg.inference.models import ModelSet
from tumorseg.inference.multiscale import segment_heterogeneous
from tumorseg.inference.result import SegmentationResult
from tumorseg.inference.routing import predict_routes
from tumorseg.inference.tensors import select_device
from tumorseg.preprocessing.grayscale import to_grayscale
from tumorseg.preprocessing.heterogeneity import heterogeneity_score


class Segmenter:
    """Holds the three models and a config; segments one image or a batch."""

    def __init__(
        self,
        models: ModelSet,
        config: SegmenterConfig | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        self.config = config or SegmenterConfig()
        self.device = select_device(device)
        self.models = models.to(self.device)

    @classmethod
    def untrained(
        cls,
        seed: int = 0,
        config: SegmenterConfig | None = None,
        device: str | torch.device | None = None,
    ) -> Segmenter:
        """A segmenter with freshly initialised networks: for tests, demos and speed only."""
        config = config or SegmenterConfig()
        return cls(ModelSet.untrained(config.networks, seed), config, device)

    def segment(self, image: np.ndarray, route: Route | None = None) -> SegmentationResult:
        """Segment one image (gray, RGB or RGBA array); ``route`` forces a branch."""
        return self.segment_batch([image], None if route is None else [route])[0]

    def segment_batch(
        self, images: Sequence[np.ndarray], routes: Sequence[Route] | None = None
    ) -> list[SegmentationResult]:
        """Segment many images, batching each network across them.

        Results equal per-image :meth:`segment` calls. ``routes`` forces each
        image's branch (an external decision, e.g. an expert's): the classifier is
        then skipped and the route confidence is 1.0.
        """
        grays = [to_grayscale(image) for image in images]
        timings: list[dict[str, float]] = [{} for _ in grays]
        decided = self._decide_routes(grays, routes, timings)
        probabilities: list[np.ndarray | None] = [None] * len(grays)
        for route, run_branch in (
            ("homogeneous", self._run_homogeneous),
            ("heterogeneous", self._run_heterogeneous),
        ):
            members = [i for i, (r, _) in enumerate(decided) if r == route]
            if not members:
                continue
            start = time.perf_counter()
            for i, probability in zip(
                members, run_branch([grays[i] for i in members]), strict=True
            ):
                probabilities[i] = probability
            _share(timings, members, route, time.perf_counter() - start)
        return [
            self._result(gray, probability, route, confidence, timing)
            for gray, probability, (route, confidence), timing in zip(
                grays, probabilities, decided, timings, strict=True
            )
        ]

    def _decide_routes(
        self,
        grays: list[np.ndarray],
        routes: Sequence[Route] | None,
        timings: list[dict[str, float]],
    ) -> list[tuple[Route, float]]:
        if routes is not None:
            if len(routes) != len(grays):
                raise ValueError(f"got {len(routes)} routes for {len(grays)} images")
            bad = sorted({r for r in routes if r not in ("homogeneous", "heterogeneous")})
            if bad:
                raise ValueError(f"unknown routes {bad}")
            return [(route, 1.0) for route in routes]
        start = time.perf_counter()
        decided = predict_routes(self.models.classifier, grays, self.config.networks, self.device)
        _share(timings, range(len(grays)), "classify", time.perf_counter() - start)
        return decided

    def _run_homogeneous(self, grays: list[np.ndarray]) -> list[np.ndarray]:
        config = self.config
        return segment_homogeneous(
            self.models.graynet, grays, config.networks, config.binarizer, self.device
        )

    def _run_heterogeneous(self, grays: list[np.ndarray]) -> list[np.ndarray]:
        config = self.config
        return segment_heterogeneous(
            self.models.fcn, grays, config.networks, config.multiscale, self.device
        )

    def _result(
        self,
        gray: np.ndarray,
        probability: np.ndarray | None,
        route: Route,
        confidence: float,
        timings: dict[str, float],
    ) -> SegmentationResult:
        assert probability is not None
        mask = probability >= self.config.mask_threshold
        start = time.perf_counter()
        score = heterogeneity_score(gray, mask, smoothing_sigma=self.config.triage.smoothing_sigma)
        timings["score"] = time.perf_counter() - start
        return SegmentationResult(
            mask=mask,
            route=route,
            route_confidence=confidence,
            heterogeneity_score=score,
            pass_tiles=self.config.multiscale.pass_tiles if route == "heterogeneous" else (),
            timings=timings,
            model_versions=dict(self.models.versions),
        )


def _share(timings: list[dict[str, float]], members, stage: str, seconds: float) -> None:
    members = list(members)
    for i in members:
        timings[i][stage] = seconds / len(members)
