"""Distances between the models of a zoo: weights after alignment, barriers, representations, predictions.

A *model view* (:func:`model_view`) is what the distances need of one model, computed once
per model: its state, its predictions on the evaluation split and its activations on a fixed
subsample of it. :func:`pair_distances` compares two views by any of :data:`ZOO_METRICS`
(one permutation alignment shared by the weight and barrier distances of a pair), and
:func:`pairwise_distances` fills the symmetric ``K x K`` matrix of a whole zoo.

The five distances
------------------
``weight``
    ``||theta_A - pi(theta_B)||_2 / sqrt(P)``: the root-mean-square difference per parameter
    after weight matching aligns B's units to A's (Ainsworth et al. 2023); parameters only,
    not BatchNorm statistics. Models of one architecture.
``barrier``
    The loss barrier ``max_minus_linear`` (the highest excess of the loss along the straight
    path A -> pi(B) over the line between its endpoint losses; Frankle et al. 2020) after
    weight matching, on the evaluation split. Models of one architecture. May be slightly
    negative when the path is convex-looking; clustering reads negatives as 0.
``cka``
    ``1 - mean linear CKA`` over the layers both models have (Kornblith et al. 2019).
``procrustes``
    The mean over those layers of the angular shape metric of Williams et al. (2021)
    (:func:`~engine.probes.zoo.shape.shape_metric`, radians, whitening ``shape_alpha``).
``disagreement``
    The share of the evaluation split on which the two models' predicted classes differ.

``align="none"`` gives the weight and barrier distances without alignment (the naive
reference that shows what alignment changes).

References
----------
S. Ainsworth, J. Hayase and S. Srinivasa, "Git Re-Basin", ICLR 2023.
R. Entezari, H. Sedghi, O. Saukh and B. Neyshabur, "The Role of Permutation Invariance in
Linear Mode Connectivity of Neural Networks", ICLR 2022.
S. Kornblith, M. Norouzi, H. Lee and G. Hinton, "Similarity of Neural Network
Representations Revisited", ICML 2019.
A. H. Williams, E. Kunz, S. Kornblith and S. W. Linderman, "Generalized Shape Metrics on
Neural Representations", NeurIPS 2021.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from engine.nets import permutation_spec
from engine.probes.connectivity import align_models, apply_alignment, barrier, interpolate
from engine.probes.core import resolve_data
from engine.probes.representations import capture_activations, linear_cka

from .shape import shape_metric

__all__ = ["WEIGHT_SPACE", "ZOO_METRICS", "ModelView", "ZooDistances", "metric_label", "model_view", "pair_distances",
           "pairwise_distances"]

#: Distance name -> what the number is.
ZOO_METRICS: dict[str, str] = {
    "weight": "weight distance ||θA − π(θB)||₂/√P after weight matching (RMS difference per parameter)",
    "barrier": "loss barrier (max_minus_linear) along the straight path after weight matching",
    "cka": "1 − mean linear CKA over corresponding layers",
    "procrustes": "mean angular Procrustes shape distance over corresponding layers (Williams et al. 2021; rad)",
    "disagreement": "share of evaluation-split predictions that differ",
}
#: Distances defined only between models of one architecture (they compare weights).
WEIGHT_SPACE = ("weight", "barrier")
Align = Literal["weight", "none"]


def metric_label(metric: str, align: str = "weight") -> str:
    """What ``metric``'s numbers are, as a figure or table states it."""
    if metric not in ZOO_METRICS:
        raise ValueError(f"metric must be one of {', '.join(ZOO_METRICS)}; got {metric!r}")
    text = ZOO_METRICS[metric]
    if metric in WEIGHT_SPACE and align == "none":
        text = text.replace("after weight matching", "without alignment (naive)")
    return text


@dataclass(frozen=True)
class ModelView:
    """What the pairwise distances need of one model, computed once (:func:`model_view`).

    Attributes
    ----------
    state : dict[str, Tensor]
        Parameters and buffers.
    predictions : np.ndarray or None, shape (N,) or (N * T,)
        Predicted classes on the evaluation split (None for regression targets).
    activations : dict[str, Tensor]
        Layer -> ``(n, d)`` activations on the subsample (the same rows for every model
        made with the same ``max_samples`` and ``seed``).
    """

    state: dict[str, Tensor]
    predictions: np.ndarray | None
    activations: dict[str, Tensor] = field(default_factory=dict)


def _predictions(model: nn.Module, state: Mapping[str, Tensor], x: Tensor) -> np.ndarray:
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = functional_call(model, dict(state), (x,))  # (N, C) or (N, T, V)
    finally:
        model.train(was)
    return out.argmax(-1).reshape(-1).cpu().numpy()


def model_view(model: nn.Module, state: Mapping[str, Tensor], data, *, split: str = "test",
               max_samples: int | None = 500, seed: int = 0, activations: bool = True) -> ModelView:
    """Predictions on ``split`` and activations on a seeded subsample of it, for one model.

    Parameters
    ----------
    model : nn.Module
        The architecture (its own weights are not used).
    state : dict[str, Tensor]
        The model's parameters and buffers.
    data : pair, loader or Dataset-like
        See :func:`engine.probes.core.resolve_data`.
    split : {"train", "test"}, default "test"
    max_samples : int or None, default 500
        Rows whose activations are kept (drawn with ``seed``; the same rows for every model).
    seed : int
    activations : bool
        Capture activations (the representational distances need them).
    """
    x, y = resolve_data(data, split)
    state = {**dict(model.named_buffers()), **dict(state)}
    preds = None if y.is_floating_point() else _predictions(model, state, x)
    acts: dict[str, Tensor] = {}
    if activations:
        captured = capture_activations(model, state, (x, y), max_samples=max_samples, seed=seed)
        acts = {name: t.to(torch.float64) for name, t in captured.items()}
    return ModelView(state=state, predictions=preds, activations=acts)


def _same_architecture(a: ModelView, b: ModelView) -> None:
    if a.state.keys() != b.state.keys() or any(a.state[k].shape != b.state[k].shape for k in a.state):
        diff = sorted(k for k in a.state.keys() | b.state.keys()
                      if k not in a.state or k not in b.state or a.state[k].shape != b.state[k].shape)
        raise ValueError(f"weight and barrier distances compare models of one architecture; these differ in "
                         f"{diff[:4]!r}{'...' if len(diff) > 4 else ''}. Compare them by 'cka', 'procrustes' "
                         "or 'disagreement', or pick models of one architecture")


def _shared_layers(a: ModelView, b: ModelView) -> list[str]:
    layers = [name for name in a.activations if name in b.activations]
    if not layers:
        raise ValueError(f"the two models share no layer to compare: {list(a.activations)[:6]!r} vs "
                         f"{list(b.activations)[:6]!r}; make both views with activations=True")
    return layers


def _representational(a: ModelView, b: ModelView, metric: str, shape_alpha: float) -> float:
    layers = _shared_layers(a, b)
    if metric == "cka":
        return 1.0 - float(np.mean([linear_cka(a.activations[n], b.activations[n]) for n in layers]))
    return float(np.mean([shape_metric(a.activations[n], b.activations[n], alpha=shape_alpha) for n in layers]))


def _disagreement(a: ModelView, b: ModelView) -> float:
    if a.predictions is None or b.predictions is None:
        raise ValueError("disagreement compares predicted classes; this task's targets are real-valued "
                         "(regression). Use 'cka' or 'procrustes'")
    if a.predictions.shape != b.predictions.shape:
        raise ValueError(f"the models were evaluated on different data ({a.predictions.shape} vs "
                         f"{b.predictions.shape} predictions); make both views from the same data and split")
    return float(np.mean(a.predictions != b.predictions))


def _weight_distance(model: nn.Module, a: ModelView, b_aligned: Mapping[str, Tensor]) -> float:
    names = [n for n, _ in model.named_parameters()]
    sq = sum(float(((a.state[n].double() - b_aligned[n].double()) ** 2).sum()) for n in names)
    count = sum(a.state[n].numel() for n in names)
    return float(np.sqrt(sq / count))


def pair_distances(model: nn.Module, a: ModelView, b: ModelView, data, metrics: Sequence[str], *,
                   align: Align = "weight", split: str = "test", alphas: int = 11, shape_alpha: float = 1.0,
                   seed: int = 0, spec=None) -> dict[str, float]:
    """The distances ``metrics`` between two models (views from :func:`model_view`).

    One alignment of B to A serves both the weight and the barrier distance; the permuted
    B is checked to compute the same function before either is reported.

    Parameters
    ----------
    model : nn.Module
        The architecture (of A; of both for the weight-space distances).
    a, b : ModelView
    data : pair, loader or Dataset-like
        The data the views were made from (the barrier evaluates the path on ``split``).
    metrics : sequence of str
        Names from :data:`ZOO_METRICS`.
    align : {"weight", "none"}, default "weight"
        Weight matching, or none (naive), for the weight-space distances.
    alphas : int, default 11
        Points on the path of the barrier, endpoints included.
    shape_alpha : float, default 1.0
        Whitening of the Procrustes shape metric (1: none).
    seed : int
    spec : PermutationSpec, optional
        ``permutation_spec(model)`` by default.

    Returns
    -------
    dict[str, float]
        Metric -> distance.
    """
    unknown = [m for m in metrics if m not in ZOO_METRICS]
    if unknown:
        raise ValueError(f"metrics must be among {', '.join(ZOO_METRICS)}; got {unknown!r}")
    if align not in ("weight", "none"):
        raise ValueError(f"align must be 'weight' or 'none'; got {align!r}")
    out: dict[str, float] = {}
    if any(m in WEIGHT_SPACE for m in metrics):
        _same_architecture(a, b)
        theta_b = b.state
        if align == "weight":
            spec = spec if spec is not None else permutation_spec(model)
            alignment = align_models(model, a.state, b.state, data, method="weight", spec=spec, seed=seed)
            theta_b = apply_alignment(model, b.state, alignment, data, spec=spec)
        if "weight" in metrics:
            out["weight"] = _weight_distance(model, a, theta_b)
        if "barrier" in metrics:
            curve = interpolate(model, a.state, theta_b, data, alphas=alphas, split=split, seed=seed)
            out["barrier"] = barrier(curve, kind="max_minus_linear", metric="loss").value
    for metric in ("cka", "procrustes"):
        if metric in metrics:
            out[metric] = _representational(a, b, metric, shape_alpha)
    if "disagreement" in metrics:
        out["disagreement"] = _disagreement(a, b)
    return {m: out[m] for m in metrics}


@dataclass(frozen=True)
class ZooDistances:
    """A labelled symmetric ``K x K`` distance matrix between the models of a zoo.

    Attributes
    ----------
    labels : tuple of str
        One per model, in row order.
    matrix : np.ndarray, shape (K, K)
        Symmetric with a zero diagonal; NaN where a pair is not defined (weight-space
        distances across architectures) or not computed yet.
    metric : str
        A name from :data:`ZOO_METRICS`.
    description : str
        What the numbers are (:func:`metric_label`).
    seconds : float
    """

    labels: tuple[str, ...]
    matrix: np.ndarray
    metric: str
    description: str = ""
    seconds: float = 0.0

    def __post_init__(self):
        k = len(self.labels)
        if self.matrix.shape != (k, k):
            raise ValueError(f"a distance matrix of {k} labels must be {k}x{k}; got shape {self.matrix.shape}")

    @property
    def missing(self) -> int:
        """Pairs (i < j) without a value."""
        return int(np.isnan(self.matrix[np.triu_indices(len(self.labels), 1)]).sum())

    def subset(self, labels: Sequence[str]) -> ZooDistances:
        """The matrix restricted to ``labels`` (in that order)."""
        index = {name: i for i, name in enumerate(self.labels)}
        absent = [name for name in labels if name not in index]
        if absent:
            raise ValueError(f"labels {absent[:4]!r} are not in this matrix (it has {list(self.labels)[:6]!r}...)")
        rows = [index[name] for name in labels]
        return ZooDistances(tuple(labels), self.matrix[np.ix_(rows, rows)], self.metric, self.description)


def _named(models) -> tuple[tuple[str, ...], list[nn.Module]]:
    if isinstance(models, Mapping):
        return tuple(map(str, models)), list(models.values())
    models = list(models)
    return tuple(f"model {i}" for i in range(len(models))), models


def pairwise_distances(models: Mapping[str, nn.Module] | Sequence[nn.Module], data, *, metric: str,
                       align: Align = "weight", split: str = "test", alphas: int = 11, max_samples: int | None = 500,
                       shape_alpha: float = 1.0, seed: int = 0,
                       on_progress: Callable[[int, int], None] | None = None) -> ZooDistances:
    """All-pairs distances between models: a labelled ``K x K`` matrix.

    Parameters
    ----------
    models : dict[str, nn.Module] or sequence of nn.Module
        Trained models (each carries its weights); dict keys become the labels. The
        weight-space distances need one architecture; the others compare any models with
        the same input and layer names.
    data : pair, loader or Dataset-like
        Evaluation data (``split`` of a Dataset-like).
    metric : str
        One of :data:`ZOO_METRICS`: "weight", "barrier", "cka", "procrustes", "disagreement".
    align, split, alphas, shape_alpha, seed
        As in :func:`pair_distances`.
    max_samples : int or None, default 500
        Rows whose activations the representational distances compare.
    on_progress : callable, optional
        ``(pairs done, pairs)``.

    Returns
    -------
    ZooDistances

    Examples
    --------
    >>> d = pairwise_distances({"a": net_a, "b": net_b, "c": net_c}, (x, y), metric="barrier")  # doctest: +SKIP
    >>> d.matrix.shape  # doctest: +SKIP
    (3, 3)
    """
    t0 = time.perf_counter()
    metric_label(metric, align)  # validates the name
    labels, nets = _named(models)
    if len(nets) < 2:
        raise ValueError(f"pairwise distances need at least two models; got {len(nets)}")
    acts = metric in ("cka", "procrustes")
    views = [model_view(m, m.state_dict(), data, split=split, max_samples=max_samples, seed=seed, activations=acts)
             for m in nets]
    spec = permutation_spec(nets[0]) if metric in WEIGHT_SPACE and align == "weight" else None
    k = len(nets)
    matrix = np.zeros((k, k))
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    for done, (i, j) in enumerate(pairs, start=1):
        d = pair_distances(nets[i], views[i], views[j], data, (metric,), align=align, split=split, alphas=alphas,
                           shape_alpha=shape_alpha, seed=seed, spec=spec)[metric]
        matrix[i, j] = matrix[j, i] = d
        if on_progress is not None:
            on_progress(done, len(pairs))
    return ZooDistances(labels, matrix, metric, metric_label(metric, align), time.perf_counter() - t0)
