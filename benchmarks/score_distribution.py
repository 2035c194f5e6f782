"""Heterogeneity-score distribution of a labeled corpus, and the class split per threshold.

Used to choose the default triage threshold (TriageConfig.threshold): neither
class may fall below 25 % of the tumor images.

    python benchmarks/score_distribution.py --data ../shared/data/busi
"""

from __future__ import annotations

import argparse

import numpy as np

from tumorseg.config import TriageConfig
from tumorseg.data import discover
from tumorseg.io import load_image, load_mask
from tumorseg.preprocessing import heterogeneity_score


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", required=True, help="BUSI-layout folder, manifest or DICOM folder"
    )
    args = parser.parse_args()

    scores: dict[str, list[float]] = {}
    for record in discover(args.data):
        if not record.mask_paths:
            continue
        image = load_image(record.path)
        mask = load_mask(record.mask_paths, shape=image.shape)
        if mask.any():  # tumor images only: the class describes the lesion
            scores.setdefault(record.label or "unlabeled", []).append(
                heterogeneity_score(image, mask)
            )
    everything = np.concatenate([np.asarray(v) for v in scores.values()])
    print(f"tumor images: {everything.size}")
    percentiles = (5, 10, 25, 50, 75, 90, 95)
    print("label        n   " + " ".join(f"p{p:<5}" for p in percentiles))
    for label, values in [*sorted(scores.items()), ("all", everything)]:
        row = " ".join(f"{v:<6.3f}" for v in np.percentile(values, percentiles))
        print(f"{label:<10} {len(values):>4}   {row}")
    print("\nthreshold  heterogeneous share")
    default = TriageConfig().threshold
    for threshold in (0.35, 0.40, 0.45, 0.50, 0.55, 0.60, 0.70):
        mark = "  <- default" if threshold == default else ""
        print(f"{threshold:>9.2f}  {np.mean(everything > threshold):>6.1%}{mark}")


if __name__ == "__main__":
    main()
