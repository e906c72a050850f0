"""Linear mode connectivity: loss and error along the straight path between two solutions.

``interpolate`` evaluates ``theta(alpha) = (1 - alpha) * theta_a + alpha * theta_b`` at every
``alpha`` of a grid, through :func:`engine.probes.core.point_eval.evaluate_points`; both
endpoints are reproduced exactly (``alpha = 0`` gives ``theta_a`` bit for bit).
``barrier`` turns a curve into one number, and always says by which definition,
because the literature uses three:

``max_minus_linear``
    ``max_alpha [L(alpha) - ((1 - alpha) L(0) + alpha L(1))]`` -- the height above the
    straight line between the endpoint losses (Entezari et al. 2022; Ainsworth et al.
    2023). The default.
``max_minus_mean``
    ``max_alpha L(alpha) - (L(0) + L(1)) / 2`` -- Frankle et al. 2020's error barrier
    height (instability).
``midpoint``
    ``L(1/2) - (L(0) + L(1)) / 2`` -- the cheap one-point version (Jordan et al. 2023).

BatchNorm: ``bn="running"`` interpolates the running statistics along with the weights
(the naive path); ``bn="reset"`` recomputes them at every ``alpha`` from training data
(:mod:`engine.probes.core.bn_reset`), as REPAIR does, endpoints included.

References
----------
J. Frankle, G. K. Dziugaite, D. Roy and M. Carbin, "Linear Mode Connectivity and the
Lottery Ticket Hypothesis", ICML 2020.
R. Entezari, H. Sedghi, O. Saukh and B. Neyshabur, "The Role of Permutation Invariance
in Linear Mode Connectivity of Neural Networks", ICLR 2022.
S. Ainsworth, J. Hayase and S. Srinivasa, "Git Re-Basin", ICLR 2023.
K. Jordan et al., "REPAIR", ICLR 2023.
I. Goodfellow, O. Vinyals and A. Saxe, "Qualitatively characterizing neural network
optimization problems", ICLR 2015.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from torch import Tensor, nn

from engine.probes.core import (
    LossFn,
    Strategy,
    check_bn,
    evaluate_line,
    has_batchnorm,
    lerp_flat,
    path_buffers,
    path_states,
    reset_inputs,
    resolve_data,
    split_name,
)

__all__ = [
    "BARRIER_DEFINITIONS",
    "Barrier",
    "InterpolationCurve",
    "barrier",
    "interpolate",
    "resolve_alphas",
]

BarrierKind = Literal["max_minus_linear", "max_minus_mean", "midpoint"]
PathBN = Literal["running", "reset"]
_MAX_FLOATS = 2**26  # interpolated vectors held at once (256 MiB of float32)

#: Human-readable definition of each barrier kind, shown next to every barrier value.
BARRIER_DEFINITIONS = {
    "max_minus_linear": "max over α of L(α) − [(1−α)·L(0) + α·L(1)]",
    "max_minus_mean": "max over α of L(α) − [L(0) + L(1)]/2",
    "midpoint": "L(½) − [L(0) + L(1)]/2",
}


@dataclass(frozen=True)
class InterpolationCurve:
    """Loss and error along a path between two parameter vectors.

    Attributes
    ----------
    alphas : np.ndarray, shape (G,)
        Path coordinates; 0 is ``theta_a`` and 1 is ``theta_b``.
    loss : np.ndarray, shape (G,)
        Mean loss at each ``alpha``.
    error : np.ndarray, shape (G,)
        Classification error ``1 - accuracy``; NaN for regression targets.
    split : str
        Data split evaluated ("train", "test", or "given" for a plain pair).
    bn : str
        "running" (interpolated statistics) or "reset" (recomputed at each alpha).
    n_samples : int
        Samples the loss averages over.
    label : str
        What the path is, e.g. "naive" or "weight matching".
    seconds : float
        Wall time.
    """

    alphas: np.ndarray
    loss: np.ndarray
    error: np.ndarray
    split: str
    bn: str
    n_samples: int
    label: str = ""
    seconds: float = 0.0

    @property
    def accuracy(self) -> np.ndarray:
        return 1.0 - self.error

    def barrier(self, kind: BarrierKind = "max_minus_linear", metric: str = "loss") -> Barrier:
        """Shorthand for :func:`barrier` on this curve."""
        return barrier(self, kind=kind, metric=metric)


@dataclass(frozen=True)
class Barrier:
    """A barrier height, with the definition it was computed by.

    Attributes
    ----------
    value : float
        The height (0 for a perfectly linear path under ``max_minus_linear``).
    kind : str
        One of :data:`BARRIER_DEFINITIONS`.
    metric : str
        "loss" or "error".
    alpha : float
        Where the maximum is reached (0.5 for ``midpoint``).
    """

    value: float
    kind: str
    metric: str
    alpha: float

    @property
    def definition(self) -> str:
        """The formula, with ``L`` the metric."""
        symbol = "L" if self.metric == "loss" else "E"
        return BARRIER_DEFINITIONS[self.kind].replace("L(", f"{symbol}(")

    @property
    def label(self) -> str:
        """e.g. ``"loss barrier 0.412 (max_minus_linear: max over α of L(α) − ...)"``."""
        return f"{self.metric} barrier {self.value:.4g} ({self.kind}: {self.definition})"


def resolve_alphas(alphas: int | Sequence[float] | np.ndarray | Tensor) -> np.ndarray:
    """An even grid on [0, 1] for an int, else the given values, checked.

    Raises
    ------
    ValueError
        Fewer than 2 points, values that are not finite or not increasing.
    """
    if isinstance(alphas, (int, np.integer)) and not isinstance(alphas, bool):
        if alphas < 2:
            raise ValueError(f"alphas must be at least 2 grid points (both endpoints); got {alphas}")
        return np.linspace(0.0, 1.0, int(alphas))
    grid = np.asarray(alphas.cpu() if isinstance(alphas, Tensor) else alphas, dtype=np.float64).reshape(-1)
    if grid.size < 2 or not np.all(np.isfinite(grid)) or np.any(np.diff(grid) <= 0):
        raise ValueError(f"alphas must be at least 2 finite, strictly increasing values; got {grid.tolist()}")
    return grid


def _to_numpy(values) -> np.ndarray:
    return np.asarray(values.detach().cpu() if isinstance(values, Tensor) else values, dtype=np.float64).reshape(-1)


def barrier(
    curve_or_values: InterpolationCurve | Sequence[float] | np.ndarray | Tensor,
    *,
    kind: BarrierKind = "max_minus_linear",
    metric: Literal["loss", "error"] = "loss",
    alphas: Sequence[float] | np.ndarray | None = None,
) -> Barrier:
    """The barrier height of a path, by one of three definitions.

    Parameters
    ----------
    curve_or_values : InterpolationCurve or array-like of shape (G,)
        A curve from :func:`interpolate` (``metric`` picks loss or error), or the values
        themselves along the path.
    kind : {"max_minus_linear", "max_minus_mean", "midpoint"}, default "max_minus_linear"
        See :data:`BARRIER_DEFINITIONS` and the module docstring.
    metric : {"loss", "error"}, default "loss"
        Which curve of an :class:`InterpolationCurve`; a label for plain values.
    alphas : array-like, optional
        Path coordinates of plain values; an even grid on [0, 1] by default.

    Returns
    -------
    Barrier

    Raises
    ------
    ValueError
        Unknown ``kind`` or ``metric``, a path that does not run from 0 to 1, NaN values
        (the error of a regression curve), or ``midpoint`` on a grid without 0.5.
    """
    if kind not in BARRIER_DEFINITIONS:
        raise ValueError(f"kind must be one of {', '.join(BARRIER_DEFINITIONS)}; got {kind!r}")
    if metric not in ("loss", "error"):
        raise ValueError(f"metric must be 'loss' or 'error'; got {metric!r}")
    if isinstance(curve_or_values, InterpolationCurve):
        values = curve_or_values.loss if metric == "loss" else curve_or_values.error
        grid = curve_or_values.alphas
    else:
        values = _to_numpy(curve_or_values)
        grid = np.linspace(0.0, 1.0, len(values)) if alphas is None else resolve_alphas(alphas)
    if len(grid) != len(values) or len(values) < 2:
        raise ValueError(f"a barrier needs at least 2 values, one per alpha; got {len(values)} values "
                         f"and {len(grid)} alphas")
    if grid[0] != 0.0 or grid[-1] != 1.0:
        raise ValueError(f"a barrier needs the path from alpha=0 to alpha=1; the grid runs from {grid[0]} "
                         f"to {grid[-1]}")
    if np.isnan(values).any():
        raise ValueError(f"the {metric} curve has NaN values (the error of a regression task is undefined); "
                         "use metric='loss'")
    return _barrier(np.asarray(values, dtype=np.float64), np.asarray(grid, dtype=np.float64), kind, metric)


def _barrier(values: np.ndarray, grid: np.ndarray, kind: str, metric: str) -> Barrier:
    v0, v1 = values[0], values[-1]
    if kind == "max_minus_linear":
        excess = values - ((1.0 - grid) * v0 + grid * v1)
        i = int(np.argmax(excess))
        return Barrier(float(excess[i]), kind, metric, float(grid[i]))
    if kind == "max_minus_mean":
        i = int(np.argmax(values))
        return Barrier(float(values[i] - (v0 + v1) / 2), kind, metric, float(grid[i]))
    mid = np.flatnonzero(np.isclose(grid, 0.5, rtol=0.0, atol=1e-9))
    if mid.size == 0:
        raise ValueError("the midpoint barrier needs alpha=0.5 on the grid; use an odd number of alphas "
                         "(the default 25 has it) or include 0.5")
    return Barrier(float(values[mid[0]] - (v0 + v1) / 2), kind, metric, 0.5)


# ---------------------------------------------------------------- interpolation


def interpolate(
    model: nn.Module,
    theta_a: Mapping[str, Tensor],
    theta_b: Mapping[str, Tensor],
    data,
    *,
    alphas: int | Sequence[float] | np.ndarray = 25,
    split: str = "train",
    bn: PathBN = "running",
    bn_data=None,
    bn_batches: int = 8,
    bn_batch_size: int = 256,
    seed: int = 0,
    loss_fn: LossFn | None = None,
    strategy: Strategy = "auto",
    label: str = "",
) -> InterpolationCurve:
    """Loss and error along the straight line from ``theta_a`` to ``theta_b``.

    Parameters
    ----------
    model : nn.Module
        The architecture; its own values only fill in buffers missing from the thetas.
    theta_a, theta_b : dict[str, Tensor]
        State dicts (parameters and buffers) or parameter dicts of the endpoints.
    data : pair, loader or Dataset-like
        Evaluation data (see :func:`engine.probes.core.functional.resolve_data`); on a CPU it
        goes in cache-sized chunks when they measure faster
        (:meth:`engine.probes.core.evaluator.Evaluator.choose_rows`), on a GPU as one batch.
    alphas : int or array-like, default 25
        An int gives an even grid on [0, 1] with both endpoints; an array is used as is
        (it may extend past [0, 1]).
    split : {"train", "test"}
        Split of a Dataset-like ``data``.
    bn : {"running", "reset"}, default "running"
        "running" interpolates the BatchNorm running statistics with the weights;
        "reset" recomputes them at every alpha (endpoints included) from training data,
        as a cumulative average over ``bn_batches`` batches of ``bn_batch_size``.
    bn_data : pair, loader or Dataset-like, optional
        Training data for the reset: by default the train split of a Dataset-like
        ``data``, else ``data`` itself.
    bn_batches, bn_batch_size : int
        Size of the reset; the same seeded batches are used at every alpha.
    seed : int
        Seed of the reset batches.
    loss_fn : callable, optional
        ``loss_fn(outputs, targets)``; cross-entropy / MSE by default.
    strategy : {"auto", "loop", "vmap"}
        How :func:`evaluate_points` runs the points ("vmap" also keeps the data whole).
    label : str
        Stored on the curve (e.g. "naive", "weight matching").

    Returns
    -------
    InterpolationCurve
        All alphas of a model without buffers are evaluated in one
        :func:`evaluate_points` call per data chunk; with BatchNorm each alpha has its own
        statistics. ``alpha = 0`` and ``1`` evaluate ``theta_a`` and ``theta_b`` bit for bit,
        so the endpoints equal the endpoint models' values computed the same way.

    References
    ----------
    Frankle et al. 2020; Jordan et al. 2023 (BN reset).
    """
    t0 = time.perf_counter()
    check_bn(bn)
    grid = resolve_alphas(alphas)
    x, y = resolve_data(data, split)
    layout, (params_a, buffers_a), (params_b, buffers_b) = path_states(model, theta_a, theta_b)
    flat_a, flat_b = layout.flatten(params_a).to(x.device), layout.flatten(params_b).to(x.device)
    batches = None
    if bn == "reset" and has_batchnorm(model):
        batches = reset_inputs(data, bn_data, split, n_batches=bn_batches, batch_size=bn_batch_size, seed=seed)
    losses, accs = [], []
    rows = None if strategy != "vmap" else len(x)  # None: evaluate_points chooses
    step = max(1, _MAX_FLOATS // max(1, layout.numel))  # bound the (G, P) matrix of one chunk
    for lo in range(0, len(grid), step):
        chunk = grid[lo : lo + step]
        thetas = lerp_flat(flat_a, flat_b, chunk)  # (g, P)
        buffers = path_buffers(model, thetas, layout, bn, buffers_a, buffers_b, chunk, batches)
        loss, acc = evaluate_line(model, flat_a, flat_b, chunk, thetas, buffers, (x, y), layout=layout,
                                  loss_fn=loss_fn, strategy=strategy, rows=rows)
        losses.append(loss)
        accs.append(acc)
    loss, acc = np.concatenate(losses), np.concatenate(accs)
    return InterpolationCurve(alphas=grid, loss=loss, error=1.0 - acc, split=split_name(data, split), bn=bn,
                              n_samples=len(x), label=label, seconds=time.perf_counter() - t0)
