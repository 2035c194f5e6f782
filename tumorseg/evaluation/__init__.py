"""Evaluation of the fused segmenter against a no-routing baseline on a labeled corpus.

Predict once, then score: :func:`predict_split` (``tumorseg.evaluation.predictions``)
saves every network's output for a split; :func:`evaluate_predictions` and
:func:`summarize` (``tumorseg.evaluation.evaluate``) score them under a config;
:func:`choose_policy` (``tumorseg.evaluation.policy``) chooses presence, route and
fusion settings from them; ``tumorseg.evaluation.report`` writes the Parquet rows,
``summary.json``, the Markdown report and its figures.
"""

from tumorseg.evaluation.evaluate import (
    DEFAULT_NORMAL_FP_MIN_AREA,
    ROW_FIELDS,
    EvaluationResult,
    evaluate_corpus,
    evaluate_predictions,
    paired_bootstrap,
    summarize,
)
from tumorseg.evaluation.examples import MissingTruthError, load_example, records_in_split
from tumorseg.evaluation.policy import choose_policy
from tumorseg.evaluation.predictions import PredictionSet, load_predictions, predict_split
from tumorseg.evaluation.report import summary_table, write_report

__all__ = [
    "DEFAULT_NORMAL_FP_MIN_AREA",
    "ROW_FIELDS",
    "EvaluationResult",
    "MissingTruthError",
    "PredictionSet",
    "choose_policy",
    "evaluate_corpus",
    "evaluate_predictions",
    "load_example",
    "load_predictions",
    "paired_bootstrap",
    "predict_split",
    "records_in_split",
    "summarize",
    "summary_table",
    "write_report",
]
