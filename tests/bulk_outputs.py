"""Reading a bulk job's output folder back, for the tests that check exactly-once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tumorseg.bulk.ledger import ERRORS_DIR, RESULTS_DIR, read_table


def outcome_counts(output: Path) -> Counter[str]:
    """How many rows (results + errors) each input has."""
    results = read_table(output, RESULTS_DIR).column("source_path").to_pylist()
    errors = read_table(output, ERRORS_DIR).column("source_path").to_pylist()
    return Counter(results + errors)
