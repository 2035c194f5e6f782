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
    _settle(output)


def _settle(output: Path, quiet_s: float = 3.0, timeout_s: float = 60.0) -> None:
    """Wait until no part is committed for ``quiet_s``: the dead driver's actors live
    until Ray reaps them and may commit a batch they were writing (a race seen in a
    full run: the rerun then found more done than was counted at the kill)."""

    def parts() -> int:
        return sum(1 for d in (RESULTS_DIR, ERRORS_DIR) for _ in (output / d).glob("part-*"))

    deadline = time.monotonic() + timeout_s
    seen, since = parts(), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet_s:
        time.sleep(0.2)
        now = parts()
        if now != seen:
            seen, since = now, time.monotonic()
