"""The fused pipeline: classifier and binarizer + gray net on every image, then tumor
presence, the route, and the iterative multi-scale FCN on the heterogeneous route.

:class:`Segmenter` is the one inference path: the batch job and the Serve
deployments call these same stage functions.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from tumorseg.config import Route, SegmenterConfig
from tumorseg.inference.fusion import Decision, decide, final_mask, first_stage_evidence, fuse
from tumorseg.inference.gray_branch import segment_homogeneous
from tumorseg.inference.models import ModelSet
from tumorseg.inference.multiscale import segment_heterogeneous
from tumorseg.inference.result import SegmentationResult
from tumorseg.inference.routing import class_probabilities
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
        image's branch (an external decision, e.g. an expert's): the route
        confidence is then 1.0 and the image is taken to hold a lesion.
        """
        grays = [to_grayscale(image) for image in images]
        if routes is not None and len(routes) != len(grays):
            raise ValueError(f"got {len(routes)} routes for {len(grays)} images")
        timings: list[dict[str, float]] = [{} for _ in grays]
        start = time.perf_counter()
        classes = self.class_probabilities(grays)
        _share(timings, range(len(grays)), "classify", time.perf_counter() - start)
        start = time.perf_counter()
        graynet_maps = self.graynet_probabilities(grays)
        _share(timings, range(len(grays)), "graynet", time.perf_counter() - start)
        decisions = [
            self.decide(gray, p, m, None if routes is None else routes[i])
            for i, (gray, p, m) in enumerate(zip(grays, classes, graynet_maps, strict=True))
        ]
        fcn_maps: list[np.ndarray | None] = [None] * len(grays)
        members = [i for i, d in enumerate(decisions) if self.needs_fcn(d)]
        if members:
            start = time.perf_counter()
            maps = self.fcn_probabilities(
                [grays[i] for i in members], [graynet_maps[i] for i in members]
            )
            for i, probability in zip(members, maps, strict=True):
                fcn_maps[i] = probability
            _share(timings, members, "fcn", time.perf_counter() - start)
        return [
            self.finish(gray, self.fuse(decision, graynet_map, fcn_map), decision, timing)
            for gray, graynet_map, fcn_map, decision, timing in zip(
                grays, graynet_maps, fcn_maps, decisions, timings, strict=True
            )
        ]

    # The stages below are public so that pipelines which run each stage in its own
    # worker (bulk segmentation on Ray Data, Serve deployments, evaluation) call this
    # same code: classifier and gray net on every image → decide → FCN on the images
    # that take its route → fuse → finish.

    def class_probabilities(self, grays: Sequence[np.ndarray]) -> np.ndarray:
        """``(N, 3)`` classifier probabilities over normal / homogeneous / heterogeneous."""
        return class_probabilities(self.models.classifier, grays, self.config.networks, self.device)

    def graynet_probabilities(
        self, grays: Sequence[np.ndarray], binaries: Sequence[np.ndarray] | None = None
    ) -> list[np.ndarray]:
        """The gray net's tumor probability maps (each at its image's size): the first
        stage, run on every image.

        ``binaries`` are ``binarize_images`` results computed elsewhere (the Serve
        Binarizer); by default the branch binarizes itself.
        """
        config = self.config
        return segment_homogeneous(
            self.models.graynet,
            list(grays),
            config.networks,
            config.binarizer,
            self.device,
            binaries=binaries,
            flip_tta=config.flip_tta,
        )

    def fcn_probabilities(
        self, grays: Sequence[np.ndarray], graynet_maps: Sequence[np.ndarray] | None = None
    ) -> list[np.ndarray]:
        """The multi-scale FCN's maps; its first pass is guided by ``graynet_maps`` when
        ``config.fcn_guide`` is ``"graynet"``, else by its own coarse seed."""
        config = self.config
        guides = graynet_maps if config.fcn_guide == "graynet" else None
        if guides is None and config.fcn_guide == "graynet" and grays:
            raise ValueError("fcn_guide='graynet' needs the gray net's maps")
        return segment_heterogeneous(
            self.models.fcn,
            list(grays),
            config.networks,
            config.multiscale,
            self.device,
            guides=guides,
        )

    def decide(
        self,
        gray: np.ndarray,
        class_probabilities: Sequence[float],
        graynet_map: np.ndarray,
        route: Route | None = None,
    ) -> Decision:
        """Tumor presence and route of one image from the first stage's outputs."""
        evidence = first_stage_evidence(gray, class_probabilities, graynet_map, self.config)
        return decide(evidence, self.config, route)

    @staticmethod
    def needs_fcn(decision: Decision) -> bool:
        """Whether the multi-scale FCN must run on an image."""
        return decision.tumor_present and decision.route == "heterogeneous"

    def fuse(
        self, decision: Decision, graynet_map: np.ndarray, fcn_map: np.ndarray | None
    ) -> np.ndarray:
        """The image's final probability map (see :func:`tumorseg.inference.fusion.fuse`)."""
        return fuse(decision, graynet_map, fcn_map, self.config)

    def finish(
        self,
        gray: np.ndarray,
        probability: np.ndarray,
        decision: Decision,
        timings: dict[str, float] | None = None,
    ) -> SegmentationResult:
        """Threshold the fused map, post-process it for its route, score the image."""
        timings = {} if timings is None else timings
        mask = final_mask(probability, decision, self.config)
        start = time.perf_counter()
        score = heterogeneity_score(gray, mask, smoothing_sigma=self.config.triage.smoothing_sigma)
        timings["score"] = time.perf_counter() - start
        ran_fcn = self.needs_fcn(decision)
        return SegmentationResult(
            mask=mask,
            route=decision.route,
            route_confidence=decision.route_confidence,
            heterogeneity_score=score,
            tumor_present=decision.tumor_present,
            tumor_probability=decision.tumor_probability,
            pass_tiles=self.config.multiscale.pass_tiles if ran_fcn else (),
            timings=timings,
            model_versions=dict(self.models.versions),
        )


def _share(timings: list[dict[str, float]], members, stage: str, seconds: float) -> None:
    members = list(members)
    for i in members:
        timings[i][stage] = seconds / len(members)
