"""Reading a bulk job's output folder back, for the tests that check exactly-once."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from tumorseg.bulk.ledger import ERRORS_DIR, RESULTS_DIR, read_table


def outcome_counts(output: Path) -> Counter[str]:
    """How many rows (results + errors) each input has."""
    results = read_table(output, RESULTS_DIR).column("source_path").to_pylist()
    errors = read_table(output, ERRORS_DIR).column("source_path").to_pylist()
    return Counter(results + errors)


def kill_after_first_commit(command: list[str], output: Path, timeout_s: float = 180) -> None:
    """Start a bulk job's driver and SIGKILL it as soon as its first results part is
    committed (later batches may be half done: the point of the kill)."""
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and driver.poll() is None:
        if any((output / RESULTS_DIR).glob("part-*.parquet")):
            break
        time.sleep(0.05)
    assert driver.poll() is None, "the driver ended before any batch was committed"
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
