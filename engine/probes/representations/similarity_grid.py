"""All-pairs layer similarity: model A x model B, and each layer through training.

Each layer's representation is prepared **once** (centred features or centred Gram,
whitened basis, RDM ranks, ...); the pairs are then a few matrix products. For the
CKA family the grid of ``||X_i^T Y_j||_F^2`` comes either from one product per layer
of A with the concatenated centred features of B (cost ``n * sum(d_A) * sum(d_B)``)
or from one product of the flattened centred Gram matrices (cost ``n^2 * (sum(d_A) + sum(d_B))``),
whichever is cheaper. Values equal the pairwise functions in
:mod:`engine.probes.representations.similarity` (tested).

References
----------
.. [1] Kornblith, S., Norouzi, M., Lee, H., Hinton, G. "Similarity of Neural Network
   Representations Revisited." ICML 2019.
.. [2] Raghu, M., Gilmer, J., Yosinski, J., Sohl-Dickstein, J. "SVCCA." NeurIPS 2017
   (similarity of each layer to its final state through training).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats
from torch import Tensor

import engine.probes.representations.similarity as sim
from engine.probes.representations.topological import DEFAULT_LOWER, DEFAULT_UPPER, geo_topological_transform

__all__ = ["METRICS", "SimilarityGrid", "similarity_grid", "similarity_over_training"]

#: metric name -> whether larger values mean more similar
METRICS: dict[str, bool] = {
    "linear_cka": True, "debiased_cka": True, "rbf_cka": True, "procrustes": False,
    "svcca": True, "pwcca": True, "rsa": True, "trsa": True,
}
_GRAM_BYTES_LIMIT = 2 * 1024**3


@dataclass(frozen=True)
class SimilarityGrid:
    """A rows x cols matrix of similarities.

    Attributes
    ----------
    values : numpy.ndarray
        ``(len(rows), len(cols))`` float64.
    rows, cols : tuple of str
        Layer (or checkpoint) labels.
    metric : str
        Name of the measure (a key of :data:`METRICS`).
    larger_is_similar : bool
        False for distances (``'procrustes'``).
    row_title, col_title : str
        Axis titles for figures.
    """

    values: np.ndarray
    rows: tuple[str, ...]
    cols: tuple[str, ...]
    metric: str
    larger_is_similar: bool
    row_title: str = "model A layer"
    col_title: str = "model B layer"

    def best_match(self) -> np.ndarray:
        """For each row, the index of the most similar column."""
        return (np.argmax if self.larger_is_similar else np.argmin)(self.values, axis=1)


def _as_layers(acts, device) -> tuple[tuple[str, ...], list[Tensor]]:
    if isinstance(acts, Mapping):
        names, mats = tuple(str(k) for k in acts), list(acts.values())
    else:
        mats = list(acts)
        names = tuple(str(i) for i in range(len(mats)))
    if not mats:
        raise ValueError("similarity_grid needs at least one layer on each side; got none")
    out = [sim.as_matrix(m, f"layer {n!r}") for n, m in zip(names, mats)]
    out = [m.to(device if device is not None else out[0].device) for m in out]
    rows = {m.shape[0] for m in out}
    if len(rows) != 1:
        raise ValueError(f"every layer must have the same samples (rows); got row counts {sorted(rows)}")
    return names, out


def _cross_sq(xa: list[Tensor], xb: list[Tensor]) -> Tensor:
    """``(La, Lb)`` matrix of ``||X_i^T Y_j||_F^2`` for centred layers, in one big product."""
    n = xa[0].shape[0]
    da, db = [x.shape[1] for x in xa], [y.shape[1] for y in xb]
    feature_cost = n * sum(da) * sum(db)
    gram_cost = n * n * (sum(da) + sum(db) + len(da) * len(db))
    gram_bytes = 8 * n * n * (len(da) + len(db))
    if feature_cost <= gram_cost or gram_bytes > _GRAM_BYTES_LIMIT:
        xb_cat = torch.cat(xb, 1)  # (n, sum db)
        dev = xb_cat.device
        seg = torch.repeat_interleave(torch.arange(len(db), device=dev), torch.tensor(db, device=dev))
        pb = torch.nn.functional.one_hot(seg, len(db)).to(xb_cat.dtype)  # (sum db, Lb) block indicator
        # one product per layer of A against all of B: memory d_i x sum(db), not sum(da) x sum(db)
        return torch.stack([(x.T @ xb_cat).square_().sum(0) @ pb for x in xa])  # (La, Lb)
    ga = torch.stack([(x @ x.T).flatten() for x in xa])  # (La, n^2)
    gb = torch.stack([(y @ y.T).flatten() for y in xb])  # (Lb, n^2)
    return ga @ gb.T


def _cka_grid(xa: list[Tensor], xb: list[Tensor], debiased: bool) -> np.ndarray:
    n = xa[0].shape[0]
    if debiased:
        sim.check_unbiased(n, "debiased_cka")
    xa, xb = [sim.center(x) for x in xa], [sim.center(y) for y in xb]
    cross = _cross_sq(xa, xb)  # (La, Lb)
    self_a = torch.tensor([sim.frobenius_cross(x, x) for x in xa], dtype=cross.dtype, device=cross.device)
    self_b = torch.tensor([sim.frobenius_cross(y, y) for y in xb], dtype=cross.dtype, device=cross.device)
    if debiased:
        ka = torch.stack([x.square().sum(1) for x in xa])  # (La, n) squared row norms
        kb = torch.stack([y.square().sum(1) for y in xb])  # (Lb, n)
        cross = _hsic1(cross, ka @ kb.T, ka.sum(1)[:, None] * kb.sum(1)[None, :], n)
        self_a = _hsic1(self_a, ka.square().sum(1), ka.sum(1).square(), n)
        self_b = _hsic1(self_b, kb.square().sum(1), kb.sum(1).square(), n)
    den = (self_a.clamp_min(0.0)[:, None] * self_b.clamp_min(0.0)[None, :]).sqrt()
    out = torch.where(den > 0, cross / den, torch.full_like(cross, float("nan")))
    return out.cpu().numpy()


def _hsic1(cross: Tensor, kl: Tensor, sums: Tensor, n: int) -> Tensor:
    """Unbiased HSIC from ``||X^T Y||^2``, ``k.l`` and ``sum(k) sum(l)`` (see ``similarity._hsic1_terms``)."""
    return (cross - kl + sums / ((n - 1) * (n - 2)) - 2.0 * kl / (n - 2)) / (n * (n - 3))


def _rbf_grid(xa, xb, sigma: float = 1.0) -> np.ndarray:
    ga = torch.stack([sim.centered_rbf_gram(x, sigma).flatten() for x in xa])  # (La, n^2)
    gb = torch.stack([sim.centered_rbf_gram(y, sigma).flatten() for y in xb])  # (Lb, n^2)
    den = ga.norm(dim=1)[:, None] * gb.norm(dim=1)[None, :]
    return (ga @ gb.T / den).cpu().numpy()


def _pairwise(prep: Callable, pair: Callable) -> Callable:
    def grid(xa, xb, **kw):
        pa, pb = [prep(x, **kw) for x in xa], [prep(y, **kw) for y in xb]
        return np.array([[pair(p, q) for q in pb] for p in pa], dtype=np.float64)
    return grid


def _procrustes_pair(a: Tensor, b: Tensor, angular: bool = False) -> float:
    s = sim.procrustes_similarity(a, b)
    return float(np.arccos(s)) if angular else float(np.sqrt(max(0.0, 2.0 - 2.0 * s)))


def _procrustes_grid(xa, xb, angular: bool = False) -> np.ndarray:
    return _pairwise(lambda x: sim.normalized(x), lambda p, q: _procrustes_pair(p, q, angular))(xa, xb)


def _cca_grid(xa, xb, keep=0.99, weighted: bool = False) -> np.ndarray:
    def pair(p, q):
        (qx, xc), (qy, _) = p, q
        u, rho, _ = torch.linalg.svd(qx.T @ qy, full_matrices=False)
        rho = rho.clamp(0.0, 1.0)
        if not weighted:
            return float(rho.mean())
        alpha = ((qx @ u).T @ xc).abs().sum(1)
        return float((alpha * rho).sum() / alpha.sum())
    return _pairwise(lambda x: sim.orthonormal_basis(x, keep), pair)(xa, xb)


def _rsa_grid(xa, xb, metric: str = "correlation", compare: str = "spearman", transform=None) -> np.ndarray:
    if compare not in ("spearman", "pearson"):
        raise ValueError(f"similarity_grid supports rsa compare='spearman' or 'pearson'; got {compare!r}")

    def prep(x):
        v = sim.rdm(x, metric)
        v = transform(v) if transform is not None else v
        v = stats.rankdata(v) if compare == "spearman" else v
        v = v - v.mean()
        norm = np.linalg.norm(v)
        return v / norm if norm > 0 else np.full_like(v, np.nan)  # a constant RDM correlates with nothing
    za, zb = np.stack([prep(x) for x in xa]), np.stack([prep(y) for y in xb])
    return za @ zb.T


def _trsa_grid(xa, xb, lower: float = DEFAULT_LOWER, upper: float = DEFAULT_UPPER, **kw) -> np.ndarray:
    """tRSA: RSA of the geo-topologically transformed RDMs (each layer's own quantile bounds)."""
    return _rsa_grid(xa, xb, transform=lambda v: geo_topological_transform(v, lower, upper), **kw)


_GRIDS: dict[str, Callable] = {
    "linear_cka": lambda a, b: _cka_grid(a, b, debiased=False),
    "debiased_cka": lambda a, b: _cka_grid(a, b, debiased=True),
    "rbf_cka": _rbf_grid,
    "procrustes": _procrustes_grid,
    "svcca": _cca_grid,
    "pwcca": lambda a, b, keep=None: _cca_grid(a, b, keep=keep, weighted=True),
    "rsa": _rsa_grid,
    "trsa": _trsa_grid,
}


def similarity_grid(
    acts_a: Mapping[str, object] | Sequence,
    acts_b: Mapping[str, object] | Sequence | None = None,
    metric: str = "linear_cka",
    *,
    device: str | torch.device | None = None,
    **kwargs,
) -> SimilarityGrid:
    """Similarity of every layer of model A with every layer of model B.

    Parameters
    ----------
    acts_a, acts_b : mapping layer -> (n, d) matrix, or a sequence of matrices
        Activations of the two models on the same ``n`` samples (e.g. from
        :func:`~engine.probes.representations.activations.capture_activations`). ``acts_b=None``
        compares model A with itself.
    metric : str, default 'linear_cka'
        One of :data:`METRICS`: ``'linear_cka'``, ``'debiased_cka'``, ``'rbf_cka'``
        (kwarg ``sigma``), ``'procrustes'`` (a distance; kwarg ``angular``), ``'svcca'``
        (kwarg ``keep``), ``'pwcca'`` (kwarg ``keep``), ``'rsa'`` (kwargs ``metric``
        renamed ``rdm_metric``, ``compare``), ``'trsa'`` (topological RSA: kwargs ``lower``,
        ``upper`` -- quantile bounds of the geo-topological transform -- and those of ``'rsa'``).
    device : optional
        Where to compute (float64 throughout); default: where the first layer lives.

    Returns
    -------
    SimilarityGrid
        ``values[i, j]`` = similarity of A's layer ``i`` and B's layer ``j``.
    """
    if metric not in _GRIDS:
        raise ValueError(f"metric must be one of {sorted(_GRIDS)}; got {metric!r}")
    names_a, xa = _as_layers(acts_a, device)
    names_b, xb = (names_a, xa) if acts_b is None else _as_layers(acts_b, xa[0].device)
    if xa[0].shape[0] != xb[0].shape[0]:
        raise ValueError(f"models A and B must be evaluated on the same samples; got {xa[0].shape[0]} "
                         f"and {xb[0].shape[0]} rows")
    if metric in ("rsa", "trsa") and "rdm_metric" in kwargs:
        kwargs["metric"] = kwargs.pop("rdm_metric")
    values = _GRIDS[metric](xa, xb, **kwargs)
    return SimilarityGrid(values=values, rows=names_a, cols=names_b, metric=metric, larger_is_similar=METRICS[metric])


def similarity_over_training(
    checkpoints: Mapping[str, Mapping[str, object]] | Sequence[Mapping[str, object]],
    metric: str = "linear_cka",
    *,
    reference: int | str = -1,
    device: str | torch.device | None = None,
    **kwargs,
) -> SimilarityGrid:
    """Layer x checkpoint grid: each layer at each checkpoint against the same layer at
    ``reference`` (default the last checkpoint), as in Raghu et al.'s SVCCA-through-training.

    Parameters
    ----------
    checkpoints : mapping label -> activations, or a sequence of activations
        Activations of one run's checkpoints on the same samples, each a mapping
        layer -> ``(n, d)`` (layers present at the reference are used).
    metric : str
        As in :func:`similarity_grid`.
    reference : int or str
        Position or label of the reference checkpoint.

    Returns
    -------
    SimilarityGrid
        Rows are layers, columns are checkpoint labels.
    """
    if isinstance(checkpoints, Mapping):
        labels, acts = [str(k) for k in checkpoints], list(checkpoints.values())
    else:
        acts = list(checkpoints)
        labels = [str(i) for i in range(len(acts))]
    if not acts:
        raise ValueError("similarity_over_training needs at least one checkpoint; got none")
    ref = labels.index(str(reference)) if isinstance(reference, str) else reference
    ref_acts = acts[ref]
    layers = list(ref_acts)
    missing = [(labels[t], layer) for t, a in enumerate(acts) for layer in layers if layer not in a]
    if missing:
        raise ValueError(f"checkpoints lack layers of the reference: {missing[:5]}")
    rows = [similarity_grid({layer: ref_acts[layer]}, {labels[t]: a[layer] for t, a in enumerate(acts)}, metric,
                            device=device, **kwargs).values[0] for layer in layers]
    return SimilarityGrid(values=np.stack(rows), rows=tuple(layers), cols=tuple(labels), metric=metric,
                          larger_is_similar=METRICS[metric], row_title="layer", col_title="checkpoint")
