"""Numerical tolerances from the dtype's precision and the size of the computation, for tests that
compare two computations of the same quantity by different orders of summation (other kernels,
other CPUs, forward against reverse mode, float32 against float64).

A sum of n rounded terms is off by about eps * sqrt(n) of its scale when the rounding errors are
independent (a random walk), and by at most about eps * n in the worst case (Higham's gamma_n =
n u / (1 - n u), u = eps / 2). ``rel_tol`` gives the first, or the second with ``worst_case=True``,
times one safety factor for the whole suite: chained layers, several reductions in a row and a
problem's condition are not in either model, and other CPUs sum in other orders. Where a
problem's condition is large (an ill-separated eigenvalue, a cancelling variance), the test
multiplies it in explicitly. A tolerance is relative: multiply it by the compared quantity's scale.
"""

from __future__ import annotations

import math

import torch

# More than ten times what any comparison in the suite has needed, on CPUs with and without
# AVX-512 and native bf16.
SAFETY = 16.0


def rel_tol(dtype: torch.dtype, terms: int = 1, worst_case: bool = False, safety: float = SAFETY) -> float:
    """Relative rounding error of a sum of ``terms`` products in ``dtype``: safety * eps * sqrt(terms),
    or safety * eps * terms for a worst-case (one-signed) accumulation of errors."""
    if terms < 1:
        raise ValueError(f"a sum has at least one term, not {terms}")
    return safety * torch.finfo(dtype).eps * (terms if worst_case else math.sqrt(terms))
