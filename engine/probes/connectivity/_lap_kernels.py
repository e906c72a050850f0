"""numba kernels of :mod:`engine.probes.connectivity.lap` (Jonker-Volgenant with a capped row reduction).

Kept in their own module so that numba is imported, and the kernels compiled or loaded
from numba's on-disk cache, only when an assignment is first solved.
"""

from __future__ import annotations

import numpy as np
from numba import njit

inf = np.inf


@njit(cache=True)
def reduce_rows(score, c):
    """``c = rowmax(score) - score``; returns ``max c`` (the scale of the certificate's tolerance)."""
    n, m = score.shape
    big = 0.0
    for i in range(n):
        top = score[i, 0]
        for j in range(1, m):
            if score[i, j] > top:
                top = score[i, j]
        for j in range(m):
            t = top - score[i, j]
            c[i, j] = t
            if t > big:
                big = t
    return big

@njit(cache=True)
def column_reduction(c, x, y, v, free):
    """Cold start: ``v_j = min_i c_ij``, each column to its best row when that row is free,
    then reduction transfer for rows holding one column. Returns the number of free rows."""
    n = c.shape[0]
    for j in range(n):
        v[j] = inf
        y[j] = -1
    for i in range(n):
        x[i] = -1
        for j in range(n):
            if c[i, j] < v[j]:
                v[j] = c[i, j]
                y[j] = i
    unique = np.ones(n, np.bool_)
    for j in range(n - 1, -1, -1):
        i = y[j]
        if x[i] < 0:
            x[i] = j
        else:
            unique[i] = False
            y[j] = -1
    n_free = 0
    for i in range(n):
        if x[i] < 0:
            free[n_free] = i
            n_free += 1
        elif unique[i]:
            j = x[i]
            least = inf
            for j2 in range(n):
                if j2 != j:
                    h = c[i, j2] - v[j2]
                    if h < least:
                        least = h
            v[j] -= least
    return n_free

@njit(cache=True)
def row_reduction(c, x, y, v, free, n_free, cap):
    """Augmenting row reduction over the rows ``free[:n_free]``; returns how many stay free
    (left in ``free[:returned]``)."""
    n = c.shape[0]
    cur = 0
    still_free = 0
    visits = 0
    while cur < n_free:
        visits += 1
        row = free[cur]
        cur += 1
        j1 = 0  # cheapest and second-cheapest reduced costs of this row
        u1 = c[row, 0] - v[0]
        j2 = -1
        u2 = inf
        for j in range(1, n):
            h = c[row, j] - v[j]
            if h < u2:
                if h >= u1:
                    u2 = h
                    j2 = j
                else:
                    u2 = u1
                    u1 = h
                    j2 = j1
                    j1 = j
        owner = y[j1]
        lowered = v[j1] - (u2 - u1)
        lowers = lowered < v[j1]
        if visits < cur * n and visits < cap:
            if lowers:
                v[j1] = lowered
            elif owner >= 0 and j2 >= 0:  # a tie: take the other cheapest column
                j1 = j2
                owner = y[j2]
            if owner >= 0:
                if lowers:  # the evicted row is visited next
                    cur -= 1
                    free[cur] = owner
                else:
                    free[still_free] = owner
                    still_free += 1
        elif owner >= 0:  # past the cap: place the row, leave the evicted one to step 3
            free[still_free] = owner
            still_free += 1
        x[row] = j1
        y[j1] = row
        if owner >= 0 and x[owner] == j1:
            x[owner] = -1
    return still_free

@njit(cache=True)
def augment(c, x, y, v, free, n_free):
    """A shortest augmenting path (dense Dijkstra on reduced costs) for each row in ``free[:n_free]``."""
    n = c.shape[0]
    dist = np.empty(n)
    pred = np.empty(n, np.int64)
    cols = np.empty(n, np.int64)
    for f in range(n_free):
        start = free[f]
        for j in range(n):
            cols[j] = j
            dist[j] = c[start, j] - v[j]
            pred[j] = start
        low = 0  # cols[:low] scanned (final), cols[low:up] at distance ``least`` to scan, cols[up:] the rest
        up = 0
        last = 0
        least = 0.0
        end = -1
        while True:
            if up == low:  # collect the columns at the next least distance
                last = low
                least = dist[cols[up]]
                up += 1
                for k in range(up, n):
                    j = cols[k]
                    h = dist[j]
                    if h <= least:
                        if h < least:
                            up = low
                            least = h
                        cols[k] = cols[up]
                        cols[up] = j
                        up += 1
                for k in range(low, up):
                    if y[cols[k]] < 0:
                        end = cols[k]
                        break
                if end >= 0:
                    break
            j1 = cols[low]
            low += 1
            i = y[j1]
            u1 = c[i, j1] - v[j1] - least
            for k in range(up, n):
                j = cols[k]
                h = c[i, j] - v[j] - u1
                if h < dist[j]:
                    pred[j] = i
                    dist[j] = h
                    if h == least:
                        if y[j] < 0:
                            end = j
                            break
                        cols[k] = cols[up]
                        cols[up] = j
                        up += 1
            if end >= 0:
                break
        for k in range(last):  # dual update of the scanned columns
            j1 = cols[k]
            v[j1] += dist[j1] - least
        while True:  # flip the path
            i = pred[end]
            y[end] = i
            j1 = end
            end = x[i]
            x[i] = j1
            if i == start:
                break

@njit(cache=True)
def lapjv(c, v0, warm, cap):
    """Minimise ``sum_i c[i, x[i]]``: ``(x, v)`` with ``v`` optimal column duals."""
    n = c.shape[0]
    x = np.full(n, -1, np.int64)
    y = np.full(n, -1, np.int64)
    free = np.empty(n, np.int64)
    if warm:
        v = v0.copy()
        for i in range(n):
            free[i] = i
        n_free = n
    else:
        v = np.empty(n)
        n_free = column_reduction(c, x, y, v, free)
    if n_free > 0:
        n_free = row_reduction(c, x, y, v, free, n_free, cap)
    augment(c, x, y, v, free, n_free)
    return x, v

@njit(cache=True)
def certify(c, x, v, tol):
    """Whether ``x`` is a permutation whose row duals ``c[i, x_i] - v[x_i]`` are feasible within ``tol``."""
    n = c.shape[0]
    seen = np.zeros(n, np.bool_)
    for i in range(n):
        j = x[i]
        if j < 0 or j >= n or seen[j]:
            return False
        seen[j] = True
    for i in range(n):
        u = c[i, x[i]] - v[x[i]]
        for j in range(n):
            if c[i, j] - v[j] - u < -tol:
                return False
    return True
