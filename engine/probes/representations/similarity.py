"""Similarity of two representations of the same samples.

Every function takes two matrices with the same rows (samples) -- NumPy arrays or
tensors, any float dtype, on any device; arrays with more than two dims are
flattened after the first -- and returns a Python float. All arithmetic runs in
float64 (centring first), which keeps the unbiased HSIC estimator accurate where a
float32 implementation cancels catastrophically.

Each docstring says which direction means "more similar" and what the measure is
invariant to. For all layer pairs of two models at once use
:func:`engine.probes.representations.similarity_grid.similarity_grid`, which shares the per-layer work.

References
----------
.. [1] Kornblith, S., Norouzi, M., Lee, H., Hinton, G. "Similarity of Neural Network
   Representations Revisited." ICML 2019.
.. [2] Song, L., Smola, A., Gretton, A., Bedo, J., Borgwardt, K. "Feature Selection via
   Dependence Maximization." JMLR 13, 2012 (unbiased HSIC).
.. [3] Nguyen, T., Raghu, M., Kornblith, S. "Do Wide and Deep Networks Learn the Same
   Things?" ICLR 2021 (minibatch CKA).
.. [4] Williams, A. H., Kunz, E., Kornblith, S., Linderman, S. "Generalized Shape
   Metrics on Neural Representations." NeurIPS 2021.
.. [5] Raghu, M., Gilmer, J., Yosinski, J., Sohl-Dickstein, J. "SVCCA." NeurIPS 2017.
.. [6] Morcos, A., Raghu, M., Bengio, S. "Insights on representational similarity in
   neural networks with canonical correlation." NeurIPS 2018 (PWCCA).
.. [7] Kriegeskorte, N., Mur, M., Bandettini, P. "Representational similarity
   analysis." Front. Syst. Neurosci. 2008.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterable

import numpy as np
import torch
from scipy import stats
from scipy.spatial.distance import pdist
from torch import Tensor

__all__ = [
    "canonical_correlations",
    "debiased_cka",
    "hsic_unbiased",
    "linear_cka",
    "minibatch_cka",
    "procrustes_distance",
    "pwcca",
    "rbf_cka",
    "rdm",
    "rsa",
    "svcca",
]


def as_matrix(x, name: str = "x") -> Tensor:
    """``x`` as a float64 tensor of shape ``(n, d)`` (flattening trailing dims)."""
    t = x.detach() if isinstance(x, Tensor) else torch.as_tensor(np.ascontiguousarray(x))
    if t.ndim < 2:
        raise ValueError(f"{name} must have shape (n_samples, n_features); got shape {tuple(t.shape)}")
    return t.to(torch.float64).reshape(t.shape[0], -1)


def _pair(x, y) -> tuple[Tensor, Tensor]:
    a, b = as_matrix(x, "x"), as_matrix(y, "y")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"x and y must have the same rows (samples); got {a.shape[0]} and {b.shape[0]}")
    return a, b.to(a.device)


def center(x: Tensor) -> Tensor:
    """Subtract the column means: ``(n, d) -> (n, d)``."""
    return x - x.mean(dim=0, keepdim=True)


def _ratio(num: float, den_x: float, den_y: float, what: str) -> float:
    den = math.sqrt(den_x * den_y) if den_x > 0 and den_y > 0 else 0.0
    if den == 0.0 or not math.isfinite(den):
        warnings.warn(f"{what}: a representation has zero (or negative estimated) self-similarity "
                      f"(x: {den_x:.3g}, y: {den_y:.3g}), e.g. constant features; returning nan",
                      RuntimeWarning, stacklevel=3)
        return float("nan")
    return float(num / den)


def linear_cka(x, y, *, form: str = "auto") -> float:
    """Linear centred kernel alignment (CKA) [1]_.

    ``CKA = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` with column-centred
    ``Xc, Yc``, equal to the Gram form ``<HKH, HLH> / (||HKH|| ||HLH||)`` with
    ``K = X X^T``.

    Larger means more similar; the value lies in ``[0, 1]`` and ``CKA(X, X) = 1``.
    Invariant to orthogonal transforms and isotropic scaling of either matrix and
    to translation (adding a constant row); not invariant to general invertible
    linear maps.

    Parameters
    ----------
    x, y : array-like, shapes (n, d_x) and (n, d_y)
    form : {'auto', 'feature', 'gram'}
        Compute through ``d x d`` cross-products or ``n x n`` Gram matrices;
        ``'auto'`` picks the cheaper. Both give the same value.
    """
    a, b = _pair(x, y)
    a, b = center(a), center(b)
    n, dx, dy = a.shape[0], a.shape[1], b.shape[1]
    if form == "auto":
        form = "feature" if dx * dy + dx * dx + dy * dy <= n * (dx + dy + 3) else "gram"
    if form == "feature":
        num = (b.T @ a).square().sum().item()
        den_x, den_y = (a.T @ a).square().sum().item(), (b.T @ b).square().sum().item()
    elif form == "gram":
        k, l_ = a @ a.T, b @ b.T
        num, den_x, den_y = (k * l_).sum().item(), k.square().sum().item(), l_.square().sum().item()
    else:
        raise ValueError(f"form must be 'auto', 'feature' or 'gram'; got {form!r}")
    return _ratio(num, den_x, den_y, "linear_cka")


def frobenius_cross(a: Tensor, b: Tensor) -> float:
    """``||b^T a||_F^2 = <a a^T, b b^T>``, through whichever of the ``d_a x d_b`` product
    or the two ``n x n`` Gram matrices is cheaper."""
    n, da, db = a.shape[0], a.shape[1], b.shape[1]
    if da * db <= n * (da + db + 1):
        return (b.T @ a).square().sum().item()
    return ((a @ a.T) * (b @ b.T)).sum().item()


def check_unbiased(n: int, what: str) -> None:
    if n < 4:
        raise ValueError(f"{what} uses the unbiased HSIC estimator, which needs at least 4 samples "
                         f"(rows); got {n}. Use more samples or linear_cka.")


def _hsic1_terms(a: Tensor, b: Tensor) -> float:
    """Unbiased linear HSIC of column-centred ``a, b`` in feature form, O(n d_x d_y).

    With centred features the zero-diagonal Gram ``K~`` has ``K~ 1 = -k`` (``k`` the
    squared row norms), so every term of Song et al.'s estimator reduces to
    ``||b^T a||^2`` and dot products of row norms.
    """
    n = a.shape[0]
    k, l_ = a.square().sum(1), b.square().sum(1)  # (n,), (n,)
    cross = frobenius_cross(a, b)
    kl = (k @ l_).item()
    total = cross - kl + k.sum().item() * l_.sum().item() / ((n - 1) * (n - 2)) - 2.0 * kl / (n - 2)
    return total / (n * (n - 3))


def hsic_unbiased(k: Tensor, l_: Tensor) -> float:
    """Unbiased HSIC estimator of Song et al. [2]_ on two ``n x n`` kernel matrices.

    ``HSIC_1 = [tr(K~L~) + 1^T K~ 1 1^T L~ 1 / ((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1] / (n(n-3))``
    with ``K~, L~`` the kernels with zeroed diagonals. Needs ``n >= 4``.
    """
    n = k.shape[0]
    check_unbiased(n, "hsic_unbiased")
    k = k.to(torch.float64) - torch.diag(torch.diagonal(k)).to(torch.float64)
    l_ = l_.to(torch.float64) - torch.diag(torch.diagonal(l_)).to(torch.float64)
    k1, l1 = k.sum(1), l_.sum(1)  # (n,)
    total = (k * l_).sum() + k1.sum() * l1.sum() / ((n - 1) * (n - 2)) - 2.0 * (k1 @ l1) / (n - 2)
    return float(total / (n * (n - 3)))


def debiased_cka(x, y) -> float:
    """Linear CKA with the unbiased HSIC estimator (debiased CKA) [1]_ [2]_.

    Removes the positive bias of :func:`linear_cka` at small ``n`` / large ``d``
    (two independent random matrices score near 0 instead of well above it).
    Larger means more similar; ``CKA(X, X) = 1``; the estimate can dip slightly
    below 0. Same invariances as :func:`linear_cka`. Needs ``n >= 4``.
    """
    a, b = _pair(x, y)
    check_unbiased(a.shape[0], "debiased_cka")
    a, b = center(a), center(b)
    return _ratio(_hsic1_terms(a, b), _hsic1_terms(a, a), _hsic1_terms(b, b), "debiased_cka")


def minibatch_cka(batches_x: Iterable, batches_y: Iterable) -> float:
    """Minibatch linear CKA of Nguyen et al. [3]_.

    ``CKA = mean_i HSIC_1(X_i, Y_i) / sqrt(mean_i HSIC_1(X_i, X_i) mean_i HSIC_1(Y_i, Y_i))``:
    the unbiased HSIC terms are accumulated (in float64) over the batches and the
    ratio is taken once at the end, so the estimate does not depend on batch size
    the way an average of per-batch CKAs would. One batch gives :func:`debiased_cka`.

    Larger means more similar; invariant to orthogonal transforms, isotropic scaling
    and translation of either representation.

    Parameters
    ----------
    batches_x, batches_y : iterables of array-like, shapes (b_i, d_x) and (b_i, d_y)
        Matching batches (same samples, same order); every batch needs ``b_i >= 4``.
    """
    sums, count = [0.0, 0.0, 0.0], 0
    sentinel = object()
    for bx, by in _zip_strict(batches_x, batches_y, sentinel):
        a, b = _pair(bx, by)
        check_unbiased(a.shape[0], f"minibatch_cka (batch {count})")
        a, b = center(a), center(b)
        for i, (p, q) in enumerate(((a, b), (a, a), (b, b))):
            sums[i] += _hsic1_terms(p, q)
        count += 1
    if count == 0:
        raise ValueError("minibatch_cka needs at least one batch; got none")
    return _ratio(sums[0] / count, sums[1] / count, sums[2] / count, "minibatch_cka")


def _zip_strict(xs: Iterable, ys: Iterable, sentinel):
    ix, iy = iter(xs), iter(ys)
    for k in itertools.count():
        bx, by = next(ix, sentinel), next(iy, sentinel)
        if bx is sentinel and by is sentinel:
            return
        if bx is sentinel or by is sentinel:
            raise ValueError(f"batches_x and batches_y must have the same number of batches; one ended after {k}")
        yield bx, by


def rbf_cka(x, y, sigma: float = 1.0) -> float:
    """CKA with Gaussian (RBF) kernels [1]_.

    ``K_ij = exp(-||x_i - x_j||^2 / (2 sigma^2 m))`` where ``m`` is the median squared
    distance among the rows, so ``sigma`` is a fraction of the median distance (as in
    Kornblith et al.'s reference code). Larger means more similar, in ``[0, 1]``.
    Invariant to orthogonal transforms, isotropic scaling (through the median
    bandwidth) and translation; not to general linear maps. Costs ``O(n^2)`` memory.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be positive (a fraction of the median distance); got {sigma}")
    a, b = _pair(x, y)
    k, l_ = centered_rbf_gram(a, sigma), centered_rbf_gram(b, sigma)
    return _ratio((k * l_).sum().item(), k.square().sum().item(), l_.square().sum().item(), "rbf_cka")


def centered_rbf_gram(x: Tensor, sigma: float) -> Tensor:
    """Doubly centred RBF Gram ``H K H`` of ``x (n, d)`` with median-scaled bandwidth."""
    x = center(x)
    sq = x.square().sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)).clamp_min_(0.0)  # (n, n)
    med = _median(d2.flatten())
    k = torch.exp(-d2 / (2.0 * sigma**2 * med)) if med > 0 else torch.ones_like(d2)
    return k - k.mean(0, keepdim=True) - k.mean(1, keepdim=True) + k.mean()


def _median(v: Tensor) -> float:
    """NumPy-style median (mean of the two middle values for an even count)."""
    m = v.numel()
    hi = v.kthvalue(m // 2 + 1).values.item()
    return hi if m % 2 else 0.5 * (hi + v.kthvalue(m // 2).values.item())


def procrustes_distance(x, y, *, angular: bool = False) -> float:
    """Orthogonal Procrustes distance between two representations [4]_.

    Both are centred and scaled to unit Frobenius norm; with ``s = ||X^T Y||_*`` (the
    nuclear norm, i.e. the best alignment over orthogonal maps),
    ``d = sqrt(2 - 2 s)`` (Euclidean, in ``[0, sqrt 2]``) or ``arccos(s)``
    (``angular=True``, in ``[0, pi/2]``, a metric on shapes).

    Smaller means more similar: 0 exactly when ``Y = c X Q + v`` for a scalar ``c > 0``,
    an orthogonal ``Q`` and a translation ``v``. Invariant to orthogonal transforms,
    isotropic scaling and translation of either; widths may differ (zero padding).
    """
    a, b = _pair(x, y)
    nuc = procrustes_similarity(normalized(a), normalized(b))
    return float(math.acos(nuc) if angular else math.sqrt(max(0.0, 2.0 - 2.0 * nuc)))


def normalized(x: Tensor) -> Tensor:
    """Centre, scale to unit Frobenius norm and compress to at most ``n`` columns.

    The compression ``R = U S`` (from ``X X^T = U S^2 U^T``) keeps every rotation-
    invariant quantity: the singular values of ``X^T Y`` equal those of ``R_x^T R_y``.
    """
    x = center(x)
    norm = x.norm()
    x = x / norm if norm > 0 else x
    if x.shape[1] <= x.shape[0]:
        return x
    evals, evecs = torch.linalg.eigh(x @ x.T)
    return evecs * evals.clamp_min(0.0).sqrt()  # (n, n)


def procrustes_similarity(a: Tensor, b: Tensor) -> float:
    """Nuclear norm of ``a^T b`` for normalised ``a, b``, clipped to ``[0, 1]``."""
    return float(min(1.0, torch.linalg.svdvals(a.T @ b).sum().item()))


def orthonormal_basis(x: Tensor, keep: float | int | None = None) -> tuple[Tensor, Tensor]:
    """Orthonormal basis of the centred column space of ``x`` and the centred ``x``.

    ``keep`` truncates as SVCCA does: a float in ``(0, 1]`` keeps the leading
    directions explaining that fraction of variance, an int keeps that many; ``None``
    keeps every direction above numerical rank tolerance.
    """
    xc = center(x)
    u, s, _ = torch.linalg.svd(xc, full_matrices=False)
    tol = s[0].item() * max(xc.shape) * torch.finfo(torch.float64).eps if s.numel() else 0.0
    r = int((s > tol).sum())
    if isinstance(keep, float):
        if not 0.0 < keep <= 1.0:
            raise ValueError(f"keep must be a variance fraction in (0, 1] or a positive int; got {keep}")
        frac = torch.cumsum(s[:r].square(), 0) / s[:r].square().sum()
        r = min(r, int(torch.searchsorted(frac, torch.tensor(keep - 1e-12, dtype=frac.dtype)).item()) + 1)
    elif isinstance(keep, int):
        if keep < 1:
            raise ValueError(f"keep must be a variance fraction in (0, 1] or a positive int; got {keep}")
        r = min(r, keep)
    return u[:, :r], xc


def _cca(qx: Tensor, qy: Tensor, what: str) -> tuple[Tensor, Tensor]:
    n = qx.shape[0]
    if qx.shape[1] + qy.shape[1] >= n:
        warnings.warn(f"{what}: {qx.shape[1]} + {qy.shape[1]} directions with only {n} samples; canonical "
                      "correlations are then trivially near 1. Use more samples or truncate (svcca keep=).",
                      RuntimeWarning, stacklevel=3)
    u, rho, _ = torch.linalg.svd(qx.T @ qy, full_matrices=False)
    return rho.clamp(0.0, 1.0), u


def canonical_correlations(x, y) -> np.ndarray:
    """Canonical correlations of ``x`` and ``y``, largest first (numerically stable: SVD of
    the product of orthonormal bases). Invariant to invertible linear maps and translation."""
    a, b = _pair(x, y)
    rho, _ = _cca(orthonormal_basis(a)[0], orthonormal_basis(b)[0], "canonical_correlations")
    return rho.cpu().numpy()


def svcca(x, y, keep: float | int | None = 0.99) -> float:
    """Singular vector CCA [5]_: the mean canonical correlation after SVD truncation.

    Each representation is reduced to the leading singular directions explaining
    ``keep`` of its variance (``None``: all), then CCA is run between the reduced
    subspaces. Larger means more similar, in ``[0, 1]``. Invariant to orthogonal
    transforms, isotropic scaling and translation; with ``keep=None`` also to every
    invertible linear map (the truncation step is what breaks that).
    """
    a, b = _pair(x, y)
    rho, _ = _cca(orthonormal_basis(a, keep)[0], orthonormal_basis(b, keep)[0], "svcca")
    return float(rho.mean())


def pwcca(x, y, keep: float | int | None = None) -> float:
    """Projection-weighted CCA [6]_: canonical correlations weighted by how much of
    ``x``'s neurons each canonical direction accounts for.

    ``alpha_i = sum_j |<h_i, x_j>|`` with ``h_i`` the ``i``-th canonical variate on the
    ``x`` side and ``x_j`` the centred neuron columns; ``PWCCA = sum_i alpha_i rho_i / sum alpha``.
    Larger means more similar, in ``[0, 1]``. Not symmetric (weights use ``x``).
    Invariant to translation, isotropic scaling and permutations of neurons; the
    canonical correlations are invariant to invertible linear maps but the weights
    are tied to the neuron basis, so the weighted mean is not.
    """
    a, b = _pair(x, y)
    qx, xc = orthonormal_basis(a, keep)
    rho, u = _cca(qx, orthonormal_basis(b, keep)[0], "pwcca")
    h = qx @ u  # (n, r) canonical variates of x, unit norm
    alpha = (h.T @ xc).abs().sum(1)  # (r,)
    return float((alpha * rho).sum() / alpha.sum())


def rdm(x, metric: str = "correlation") -> np.ndarray:
    """Condensed representational dissimilarity matrix (upper triangle, ``n(n-1)/2``)."""
    return pdist(as_matrix(x).cpu().numpy(), metric=metric)


def rsa(x, y, metric: str = "correlation", compare: str = "spearman") -> float:
    """Representational similarity analysis [7]_: correlation of the two RDMs.

    Builds each representation's dissimilarity matrix between samples (``metric`` of
    :func:`scipy.spatial.distance.pdist`: 'correlation', 'euclidean', 'cosine', ...)
    and correlates their upper triangles with ``compare`` ('spearman', 'pearson' or
    'kendall'). Larger means more similar, in ``[-1, 1]``. With 'euclidean' RDMs it is
    invariant to orthogonal transforms, translation and isotropic scaling; with
    'correlation' RDMs to per-sample shifts and scalings; 'spearman' adds invariance
    to monotone transforms of the dissimilarities.
    """
    a, b = _pair(x, y)
    if a.shape[0] < 3:
        raise ValueError(f"rsa needs at least 3 samples to correlate dissimilarities; got {a.shape[0]}")
    return compare_rdms(rdm(a, metric), rdm(b, metric), compare)


def compare_rdms(da: np.ndarray, db: np.ndarray, compare: str = "spearman") -> float:
    """RSA's comparator: the ``compare`` correlation ('spearman', 'pearson' or 'kendall') of two
    condensed RDMs."""
    if compare == "spearman":
        return float(stats.spearmanr(da, db).statistic)
    if compare == "pearson":
        return float(stats.pearsonr(da, db).statistic)
    if compare == "kendall":
        return float(stats.kendalltau(da, db).statistic)
    raise ValueError(f"compare must be 'spearman', 'pearson' or 'kendall'; got {compare!r}")
