"""What the scripts that read two saved evaluations share (``presence_signals.py``,
``fusion_candidates.py``, ``rechoose_policy.py``): their flags, and the presence
figures they compute from saved maps.

Each reads the predictions ``jobs/evaluate.py`` saved of one split (``--choose``),
chooses there, and reports on another (``--report``) that chooses nothing.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def choose_report_parser(doc: str, *, max_miss: bool = True) -> argparse.ArgumentParser:
    """The flags ``--choose`` and ``--report`` (and ``--max-miss`` when asked)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--choose", type=Path, required=True, help="evaluation output to choose on")
    parser.add_argument("--report", type=Path, required=True, help="evaluation output to report")
    if max_miss:
        parser.add_argument(
            "--max-miss",
            type=float,
            default=0.05,
            help="share of the choose split's tumor images a presence threshold may miss",
        )
    return parser


def top_mean(probability: np.ndarray) -> float:
    """Mean of the map's top 0.5 % of pixels (at least one): a peak that one hot pixel
    does not make."""
    top = np.sort(probability.ravel())[-max(1, probability.size // 200) :]
    return float(top.mean())


def threshold_keeping(tumor_values: Sequence[float] | np.ndarray, max_miss: float) -> float:
    """The signal threshold that keeps all but ``max_miss`` of the tumor images (those
    at or above it are called present)."""
    tumors = np.sort(np.asarray(tumor_values, dtype=float))
    return float(tumors[int(np.floor(max_miss * len(tumors)))])
