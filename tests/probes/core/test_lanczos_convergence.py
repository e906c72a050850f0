"""The Lanczos stopping test without the whole spectrum agrees with the dense rule.

`_converged` finds only the wanted Ritz pairs (bisection + inverse iteration on the
tridiagonal T); the reference is `ritz` (a dense eigh of T) + `ritz_converged`. The two
decide the same way whenever the residual is not within rounding of the threshold: the
residuals are beta_m * |last eigenvector component|, both computed to ~m eps ||T|| by
backward-stable LAPACK routines, so cases within 1e-8 relative of the boundary are skipped.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.probes.core.lanczos import _converged, lanczos, ritz, ritz_converged


def _dense_rule(alpha, beta, k, which, tol):
    values, _, res = ritz(alpha, beta)
    k = min(k, len(values))
    ends = {"LA": [slice(-k, None)], "SA": [slice(0, k)], "both": [slice(-k, None), slice(0, k)]}[which]
    done = ritz_converged(values, res, tol)
    scale = max(float(np.abs(values).max()), 1e-12)
    margin = np.abs(res - tol * np.maximum(np.abs(values), 1e-3 * scale))
    near = any(np.any(margin[s] <= 1e-8 * scale) for s in ends)
    return all(np.all(done[s]) for s in ends), near


@pytest.mark.parametrize("which", ["LA", "SA", "both"])
@pytest.mark.parametrize("k", [1, 3])
def test_agrees_with_the_dense_rule_on_random_tridiagonals(which, k):
    rng = np.random.default_rng(0)
    checked = {True: 0, False: 0}
    for _ in range(400):
        m = int(rng.integers(1, 40))
        alpha = rng.normal(size=m) * rng.choice([1e-3, 1.0, 1e3])
        beta = np.abs(rng.normal(size=m)) * 10.0 ** rng.uniform(-9, 0)
        tol = float(10.0 ** rng.uniform(-6, -1))
        expected, near = _dense_rule(alpha, beta, k, which, tol)
        if near:
            continue
        assert _converged(alpha, beta, k, which, tol) == expected
        checked[expected] += 1
    assert checked[True] > 20 and checked[False] > 20  # both outcomes exercised


def test_a_lanczos_run_stops_at_the_same_step_as_with_the_dense_rule():
    import torch

    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(300, 300, dtype=torch.float64))
    a = q @ torch.diag(torch.linspace(-1.0, 5.0, 300, dtype=torch.float64) ** 3) @ q.T
    v0 = torch.randn(1, 300, dtype=torch.float64)
    fast = lanczos(lambda v: v @ a, v0, 120, tol=1e-6, k=2)
    steps = fast.n_steps
    values, _, res = ritz(fast.alpha[0], fast.beta[0])
    assert ritz_converged(values, res, 1e-6)[-2:].all()
    before = ritz(fast.alpha[0, : steps - 1], fast.beta[0, : steps - 1])
    assert not ritz_converged(before[0], before[2], 1e-6)[-2:].all()  # it did not stop late


@pytest.mark.parametrize("runs", [1, 3])
def test_the_basis_stays_orthonormal_over_many_blocks(runs):
    """The basis is kept in blocks of 8 and re-orthogonalised once unless the first sweep
    cancelled most of the vector (DGKS). On a matrix whose eigenvalues cluster (where plain
    Lanczos loses orthogonality fastest), 40 steps span five blocks and the basis is orthonormal
    to float32 working precision: |Q^T Q - I| <= 40 * sqrt(P) * eps32."""
    import torch

    gen = torch.Generator().manual_seed(0)
    p = 300
    q, _ = torch.linalg.qr(torch.randn(p, p, generator=gen, dtype=torch.float64))
    bulk = 1.0 + torch.linspace(0, 1, p - 5, dtype=torch.float64)  # distinct: no early invariant subspace
    values = torch.cat([bulk, torch.tensor([50.0, 49.9, 49.8, 20.0, 10.0], dtype=torch.float64)])
    a = ((q * values) @ q.T).float()
    res = lanczos(lambda v: v @ a, torch.randn(runs, p, generator=gen), 40, keep_basis=True)
    assert len(res.basis) == res.n_steps > 16  # more than two blocks of the basis
    for r in range(runs):
        basis = torch.stack([v[r] for v in res.basis]).double()  # (m, P)
        keep = basis.norm(dim=1) > 0  # a finished run idles on zero vectors
        gram = basis[keep] @ basis[keep].T
        err = (gram - torch.eye(len(gram), dtype=torch.float64)).abs().max().item()
        assert err <= 40 * p**0.5 * torch.finfo(torch.float32).eps, err
    top, _, _ = ritz(res.alpha[0], res.beta[0])
    assert abs(top[-1] - 50.0) <= 1e-3 * 50  # and the extreme eigenvalue is found
