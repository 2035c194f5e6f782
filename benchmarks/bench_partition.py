"""Time partition_squares: guided and unguided, on the reference pass schedule.

Usage: python benchmarks/bench_partition.py [--canvas 512] [--repeats 200]
The contract target is a guided 100-tile partition of a 512-px canvas in < 5 ms.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from tumorseg.partition import DEFAULT_PASS_SCHEDULE, partition_squares


def time_call(repeats: int, fn) -> list[float]:
    fn()  # warm the lattice tables (once per process)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--canvas", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    size = args.canvas
    yy, xx = np.mgrid[:size, :size]
    guide = (((yy - 0.4 * size) ** 2 + (xx - 0.6 * size) ** 2) < (0.18 * size) ** 2).astype(
        np.float32
    )
    cold = time.perf_counter()
    partition_squares(size, size, 100)
    print(f"first call (builds the lattice table): {(time.perf_counter() - cold) * 1000:.1f} ms")
    print(f"{'tiles':>6} {'guided':>7} {'median ms':>10} {'p95 ms':>8}")
    for n_tiles in (*DEFAULT_PASS_SCHEDULE, 400):
        for guided in (False, True):
            g = guide if guided else None
            samples = sorted(
                time_call(args.repeats, lambda n=n_tiles, g=g: partition_squares(size, size, n, g))
            )
            p95 = samples[int(0.95 * (len(samples) - 1))]
            print(f"{n_tiles:>6} {guided!s:>7} {statistics.median(samples):>10.2f} {p95:>8.2f}")


if __name__ == "__main__":
    main()
