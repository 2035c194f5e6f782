"""Choose how the fused pipeline turns its networks' outputs into a mask, on saved
validation predictions.

The choice is made in two steps on the validation split:

1. **Segmentation** (tumor images): route source (classifier or the score on the gray
   net's region), fusion (hard or soft), the FCN's first-pass guide, the
   largest-region post-processing of each route, and the route threshold, with the
   best mean Dice. The FCN route is kept only when it beats the gray net alone by
   more than chance (the paired bootstrap interval of the difference lies above 0):
   one validation split is small, and a routing that wins there by a hair lost
   0.07–0.09 Dice on the test split in two runs. Only route thresholds that send at
   most ``max_fcn_share`` of the validation tumor images to the FCN are candidates:
   an image on the FCN route costs several times one on the gray net's, and the
   product's cost per image has a budget (README, "Choosing the policy").
2. **Presence** (all images; a tumor-free image scores 1 when its mask is empty, else
   0; a missed tumor scores 0): the threshold of the configured presence source,
   with the best mean Dice among those that miss at most ``max_miss_rate`` of the
   validation tumor images (a reader forgives a false alarm more easily than a
   missed lesion; with the mean Dice alone the choice missed 22 % of the tumors to
   spare 14 of 15 normal images). The source itself is not chosen: a validation
   split holds about 15 normal images, and the source chosen on them (the classifier,
   presence AUC 0.87 there) was at chance on the test split (0.52).

Thresholds are swept on a grid; of the thresholds tied at the best mean, the middle
one is kept (the centre of a plateau moves least on other images). Every figure of
the sweep is returned, to be logged with the choice.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tumorseg.config import GRAYNET_ONLY, ROUTES, SegmenterConfig
from tumorseg.evaluation.evaluate import paired_bootstrap
from tumorseg.evaluation.predictions import Case, PredictionSet
from tumorseg.inference.fusion import (
    Decision,
    final_mask,
    fuse,
    heterogeneous_probability,
    tumor_probability,
)
from tumorseg.metrics import dice

log = logging.getLogger("tumorseg.evaluation")

#: Route thresholds tried, 0.05 to 0.95.
ROUTE_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))
#: Presence thresholds tried, 0.02 to 0.98.
PRESENCE_THRESHOLDS: tuple[float, ...] = tuple(round(0.02 * i, 2) for i in range(1, 50))
ROUTE_SOURCES = ("classifier", "score")
#: Largest share of validation tumor images the presence decision may leave empty.
MAX_MISS_RATE = 0.05
FUSIONS = ("hard", "soft")
FCN_GUIDES = ("graynet", "own")
#: Largest share of validation tumor images a chosen routing may send to the FCN: the
#: cost budget per image (README, "Choosing the policy").
MAX_FCN_SHARE = 0.2


@dataclass(frozen=True)
class SegmentationChoice:
    route_source: str
    fusion: str
    fcn_guide: str
    largest_homogeneous: bool
    largest_heterogeneous: bool
    route_threshold: float
    dice: float

    def apply(self, config: SegmenterConfig) -> SegmenterConfig:
        routes = tuple(
            route
            for route, keep in zip(
                ROUTES, (self.largest_homogeneous, self.largest_heterogeneous), strict=True
            )
            if keep
        )
        return dataclasses.replace(
            config,
            route_source=self.route_source,
            fusion=self.fusion,
            fcn_guide=self.fcn_guide,
            largest_component_routes=routes,
            route_threshold=self.route_threshold,
        )


def choose_policy(
    predictions: PredictionSet,
    config: SegmenterConfig,
    max_miss_rate: float = MAX_MISS_RATE,
    max_fcn_share: float = MAX_FCN_SHARE,
) -> tuple[SegmenterConfig, dict[str, Any]]:
    """``config`` with the segmentation and presence settings that score best on
    ``predictions`` (validation), and the sweeps behind the choice. With no tumor
    image to judge by, ``config`` comes back unchanged."""
    cases = [case for case in predictions.good if case.has_tumor]
    if not cases:
        log.warning("no tumor image among the predictions: the policy stays as configured")
        return config, {"n_tumor": 0}
    segmentation, sweep, gain = choose_segmentation(predictions, cases, config, max_fcn_share)
    config = segmentation.apply(config)
    presence, presence_sweep = choose_presence(predictions, config, max_miss_rate)
    config = dataclasses.replace(config, **presence)
    report = {
        "n_tumor": len(cases),
        "n_images": len(predictions.good),
        "segmentation": dataclasses.asdict(segmentation),
        "segmentation_sweep": sweep,
        "routing_minus_graynet_alone": gain,
        "max_fcn_share": max_fcn_share,
        "presence": presence,
        "max_miss_rate": max_miss_rate,
        "presence_sweep": presence_sweep,
    }
    log.info(
        "policy: route by %s (threshold %.2f), %s fusion, FCN guided by %s, largest region on "
        "%s: Dice %.3f on %d validation tumor images; presence by %s (threshold %.2f)",
        config.route_source,
        config.route_threshold,
        config.fusion,
        config.fcn_guide,
        list(config.largest_component_routes) or "no route",
        segmentation.dice,
        len(cases),
        config.presence_source,
        config.presence_threshold,
    )
    return config, report


def choose_segmentation(
    predictions: PredictionSet,
    cases: Sequence[Case],
    config: SegmenterConfig,
    max_fcn_share: float = MAX_FCN_SHARE,
) -> tuple[SegmentationChoice, dict[str, float], dict[str, Any]]:
    """The best segmentation settings on tumor images (presence taken as known) among
    routings that send at most ``max_fcn_share`` of them to the FCN, or the gray net
    alone when the best does not beat it beyond chance; the sweep, and the paired
    bootstrap of the best routing − the gray net alone."""
    tables = [_case_table(predictions, case, config) for case in cases]
    best: SegmentationChoice | None = None
    best_dice = np.zeros(0)
    sweep: dict[str, float] = {}
    for source, fusion, guide, lc_hom, lc_het in itertools.product(
        ROUTE_SOURCES, FUSIONS, FCN_GUIDES, (False, True), (False, True)
    ):
        p_het = np.array([t["p_het"][source] for t in tables])
        homogeneous = np.array([t["homogeneous"][lc_hom] for t in tables])
        heterogeneous = np.array([t[(fusion, source, guide, lc_het)] for t in tables])
        per_threshold = {
            threshold: np.where(p_het > threshold, heterogeneous, homogeneous)
            for threshold in ROUTE_THRESHOLDS
            if (p_het > threshold).mean() <= max_fcn_share
        }
        if not per_threshold:
            continue
        means = {t: float(d.mean()) for t, d in per_threshold.items()}
        threshold, value = plateau_centre(means)
        key = f"{source}/{fusion}/{guide}/lc_hom={int(lc_hom)}/lc_het={int(lc_het)}"
        sweep.update({f"{key}@{t:.2f}": d for t, d in means.items()})
        if best is None or value > best.dice + 1e-12:
            best = SegmentationChoice(source, fusion, guide, lc_hom, lc_het, threshold, value)
            best_dice = per_threshold[threshold]
    alone, alone_dice = _graynet_alone(tables, config)
    if best is None:
        log.info(
            "no route threshold sends at most %.0f %% of the images to the FCN: "
            "every image takes the gray net",
            100 * max_fcn_share,
        )
        return alone, sweep, paired_bootstrap(alone_dice, alone_dice)
    gain = paired_bootstrap(best_dice, alone_dice)
    if gain["low"] is None or gain["low"] <= 0.0:
        log.info(
            "the FCN route gains %+.3f [%+.3f, %+.3f] Dice over the gray net alone on "
            "validation, within chance: every image takes the gray net",
            gain["mean"] or 0.0,
            gain["low"] or 0.0,
            gain["high"] or 0.0,
        )
        return alone, sweep, gain
    return best, sweep, gain


def _graynet_alone(
    tables: Sequence[dict], config: SegmenterConfig
) -> tuple[SegmentationChoice, np.ndarray]:
    """Every image on the gray net, with the better largest-region setting."""
    options = {lc: np.array([t["homogeneous"][lc] for t in tables]) for lc in (False, True)}
    lc = bool(options[True].mean() > options[False].mean() + 1e-12)
    choice = SegmentationChoice(
        config.route_source,
        config.fusion,
        config.fcn_guide,
        lc,
        ROUTES[1] in config.largest_component_routes,
        GRAYNET_ONLY,
        float(options[lc].mean()),
    )
    return choice, options[lc]


def choose_presence(
    predictions: PredictionSet, config: SegmenterConfig, max_miss_rate: float = MAX_MISS_RATE
) -> tuple[dict[str, Any], dict[str, float]]:
    """The threshold of ``config.presence_source`` with the best mean Dice over all
    images, among those that leave at most ``max_miss_rate`` of the tumor images with
    an empty mask; source ``"none"`` when no threshold meets it or none beats
    deciding nothing."""
    cases = predictions.good
    outcomes = [_outcome_if_present(predictions, case, config) for case in cases]
    present = np.array([dice for dice, _ in outcomes])
    tumor = np.array([bool(case.has_tumor) for case in cases])
    empty = np.array([is_empty for _, is_empty in outcomes]) & tumor
    absent = np.where(tumor, 0.0, 1.0)
    sweep: dict[str, float] = {"none": float(present.mean())}
    best = {"presence_source": "none", "presence_threshold": config.presence_threshold}
    source = config.presence_source
    if source == "none":
        return best, sweep
    n_tumor = max(int(tumor.sum()), 1)
    p = np.array([tumor_probability(case.evidence, config) for case in cases])
    means = {}
    for t in PRESENCE_THRESHOLDS:
        kept = p >= t
        sweep[f"{source}@{t:.2f}"] = value = float(np.where(kept, present, absent).mean())
        missed = int((tumor & (~kept | empty)).sum())
        if missed / n_tumor <= max_miss_rate:
            means[t] = value
    if means:
        threshold, value = plateau_centre(means)
        if value > sweep["none"] + 1e-12:
            best = {"presence_source": source, "presence_threshold": threshold}
    return best, sweep


def plateau_centre(means: dict[float, float]) -> tuple[float, float]:
    """The middle threshold of those tied at the best value, and that value."""
    top = max(means.values())
    tied = sorted(t for t, value in means.items() if value >= top - 1e-12)
    return tied[(len(tied) - 1) // 2], top


def _case_table(predictions: PredictionSet, case: Case, config: SegmenterConfig) -> dict:
    """Dice of one tumor image under every setting, and its p(heterogeneous) per source."""
    maps, truth = predictions.load(case)
    table: dict[Any, Any] = {"p_het": {}, "homogeneous": {}}
    for lc in (False, True):
        table["homogeneous"][lc] = _branch_dice(maps["graynet"], "homogeneous", lc, config, truth)
    for source in ROUTE_SOURCES:
        probe = dataclasses.replace(config, route_source=source)
        p_het = heterogeneous_probability(case.evidence, probe)
        table["p_het"][source] = p_het
        for fusion, guide, lc in itertools.product(FUSIONS, FCN_GUIDES, (False, True)):
            decision = Decision(True, 1.0, "heterogeneous", p_het, p_het)
            fused = fuse(decision, maps["graynet"], maps[f"fcn_{guide}"], _with(config, fusion))
            table[(fusion, source, guide, lc)] = _branch_dice(
                fused, "heterogeneous", lc, config, truth
            )
    return table


def _branch_dice(
    probability: np.ndarray, route: str, largest: bool, config: SegmenterConfig, truth
) -> float:
    config = dataclasses.replace(config, largest_component_routes=(route,) if largest else ())
    decision = Decision(True, 1.0, route, 1.0, float(route == ROUTES[1]))  # type: ignore[arg-type]
    return dice(final_mask(probability, decision, config), truth)


def _with(config: SegmenterConfig, fusion: str) -> SegmenterConfig:
    return dataclasses.replace(config, fusion=fusion)


def _outcome_if_present(
    predictions: PredictionSet, case: Case, config: SegmenterConfig
) -> tuple[float, bool]:
    """The image's Dice when the presence decision lets it through (``config``'s
    segmentation settings; a tumor-free image scores 1 only with an empty mask), and
    whether its mask is then empty."""
    from tumorseg.evaluation.evaluate import case_masks

    forced = dataclasses.replace(config, presence_source="none")
    _, masks, truth = case_masks(predictions, case, forced)
    fused = masks["fused"]
    return dice(fused, truth), not fused.any()


#: Alternatives scored beside the chosen policy: name → settings replaced in it.
ALTERNATIVES: dict[str, dict[str, Any]] = {
    "patent-faithful: classifier route, hard routing, FCN on its own seed, no presence": {
        "route_source": "classifier",
        "fusion": "hard",
        "fcn_guide": "own",
        "presence_source": "none",
    },
    "hard routing": {"fusion": "hard"},
    "soft fusion": {"fusion": "soft"},
    "route by the classifier": {"route_source": "classifier"},
    "route by the score on the gray net's region": {"route_source": "score"},
    "FCN first pass guided by its own coarse seed": {"fcn_guide": "own"},
    "FCN first pass guided by the gray net": {"fcn_guide": "graynet"},
    "no presence decision": {"presence_source": "none"},
    "presence by the classifier": {"presence_source": "classifier"},
    "presence by the gray net map's peak": {"presence_source": "map"},
    "presence by both": {"presence_source": "both"},
    "gray net alone (every image homogeneous)": {"route_threshold": GRAYNET_ONLY},
}


def compare_policies(
    predictions: PredictionSet, config: SegmenterConfig, normal_fp_min_area: float
) -> dict[str, dict[str, Any]]:
    """Headline figures of ``config`` and of each :data:`ALTERNATIVES` entry (the other
    settings as in ``config``; an entry that changes nothing is left out)."""
    from tumorseg.evaluation.evaluate import evaluate_predictions

    out = {}
    for name, changes in {"chosen": {}, **ALTERNATIVES}.items():
        variant = dataclasses.replace(config, **changes)
        if changes and variant == config:
            continue
        summary = evaluate_predictions(
            predictions, variant, normal_fp_min_area=normal_fp_min_area
        ).summary
        fused = summary["fused"]
        boot = summary.get("bootstrap") or {}
        out[name] = {
            "dice": fused["dice"],
            "hd95": fused["hd95"],
            "miss_rate": fused["miss_rate"],
            "normal_fp_rate": fused["normal_fp_rate"],
            "minus_baseline": boot.get("mean"),
            "minus_baseline_low": boot.get("low"),
            "minus_baseline_high": boot.get("high"),
            "routing_auc": summary["routing"]["auc"],
            "fcn_share": _share_on_fcn(summary),
        }
    return out


def _share_on_fcn(summary: dict[str, Any]) -> float | None:
    groups = summary["per_route"]
    total = sum(group["n"] for group in groups.values())
    return groups["heterogeneous"]["n"] / total if total else None
