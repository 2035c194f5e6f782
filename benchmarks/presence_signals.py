"""How well simple summaries of the saved maps tell a tumor image from a normal one.

    python benchmarks/presence_signals.py --choose eval-val --report eval-test

Reads the predictions that ``jobs/evaluate.py`` saved (``OUTPUT/predictions``: every
network's map per image, the classifier's probabilities, the ground truth) of two
splits. For each candidate presence signal (the classifier's p(tumor); the gray net's
and the baseline's peak, area above 0.5, largest region, mean probability inside the
largest region, mean of the top 0.5 % of pixels) it prints the AUC on both splits,
then the threshold that keeps 95 % of the ``--choose`` split's tumor images, and the
normal-image false-positive rate and tumor miss rate that threshold gives on each split.
Nothing is chosen on ``--report``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
from saved_splits import choose_report_parser, threshold_keeping, top_mean

NETWORKS = ("graynet", "baseline")


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Probability that a tumor image scores above a normal one (ties count half)."""
    above = (positive[:, None] > negative[None, :]).sum()
    ties = (positive[:, None] == negative[None, :]).sum()
    return float((above + 0.5 * ties) / (len(positive) * len(negative)))


def map_signals(quantized: np.ndarray) -> dict[str, float]:
    probability = quantized.astype(np.float32) / 255.0
    mask = (probability >= 0.5).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    largest, inside = 0.0, 0.0
    if count > 1:
        biggest = 1 + int(stats[1:, cv2.CC_STAT_AREA].argmax())
        largest = float(stats[biggest, cv2.CC_STAT_AREA]) / probability.size
        inside = float(probability[labels == biggest].mean())
    return {
        "peak": float(probability.max()),
        "area": float(mask.mean()),
        "largest_region": largest,
        "mean_in_region": inside,
        "top_0.5%": top_mean(probability),
    }


def signals(evaluation: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every signal per image of a saved evaluation, and whether each has a tumor."""
    cases = pq.read_table(evaluation / "predictions" / "cases.parquet").to_pylist()
    rows = []
    for case in cases:
        maps = np.load(evaluation / "predictions" / "maps" / f"{case['case_id']}.npz")
        row = {"classifier p(tumor)": 1.0 - case["p_normal"]}
        for network in NETWORKS:
            row.update({f"{network} {k}": v for k, v in map_signals(maps[network]).items()})
        rows.append(row)
    names = list(rows[0])
    values = {name: np.array([row[name] for row in rows]) for name in names}
    return values, np.array([bool(case["has_tumor"]) for case in cases])


def main() -> None:
    args = choose_report_parser(__doc__).parse_args()
    chosen, chosen_tumor = signals(args.choose)
    reported, reported_tumor = signals(args.report)
    print(f"{'signal':28s} AUC choose/report  threshold  FP choose/report  miss report")
    for name in chosen:
        a, b = chosen[name], reported[name]
        threshold = threshold_keeping(a[chosen_tumor], args.max_miss)
        fp_a = float((a[~chosen_tumor] >= threshold).mean())
        fp_b = float((b[~reported_tumor] >= threshold).mean())
        miss_b = float((b[reported_tumor] < threshold).mean())
        print(
            f"{name:28s} {auc(a[chosen_tumor], a[~chosen_tumor]):.3f} / "
            f"{auc(b[reported_tumor], b[~reported_tumor]):.3f}      {threshold:.3f}"
            f"      {fp_a:.2f} / {fp_b:.2f}       {miss_b:.3f}"
        )


if __name__ == "__main__":
    main()
