"""Evaluation of the fused segmenter against a no-routing baseline on a labeled corpus.

:func:`evaluate_corpus` and :func:`summarize` (``tumorseg.evaluation.evaluate``)
compute per-image rows and the summary; ``tumorseg.evaluation.report`` writes the
Parquet rows, ``summary.json``, the Markdown report and its figures.
"""

from tumorseg.evaluation.evaluate import (
    DEFAULT_NORMAL_FP_MIN_AREA,
    ROW_FIELDS,
    EvaluationResult,
    MissingTruthError,
    evaluate_corpus,
    load_example,
    records_in_split,
    summarize,
)
from tumorseg.evaluation.report import summary_table, write_report

__all__ = [
    "DEFAULT_NORMAL_FP_MIN_AREA",
    "ROW_FIELDS",
    "EvaluationResult",
    "MissingTruthError",
    "evaluate_corpus",
    "load_example",
    "records_in_split",
    "summarize",
    "summary_table",
    "write_report",
]
