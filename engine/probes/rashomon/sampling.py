"""Sampling the Rashomon set of a small model class in parameter space.

Around an optimum θ* the loss is close to its quadratic model, so the Rashomon set
is close to the ellipsoid {θ : ½(θ − θ*)ᵀH(θ − θ*) ≤ τ − L(θ*)} with H the loss
Hessian at θ* and τ the Rashomon threshold. :func:`sample_rashomon_set` draws points
uniformly from that ellipsoid and keeps only those whose *true* loss is ≤ τ, so every
member is exact; the acceptance rate says how good the quadratic model was.
:func:`rashomon_ratio` estimates the Rashomon ratio by uniform sampling of a box.

References
----------
.. [1] L. Semenova, C. Rudin, R. Parr, "On the Existence of Simpler Machine Learning
   Models", ACM FAccT, 2022 (Rashomon ratio; sampling bounded hypothesis spaces).
.. [2] J. Dong, C. Rudin, "Exploring the cloud of variable importance for the set of
   all good models", Nature Machine Intelligence, 2020 (ellipsoid approximation of the
   Rashomon set of logistic regression).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jacrev, vmap

from engine.probes.core import default_loss
from engine.probes.rashomon.sets import Mode, RashomonRatio, rashomon_ratio_from_losses, rashomon_threshold

__all__ = ["RashomonSample", "sample_rashomon_set", "rashomon_ratio", "flat_losses"]


@dataclass(frozen=True)
class RashomonSample:
    """Exact members of a model class's Rashomon set, sampled around the optimum.

    Attributes
    ----------
    thetas : np.ndarray
        Accepted flat parameter vectors, shape (K, P), in ``names`` order.
    losses : np.ndarray
        Their true losses, shape (K,), all ≤ ``threshold``.
    candidate_losses : np.ndarray
        True loss of every drawn candidate, shape (n_samples,).
    accepted : np.ndarray
        Boolean (n_samples,): candidate kept.
    acceptance_rate : float
        K / n_samples.
    optimum_loss, threshold, epsilon : float
    mode : str
        ``"relative"`` or ``"absolute"`` ε.
    eigenvalues : np.ndarray
        Hessian eigenvalues at the optimum (before flooring), shape (P,).
    n_floored : int
        Eigenvalues raised to the floor (flat or negative directions).
    names : tuple[str, ...]
    shapes : tuple[tuple[int, ...], ...]
    """

    thetas: np.ndarray
    losses: np.ndarray
    candidate_losses: np.ndarray
    accepted: np.ndarray
    acceptance_rate: float
    optimum_loss: float
    threshold: float
    epsilon: float
    mode: str
    eigenvalues: np.ndarray
    n_floored: int
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    def stacked_params(self, dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
        """Members as a stacked parameter dict name -> (K, *shape)."""
        return _unflatten(torch.as_tensor(self.thetas, dtype=dtype), self.names, self.shapes)


def _flatten(params: Mapping[str, Tensor]) -> tuple[Tensor, tuple[str, ...], tuple]:
    names = tuple(params)
    shapes = tuple(tuple(params[n].shape) for n in names)
    return torch.cat([params[n].detach().reshape(-1) for n in names]), names, shapes


def _unflatten(theta: Tensor, names, shapes) -> dict[str, Tensor]:
    out, at = {}, 0
    lead = theta.shape[:-1]
    for n, s in zip(names, shapes):
        k = math.prod(s)
        out[n] = theta[..., at:at + k].reshape(tuple(lead) + tuple(s))
        at += k
    return out


def _loss(out: Tensor, y: Tensor) -> Tensor:
    """The loss the targets imply (the runs' loss on tabular data): MSE for floats, cross-entropy for ids."""
    return default_loss(out, y)


def flat_losses(model: nn.Module, thetas: Tensor, names, shapes, data, *, l2: float = 0.0,
                metric: str = "loss", chunk: int = 256) -> Tensor:
    """Loss (+ l2·‖θ‖²) of many flat parameter vectors, shape (G,), float64.

    Parameters
    ----------
    model : nn.Module
        Architecture; never mutated (``functional_call`` under ``vmap``).
    thetas : Tensor of shape (G, P)
    names, shapes
        Layout of the flat vector.
    data : (x, y)
    l2 : float
        Penalty added to the data loss (ridge / weight decay objective).
    metric : {"loss", "error"}
        Cross-entropy / MSE, or the 0-1 error rate (classification only).
    chunk : int
        Vectors per ``vmap`` call.
    """
    x, y = data
    if metric not in ("loss", "error"):
        raise ValueError(f"metric must be 'loss' or 'error'; got {metric!r}")
    if metric == "error" and y.is_floating_point():
        raise ValueError("metric='error' needs integer class targets; use metric='loss' for regression")

    def one(theta):
        out = functional_call(model, _unflatten(theta, names, shapes), (x,))
        data_term = (out.argmax(-1) != y).to(theta.dtype).mean() if metric == "error" else _loss(out, y)
        return data_term + l2 * theta.pow(2).sum()

    with torch.no_grad():
        parts = [vmap(one)(thetas[s:s + chunk]) for s in range(0, thetas.shape[0], chunk)]
    return torch.cat(parts).double()


def _uniform_ball(n: int, p: int, gen: torch.Generator, dtype) -> Tensor:
    """n points uniform in the unit P-ball (Gaussian direction, radius U^{1/P})."""
    z = torch.randn(n, p, generator=gen, dtype=torch.float64)
    r = torch.rand(n, 1, generator=gen, dtype=torch.float64) ** (1.0 / p)
    return (z / z.norm(dim=1, keepdim=True) * r).to(dtype)


def sample_rashomon_set(model: nn.Module, params: Mapping[str, Tensor], data, *, epsilon: float,
                        mode: Mode = "relative", n_samples: int = 1000, seed: int = 0,
                        l2: float = 0.0, eigenvalue_floor: float | None = None,
                        max_params: int = 4096) -> RashomonSample:
    """Sample a model class's Rashomon set uniformly from the Hessian ellipsoid, then filter.

    Parameters
    ----------
    model : nn.Module
        Architecture (e.g. logistic regression as ``nn.Linear``, a small MLP).
    params : dict name -> Tensor
        The optimum θ* (a trained model's ``named_parameters()``).
    data : (x, y)
        The data the loss is measured on.
    epsilon : float
        Tolerance; the threshold is (1+ε)·L* (``"relative"``) or L*+ε (``"absolute"``).
    mode : {"relative", "absolute"}, default "relative"
    n_samples : int, default 1000
        Candidates drawn.
    seed : int, default 0
    l2 : float, default 0
        Penalty l2·‖θ‖² included in the objective.
    eigenvalue_floor : float, optional
        Hessian eigenvalues below this are raised to it, which bounds the ellipsoid in
        flat or negative-curvature directions (a warning says how many). Default
        1e-6 × the largest eigenvalue.
    max_params : int, default 4096
        Refuse larger models (the Hessian is dense, P × P).

    Returns
    -------
    RashomonSample

    References
    ----------
    Dong & Rudin 2020 (ellipsoid approximation); Semenova et al. 2022.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1; got {n_samples}")
    theta0, names, shapes = _flatten(params)
    p = theta0.numel()
    if p > max_params:
        raise ValueError(f"model has {p} parameters, more than max_params={max_params}; the dense "
                         "Hessian would be too large: use a smaller model or a zoo instead")
    x, y = data
    # float64 throughout: the filter compares losses to a threshold a hair above L*
    theta0 = theta0.double().to(x.device)
    xd = x.double()
    yd = y.double() if y.is_floating_point() else y

    def objective(theta):
        out = functional_call(model, _unflatten(theta, names, shapes), (xd,))
        return _loss(out, yd) + l2 * theta.pow(2).sum()

    best = float(objective(theta0))
    threshold = rashomon_threshold(best, epsilon, mode)
    h = jacrev(grad(objective))(theta0).detach()  # (P, P); reverse-over-reverse, no forward AD
    evals, evecs = torch.linalg.eigh(0.5 * (h + h.T))
    floor = eigenvalue_floor if eigenvalue_floor is not None else 1e-6 * max(float(evals.max()), 1e-12)
    n_floored = int((evals < floor).sum())
    if n_floored:
        warnings.warn(f"{n_floored} of {p} Hessian eigenvalues are below {floor:.3g} (flat or "
                      "negative directions); they were raised to it, so the ellipsoid is bounded "
                      "there and acceptance may drop", RuntimeWarning, stacklevel=2)
    lam = evals.clamp_min(floor)
    gen = torch.Generator().manual_seed(seed)
    u = _uniform_ball(n_samples, p, gen, torch.float64).to(theta0.device)  # (n, P)
    radius = math.sqrt(2.0 * max(threshold - best, 0.0))
    thetas = theta0 + (u * (radius / lam.sqrt())) @ evecs.T  # (n, P): ½ δᵀHδ ≤ τ − L*
    losses = flat_losses(model, thetas, names, shapes, (xd, yd), l2=l2).cpu().numpy()
    accepted = losses <= threshold
    return RashomonSample(
        thetas=thetas.cpu().numpy()[accepted], losses=losses[accepted],
        candidate_losses=losses, accepted=accepted,
        acceptance_rate=float(accepted.mean()), optimum_loss=best, threshold=float(threshold),
        epsilon=float(epsilon), mode=mode, eigenvalues=evals.cpu().numpy(), n_floored=n_floored,
        names=names, shapes=shapes)


def rashomon_ratio(model: nn.Module, params: Mapping[str, Tensor], data, *, epsilon: float,
                   half_width: float, optimum_loss: float, mode: Mode = "absolute",
                   n_samples: int = 10_000, seed: int = 0, l2: float = 0.0,
                   metric: str = "loss", chunk: int = 4096) -> RashomonRatio:
    """Monte Carlo Rashomon ratio of a model class over the box [−half_width, half_width]^P.

    Parameters
    ----------
    model : nn.Module
        Architecture; ``params`` only gives the layout (names and shapes).
    params : dict name -> Tensor
    data : (x, y)
    epsilon : float
    half_width : float
        The bounded hypothesis space.
    optimum_loss : float
        L* of the class (e.g. a trained model's loss).
    mode : {"absolute", "relative"}, default "absolute" (as in Semenova et al.)
    n_samples : int, default 10000
    seed : int, default 0
    l2 : float, default 0
        Penalty in the objective (l2 > 0 with a linear model is ridge regression).
    metric : {"loss", "error"}, default "loss"
        Cross-entropy / MSE, or the 0-1 error (Semenova et al.'s empirical risk).
    chunk : int
        Samples per batched evaluation.

    Returns
    -------
    RashomonRatio
        Share of uniform samples inside the set, with its binomial standard error.

    References
    ----------
    Semenova, Rudin & Parr 2022, Definition 3.
    """
    if half_width <= 0:
        raise ValueError(f"half_width must be > 0; got {half_width}")
    theta0, names, shapes = _flatten(params)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    x, y = data
    data64 = (x.double(), y.double() if y.is_floating_point() else y)
    for s in range(0, n_samples, chunk):
        k = min(chunk, n_samples - s)
        th = (torch.rand(k, theta0.numel(), generator=gen, dtype=torch.float64) * 2 - 1) * half_width
        th = th.to(x.device)  # drawn on the CPU so a seed means the same sample on any device
        losses.append(flat_losses(model, th, names, shapes, data64, l2=l2, metric=metric, chunk=chunk).cpu())
    return rashomon_ratio_from_losses(torch.cat(losses).numpy(), epsilon=epsilon, mode=mode,
                                      reference_loss=optimum_loss)
