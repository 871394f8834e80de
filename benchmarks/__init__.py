"""Benchmarks of the project's fast paths against their references, measured in one process.

``python -m benchmarks [--quick] [--out FILE] [--only train,jacobian,pca,data]``. Every figure
alternates reference and ours over several repeats and reports the median, so a load change on a
shared machine hits both sides alike. The cases live in :mod:`benchmarks.cases`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def alternate(reference: Callable[[], float], ours: Callable[[], float], repeats: int) -> tuple[float, float]:
    """Median of ``repeats`` calls of each, interleaved (reference, ours, reference, ...).

    Each callable returns its own measurement (seconds or a rate), so it can exclude its set-up."""
    ref, new = [], []
    for _ in range(repeats):
        ref.append(reference())
        new.append(ours())
    return statistics.median(ref), statistics.median(new)


def timed(fn: Callable[[], object]) -> float:
    """Wall seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
