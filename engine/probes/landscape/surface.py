"""1D and 2D slices of the loss landscape around a parameter vector.

``loss_surface_2d`` evaluates ``theta + a * d1 + b * d2`` on a grid, every point from
its own coordinates (no in-place walking that accumulates rounding error), through
:func:`engine.probes.core.plane_eval.evaluate_plane`.

References
----------
H. Li, Z. Xu, G. Taylor, C. Studer and T. Goldstein, "Visualizing the loss landscape of
neural nets", NeurIPS 2018.
I. J. Goodfellow, O. Vinyals and A. M. Saxe, "Qualitatively characterizing neural network
optimization problems", ICLR 2015 (1D interpolation).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from engine.probes.core import (
    BNMode,
    LossFn,
    ParamLayout,
    Strategy,
    evaluate_plane_with_strategy,
    evaluate_points,
    fast_default_loss,
    resolve_data,
    split_state,
)
from engine.probes.core.evaluator import PointProgress
from engine.probes.landscape.directions import Direction, as_direction

__all__ = ["Surface", "loss_surface_1d", "loss_surface_2d"]

Span = tuple[float, float]


@dataclass(frozen=True)
class Surface:
    """Loss and accuracy on a 1D or 2D grid of a slice through parameter space.

    Attributes
    ----------
    alphas : np.ndarray, shape (R1,)
        Coordinates along the first direction.
    betas : np.ndarray or None, shape (R2,)
        Coordinates along the second direction; None for a 1D slice.
    loss : np.ndarray, shape (R1,) or (R1, R2)
        ``loss[i, j]`` is the loss at ``theta + alphas[i] * d1 + betas[j] * d2``.
    accuracy : np.ndarray
        Same shape; NaN for regression targets.
    center_loss, center_accuracy : float
        Evaluated at ``theta`` itself.
    directions : tuple of dict
        Provenance of each direction (method, seed, norm, ignore, eigenvalue, norm_value).
    split : str
        Data split evaluated.
    bn : str
        BatchNorm statistics used ("running" or "batch").
    n_samples : int
        Samples the loss averages over.
    strategy : str
        Evaluation strategy used ("loop" or "vmap"; on a CPU "auto" measures which is faster).
    trajectory : np.ndarray or None, shape (n, 2)
        Checkpoint coordinates in the plane (PCA directions), to overlay.
    seconds : float
        Wall time.
    off_plane : np.ndarray or None, shape (n,)
        Each trajectory checkpoint's distance from the plane
        (:class:`~engine.probes.landscape.trajectory_plane.TrajectoryPlane`).
    trajectory_distance : np.ndarray or None, shape (n,)
        Each checkpoint's distance from the centre, ``|| theta_t - theta_c ||``.
    plane_explained : float or None
        Share of the trajectory's variance in the plane.
    """

    alphas: np.ndarray
    betas: np.ndarray | None
    loss: np.ndarray
    accuracy: np.ndarray
    center_loss: float
    center_accuracy: float
    directions: tuple[dict, ...]
    split: str
    bn: str
    n_samples: int
    strategy: str
    trajectory: np.ndarray | None = None
    seconds: float = 0.0
    off_plane: np.ndarray | None = None
    trajectory_distance: np.ndarray | None = None
    plane_explained: float | None = None

    @property
    def ndim(self) -> int:
        return 1 if self.betas is None else 2


def _axis(span, resolution: int, what: str) -> np.ndarray:
    lo, hi = span
    if not hi > lo:
        raise ValueError(f"{what} span must go from low to high; got {span}")
    if resolution < 2:
        raise ValueError(f"resolution must be at least 2; got {resolution}")
    return np.linspace(lo, hi, resolution)


def _spans(span, resolution) -> tuple[np.ndarray, np.ndarray]:
    spans = span if isinstance(span[0], (tuple, list)) else (span, span)
    res = resolution if isinstance(resolution, (tuple, list)) else (resolution, resolution)
    return _axis(spans[0], res[0], "first"), _axis(spans[1], res[1], "second")


def _setup(model, params, data, directions, split):
    params, state_buffers = split_state(model, params)
    layout = ParamLayout.from_module(model)
    x, y = resolve_data(data, split)
    device, theta0 = x.device, layout.flatten(params).to(x.device)
    flats = [as_direction(d).flat(layout).to(device=device, dtype=theta0.dtype) for d in directions]
    return layout, theta0, flats, state_buffers, (x, y)


def _center(model, theta0, data, kw) -> tuple[float, float]:
    loss, acc = evaluate_points(model, theta0[None], data, **{k: v for k, v in kw.items() if k != "chunk"})
    return float(loss[0]), float(acc[0])


def loss_surface_1d(
    model: nn.Module,
    params: Mapping[str, Tensor],
    data,
    direction: Direction | Mapping[str, Tensor],
    *,
    span: Span = (-1.0, 1.0),
    resolution: int = 51,
    split: str = "train",
    bn: BNMode = "running",
    buffers: Mapping[str, Tensor] | None = None,
    loss_fn: LossFn | None = None,
    strategy: Strategy = "auto",
    chunk: int | None = None,
    progress: PointProgress | None = None,
) -> Surface:
    """Loss along ``params + a * direction`` for ``a`` on a grid.

    With ``direction = direction_between(params, params_b)`` and ``span=(0, 1)`` this is
    the linear interpolation from ``params`` to ``params_b`` (Goodfellow et al. 2015).

    Parameters
    ----------
    model : nn.Module
        Architecture.
    params : dict
        Centre of the slice (parameter or state dict).
    data : pair, loader or Dataset-like
        See :func:`engine.probes.core.functional.resolve_data`.
    direction : Direction or dict
        E.g. from :func:`engine.probes.landscape.directions.random_direction`.
    span : (float, float)
        Range of ``a``.
    resolution : int
        Grid points.
    split, bn, buffers, loss_fn, strategy, chunk, progress
        As in :func:`engine.probes.core.point_eval.evaluate_points`; ``buffers`` default to
        those of a state dict ``params``, else the model's; ``loss_fn`` defaults to
        :func:`engine.probes.core.functional.fast_default_loss` (cross-entropy / MSE).
    """
    start = time.perf_counter()
    layout, theta0, (d,), state_buffers, xy = _setup(model, params, data, [direction], split)
    alphas = _axis(span, resolution, "first")
    a = torch.as_tensor(alphas, dtype=theta0.dtype, device=theta0.device)
    kw = dict(bn=bn, buffers=state_buffers if buffers is None else buffers, loss_fn=loss_fn or fast_default_loss,
              strategy=strategy, chunk=chunk, layout=layout, split=split, rows=None)
    coords = torch.stack([a, torch.zeros_like(a)], 1)
    loss, acc, used = evaluate_plane_with_strategy(model, theta0, d, torch.zeros_like(d), coords, xy,
                                                   progress=progress, **kw)
    c_loss, c_acc = _center(model, theta0, xy, kw)
    return Surface(
        alphas=alphas, betas=None, loss=loss.numpy(), accuracy=acc.numpy(), center_loss=c_loss, center_accuracy=c_acc,
        directions=(as_direction(direction).provenance(),), split=split, bn=bn, n_samples=len(xy[0]), strategy=used,
        trajectory=None, seconds=time.perf_counter() - start,
    )


def loss_surface_2d(
    model: nn.Module,
    params: Mapping[str, Tensor],
    data,
    d1: Direction | Mapping[str, Tensor],
    d2: Direction | Mapping[str, Tensor],
    *,
    span: Span | tuple[Span, Span] = (-1.0, 1.0),
    resolution: int | tuple[int, int] = 41,
    split: str = "train",
    bn: BNMode = "running",
    buffers: Mapping[str, Tensor] | None = None,
    loss_fn: LossFn | None = None,
    strategy: Strategy = "auto",
    chunk: int | None = None,
    trajectory: np.ndarray | None = None,
    progress: PointProgress | None = None,
) -> Surface:
    """Loss and accuracy on the grid ``params + a * d1 + b * d2``.

    Parameters
    ----------
    model : nn.Module
        Architecture.
    params : dict
        Centre of the plane (parameter or state dict).
    data : pair, loader or Dataset-like
        See :func:`engine.probes.core.functional.resolve_data`.
    d1, d2 : Direction or dict
        E.g. two :func:`random_direction` s with different seeds, the
        :func:`hessian_directions`, or :func:`pca_directions` (pass its ``coords`` as
        ``trajectory``).
    span : (lo, hi) or ((lo1, hi1), (lo2, hi2))
        Range of ``a`` and ``b``.
    resolution : int or (int, int)
        Grid points per axis.
    trajectory : np.ndarray, shape (n, 2), optional
        Coordinates to overlay (stored with the surface).
    split, bn, buffers, loss_fn, strategy, chunk, progress
        As in :func:`loss_surface_1d` (``progress(done, total)`` after every grid point).

    Returns
    -------
    Surface
        ``loss[i, j]`` at ``(alphas[i], betas[j])``.

    References
    ----------
    Li et al. 2018.
    """
    start = time.perf_counter()
    layout, theta0, (f1, f2), state_buffers, xy = _setup(model, params, data, [d1, d2], split)
    alphas, betas = _spans(span, resolution)
    grid = torch.cartesian_prod(torch.as_tensor(alphas), torch.as_tensor(betas)).to(theta0)  # (R1*R2, 2)
    kw = dict(bn=bn, buffers=state_buffers if buffers is None else buffers, loss_fn=loss_fn or fast_default_loss,
              strategy=strategy, chunk=chunk, layout=layout, split=split, rows=None)
    loss, acc, used = evaluate_plane_with_strategy(model, theta0, f1, f2, grid, xy, progress=progress, **kw)
    c_loss, c_acc = _center(model, theta0, xy, kw)
    shape = (len(alphas), len(betas))
    return Surface(
        alphas=alphas, betas=betas, loss=loss.numpy().reshape(shape), accuracy=acc.numpy().reshape(shape),
        center_loss=c_loss, center_accuracy=c_acc,
        directions=(as_direction(d1).provenance(), as_direction(d2).provenance()), split=split, bn=bn,
        n_samples=len(xy[0]), strategy=used,
        trajectory=None if trajectory is None else np.asarray(trajectory, dtype=float),
        seconds=time.perf_counter() - start,
    )
