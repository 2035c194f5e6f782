"""Per-image CPU work of a batch (binarizing, resizing maps back, the heterogeneity
score, post-processing) spread over the threads this process may use.

OpenCV and NumPy release the GIL, so threads run these in parallel. The count is
torch's thread count, the CPU budget every worker already sets for its networks (a Ray
actor from its CPUs, a GPU host all its cores); in a process that never imported
torch the work stays on one thread. On a GPU the networks take little of a batch's
time and this work the rest: spread over the host's cores it stops capping the
pipeline's images/s.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import TypeVar

T = TypeVar("T")


def map_images(function: Callable[..., T], *per_image: Iterable) -> list[T]:
    """``[function(*args) for args in zip(*per_image)]``, in order, on up to
    :func:`cpu_threads` threads; an exception of any image is raised here."""
    arguments = list(zip(*per_image, strict=True))
    workers = min(cpu_threads(), len(arguments))
    if workers < 2:
        return [function(*args) for args in arguments]
    return list(_pool(workers).map(lambda args: function(*args), arguments))


def cpu_threads() -> int:
    """The threads per-image work may use: torch's thread count, 1 without torch."""
    torch = sys.modules.get("torch")
    return max(1, torch.get_num_threads()) if torch is not None else 1


@lru_cache(maxsize=4)
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tumorseg-image")
