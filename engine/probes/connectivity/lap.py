"""Exact dense linear assignment, warm-started across the repeated solves of weight matching.

Weight matching (:mod:`engine.probes.connectivity.align`) solves one assignment problem per perm and
pass, and each perm's problem changes only a little from one pass to the next (only its
neighbours moved). :class:`WarmAssignments` keeps, per perm, the optimal column duals of
its last solve and starts the next solve from them.

The solver is Jonker and Volgenant's LAPJV on the minimisation problem
``c = rowmax(score) - score`` (subtracting a row constant changes every assignment's total
by the same amount). It keeps column duals ``v`` and a partial assignment ``x`` with the
invariant that every assigned row sits on a column of least reduced cost,
``c[i, x[i]] - v[x[i]] == min_j c[i, j] - v[j]`` -- dual feasibility plus complementary
slackness -- and grows the assignment without breaking it:

1. start: cold, column reduction and reduction transfer; warm, the previous solve's ``v``
   with every row free (any ``v`` is a valid start: the row duals are re-derived as row
   minima, so a warm start changes the speed, never the answer);
2. augmenting row reduction: a free row takes its cheapest column and lowers that column's
   dual by the gap to its second-cheapest, evicting the previous owner (an auction step).
   On trained networks' matrices the gaps are tiny and this can go on for O(n^2) visits,
   so it is capped at ``4 n`` visits, after which rows are placed without re-queueing;
3. shortest augmenting paths (Dijkstra on reduced costs, JV's dense version) for the rows
   still free, each with the standard dual update.

With every row assigned the invariant is the linear programme's optimality condition, so
the assignment is optimal; as the float optimum is unique with probability one it is the
one :func:`scipy.optimize.linear_sum_assignment` returns. Every result is also certified in
O(n^2) (no entry undercuts its row's assigned column by more than ``1e-11 max |c|``) and
solved again by scipy if the check fails.

On the solves of weight matching it is several times faster than scipy on the row- and
column-reduced matrices, with the same permutation at every call, and much faster again
after the first pass (``bench/results/core_measurements.md``, ``alignment_weight_matching.txt``).

The kernels are compiled by numba (a dependency of umap-learn) on first use, once, then
loaded from numba's on-disk cache in each process.

References
----------
R. Jonker and A. Volgenant, "A shortest augmenting path algorithm for dense and sparse
linear assignment problems", Computing 38 (1987) 325-340.
D. P. Bertsekas, "The auction algorithm: a distributed relaxation method for the assignment
problem", Annals of Operations Research 14 (1988) (the row reduction's auction step).
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["WarmAssignments", "solve_assignment"]

_ARR_VISITS = 4  # augmenting row reduction stops re-queueing rows after this many visits per row
_CERTIFY_RTOL = 1e-11

_KERNELS = None


def _kernels():
    """The numba kernels, compiled (or loaded from numba's cache) on first use."""
    global _KERNELS
    if _KERNELS is None:
        import engine.probes.connectivity._lap_kernels as k

        _KERNELS = k.reduce_rows, k.lapjv, k.certify
    return _KERNELS


class WarmAssignments:
    """Maximisation assignment problems solved exactly, each from its key's last optimal duals.

    >>> solver = WarmAssignments()
    >>> p = solver.maximize("layers.0", score)          # cold
    >>> p = solver.maximize("layers.0", score + small)  # warm: most rows settle at once

    Attributes
    ----------
    fallbacks : int
        Solves whose certificate failed and that scipy solved instead (none seen so far).
    """

    def __init__(self, *, warm: bool = True):
        self.warm = warm
        self.duals: dict[Hashable, np.ndarray] = {}
        self.fallbacks = 0

    def maximize(self, key: Hashable, score: np.ndarray) -> np.ndarray:
        """``p`` (int64) maximising ``sum_i score[i, p[i]]`` for a square, finite ``score``."""
        score = np.ascontiguousarray(score, dtype=np.float64)
        if score.ndim != 2 or score.shape[0] != score.shape[1]:
            raise ValueError(f"the score matrix must be square; got shape {score.shape}")
        if not np.isfinite(score).all():
            raise ValueError("the score matrix has NaN or infinite entries")
        n = len(score)
        if n == 0:
            return np.zeros(0, np.int64)
        reduce_rows, lapjv, certify = _kernels()
        c = np.empty_like(score)
        big = reduce_rows(score, c)
        prev = self.duals.get(key) if self.warm else None
        warm = prev is not None and len(prev) == n
        x, v = lapjv(c, prev if warm else np.empty(0), warm, _ARR_VISITS * n)
        if not certify(c, x, v, _CERTIFY_RTOL * max(big, 1e-300)):
            self.fallbacks += 1
            self.duals.pop(key, None)
            return linear_sum_assignment(c)[1].astype(np.int64)
        self.duals[key] = v
        return x


def solve_assignment(score: np.ndarray) -> np.ndarray:
    """``p`` maximising ``sum_i score[i, p[i]]`` (one cold, exact solve; see :class:`WarmAssignments`)."""
    return WarmAssignments(warm=False).maximize(None, score)
