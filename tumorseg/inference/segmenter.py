"""The fused pipeline: classifier → (binarizer + gray net) or iterative multi-scale FCN.

:class:`Segmenter` is the one inference path: the batch job and the Serve
deployments call these same stage functions.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from tumorseg.config import ROUTES, Route, SegmenterConfig
from tumorseg.inference.gray_branch import segment_homogeneous
from tumorseg.inference.models import ModelSet
from tumorseg.inference.multiscale import segment_heterogeneous
from tumorseg.inference.postprocess import largest_component
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
        for route in ROUTES:
            members = [i for i, (r, _) in enumerate(decided) if r == route]
            if not members:
                continue
            start = time.perf_counter()
            branch = self.branch_probabilities(route, [grays[i] for i in members])
            for i, probability in zip(members, branch, strict=True):
                probabilities[i] = probability
            _share(timings, members, route, time.perf_counter() - start)
        return [
            self.finish(gray, probability, route, confidence, timing)
            for gray, probability, (route, confidence), timing in zip(
                grays, probabilities, decided, timings, strict=True
            )
        ]

    # The stages below are public so that pipelines which run each stage in its own
    # worker (bulk segmentation on Ray Data, Serve deployments) call this same code.

    def classify(self, grays: Sequence[np.ndarray]) -> list[tuple[Route, float]]:
        """``(route, confidence)`` per 2-D ``uint8`` image, from the classifier."""
        return predict_routes(
            self.models.classifier,
            grays,
            self.config.networks,
            self.device,
            threshold=self.config.route_threshold,
        )

    def branch_probabilities(
        self,
        route: Route,
        grays: Sequence[np.ndarray],
        binaries: Sequence[np.ndarray] | None = None,
    ) -> list[np.ndarray]:
        """Tumor probability maps (each at its image's size) from one route's branch.

        ``binaries`` (homogeneous route only) are ``binarize_images`` results computed
        elsewhere (the Serve Binarizer); by default the branch binarizes itself.
        """
        config = self.config
        if route == "homogeneous":
            return segment_homogeneous(
                self.models.graynet,
                list(grays),
                config.networks,
                config.binarizer,
                self.device,
                binaries=binaries,
            )
        if route == "heterogeneous":
            return segment_heterogeneous(
                self.models.fcn, list(grays), config.networks, config.multiscale, self.device
            )
        raise ValueError(f"unknown route {route!r}; choose from {list(ROUTES)}")

    def finish(
        self,
        gray: np.ndarray,
        probability: np.ndarray,
        route: Route,
        confidence: float,
        timings: dict[str, float] | None = None,
    ) -> SegmentationResult:
        """Threshold a branch's probability map, post-process it for its route and score
        the image: the final result."""
        timings = {} if timings is None else timings
        mask = probability >= self.config.mask_threshold
        if route in self.config.largest_component_routes:
            mask = largest_component(mask)
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
        decided = self.classify(grays)
        _share(timings, range(len(grays)), "classify", time.perf_counter() - start)
        return decided


def _share(timings: list[dict[str, float]], members, stage: str, seconds: float) -> None:
    members = list(members)
    for i in members:
        timings[i][stage] = seconds / len(members)
