"""The Lanczos iteration for symmetric operators given only as matrix-vector products.

Used for the extreme Hessian eigenvalues (a few dozen products reach what power
iteration needs hundreds for) and for stochastic Lanczos quadrature. Several
independent runs advance in lockstep so their products can be batched.

References
----------
C. Lanczos, "An iteration method for the solution of the eigenvalue problem of linear
differential and integral operators", J. Res. Nat. Bur. Standards 45 (1950).
G. H. Golub and G. Meurant, "Matrices, Moments and Quadrature with Applications",
Princeton University Press (2010).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["LanczosResult", "lanczos", "ritz", "ritz_converged"]


@dataclass(frozen=True)
class LanczosResult:
    """Tridiagonal coefficients of ``R`` lockstep runs after ``m`` steps.

    Attributes
    ----------
    alpha : np.ndarray, shape (R, m)
        Diagonal of each run's tridiagonal matrix ``T``.
    beta : np.ndarray, shape (R, m)
        Off-diagonal (first ``m - 1`` entries) and the residual norm ``beta[:, m - 1]``.
    basis : tuple of Tensor or None
        The ``m`` orthonormal Lanczos vectors, each of shape ``(R, P)``, kept when
        eigenvectors are wanted (a tuple, not one stacked tensor: for a model of millions
        of parameters a copy of the basis is the largest allocation of the run).
    n_matvecs : int
        Products with the operator, counting each run.
    """

    alpha: np.ndarray
    beta: np.ndarray
    basis: tuple[Tensor, ...] | None
    n_matvecs: int

    @property
    def n_steps(self) -> int:
        return self.alpha.shape[1]


def ritz(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ritz values, vectors (in the Krylov basis) and residual norms of one run.

    Returns
    -------
    values : np.ndarray, shape (m,)
        Ascending.
    vectors : np.ndarray, shape (m, m)
        Columns are eigenvectors of ``T``.
    residuals : np.ndarray, shape (m,)
        ``|| A x - value x ||`` for each Ritz pair, ``beta_m * |last component|``.
    """
    m = len(alpha)
    t = np.diag(alpha) + np.diag(beta[: m - 1], 1) + np.diag(beta[: m - 1], -1)
    values, vectors = np.linalg.eigh(t)
    return values, vectors, np.abs(beta[m - 1] * vectors[m - 1])


def ritz_converged(values: np.ndarray, residuals: np.ndarray, tol: float) -> np.ndarray:
    """Which Ritz pairs of one run have converged (bool per pair, aligned with ``values``).

    A pair converged when ``residual <= tol * max(|value|, 1e-3 * scale)``, ``scale`` the
    largest ``|value|`` of the run (an estimate of the operator's norm): relative to the
    eigenvalue itself down to a thousandth of the spectrum's scale, relative to that floor
    below it. Without the floor an eigenvalue near 0 (a Hessian's null directions: the
    softmax's shift invariance, dead units) could never converge, however small its
    residual; the eigenvalue's error is at most its residual, so it is then within
    ``tol * 1e-3 * scale`` of the spectrum. The one rule for stopping and for reporting
    convergence (:func:`lanczos`, :func:`engine.probes.landscape.hessian_top_eigs`).
    """
    scale = max(float(np.abs(values).max(initial=0.0)), 1e-12)
    return residuals <= tol * np.maximum(np.abs(values), 1e-3 * scale)


#: Up to this many steps :func:`_converged` takes the whole spectrum of ``T`` (numpy's dense
#: ``eigh``: 15 us at 7 steps, where the three LAPACK calls below took 54 us).
_DENSE_STEPS = 24


def _converged(alpha, beta, k: int, which: str, tol: float) -> bool:
    """:func:`ritz_converged` on the ``k`` wanted pairs, computed without the whole spectrum of ``T``.

    Called after every step, so it must cost little next to a product with the operator: a dense
    ``eigh`` of the growing ``m x m`` matrix is O(m^3) a step (O(m^4) a run). Here LAPACK's
    bisection (``stebz``) finds only the wanted eigenvalues and the two extremes (the rule's
    scale, ``max |value|``), and inverse iteration (``stein``) only the wanted eigenvectors'
    last components, O(m k) a step. The same values and residuals as :func:`ritz` up to
    rounding (``tests/probes/core/test_lanczos_convergence.py``).
    """
    from scipy.linalg import eigh_tridiagonal

    m = len(alpha)
    k = min(k, m)
    if m <= _DENSE_STEPS:  # a dense eigh of a small T costs less than three bisections
        values, _, res = ritz(alpha, beta)
        ends = {"LA": [slice(m - k, m)], "SA": [slice(0, k)], "both": [slice(m - k, m), slice(0, k)]}[which]
        done = ritz_converged(values, res, tol)
        return all(bool(done[end].all()) for end in ends)
    d, e = np.asarray(alpha, dtype=np.float64), np.asarray(beta[: m - 1], dtype=np.float64)
    ends = {"LA": [(m - k, m - 1)], "SA": [(0, k - 1)], "both": [(m - k, m - 1), (0, k - 1)]}[which]
    extremes = [float(eigh_tridiagonal(d, e, eigvals_only=True, select="i", select_range=(i, i))[0])
                for i in (0, m - 1)]
    scale = max(abs(extremes[0]), abs(extremes[1]), 1e-12)
    for lo, hi in ends:
        values, vectors = eigh_tridiagonal(d, e, select="i", select_range=(lo, hi))
        residuals = np.abs(beta[m - 1] * vectors[m - 1])
        if not np.all(residuals <= tol * np.maximum(np.abs(values), 1e-3 * scale)):
            return False
    return True


def lanczos(
    matvec: Callable[[Tensor], Tensor],
    v0: Tensor,
    n_iter: int,
    *,
    reorthogonalize: bool = True,
    keep_basis: bool = False,
    tol: float | None = None,
    k: int = 1,
    which: str = "LA",
    on_step: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
) -> LanczosResult:
    """Run ``R`` Lanczos processes from the rows of ``v0`` in lockstep.

    Parameters
    ----------
    matvec : callable
        ``matvec(V) -> A V`` for ``V`` of shape ``(R, P)``; ``A`` symmetric.
    v0 : Tensor, shape (R, P)
        Starting vectors (normalised here).
    n_iter : int
        Most steps; at most ``P``.
    reorthogonalize : bool
        Full re-orthogonalisation against all previous vectors (twice, "twice is
        enough"); without it ghost copies of converged eigenvalues appear.
    keep_basis : bool
        Return the Lanczos vectors (needed for eigenvectors).
    tol : float, optional
        Stop once the ``k`` wanted Ritz pairs of every run pass :func:`ritz_converged`
        with this ``tol``; run all ``n_iter`` steps when None.
    k : int
        Number of wanted Ritz pairs at each wanted end.
    which : {"LA", "SA", "both"}
        Wanted end: largest algebraic, smallest algebraic, or both.
    on_step : callable, optional
        ``on_step(step, alpha, beta)`` after each step, with the coefficients so far
        (shapes ``(R, step + 1)``): for progress reports; raise from it to stop.
    """
    r, p = v0.shape
    n_iter = min(n_iter, p)
    q = v0 / v0.norm(dim=1, keepdim=True)  # (R, P)
    q_prev = torch.zeros_like(q)
    beta_prev = torch.zeros(r, dtype=q.dtype, device=q.device)
    basis = _Basis(q)
    alphas, betas, n_matvecs = [], [], 0
    for step in range(n_iter):
        w = matvec(q)  # (R, P)
        n_matvecs += r
        alpha = torch.einsum("rp,rp->r", w, q)
        w = torch.addcmul(w, alpha[:, None], q, value=-1)  # a new tensor: the caller's w is not changed
        if step > 0:
            w.addcmul_(beta_prev[:, None], q_prev, value=-1)
        beta = None
        if reorthogonalize:
            w, beta = _reorthogonalize(w, basis)
        if beta is None:
            beta = w.norm(dim=1)
        alphas.append(alpha.double().cpu().numpy())
        betas.append(beta.double().cpu().numpy())
        a, b = np.stack(alphas, 1), np.stack(betas, 1)
        if on_step is not None:
            on_step(step, a, b)
        scale = np.maximum(np.abs(a).max(1), 1e-30)
        broke = b[:, -1] <= 1e-6 * scale  # invariant subspace found: T is exact
        if broke.all() or step == n_iter - 1:
            break
        if tol is not None and all(_converged(a[i], b[i], k, which, tol) for i in range(r)):
            break
        if broke.any():
            mask = torch.as_tensor(broke, device=q.device)
            beta = torch.where(mask, torch.zeros_like(beta), beta)
            w[mask] = 0.0  # a finished run idles on a zero vector
        safe = torch.where(beta > 0, beta, torch.ones_like(beta))
        q_prev, q = q, basis.append_divided(w, safe)  # written into the basis, no copy
        beta_prev = beta
    a, b = np.stack(alphas, 1), np.stack(betas, 1)
    b[:, :-1][b[:, :-1] <= 1e-6 * np.maximum(np.abs(a).max(1, keepdims=True), 1e-30)] = 0.0
    return LanczosResult(a, b, basis.vectors() if keep_basis else None, n_matvecs)


_BLOCK = 8  # Lanczos vectors per contiguous block of the basis


class _Basis:
    """The Lanczos vectors, ``(R, P)`` each, in contiguous blocks of :data:`_BLOCK`.

    Projecting onto a block is one matrix-vector product per run, and no copy of the whole
    basis is made (for a model of millions of parameters the basis is the largest allocation
    of the run). Stacking the basis at every step instead cost 3.5 ms a step for 290k
    parameters (the MNIST-1D MLP of width 512), a sixth of a Hessian-vector product.
    """

    def __init__(self, first: Tensor):
        self.blocks: list[Tensor] = []
        self.n = 0
        self.append(first)

    def append(self, q: Tensor) -> None:
        self._slot(q).copy_(q)

    def append_divided(self, w: Tensor, norm: Tensor) -> Tensor:
        """Append ``w / norm[:, None]`` (written into the basis directly) and return it."""
        return torch.div(w, norm[:, None], out=self._slot(w))

    def _slot(self, q: Tensor) -> Tensor:
        if self.n == _BLOCK * len(self.blocks):
            self.blocks.append(q.new_empty((_BLOCK, *q.shape)))
        slot = self.blocks[-1][self.n % _BLOCK]
        self.n += 1
        return slot

    def filled(self) -> list[Tensor]:
        """The blocks, each cut to the vectors it holds: ``(j, R, P)`` views."""
        return [b[: min(_BLOCK, self.n - _BLOCK * i)] for i, b in enumerate(self.blocks)]

    def vectors(self) -> tuple[Tensor, ...]:
        return tuple(v for block in self.filled() for v in block)


def _reorthogonalize(w: Tensor, basis: _Basis) -> tuple[Tensor, Tensor]:
    """``w`` with its components along ``basis`` removed by classical Gram-Schmidt, repeated
    once when the first sweep cancelled much of ``w`` (its norm fell below ``1/sqrt(2)`` of
    what it was: the criterion of Daniel, Gragg, Kaufman and Stewart, 1976); "twice is
    enough". Without cancellation one sweep leaves ``w`` orthogonal to working precision, and
    the second would only double the cost, which grows with the basis. Returns ``w`` and its
    norm (shape ``(R,)``)."""
    after = w.norm(dim=1)
    for sweep in range(2):
        before = after
        for block in basis.filled():  # (j, R, P)
            if block.shape[1] == 1:  # one run: two matrix-vector products
                flat = block[:, 0]  # (j, P)
                w = w[0].addmv(flat.T, torch.mv(flat, w[0]), alpha=-1)[None]
            else:
                w = w - torch.einsum("jr,jrp->rp", torch.einsum("jrp,rp->jr", block, w), block)
        after = w.norm(dim=1)
        if sweep == 0 and bool((after > 0.7071 * before).all()):
            break
    return w, after
