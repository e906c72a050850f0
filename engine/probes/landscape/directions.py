"""Directions in parameter space along which to slice the loss.

Random filter-normalised directions (Li et al. 2018), extreme Hessian eigenvectors
(Böttcher & Wheeler 2022), the principal components of a training trajectory (Li et
al. 2018, section 7), the straight line between two solutions, and the plane through
three of them (Garipov et al. 2018).

References
----------
H. Li, Z. Xu, G. Taylor, C. Studer and T. Goldstein, "Visualizing the loss landscape of
neural nets", NeurIPS 2018.
L. Böttcher and G. Wheeler, "Visualizing high-dimensional loss landscapes with Hessian
directions", arXiv:2208.13219 (2022).
T. Garipov, P. Izmailov, D. Podoprikhin, D. Vetrov and A. G. Wilson, "Loss surfaces,
mode connectivity, and fast ensembling of DNNs", NeurIPS 2018.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from engine.probes.core import ParamLayout, split_state
from engine.probes.landscape.curvature import hessian_operator, lanczos_pairs

__all__ = [
    "Direction",
    "PCADirections",
    "Plane",
    "direction_between",
    "hessian_directions",
    "pca_directions",
    "plane_through",
    "random_direction",
]

_NORMS = ("filter", "layer", "model", None)


@dataclass(frozen=True)
class Direction:
    """A direction in parameter space and how it was made.

    Attributes
    ----------
    params : dict of str to Tensor
        One tensor per parameter, shaped like it.
    method : str
        "random", "hessian", "pca", "plane", "interpolation" or "custom".
    info : dict
        Provenance: seed, norm, ignore, eigenvalue, explained variance ...
    """

    params: dict[str, Tensor]
    method: str = "custom"
    info: dict = field(default_factory=dict)

    def flat(self, layout: ParamLayout) -> Tensor:
        """The direction as one vector of shape ``(P,)`` in ``layout`` order."""
        return layout.flatten(self.params)

    @property
    def norm(self) -> float:
        """Euclidean norm over all entries."""
        return float(torch.sqrt(sum((t.double() ** 2).sum() for t in self.params.values())))

    def provenance(self) -> dict:
        """JSON-friendly record: method, info and the norm."""
        return {"method": self.method, **self.info, "norm_value": self.norm}


def as_direction(d: Direction | Mapping[str, Tensor]) -> Direction:
    """Wrap a plain dict as a ``"custom"`` direction."""
    return d if isinstance(d, Direction) else Direction(dict(d), "custom", {})


def _check_options(norm, ignore):
    if norm not in _NORMS:
        raise ValueError(f"norm must be one of 'filter', 'layer', 'model' or None; got {norm!r}")
    if ignore not in ("biasbn", None):
        raise ValueError(f"ignore must be 'biasbn' or None; got {ignore!r}")


def random_direction(
    params: Mapping[str, Tensor],
    *,
    norm: str | None = "filter",
    ignore: str | None = "biasbn",
    seed: int = 0,
) -> Direction:
    """A Gaussian direction, normalised to the scale of ``params``.

    Parameters
    ----------
    params : dict
        Parameters (name -> tensor) the direction is scaled to.
    norm : {"filter", "layer", "model", None}
        "filter": each filter (slice along dim 0: a row of a Linear weight, an output
        channel of a conv) gets the norm of the matching filter of the weights; "layer":
        each tensor gets the norm of its weight tensor; "model": the whole direction
        gets the norm of the whole parameter vector; None: raw N(0, 1) entries.
    ignore : {"biasbn", None}
        "biasbn" zeroes 1-D tensors (biases, norm-layer scales). With None and a
        filter/layer norm they are set to the weights themselves, as in Li et al.'s code.
    seed : int
        Same seed, same direction, on any device.

    References
    ----------
    Li et al. 2018, section 4 (filter normalisation).
    """
    _check_options(norm, ignore)
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, w in params.items():
        w = w.detach()
        d = torch.randn(w.shape, generator=gen, dtype=torch.float32).to(dtype=w.dtype, device=w.device)
        if w.ndim <= 1 and norm in ("filter", "layer"):
            d = torch.zeros_like(w) if ignore == "biasbn" else w.clone()
        elif w.ndim <= 1 and ignore == "biasbn":
            d = torch.zeros_like(w)
        elif norm == "filter":
            dn = d.reshape(len(d), -1).norm(dim=1)  # (out,)
            wn = w.reshape(len(w), -1).norm(dim=1)
            d = d * (wn / (dn + 1e-10)).reshape(-1, *[1] * (w.ndim - 1))
        elif norm == "layer":
            d = d * (w.norm() / (d.norm() + 1e-10))
        out[name] = d
    if norm == "model":
        keep = [n for n, w in params.items() if not (w.ndim <= 1 and ignore == "biasbn")]
        d_norm = torch.sqrt(sum((out[n].double() ** 2).sum() for n in keep))
        w_norm = torch.sqrt(sum((params[n].detach().double() ** 2).sum() for n in keep))
        out = {n: t * float(w_norm / (d_norm + 1e-10)) for n, t in out.items()}
    return Direction(out, "random", {"seed": seed, "norm": norm, "ignore": ignore})


def direction_between(params_a: Mapping[str, Tensor], params_b: Mapping[str, Tensor]) -> Direction:
    """``params_b - params_a``: with span (0, 1) a 1D slice interpolates from a to b."""
    if set(params_a) != set(params_b):
        raise ValueError(f"parameter dicts differ in keys: {sorted(set(params_a) ^ set(params_b))}")
    return Direction({n: params_b[n].detach() - params_a[n].detach() for n in params_a}, "interpolation", {})


def hessian_directions(
    model: nn.Module,
    params: Mapping[str, Tensor],
    data,
    *,
    tol: float = 1e-3,
    max_iter: int = 100,
    seed: int = 0,
    n_samples: int | None = None,
    **kwargs,
) -> tuple[Direction, Direction]:
    """Unit eigenvectors of the largest and of the smallest Hessian eigenvalue.

    Both ends come from one Lanczos run. Slices along them show the steepest upward
    curvature and, at a saddle, the descent direction a random slice misses.

    Parameters
    ----------
    tol, max_iter, seed, n_samples, **kwargs
        As in :func:`engine.probes.landscape.curvature.hessian_top_eigs`.

    Returns
    -------
    top, bottom : Direction
        ``info`` holds each eigenvalue and the Lanczos settings.

    References
    ----------
    Böttcher & Wheeler 2022.
    """
    param_dict, _ = split_state(model, params)
    op = hessian_operator(model, params, data, n_samples=n_samples, seed=seed, **kwargs)
    pick = lanczos_pairs(op, 1, "both", tol, max_iter, None, seed)  # Ritz values converge at both ends
    (top_v, top_x, _, _), (bot_v, bot_x, _, _) = pick("LA"), pick("SA")
    ref = next(iter(param_dict.values()))
    out = []
    for value, vec, end in ((top_v[0], top_x[0], "top"), (bot_v[0], bot_x[0], "bottom")):
        flat = torch.from_numpy(vec).to(dtype=ref.dtype, device=ref.device)
        d = {n: t.clone() for n, t in op.layout.unflatten(flat).items()}
        out.append(Direction(d, "hessian", {"end": end, "eigenvalue": float(value), "seed": seed,
                                            "n_samples": op.n_samples, "bn": op.bn}))
    return out[0], out[1]


@dataclass(frozen=True)
class PCADirections:
    """Two principal directions of a trajectory and the checkpoints' coordinates.

    Attributes
    ----------
    d1, d2 : Direction
        Unit principal directions.
    coords : np.ndarray, shape (n, 2)
        Each checkpoint's projection onto ``(d1, d2)`` relative to the origin.
    explained_variance_ratio : np.ndarray, shape (2,)
    origin : int
        Index of the checkpoint the plane is centred on.
    """

    d1: Direction
    d2: Direction
    coords: np.ndarray
    explained_variance_ratio: np.ndarray
    origin: int


def pca_directions(
    checkpoints: Sequence[Mapping[str, Tensor]],
    *,
    model: nn.Module | None = None,
    origin: int = -1,
    ignore: str | None = "biasbn",
) -> PCADirections:
    """Principal directions of ``theta_i - theta_origin`` over a training trajectory.

    Parameters
    ----------
    checkpoints : sequence of dict
        At least 3 parameter dicts in training order (state dicts need ``model``).
    model : nn.Module, optional
        Picks the parameters out of state dicts; without it every floating-point entry
        is used (pass ``model`` when the dicts hold BatchNorm running statistics).
    origin : int
        Checkpoint the plane is centred on, the last (final model) by default.
    ignore : {"biasbn", None}
        "biasbn" leaves 1-D tensors out of the PCA, as Li et al. do.

    References
    ----------
    Li et al. 2018, section 7.
    """
    if len(checkpoints) < 3:
        raise ValueError(f"pca_directions needs at least 3 checkpoints; got {len(checkpoints)}")
    _check_options(None, ignore)
    if model is not None:
        dicts = [split_state(model, c)[0] for c in checkpoints]
    else:
        dicts = [{k: v for k, v in c.items() if v.is_floating_point()} for c in checkpoints]
    layout = ParamLayout.from_params(dicts[0])
    mask = torch.cat([torch.full((int(np.prod(s)),), not (len(s) <= 1 and ignore == "biasbn"))
                      for s in layout.shapes])
    flats = torch.stack([layout.flatten(d).double().cpu() for d in dicts]) * mask  # (n, P)
    origin = origin % len(dicts)
    diffs = flats - flats[origin]
    rows = torch.cat([diffs[:origin], diffs[origin + 1 :]])
    centred = rows - rows.mean(0)
    _, s, vt = torch.linalg.svd(centred, full_matrices=False)
    comps = vt[:2]  # (2, P), unit rows
    signs = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))  # largest entry positive
    comps = comps * signs
    ratio = (s[:2] ** 2 / (s**2).sum()).numpy()
    ref = next(iter(dicts[0].values()))
    dirs = []
    for i in range(2):
        vec = comps[i].to(dtype=ref.dtype, device=ref.device)
        d = {n: t.clone() for n, t in layout.unflatten(vec).items()}
        dirs.append(Direction(d, "pca", {"component": i + 1, "explained_variance_ratio": float(ratio[i]),
                                         "ignore": ignore, "n_checkpoints": len(dicts)}))
    coords = (diffs @ comps.T).numpy()  # (n, 2)
    return PCADirections(d1=dirs[0], d2=dirs[1], coords=coords, explained_variance_ratio=ratio, origin=origin)


@dataclass(frozen=True)
class Plane:
    """The plane through three parameter vectors, with orthonormal directions.

    Attributes
    ----------
    origin : dict
        ``theta_a``.
    d1, d2 : Direction
        ``d1`` along ``theta_b - theta_a``; ``d2`` the orthogonalised ``theta_c - theta_a``.
    coords : np.ndarray, shape (3, 2)
        Plane coordinates of ``theta_a``, ``theta_b``, ``theta_c``.
    """

    origin: dict[str, Tensor]
    d1: Direction
    d2: Direction
    coords: np.ndarray

    def span(self, margin: float = 0.2) -> tuple[tuple[float, float], tuple[float, float]]:
        """Axis ranges covering the three points with ``margin`` times their extent around."""
        lo, hi = self.coords.min(0), self.coords.max(0)
        pad = margin * (hi - lo).max()
        return (float(lo[0] - pad), float(hi[0] + pad)), (float(lo[1] - pad), float(hi[1] + pad))


def plane_through(
    theta_a: Mapping[str, Tensor], theta_b: Mapping[str, Tensor], theta_c: Mapping[str, Tensor]
) -> Plane:
    """The affine plane through three parameter dicts (Garipov et al. 2018, Fig. 1).

    Raises
    ------
    ValueError
        If the three points are (nearly) on one line.
    """
    layout = ParamLayout.from_params(theta_a)
    a, b, c = (layout.flatten(t).double() for t in (theta_a, theta_b, theta_c))
    u = b - a
    if u.norm() == 0:
        raise ValueError("theta_a and theta_b are the same point; a plane needs three distinct points")
    u_hat = u / u.norm()
    v = (c - a) - ((c - a) @ u_hat) * u_hat
    if v.norm() <= 1e-5 * float((c - a).norm()):  # float32 inputs: relative, not exact, collinearity
        raise ValueError("the three points are collinear; pick a third point off the line through the first two")
    v_hat = v / v.norm()
    coords = np.array([[0.0, 0.0], [float(u.norm()), 0.0], [float((c - a) @ u_hat), float(v.norm())]])
    dtype = next(iter(theta_a.values())).dtype
    dirs = [Direction({n: t.to(dtype).clone() for n, t in layout.unflatten(x).items()}, "plane", {"axis": i + 1})
            for i, x in enumerate((u_hat, v_hat))]
    return Plane({n: t.detach() for n, t in theta_a.items()}, dirs[0], dirs[1], coords)
