"""How far a training trajectory lies from the plane a 2D loss surface is drawn in.

A trajectory drawn on a surface's contours shows each checkpoint's plane coordinates:
its projection. The loss there is the loss of the projected point, not of the
checkpoint, and two checkpoints far apart can project side by side. This module says
how much is lost: each checkpoint's distance off the plane and the share of the
trajectory's variance the plane holds.

References
----------
H. Li, Z. Xu, G. Taylor, C. Studer and T. Goldstein, "Visualizing the loss landscape of
neural nets", NeurIPS 2018, section 7 (PCA directions of a trajectory).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from engine.probes.core import ParamLayout, split_state
from engine.probes.landscape.directions import Direction, as_direction

__all__ = ["TrajectoryPlane", "trajectory_plane"]


@dataclass(frozen=True)
class TrajectoryPlane:
    """Checkpoints of a trajectory against the plane ``theta_c + a d1 + b d2``.

    Attributes
    ----------
    coords : np.ndarray, shape (n, 2)
        Plane coordinates ``(a, b)`` of each checkpoint's projection (least squares, so
        the same units as the surface's grid for any two independent directions).
    off_plane : np.ndarray, shape (n,)
        ``|| (theta_t - theta_c) - (a d1 + b d2) ||``: the distance from the plane, in
        parameter units (the plane coordinates' units when ``d1, d2`` are orthonormal, as
        PCA directions are).
    distance : np.ndarray, shape (n,)
        ``|| theta_t - theta_c ||``.
    explained : float
        Share of the trajectory's variance (all checkpoints, centred on their mean, every
        parameter) in the plane's span.
    origin : int
        Index of the centre checkpoint ``theta_c``.
    """

    coords: np.ndarray
    off_plane: np.ndarray
    distance: np.ndarray
    explained: float
    origin: int

    @property
    def off_plane_share(self) -> np.ndarray:
        """``off_plane / distance`` per checkpoint, shape (n,); 0 at the centre itself."""
        return np.divide(self.off_plane, self.distance, out=np.zeros_like(self.off_plane),
                         where=self.distance > 0)


def _flats(checkpoints, model) -> tuple[ParamLayout, Tensor]:
    if model is not None:
        dicts = [split_state(model, c)[0] for c in checkpoints]
    else:
        dicts = [{k: v for k, v in c.items() if v.is_floating_point()} for c in checkpoints]
    layout = ParamLayout.from_params(dicts[0])
    for i, d in enumerate(dicts[1:], 1):
        if list(d) != list(layout.names):
            raise ValueError(f"checkpoint {i} has parameters {sorted(set(d) ^ set(layout.names))[:5]} that "
                             "checkpoint 0 does not (or lacks them); pass checkpoints of one architecture")
    return layout, torch.stack([layout.flatten(d).detach().double().cpu() for d in dicts])  # (n, P)


def trajectory_plane(
    checkpoints: Sequence[Mapping[str, Tensor]],
    d1: Direction | Mapping[str, Tensor],
    d2: Direction | Mapping[str, Tensor],
    *,
    model: nn.Module | None = None,
    origin: int = -1,
) -> TrajectoryPlane:
    """Each checkpoint's distance from the plane through ``checkpoints[origin]`` along ``d1, d2``.

    Parameters
    ----------
    checkpoints : sequence of dict
        Parameter (or, with ``model``, state) dicts in training order.
    d1, d2 : Direction or dict
        The plane's directions, e.g. :func:`engine.probes.landscape.pca_directions`'s.
        Any two independent directions work; a parameter a direction leaves out (PCA
        with ``ignore="biasbn"`` zeroes biases) counts as off the plane, as it is held
        at the centre's value on the surface.
    model : nn.Module, optional
        Picks the parameters out of state dicts (BatchNorm statistics are not parameters).
    origin : int
        The centre checkpoint, the last by default (where the surface is centred).

    Returns
    -------
    TrajectoryPlane
    """
    if len(checkpoints) < 1:
        raise ValueError("trajectory_plane needs at least one checkpoint; got 0")
    layout, flats = _flats(checkpoints, model)
    basis = torch.stack([as_direction(d).flat(layout).detach().double().cpu() for d in (d1, d2)], 1)  # (P, 2)
    q, r = torch.linalg.qr(basis)  # (P, 2), (2, 2)
    if float(r.diagonal().abs().min()) <= 1e-10 * float(r.diagonal().abs().max()):
        raise ValueError("d1 and d2 are parallel (or one is zero); a plane needs two independent directions")
    origin = origin % len(flats)
    diffs = flats - flats[origin]  # (n, P)
    inplane = diffs @ q  # (n, 2) coordinates in the orthonormal basis
    coords = torch.linalg.solve_triangular(r, inplane.T, upper=True).T  # (n, 2) in d1, d2 units
    residual = diffs - inplane @ q.T
    centred = diffs - diffs.mean(0)
    total = float((centred**2).sum())
    held = float(((centred @ q) ** 2).sum())
    return TrajectoryPlane(coords=coords.numpy(), off_plane=residual.norm(dim=1).numpy(),
                           distance=diffs.norm(dim=1).numpy(), explained=held / total if total > 0 else 1.0,
                           origin=origin)
