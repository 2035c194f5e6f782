"""The fused pipeline: classifier and binarizer + gray net on every image, then tumor
presence, the route, and the iterative multi-scale FCN on the heterogeneous route.

:class:`Segmenter` is the one inference path: the batch job, the Serve
deployments and evaluation call its stages (first stage, FCN stage, finish).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

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
from tumorseg.inference.threads import map_images
from tumorseg.networks.roles import FUSED_ROLES
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

    @classmethod
    def from_folder(
        cls,
        directory: str,
        device: str | torch.device | None = None,
        engine: str = "torch",
        roles: Sequence[str] = FUSED_ROLES,
    ) -> Segmenter:
        """A segmenter from a model folder (``tumorseg export``): no MLflow, no Ray.
        ``engine="onnx"`` runs its ONNX graphs with ONNX Runtime on the CPU; ``roles``
        loads only those networks."""
        from tumorseg.inference.model_folder import load_model_folder

        models, config = load_model_folder(directory, engine=engine, roles=roles)
        return cls(models, config, "cpu" if engine == "onnx" else device)

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
        grays = map_images(to_grayscale, images)
        firsts = self.first_stage(grays, routes)
        members = [i for i, first in enumerate(firsts) if first.needs_fcn]
        fcn_maps = self.fcn_stage([grays[i] for i in members], [firsts[i] for i in members])
        by_image = dict(zip(members, fcn_maps, strict=True))
        fcn_per_image = [by_image.get(i) for i in range(len(grays))]
        return map_images(self.finish, grays, firsts, fcn_per_image)

    # The three stages below are the whole method; pipelines that run stages in
    # workers of their own (bulk segmentation on Ray Data, the Serve deployments)
    # call these and nothing else: first stage on every image → the FCN stage on the
    # images that need it → finish each image.

    def first_stage(
        self,
        grays: Sequence[np.ndarray],
        routes: Sequence[Route | None] | None = None,
        *,
        classes: np.ndarray | Sequence[Sequence[float]] | None = None,
        classifier_versions: Sequence[str] | None = None,
        binaries: Sequence[np.ndarray] | None = None,
    ) -> list[FirstStageOutput]:
        """Classifier and gray net on every image, then each image's presence and route.

        ``routes`` forces branches (``None`` entries decide). ``classes`` (the
        classifier's probabilities, with the ``classifier_versions`` that gave them)
        and ``binaries`` (``binarize_images`` results) may come from elsewhere (the
        Serve Classifier and Binarizer); by default they are computed here. Each
        output records the versions of the networks that made it.
        """
        if routes is not None and len(routes) != len(grays):
            raise ValueError(f"got {len(routes)} routes for {len(grays)} images")
        timings: list[dict[str, float]] = [{} for _ in grays]
        if classes is None:
            start = time.perf_counter()
            classes = self.class_probabilities(grays)
            _share(timings, range(len(grays)), "classify", time.perf_counter() - start)
        start = time.perf_counter()
        maps = self.graynet_probabilities(grays, binaries)
        _share(timings, range(len(grays)), "graynet", time.perf_counter() - start)
        forced = list(routes) if routes is not None else [None] * len(grays)
        own = self.models.versions
        classifiers = classifier_versions or [own.get("classifier", "")] * len(grays)
        decisions = map_images(self.decide, grays, classes, maps, forced)
        return [
            FirstStageOutput(
                decision, graynet_map, timing, {"classifier": c, "graynet": own.get("graynet", "")}
            )
            for decision, graynet_map, timing, c in zip(
                decisions, maps, timings, classifiers, strict=True
            )
        ]

    def fcn_stage(
        self, grays: Sequence[np.ndarray], firsts: Sequence[FirstStageOutput]
    ) -> list[np.ndarray]:
        """The multi-scale FCN's maps of images whose first stage says it must run."""
        if not grays:
            return []
        start = time.perf_counter()
        maps = self.fcn_probabilities(grays, [first.graynet_map for first in firsts])
        _share(
            [first.timings for first in firsts],
            range(len(firsts)),
            "fcn",
            time.perf_counter() - start,
        )
        return maps

    def finish(
        self, gray: np.ndarray, first: FirstStageOutput, fcn_map: np.ndarray | None = None
    ) -> SegmentationResult:
        """Fuse the branches' maps, threshold, post-process for the route, score."""
        decision, timings = first.decision, dict(first.timings)
        probability = fuse(decision, first.graynet_map, fcn_map, self.config)
        mask = final_mask(probability, decision, self.config)
        start = time.perf_counter()
        score = heterogeneity_score(gray, mask, smoothing_sigma=self.config.triage.smoothing_sigma)
        timings["score"] = time.perf_counter() - start
        return SegmentationResult(
            mask=mask,
            route=decision.route,
            route_confidence=decision.route_confidence,
            heterogeneity_score=score,
            tumor_present=decision.tumor_present,
            tumor_probability=decision.tumor_probability,
            pass_tiles=self.config.multiscale.pass_tiles if first.needs_fcn else (),
            timings=timings,
            model_versions={**self.models.versions, **first.versions},
        )

    # Each network on its own, for evaluation (which saves every branch's map).

    def class_probabilities(self, grays: Sequence[np.ndarray]) -> np.ndarray:
        """``(N, 3)`` classifier probabilities over normal / homogeneous / heterogeneous."""
        classifier = self.models.network("classifier")
        return class_probabilities(classifier, grays, self.config.networks, self.device)

    def graynet_probabilities(
        self, grays: Sequence[np.ndarray], binaries: Sequence[np.ndarray] | None = None
    ) -> list[np.ndarray]:
        """The gray net's tumor probability maps (each at its image's size)."""
        config = self.config
        return segment_homogeneous(
            self.models.network("graynet"),
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
            self.models.network("fcn"),
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


@dataclass
class FirstStageOutput:
    """The first stage's answer for one image: presence and route, and the gray net's
    map (the FCN's first guide, and half of a soft fusion)."""

    decision: Decision
    graynet_map: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)  # of the networks that ran

    @property
    def needs_fcn(self) -> bool:
        """Whether the multi-scale FCN must run on this image."""
        return self.decision.tumor_present and self.decision.route == "heterogeneous"


def _share(timings: Sequence[dict[str, float]], members, stage: str, seconds: float) -> None:
    members = list(members)
    for i in members:
        timings[i][stage] = seconds / len(members)
