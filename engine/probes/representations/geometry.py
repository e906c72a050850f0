"""Geometry of one representation: neural collapse, intrinsic dimension, neuron matching.

References
----------
.. [1] Papyan, V., Han, X. Y., Donoho, D. L. "Prevalence of neural collapse during the
   terminal phase of deep learning training." PNAS 117(40), 2020.
.. [2] Facco, E., d'Errico, M., Rodriguez, A., Laio, A. "Estimating the intrinsic
   dimension of datasets by a minimal neighborhood information." Sci. Rep. 7, 2017.
.. [3] Gao, P., Trautmann, E., Yu, B., et al. "A theory of multineuronal dimensionality,
   dynamics and measurement." bioRxiv 2017 (participation ratio).
.. [4] Roy, O., Vetterli, M. "The effective rank: a measure of effective
   dimensionality." EUSIPCO 2007.
.. [5] Li, Y., Yosinski, J., Clune, J., Lipson, H., Hopcroft, J. "Convergent Learning: Do
   different neural networks learn the same representations?" ICLR 2016.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.neighbors import NearestNeighbors
from torch import Tensor

from engine.probes.representations.similarity import as_matrix, center

__all__ = [
    "LayerDimensions",
    "NeuralCollapse",
    "NeuronMatching",
    "effective_rank",
    "layer_dimensions",
    "neural_collapse",
    "neural_collapse_over_training",
    "neuron_matching",
    "participation_ratio",
    "twonn_dimension",
]


@dataclass(frozen=True)
class NeuralCollapse:
    """Neural-collapse statistics of Papyan et al. [1]_ (arrays have one entry per
    checkpoint when produced by :func:`neural_collapse_over_training`, else 0-d).

    Attributes
    ----------
    nc1 : float
        Within-class variability ``tr(Sigma_W Sigma_B^+) / C``; -> 0 under collapse.
    nc2_equinorm : float
        Coefficient of variation of the centred class-mean norms; -> 0.
    nc2_equiangular : float
        Std of the cosines between distinct centred class means; -> 0.
    nc2_etf_error : float
        ``|| M M^T / ||M M^T||_F - (I - 11^T/C) / sqrt(C-1) ||_F`` for centred means ``M``; -> 0.
    nc3 : float
        Self-duality ``|| W / ||W||_F - M / ||M||_F ||_F^2`` (nan without a classifier); -> 0.
    nc4 : float
        Fraction of samples where the nearest-class-centre rule agrees with the
        classifier's prediction (with the labels when no classifier is given); -> 1.
    """

    nc1: np.ndarray | float
    nc2_equinorm: np.ndarray | float
    nc2_equiangular: np.ndarray | float
    nc2_etf_error: np.ndarray | float
    nc3: np.ndarray | float
    nc4: np.ndarray | float
    steps: np.ndarray | None = None


def _classifier_parts(classifier, c: int, d: int) -> tuple[Tensor | None, Tensor | None]:
    if classifier is None:
        return None, None
    if isinstance(classifier, torch.nn.Linear):
        w, b = classifier.weight, classifier.bias
    elif isinstance(classifier, (tuple, list)):
        w, b = classifier[0], classifier[1] if len(classifier) > 1 else None
    else:
        w, b = classifier, None
    w = as_matrix(w, "classifier weight")
    if w.shape != (c, d):
        raise ValueError(f"classifier weight must have shape (n_classes, n_features) = ({c}, {d}); "
                         f"got {tuple(w.shape)}")
    return w, (torch.as_tensor(b).detach().to(torch.float64).reshape(c) if b is not None else None)


def neural_collapse(features, labels, classifier=None) -> NeuralCollapse:
    """NC1-NC4 of penultimate features [1]_.

    Parameters
    ----------
    features : array-like, shape (n, d)
        Last-layer features (the classifier's inputs).
    labels : array-like of int, shape (n,)
        Classes ``0..C-1`` (classes absent from ``labels`` are ignored).
    classifier : nn.Linear, (weight, bias) or weight, optional
        Last layer, weight shape ``(C, d)``. Needed for NC3; NC4 then compares with
        its argmax, otherwise with ``labels``.

    Returns
    -------
    NeuralCollapse
    """
    h = as_matrix(features, "features")
    y = torch.as_tensor(np.asarray(labels)).to(h.device).long().reshape(-1)
    if y.shape[0] != h.shape[0]:
        raise ValueError(f"features and labels must have the same length; got {h.shape[0]} and {y.shape[0]}")
    classes, y = torch.unique(y, return_inverse=True)
    c = len(classes)
    if c < 2:
        raise ValueError(f"neural_collapse needs at least 2 classes; got {c}")
    counts = torch.bincount(y, minlength=c).to(h.dtype)
    means = torch.zeros(c, h.shape[1], dtype=h.dtype, device=h.device).index_add_(0, y, h) / counts[:, None]
    m = means - means.mean(0)  # (C, d) centred class means, uniform class weights (Papyan)
    within = h - means[y]  # (n, d)
    u, s, vt = torch.linalg.svd(m, full_matrices=False)
    keep = s > s[0] * max(m.shape) * torch.finfo(h.dtype).eps
    sb_inv = c / s[keep].square()  # eigenvalues of Sigma_B^+ on span(M)
    proj = within @ vt[keep].T  # (n, r)
    nc1 = float((proj.square().mean(0) * sb_inv).sum() / c)
    norms = m.norm(dim=1)
    nc2_norm = float(norms.std(unbiased=False) / norms.mean())
    unit = m / norms[:, None]
    cos = unit @ unit.T
    off = cos[~torch.eye(c, dtype=torch.bool, device=h.device)]
    gram = m @ m.T
    etf = (torch.eye(c, dtype=h.dtype, device=h.device) - 1.0 / c) / math.sqrt(c - 1)
    nc2_etf = float((gram / gram.norm() - etf).norm())
    w, b = _classifier_parts(classifier, c, h.shape[1])
    nc3 = float((w / w.norm() - m / m.norm()).norm().square()) if w is not None else float("nan")
    ncc = torch.cdist(h, means).argmin(1)
    ref = y if w is None else (h @ w.T + (b if b is not None else 0.0)).argmax(1)
    nc4 = float((ncc == ref).to(h.dtype).mean())
    return NeuralCollapse(nc1=nc1, nc2_equinorm=nc2_norm, nc2_equiangular=float(off.std(unbiased=False)),
                          nc2_etf_error=nc2_etf, nc3=nc3, nc4=nc4)


def neural_collapse_over_training(
    features: Sequence, labels, classifiers: Sequence | None = None, steps: Sequence[int] | None = None
) -> NeuralCollapse:
    """:func:`neural_collapse` at every checkpoint of a run; fields become arrays ``(T,)``.

    ``features[t]`` are the penultimate features at checkpoint ``t`` on the same
    samples (``labels``); ``classifiers[t]`` its last layer (optional).
    """
    features = list(features)
    cls = list(classifiers) if classifiers is not None else [None] * len(features)
    if len(cls) != len(features):
        raise ValueError(f"got {len(features)} feature sets but {len(cls)} classifiers")
    rows = [neural_collapse(f, labels, c) for f, c in zip(features, cls)]
    arr = {k: np.array([getattr(r, k) for r in rows]) for k in
           ("nc1", "nc2_equinorm", "nc2_equiangular", "nc2_etf_error", "nc3", "nc4")}
    st = np.asarray(steps if steps is not None else np.arange(len(rows)))
    return NeuralCollapse(**arr, steps=st)


def twonn_dimension(x, *, discard_fraction: float = 0.1) -> float:
    """Intrinsic dimension by the TwoNN estimator of Facco et al. [2]_.

    For each point the ratio ``mu = r2 / r1`` of its second- to first-nearest-neighbour
    distance follows a Pareto law with exponent ``d``; ``d`` is the slope of
    ``-log(1 - F(mu))`` against ``log(mu)`` through the origin, fitted after
    dropping duplicate rows (``r1 = 0``) and the largest ``discard_fraction`` of ratios.
    The largest ratio is always left out, even with ``discard_fraction=0``: its empirical
    CDF is 1, so it would enter the fit as ``-log(0) = inf``.

    Parameters
    ----------
    x : array-like, shape (n, D)
    discard_fraction : float, default 0.1
        Share of the largest ratios left out of the fit (they are noise-dominated); at
        least one is.
    """
    if not 0.0 <= discard_fraction < 1.0:
        raise ValueError(f"discard_fraction must be in [0, 1); got {discard_fraction}")
    pts = np.unique(as_matrix(x).cpu().numpy(), axis=0)
    if len(pts) < 3:
        raise ValueError(f"twonn_dimension needs at least 3 distinct points; got {len(pts)}")
    dist, _ = NearestNeighbors(n_neighbors=3).fit(pts).kneighbors(pts)
    mu = np.sort(dist[:, 2] / dist[:, 1])
    n = len(mu)
    keep = min(n - 1, max(2, int(math.floor(n * (1.0 - discard_fraction)))))  # F(mu[n-1]) = 1: never fitted
    f_emp = np.arange(1, n + 1, dtype=np.float64) / n  # empirical CDF
    xs, ys = np.log(mu[:keep]), -np.log(1.0 - f_emp[:keep])
    return float((xs @ ys) / (xs @ xs))


def _singular_values(x) -> Tensor:
    return torch.linalg.svdvals(center(as_matrix(x)))


def participation_ratio(x) -> float:
    """Participation ratio ``(sum lambda)^2 / sum lambda^2`` of the covariance eigenvalues [3]_.

    Between 1 (one direction carries all variance) and ``min(n-1, d)`` (isotropic).
    """
    lam = _singular_values(x).square()
    return float(lam.sum().square() / lam.square().sum()) if lam.sum() > 0 else 0.0


def effective_rank(x) -> float:
    """Effective rank ``exp(H(p))``, ``p_i = s_i / sum s`` over singular values of the centred data [4]_."""
    s = _singular_values(x)
    if s.sum() <= 0:
        return 0.0
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


@dataclass(frozen=True)
class LayerDimensions:
    """Dimension estimates per layer (arrays aligned with ``layers``)."""

    layers: tuple[str, ...]
    twonn: np.ndarray
    participation_ratio: np.ndarray
    effective_rank: np.ndarray
    width: np.ndarray


def layer_dimensions(acts: Mapping[str, object]) -> LayerDimensions:
    """TwoNN, participation ratio and effective rank of every layer in ``acts``."""
    names = tuple(str(k) for k in acts)
    mats = [as_matrix(v) for v in acts.values()]
    return LayerDimensions(
        layers=names,
        twonn=np.array([twonn_dimension(m) for m in mats]),
        participation_ratio=np.array([participation_ratio(m) for m in mats]),
        effective_rank=np.array([effective_rank(m) for m in mats]),
        width=np.array([m.shape[1] for m in mats]),
    )


@dataclass(frozen=True)
class NeuronMatching:
    """One-to-one matching of units between two layers (Li et al. [5]_).

    Attributes
    ----------
    pairs : numpy.ndarray
        ``(k, 2)`` matched unit indices ``(unit of A, unit of B)``, ``k = min(d_A, d_B)``,
        ordered by decreasing correlation.
    correlations : numpy.ndarray
        ``(k,)`` Pearson correlation of each matched pair, sorted descending.
    correlation : numpy.ndarray
        ``(d_A, d_B)`` full unit-by-unit correlation matrix (0 where a unit is constant).
    """

    pairs: np.ndarray
    correlations: np.ndarray
    correlation: np.ndarray

    @property
    def mean_correlation(self) -> float:
        return float(self.correlations.mean())


def neuron_matching(acts_a, acts_b) -> NeuronMatching:
    """Match each unit of layer A to a distinct unit of layer B, maximising total correlation.

    The Pearson correlation between every pair of units is computed over the samples;
    the bipartite (Hungarian) assignment maximising the summed correlation gives the
    one-to-one matching of Li et al.'s "Convergent Learning" [5]_. Dead units (zero
    variance) correlate 0 with everything.

    Parameters
    ----------
    acts_a, acts_b : array-like, shapes (n, d_A) and (n, d_B)
        One layer of each model on the same samples.
    """
    a = as_matrix(acts_a, "acts_a")
    b = as_matrix(acts_b, "acts_b").to(a.device)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"acts_a and acts_b must have the same rows (samples); got {a.shape[0]} and {b.shape[0]}")
    za, zb = _standardize(a), _standardize(b)
    corr = (za.T @ zb / a.shape[0]).clamp(-1.0, 1.0).cpu().numpy()  # (d_A, d_B)
    rows, cols = linear_sum_assignment(corr, maximize=True)
    matched = corr[rows, cols]
    order = np.argsort(-matched, kind="stable")
    return NeuronMatching(np.stack([rows[order], cols[order]], 1), matched[order], corr)


def _standardize(x: Tensor) -> Tensor:
    xc = center(x)
    sd = xc.square().mean(0).sqrt()
    return torch.where(sd > 0, xc / torch.where(sd > 0, sd, torch.ones_like(sd)), torch.zeros_like(xc))
