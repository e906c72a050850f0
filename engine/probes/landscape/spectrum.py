"""The Hessian eigenvalue density by stochastic Lanczos quadrature (SLQ).

For a unit random vector ``v``, ``v^T f(H) v`` is a Gauss quadrature over the spectrum
whose nodes are the Ritz values of ``m`` Lanczos steps from ``v`` and whose weights are
the squared first components of the Ritz vectors. Averaging over runs and smoothing
each node with a Gaussian gives the density, outliers included (they carry weight about
``1/P`` each, so draw the density on a log scale).

References
----------
L. Lin, Y. Saad and C. Yang, "Approximating spectral densities of large matrices",
SIAM Review 58 (2016).
B. Ghorbani, S. Krishnan and Y. Xiao, "An investigation into neural net optimization via
Hessian eigenvalue density", ICML 2019.
L. Sagun, U. Evci, V. U. Guney, Y. Dauphin and L. Bottou, "Empirical analysis of the
Hessian of over-parametrized neural networks", ICLR 2018 workshop (bulk and outliers).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from engine.probes.core import lanczos, ritz
from engine.probes.landscape.curvature import hessian_operator

__all__ = ["SpectralDensity", "hessian_spectral_density"]

_BASIS_BYTES = 1 << 30  # keep at most this much of Lanczos vectors for re-orthogonalisation


@dataclass(frozen=True)
class SpectralDensity:
    """A smoothed Hessian eigenvalue density and the quadrature it came from.

    Attributes
    ----------
    grid : np.ndarray, shape (n_grid,)
        Eigenvalue axis.
    density : np.ndarray, shape (n_grid,)
        Density on ``grid``; integrates to about 1.
    nodes : np.ndarray, shape (n_runs, n_iter)
        Ritz values of each run.
    weights : np.ndarray, shape (n_runs, n_iter)
        Quadrature weights; each run's sum to 1.
    sigma : float
        Standard deviation of the Gaussian placed on each node.
    trace : float
        ``P * mean over runs of sum(weights * nodes)``, an unbiased trace estimate.
    """

    grid: np.ndarray
    density: np.ndarray
    nodes: np.ndarray
    weights: np.ndarray
    sigma: float
    trace: float
    n_iter: int
    n_runs: int
    n_params: int
    n_products: int
    n_samples: int
    bn: str
    seconds: float

    @property
    def extremes(self) -> tuple[float, float]:
        """Smallest and largest Ritz value over all runs (the spectrum's ends)."""
        live = self.weights > 0
        return float(self.nodes[live].min()), float(self.nodes[live].max())


def _smooth(nodes: np.ndarray, weights: np.ndarray, n_grid: int, sigma_frac: float):
    live = weights > 0
    lo, hi = nodes[live].min(), nodes[live].max()
    width = max(hi - lo, 1e-12 * max(abs(lo), abs(hi), 1.0))
    sigma = sigma_frac * width
    grid = np.linspace(lo - 5 * sigma - 0.02 * width, hi + 5 * sigma + 0.02 * width, n_grid)
    z = (grid[:, None] - nodes[live][None, :]) / sigma  # (n_grid, n_nodes)
    kernel = np.exp(-0.5 * z**2) / (sigma * np.sqrt(2 * np.pi))
    density = kernel @ weights[live] / nodes.shape[0]
    return grid, density, sigma


def hessian_spectral_density(
    model: nn.Module,
    params: Mapping[str, Tensor],
    data,
    *,
    n_iter: int = 64,
    n_runs: int = 8,
    n_grid: int = 1000,
    sigma: float = 0.01,
    seed: int = 0,
    n_samples: int | None = None,
    **kwargs,
) -> SpectralDensity:
    """Hessian eigenvalue density by stochastic Lanczos quadrature.

    Parameters
    ----------
    n_iter : int
        Lanczos steps per run (quadrature nodes); capped at ``P``.
    n_runs : int
        Independent Gaussian starting vectors; runs advance together with batched
        Hessian-vector products.
    n_grid : int
        Points of the density grid.
    sigma : float
        Gaussian smoothing width as a fraction of the spectrum's range.
    seed : int
        Seed of the starting vectors and of the data subset.
    n_samples : int, optional
        Data subset size; all data when None.
    **kwargs
        ``bn``, ``buffers``, ``loss_fn``, ``split`` as in
        :func:`engine.probes.landscape.curvature.hessian_operator`.
    """
    if n_iter < 2 or n_runs < 1:
        raise ValueError(f"need n_iter >= 2 and n_runs >= 1; got n_iter={n_iter}, n_runs={n_runs}")
    start = time.perf_counter()
    op = hessian_operator(model, params, data, n_samples=n_samples, seed=seed, **kwargs)
    p = op.n_params
    gen = torch.Generator().manual_seed(seed)
    v0 = torch.randn(n_runs, p, generator=gen).to(op.theta)  # (R, P)
    group = max(1, min(n_runs, _BASIS_BYTES // max(1, 4 * min(n_iter, p) * p)))
    nodes, weights = [], []
    with torch.no_grad():
        for s in range(0, n_runs, group):
            res = lanczos(op, v0[s : s + group], n_iter, reorthogonalize=True)
            for a, b in zip(res.alpha, res.beta):
                values, vectors, _ = ritz(a, b)
                nodes.append(values)
                weights.append(vectors[0] ** 2)
    m = max(len(n) for n in nodes)
    nodes = np.stack([np.pad(n, (0, m - len(n)), constant_values=n[-1]) for n in nodes])
    weights = np.stack([np.pad(w, (0, m - len(w))) for w in weights])
    grid, density, width = _smooth(nodes, weights, n_grid, sigma)
    trace = float(p * np.mean((weights * nodes).sum(1)))
    return SpectralDensity(grid=grid, density=density, nodes=nodes, weights=weights, sigma=float(width), trace=trace,
                           n_iter=m, n_runs=n_runs, n_params=p, n_products=op.n_products, n_samples=op.n_samples,
                           bn=op.bn, seconds=time.perf_counter() - start)
