"""The generalized shape metric of Williams et al. (2021), as netrep's ``LinearMetric`` defines it.

For activations ``X (n, p)`` and ``Y (n, q)`` of two networks on the same ``n`` inputs:

1. centre the columns; zero-pad the narrower to the wider width;
2. partially whiten each, ``X -> X Z_x`` with ``Z = V diag(alpha + (1 - alpha) lambda^(-1/2)) V^T``
   from the eigendecomposition ``X^T X = V diag(lambda) V^T``, rescaled so the total
   variance ``trace(X^T X)`` is kept (``alpha = 1``: no whitening, the Procrustes metric;
   ``alpha = 0``: full whitening, a CCA metric);
3. rotate both by the optimal orthogonal alignment (the SVD of ``X_w^T Y_w``) and take the
   angle between them: ``arccos(<X_w U, Y_w V> / (||X_w|| ||Y_w||)) =
   arccos(||X_w^T Y_w||_* / (||X_w|| ||Y_w||))``, in ``[0, pi/2]``.

It is a metric on representations modulo translation, rotation and isotropic scaling
(``alpha = 1``), so distances between many networks embed and cluster consistently.

References
----------
A. H. Williams, E. Kunz, S. Kornblith and S. W. Linderman, "Generalized Shape Metrics on
Neural Representations", NeurIPS 2021 (https://github.com/ahwillia/netrep).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = ["shape_metric"]

_EIGVAL_TOL = 1e-7  # netrep's floor on the covariance eigenvalues


def _as_float64(x, name: str) -> Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x).detach().to("cpu", torch.float64)
    if t.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (samples, features) matrix; got shape {tuple(t.shape)}")
    return t


def _whiten(x: Tensor, alpha: float) -> Tensor:
    """``x @ Z`` with netrep's variance-preserving partial whitening (``alpha = 1``: ``x`` itself)."""
    if alpha > 1 - _EIGVAL_TOL:
        return x
    lam, v = torch.linalg.eigh(x.T @ x)
    lam = lam.clamp_min(_EIGVAL_TOL)
    d = alpha + (1 - alpha) * lam.rsqrt()
    new_var = (alpha**2 * lam + 2 * alpha * (1 - alpha) * lam.sqrt() + (1 - alpha) ** 2).sum()
    d = d * torch.sqrt(lam.sum() / new_var)
    return x @ ((v * d) @ v.T)


def shape_metric(x, y, *, alpha: float = 1.0) -> float:
    """Angular shape distance between two representations of the same inputs (Williams et al. 2021).

    Parameters
    ----------
    x, y : array-like, shapes (n, p) and (n, q)
        Activations of two networks on the same ``n`` inputs; widths may differ (zero padding).
    alpha : float in [0, 1], default 1.0
        Whitening: 1 keeps the representations as they are (the Procrustes shape metric),
        0 whitens them fully (CCA); in between regularises.

    Returns
    -------
    float
        The angle in radians, in ``[0, pi/2]``; 0 exactly when ``y = c x Q + v`` (``alpha = 1``).

    Raises
    ------
    ValueError
        ``alpha`` outside [0, 1], inputs that are not matrices or have different row counts,
        or a representation with no variance.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1] (1: Procrustes, 0: CCA); got {alpha!r}")
    a, b = _as_float64(x, "x"), _as_float64(y, "y")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"x and y must hold the same inputs (rows); got {a.shape[0]} and {b.shape[0]} rows")
    width = max(a.shape[1], b.shape[1])
    a = torch.nn.functional.pad(a - a.mean(0), (0, width - a.shape[1]))  # (n, width)
    b = torch.nn.functional.pad(b - b.mean(0), (0, width - b.shape[1]))
    a, b = _whiten(a, alpha), _whiten(b, alpha)
    norms = float(a.norm() * b.norm())
    if norms == 0.0:
        raise ValueError("a representation is constant over the inputs (zero variance after centring); "
                         "the shape metric is undefined -- use more varied inputs or another layer")
    cos = float(torch.linalg.svdvals(a.T @ b).sum()) / norms
    return math.acos(min(1.0, max(-1.0, cos)))
