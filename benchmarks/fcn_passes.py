"""Where the multi-scale FCN gains or loses Dice, pass by pass, under each feedback rule.

    python benchmarks/fcn_passes.py --model model --evaluation eval-val

Runs a model folder's gray net and multi-scale FCN (first pass guided by the gray net)
on the tumor images of a split that ``jobs/evaluate.py`` saved (``--evaluation``:
its saved cases name the images, their masks and their classes),
once per feedback rule (``MultiScaleConfig.feedback``). For the gray net, each pass
and the fused map it prints the mean Dice (all tumor images, then by the truth's
class), the median ratio of predicted to true area and the mean probability outside
the truth.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from tumorseg.evaluation import load_example, load_predictions
from tumorseg.evaluation.predictions import Case
from tumorseg.inference import Segmenter
from tumorseg.inference.multiscale import fuse_passes, pass_maps
from tumorseg.inference.tensors import resize
from tumorseg.metrics import dice

FEEDBACKS = ("map", "largest_region")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="model folder")
    parser.add_argument("--evaluation", type=Path, required=True, help="jobs/evaluate.py output")
    parser.add_argument("--limit", type=int, default=None, help="first N tumor images only")
    return parser.parse_args()


def tumor_cases(evaluation: Path, limit: int | None) -> list[Case]:
    cases = load_predictions(evaluation / "predictions").good
    return [case for case in cases if case.has_tumor][:limit]


def figures(probability: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    """Dice at one half, predicted / true area, mean probability outside the truth."""
    mask = probability >= 0.5
    return dice(mask, truth), mask.sum() / max(truth.sum(), 1), float(probability[~truth].mean())


def measure(segmenter: Segmenter, cases: list[Case], feedback: str) -> dict[str, np.ndarray]:
    """``stage -> (images, 3)`` figures for the gray net, every pass and the fusion."""
    multiscale = replace(segmenter.config.multiscale, feedback=feedback)
    fcn = segmenter.models.network("fcn")
    rows: dict[str, list] = {}
    for case in cases:
        example = load_example(case.record(), segmenter.config.limits)
        gray, truth = example.gray, example.truth
        graynet = segmenter.graynet_probabilities([gray])[0]
        passes = pass_maps(
            fcn, [gray], segmenter.config.networks, multiscale, segmenter.device, guides=[graynet]
        )
        stages = {"gray net (guide)": graynet}
        for n_tiles, maps in zip(multiscale.pass_tiles, passes, strict=True):
            stages[f"pass {n_tiles}"] = resize(np.asarray(maps[0]), *gray.shape)
        stages["fused"] = resize(np.asarray(fuse_passes(passes, multiscale)[0]), *gray.shape)
        for stage, probability in stages.items():
            rows.setdefault(stage, []).append(figures(probability, truth))
    return {stage: np.array(values) for stage, values in rows.items()}


def main() -> None:
    args = parse_args()
    segmenter = Segmenter.from_folder(str(args.model), device="cpu")
    cases = tumor_cases(args.evaluation, args.limit)
    heterogeneous = np.array([case.true_class == "heterogeneous" for case in cases])
    print(f"{len(cases)} tumor images ({heterogeneous.sum()} heterogeneous) of {args.evaluation}")
    for feedback in FEEDBACKS:
        print(f"\nfeedback={feedback}")
        print("| stage | Dice | homogeneous | heterogeneous | area / truth | p outside |")
        print("|---|---|---|---|---|---|")
        for stage, values in measure(segmenter, cases, feedback).items():
            dices = values[:, 0]
            print(
                f"| {stage} | {dices.mean():.3f} | {dices[~heterogeneous].mean():.3f} "
                f"| {dices[heterogeneous].mean():.3f} | {np.median(values[:, 1]):.2f} "
                f"| {values[:, 2].mean():.3f} |"
            )


if __name__ == "__main__":
    main()
