"""Would fusing the branches with the full-image baseline beat the baseline alone?

    python benchmarks/fusion_candidates.py --choose eval-val --report eval-test

Reads the predictions that ``jobs/evaluate.py`` saved of two splits (every network's
map per image, the classifier's probabilities, the ground truth) and scores candidate
fusions that today's :class:`~tumorseg.inference.Segmenter` cannot run, because the
baseline is not one of its networks: the baseline's map averaged with the gray net's,
with the FCN's (guided by the gray net), or with a soft mix of both weighted by the
classifier's p(heterogeneous), each with and without keeping the largest region.
Every candidate is also gated by a presence rule on the baseline's map (mean of its
top 0.5 % of pixels, threshold chosen on ``--choose`` to miss at most ``--max-miss``
of its tumor images). It prints, per candidate and split, the mean Dice over tumor
images, the paired bootstrap 95 % interval of candidate − baseline (the baseline
alone, ungated: the issue's comparison), the miss rate and the normal-image false
positive rate. Nothing is chosen on ``--report``; the candidate to keep is the one
best on ``--choose``.

Two rows are bounds, not candidates: they route by the ground truth's class (the
heterogeneity score on the expert's mask), as a perfect router would: homogeneous
lesions to the gray net and heterogeneous ones to the FCN (the patent's routing) or to
the baseline. No router can do better with these networks.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from saved_splits import choose_report_parser, threshold_keeping, top_mean

from tumorseg.evaluation.evaluate import paired_bootstrap
from tumorseg.evaluation.predictions import Case, PredictionSet, load_predictions
from tumorseg.inference.postprocess import largest_component
from tumorseg.metrics import dice

Maps = dict[str, np.ndarray]


def _soft_branches(maps: Maps, case: Case) -> np.ndarray:
    p_het = case.evidence.classifier_heterogeneous
    return p_het * maps["fcn_graynet"] + (1.0 - p_het) * maps["graynet"]


def _by_true_class(heterogeneous: str) -> Callable[[Maps, Case], np.ndarray]:
    """The gray net's map, or the ``heterogeneous`` map for a heterogeneous lesion."""
    return lambda m, case: m[heterogeneous if case.true_class == "heterogeneous" else "graynet"]


CANDIDATES: dict[str, Callable[[Maps, Case], np.ndarray]] = {
    "baseline": lambda m, c: m["baseline"],
    "graynet": lambda m, c: m["graynet"],
    "mean(baseline, graynet)": lambda m, c: (m["baseline"] + m["graynet"]) / 2,
    "mean(baseline, fcn)": lambda m, c: (m["baseline"] + m["fcn_graynet"]) / 2,
    "mean(baseline, graynet, fcn)": lambda m, c: (
        (m["baseline"] + m["graynet"] + m["fcn_graynet"]) / 3
    ),
    "mean(baseline, soft branches)": lambda m, c: (m["baseline"] + _soft_branches(m, c)) / 2,
    "bound: truth's class, graynet | fcn": _by_true_class("fcn_graynet"),
    "bound: truth's class, graynet | baseline": _by_true_class("baseline"),
}


def case_table(predictions: PredictionSet) -> list[dict]:
    """Per good case: tumor or not, the presence signal, and each candidate's Dice."""
    rows = []
    for case in predictions.good:
        maps, truth = predictions.load(case)
        row = {"has_tumor": bool(case.has_tumor), "presence": top_mean(maps["baseline"])}
        for name, fuse in CANDIDATES.items():
            mask = fuse(maps, case) >= 0.5
            for suffix, final in (("", mask), (" + largest", largest_component(mask))):
                row[name + suffix] = (dice(final, truth), bool(final.any()))
        rows.append(row)
    return rows


def figures(rows: list[dict], name: str, threshold: float | None) -> dict[str, float]:
    """Mean tumor-image Dice, miss and FP rates of a candidate, gated at ``threshold``."""
    tumor_dice, missed, false_positive = [], [], []
    for row in rows:
        score, nonempty = row[name]
        present = threshold is None or row["presence"] >= threshold
        if row["has_tumor"]:
            tumor_dice.append(score if present else 0.0)
            missed.append(not (present and nonempty))
        else:
            false_positive.append(present and nonempty)
    baseline = [row["baseline"][0] for row in rows if row["has_tumor"]]
    interval = paired_bootstrap(tumor_dice, baseline)
    return {
        "dice": float(np.mean(tumor_dice)),
        "minus_baseline": interval["mean"],
        "low": interval["low"],
        "high": interval["high"],
        "miss": float(np.mean(missed)),
        "fp": float(np.mean(false_positive)) if false_positive else float("nan"),
    }


def main() -> None:
    args = choose_report_parser(__doc__).parse_args()
    chosen = case_table(load_predictions(args.choose / "predictions"))
    reported = case_table(load_predictions(args.report / "predictions"))
    tumors = [row["presence"] for row in chosen if row["has_tumor"]]
    threshold = threshold_keeping(tumors, args.max_miss)
    print(f"presence: baseline top 0.5 % >= {threshold:.3f} (chosen on {args.choose})")
    print(
        f"{'candidate':52s} {'gate':5s} {'Dice choose':>11s} {'Dice report':>11s}"
        f"  {'report − baseline [95 % CI]':28s} {'miss':>5s} {'FP':>5s}"
    )
    names = [name for name in chosen[0] if name not in ("has_tumor", "presence")]
    candidates = [name for name in names if not name.startswith("bound")]
    best = max(candidates, key=lambda name: figures(chosen, name, threshold)["dice"])
    for name in names:
        for gate in (None, threshold):
            a, b = figures(chosen, name, gate), figures(reported, name, gate)
            mark = " <- best gated on choose" if name == best and gate is not None else ""
            print(
                f"{name:52s} {'yes' if gate is not None else 'no':5s} {a['dice']:11.3f} "
                f"{b['dice']:11.3f}  {b['minus_baseline']:+.3f} [{b['low']:+.3f}, "
                f"{b['high']:+.3f}]{'':7s} {b['miss']:5.3f} {b['fp']:5.2f}{mark}"
            )


if __name__ == "__main__":
    main()
