"""Benchmarks of the project's fast paths against their references, measured in one run.

``python -m benchmarks [--quick] [--device cpu|cuda] [--out FILE] [--only train,jacobian,pca,data]``. Every figure
alternates reference and ours over several repeats and reports the median, so a load change on a
shared machine hits both sides alike. The cases live in :mod:`benchmarks.cases`; training and the
Jacobian run each side in its own :class:`Worker` process.

Ours runs as the project would on the device: in the precision ``precision: auto`` resolves to
there (:func:`inpaint.hardware.resolve_precision`). The JSON records the device's capabilities
(ISA level, native bf16, GPU and compute capability) and, for each computing case, its efficiency:
the FLOP/s achieved over the matmul peak measured on the device in the dtype the case computes in.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def alternate(reference: Callable[[], float], ours: Callable[[], float], repeats: int) -> tuple[float, float]:
    """Median of ``repeats`` calls of each, interleaved (reference, ours, reference, ...).

    Each callable returns its own measurement (seconds or a rate), so it can exclude its set-up."""
    ref, new = [], []
    for _ in range(repeats):
        ref.append(reference())
        new.append(ours())
    return statistics.median(ref), statistics.median(new)


def synchronize(device: str) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously), so a clock reading means done."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: str = "cpu") -> float:
    """Wall seconds of one call, the device's work included."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


class Worker:
    """A :mod:`benchmarks.worker` process; ``worker(job, **arguments)`` runs one job there."""

    def __init__(self, retain_freed_memory: bool = False) -> None:
        command = [sys.executable, "-m", "benchmarks.worker"] + (["--retain-freed-memory"] if retain_freed_memory else [])
        self.process = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def __call__(self, job: str, **arguments) -> float:
        self.process.stdin.write(json.dumps({"job": job, **arguments}) + "\n")
        self.process.stdin.flush()
        for line in self.process.stdout:
            if line.startswith("RESULT "):
                return json.loads(line[len("RESULT ") :])["value"]
        raise RuntimeError(f"benchmark worker exited with code {self.process.wait()} during job {job!r} (its error is above)")

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc) -> None:
        self.process.stdin.close()
        self.process.wait()
