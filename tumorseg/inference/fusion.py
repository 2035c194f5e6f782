"""Decide presence and route, fuse the branches' maps, and make the final mask.

These are pure functions of what the networks said about an image, so the live
pipeline (:class:`~tumorseg.inference.Segmenter`) and the evaluation of saved
predictions (:mod:`tumorseg.evaluation.predictions`) make exactly the same choices.
See :class:`~tumorseg.config.SegmenterConfig` for what each setting means.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tumorseg.config import CLASSES, ROUTES, Route, SegmenterConfig
from tumorseg.inference.postprocess import largest_component
from tumorseg.inference.routing import route_for
from tumorseg.preprocessing.heterogeneity import heterogeneity_score


@dataclass(frozen=True)
class Evidence:
    """What the first stage (classifier and gray net) says about one image."""

    class_probabilities: tuple[float, ...]  # over CLASSES: normal, homogeneous, heterogeneous
    map_peak: float  # the gray net map's highest probability
    map_score: float  # heterogeneity score on the gray net's (largest) predicted region

    @property
    def classifier_tumor(self) -> float:
        return 1.0 - self.class_probabilities[CLASSES.index("normal")]

    @property
    def classifier_heterogeneous(self) -> float:
        homogeneous = self.class_probabilities[CLASSES.index("homogeneous")]
        heterogeneous = self.class_probabilities[CLASSES.index("heterogeneous")]
        return heterogeneous / max(homogeneous + heterogeneous, 1e-12)


@dataclass(frozen=True)
class Decision:
    """Whether an image has a tumor, and which branch segments it."""

    tumor_present: bool
    tumor_probability: float
    route: Route
    route_confidence: float  # the chosen route's probability (1.0 when forced)
    p_heterogeneous: float

    def to_record(self) -> dict[str, Any]:
        """Flat fields, for pipelines that carry a decision between workers."""
        return asdict(self)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Decision:
        """Inverse of :meth:`to_record` (other keys of ``record`` are ignored)."""
        return cls(
            tumor_present=bool(record["tumor_present"]),
            tumor_probability=float(record["tumor_probability"]),
            route=record["route"],
            route_confidence=float(record["route_confidence"]),
            p_heterogeneous=float(record["p_heterogeneous"]),
        )


def first_stage_evidence(
    gray: np.ndarray,
    class_probabilities: Sequence[float],
    graynet_map: np.ndarray,
    config: SegmenterConfig,
) -> Evidence:
    """Summaries of the first stage's outputs that the decisions read."""
    region = largest_component(graynet_map >= config.mask_threshold)
    score = heterogeneity_score(gray, region, smoothing_sigma=config.triage.smoothing_sigma)
    return Evidence(
        class_probabilities=tuple(float(p) for p in class_probabilities),
        map_peak=float(graynet_map.max()) if graynet_map.size else 0.0,
        map_score=float(score),
    )


def tumor_probability(evidence: Evidence, config: SegmenterConfig) -> float:
    """p(tumor) from the configured source (1.0 for ``"none"``)."""
    source = config.presence_source
    if source == "none":
        return 1.0
    if source == "classifier":
        return evidence.classifier_tumor
    if source == "map":
        return evidence.map_peak
    return math.sqrt(max(evidence.classifier_tumor, 0.0) * max(evidence.map_peak, 0.0))


def heterogeneous_probability(evidence: Evidence, config: SegmenterConfig) -> float:
    """p(heterogeneous) from the classifier, or from the score on the gray net's region."""
    if config.route_source == "classifier":
        return evidence.classifier_heterogeneous
    z = (evidence.map_score - config.triage.threshold) / config.route_score_scale
    return float(1.0 / (1.0 + math.exp(-max(min(z, 60.0), -60.0))))


def decide(
    evidence: Evidence, config: SegmenterConfig, forced_route: Route | None = None
) -> Decision:
    """Presence and route. A forced route (an expert's decision) also says that a lesion
    of that kind is there: p(heterogeneous) is then 1 or 0."""
    present_p = tumor_probability(evidence, config)
    if forced_route is not None:
        if forced_route not in ROUTES:
            raise ValueError(f"unknown route {forced_route!r}; choose from {list(ROUTES)}")
        return Decision(True, present_p, forced_route, 1.0, float(forced_route == ROUTES[1]))
    p_het = heterogeneous_probability(evidence, config)
    route, confidence = route_for(p_het, config.route_threshold)
    present = config.presence_source == "none" or present_p >= config.presence_threshold
    return Decision(present, present_p, route, confidence, p_het)


def fuse(
    decision: Decision,
    graynet_map: np.ndarray,
    fcn_map: np.ndarray | None,
    config: SegmenterConfig,
) -> np.ndarray:
    """The image's probability map: the gray net's on the homogeneous route; on the FCN
    route the FCN's (``"hard"``) or both weighted by p(heterogeneous) (``"soft"``).
    Without a tumor the FCN did not run: the gray net's map (the mask will be empty)."""
    if decision.route == "homogeneous" or not decision.tumor_present:
        return graynet_map
    if fcn_map is None:
        raise ValueError("the heterogeneous route needs the multi-scale FCN's map")
    if config.fusion == "hard":
        return fcn_map
    weight = decision.p_heterogeneous
    return (weight * fcn_map + (1.0 - weight) * graynet_map).astype(np.float32)


def final_mask(probability: np.ndarray, decision: Decision, config: SegmenterConfig) -> np.ndarray:
    """Threshold, keep the largest region on the configured routes; empty when no tumor."""
    if not decision.tumor_present:
        return np.zeros(probability.shape, dtype=bool)
    mask = probability >= config.mask_threshold
    if decision.route in config.largest_component_routes:
        mask = largest_component(mask)
    return mask
