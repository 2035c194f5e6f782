"""Measure a change to the policy choice on a finished run, without training again.

    python benchmarks/rechoose_policy.py --choose eval-val --report eval-test

Reads the predictions that ``jobs/evaluate.py`` saved of two splits, chooses the
policy on ``--choose`` with today's :func:`~tumorseg.evaluation.choose_policy` (what
the training job would choose now), and prints the policy and the headline figures
of both splits under it: fused and baseline Dice on tumor images, the paired
bootstrap 95 % interval of fused − baseline, the miss rate and the normal-image
false-positive rate. The settings the choice does not touch (triage threshold, mask
threshold, route score scale, the false-positive area) come from ``--report``'s
``summary.json``. Nothing is chosen on ``--report``.
"""

from __future__ import annotations

import json

from saved_splits import choose_report_parser

from tumorseg.config import PRESENCE_SOURCES, SegmenterConfig, TriageConfig
from tumorseg.evaluation import choose_policy, evaluate_predictions, load_predictions
from tumorseg.evaluation.policy import MAX_FCN_SHARE

POLICY_FIELDS = (
    "route_source",
    "route_threshold",
    "fusion",
    "fcn_guide",
    "largest_component_routes",
    "presence_source",
    "presence_threshold",
)


def starting_config(summary: dict, presence_source: str) -> SegmenterConfig:
    settings = summary["settings"]
    policy = settings["policy"]
    return SegmenterConfig(
        triage=TriageConfig(threshold=settings["triage_threshold"]),
        mask_threshold=settings["mask_threshold"],
        route_score_scale=policy["route_score_scale"],
        flip_tta=policy["flip_tta"],
        presence_source=presence_source,
    )


def headline(summary: dict) -> str:
    boot = summary.get("bootstrap") or {}
    return (
        f"fused {summary['fused']['dice']:.3f}  baseline {summary['baseline']['dice']:.3f}  "
        f"fused-baseline {boot.get('mean', float('nan')):+.3f} "
        f"[{boot.get('low', float('nan')):+.3f}, {boot.get('high', float('nan')):+.3f}]  "
        f"miss {summary['fused']['miss_rate']:.3f}  "
        f"normal FP {summary['fused']['normal_fp_rate']:.2f}"
    )


def main() -> None:
    parser = choose_report_parser(__doc__, max_miss=False)
    parser.add_argument(
        "--presence-source",
        choices=PRESENCE_SOURCES,
        default=SegmenterConfig().presence_source,
        help="presence source whose threshold is chosen (default: the config's default)",
    )
    parser.add_argument(
        "--max-fcn-share",
        type=float,
        default=MAX_FCN_SHARE,
        help="largest share of tumor images a routing may send to the FCN (default: %(default)s)",
    )
    args = parser.parse_args()
    summary = json.loads((args.report / "summary.json").read_text())
    config = starting_config(summary, args.presence_source)
    fp_area = summary["settings"]["normal_fp_min_area"]
    chosen, report = choose_policy(
        load_predictions(args.choose / "predictions"), config, max_fcn_share=args.max_fcn_share
    )
    gain = report.get("routing_minus_graynet_alone")
    print(f"chosen on {args.choose}:")
    for name in POLICY_FIELDS:
        print(f"  {name}: {getattr(chosen, name)}")
    if gain:
        print(
            f"  best routing - gray net alone on {args.choose}: {gain['mean']:+.3f} "
            f"[{gain['low']:+.3f}, {gain['high']:+.3f}]"
        )
    for split in (args.choose, args.report):
        result = evaluate_predictions(
            load_predictions(split / "predictions"), chosen, normal_fp_min_area=fp_area
        )
        print(f"{split}: {headline(result.summary)}")


if __name__ == "__main__":
    main()
