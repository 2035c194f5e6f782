"""Choose the router's threshold on the validation split.

A homogeneous image sent to the multi-scale FCN loses far more Dice than a
heterogeneous image sent to the gray net, so p(heterogeneous) > 0.5 is not the
best rule. Both branches segment every validation tumor image, and the threshold
with the best mean fused Dice over those images wins; the test split, never
seen here, says what it is worth.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tumorseg.config import ROUTES
from tumorseg.data import ImageRecord
from tumorseg.errors import InvalidImageError
from tumorseg.evaluation.evaluate import load_example
from tumorseg.inference import Segmenter
from tumorseg.inference.routing import heterogeneous_probability
from tumorseg.metrics import score_masks

log = logging.getLogger("tumorseg.training")

#: Thresholds tried, 0.05 to 0.95.
THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))


@dataclass(frozen=True)
class BranchDice:
    """One tumor image: the classifier's p(heterogeneous) and each branch's Dice."""

    p_heterogeneous: float
    homogeneous: float
    heterogeneous: float


def branch_dice(segmenter: Segmenter, records: Sequence[ImageRecord]) -> list[BranchDice]:
    """Both branches on every readable tumor image of ``records``."""
    out = []
    for record in records:
        if not record.mask_paths:
            continue
        try:
            example = load_example(record, limits=segmenter.config.limits)
        except InvalidImageError as error:
            log.warning("route threshold: skipping %s (%s)", record.path, error)
            continue
        gray, truth = example.gray, example.truth
        if not truth.any():
            continue
        ((route, confidence),) = segmenter.classify([gray])
        dice = {}
        for branch in ROUTES:
            probability = segmenter.branch_probabilities(branch, [gray])[0]
            mask = segmenter.finish(gray, probability, branch, 1.0).mask
            dice[branch] = score_masks(mask, truth).dice
        out.append(BranchDice(heterogeneous_probability(route, confidence), **dice))
    return out


def fused_dice_by_threshold(
    images: Sequence[BranchDice], thresholds: Sequence[float] = THRESHOLDS
) -> dict[float, float]:
    """Mean fused Dice each threshold would give on ``images``."""
    return {
        t: float(
            np.mean([i.heterogeneous if i.p_heterogeneous > t else i.homogeneous for i in images])
        )
        for t in thresholds
    }


def choose_route_threshold(
    images: Sequence[BranchDice], default: float = 0.5
) -> tuple[float, dict[float, float]]:
    """The threshold with the best mean fused Dice (ties: the one nearest ``default``),
    and the whole sweep; ``default`` when there is no tumor image to judge by."""
    if not images:
        return default, {}
    sweep = fused_dice_by_threshold(images)
    best = max(sweep.values())
    chosen = min((t for t, d in sweep.items() if d == best), key=lambda t: abs(t - default))
    return chosen, sweep
