"""Curvature of the loss through Hessian-vector products: operator, top eigenvalues, sharpness.

The Hessian is never formed. A product ``H v`` is forward-over-reverse
differentiation, ``torch.func.jvp`` of ``torch.func.grad`` of the loss as a function of
the flat parameter vector; many products at once go through ``vmap``, which computes
the forward and backward pass of the primal once and only batches the tangents.

References
----------
B. A. Pearlmutter, "Fast exact multiplication by the Hessian", Neural Computation 6 (1994).
B. Ghorbani, S. Krishnan and Y. Xiao, "An investigation into neural net optimization via
Hessian eigenvalue density", ICML 2019.
Z. Yao, A. Gholami, K. Keutzer and M. Mahoney, "PyHessian: Neural networks through the
lens of the Hessian", IEEE BigData 2020.
J. Cohen, S. Kaur, Y. Li, J. Z. Kolter and A. Talwalkar, "Gradient descent on neural
networks typically occurs at the edge of stability", ICLR 2021.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import grad, jvp, vjp, vmap

from engine.probes.core import (
    BNMode,
    Evaluator,
    LossFn,
    ParamLayout,
    lanczos,
    resolve_data,
    ritz,
    ritz_converged,
    split_state,
)

__all__ = [
    "HessianEigs",
    "HessianOperator",
    "Sharpness",
    "hessian_operator",
    "hessian_top_eigs",
    "sharpness_over_training",
]


class HessianOperator:
    """The Hessian of the mean loss at ``theta`` as a matrix-vector product.

    Two ways to form ``H v``, both exact:

    - ``"vjp"`` (default): ``torch.func.vjp`` of ``torch.func.grad``, built once. The
      forward and backward pass at ``theta`` run once and are kept; each product is then
      one reverse pass through the gradient's graph (reverse-over-reverse; ``H`` is
      symmetric, so ``v^T H = (H v)^T``), the cost of PyHessian's double backward.
    - ``"jvp"``: ``torch.func.jvp`` of ``torch.func.grad`` (forward-over-reverse), which
      recomputes the forward and backward pass for every product; nothing is kept
      between products (less memory).

    Measured by ``bench/hessian_hvp.py`` (MNIST-1D MLPs of width 100 and 512, 1000
    samples, one CPU thread): "vjp" 3.4-5.5 forward passes per product, "jvp" 9.5-10;
    ``vmap`` over 10 vectors does not lower the cost per product on a CPU.

    Attributes
    ----------
    theta : Tensor, shape (P,)
        The point, flat in ``layout`` order, on the data's device.
    layout : ParamLayout
    n_samples : int
        Samples the loss averages over.
    bn : str
        BatchNorm statistics used.
    mode : str
        "vjp" or "jvp".
    n_products : int
        Hessian-vector products computed so far (each row of a batch counts).
    """

    def __init__(self, ev: Evaluator, theta: Tensor, bn: str, mode: str = "vjp"):
        if mode not in ("vjp", "jvp"):
            raise ValueError(f"mode must be 'vjp' or 'jvp'; got {mode!r}")
        self.layout, self.theta, self.bn, self.mode = ev.layout, theta.to(ev.device), bn, mode
        self.n_samples = len(ev.x)
        self.n_products = 0

        def loss(t: Tensor) -> Tensor:
            return ev.loss_fn(ev.forward(ev.layout.unflatten(t), ev.x), ev.y)

        grad_loss = grad(loss)
        if mode == "vjp":
            with torch.enable_grad():
                _, pullback = vjp(grad_loss, self.theta)  # primal forward + backward, kept

            def hvp(v: Tensor) -> Tensor:
                return pullback(v)[0]
        else:
            def hvp(v: Tensor) -> Tensor:
                return jvp(grad_loss, (self.theta,), (v,))[1]

        self._hvp, self._hvp_batched = hvp, vmap(hvp)

    @property
    def n_params(self) -> int:
        return self.layout.numel

    def __call__(self, v: Tensor) -> Tensor:
        """``H v`` for ``v`` of shape ``(P,)``, or ``H V^T`` row-wise for ``(k, P)``."""
        self.n_products += 1 if v.ndim == 1 else len(v)
        with torch.no_grad():
            if v.ndim == 1:
                return self._hvp(v)
            if len(v) == 1:  # vmap over one vector costs half a product more (measured at width 100)
                return self._hvp(v[0])[None]
            return self._hvp_batched(v)


def hessian_operator(
    model: nn.Module,
    params: Mapping[str, Tensor],
    data,
    *,
    buffers: Mapping[str, Tensor] | None = None,
    bn: BNMode = "running",
    loss_fn: LossFn | None = None,
    split: str = "train",
    n_samples: int | None = None,
    seed: int = 0,
    mode: str = "vjp",
) -> HessianOperator:
    """The Hessian of the loss of ``model`` at ``params`` on ``data`` as an operator.

    Parameters
    ----------
    model : nn.Module
        Architecture.
    params : dict
        Parameters (a state dict also works: its buffers are used).
    data : pair, loader or Dataset-like
        See :func:`engine.probes.core.functional.resolve_data`.
    n_samples, seed : int
        Use a random subset of this many samples (drawn with ``seed``); all when None.
    mode : {"vjp", "jvp"}
        How products are formed; see :class:`HessianOperator`.
    bn, buffers, loss_fn, split
        As in :func:`engine.probes.core.point_eval.evaluate_points`.
    """
    params, state_buffers = split_state(model, params)
    x, y = resolve_data(data, split, n_samples=n_samples, seed=seed)
    ev = Evaluator(model, (x, y), layout=ParamLayout.from_module(model),
                   buffers=state_buffers if buffers is None else buffers, bn=bn, loss_fn=loss_fn, split=split)
    return HessianOperator(ev, ev.layout.flatten(params), bn, mode)


@dataclass(frozen=True)
class HessianEigs:
    """Extreme Hessian eigenpairs from Lanczos.

    Attributes
    ----------
    eigenvalues : np.ndarray, shape (k,)
        Descending for ``which="LA"``, ascending for ``"SA"``.
    eigenvectors : np.ndarray, shape (k, P)
        Unit eigenvectors, flat in ``ParamLayout.from_module(model)`` order.
    residuals : np.ndarray, shape (k,)
        ``|| H x - lambda x ||`` of each pair.
    n_products : int
        Hessian-vector products used.
    converged : bool
        Whether every pair met the stopping rule of :func:`hessian_top_eigs` (its ``tol``).
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    residuals: np.ndarray
    n_products: int
    converged: bool
    n_samples: int
    bn: str
    seconds: float


def lanczos_pairs(op: HessianOperator, k: int, which: str, tol: float, max_iter: int, v0, seed: int):
    """One Lanczos run; returns a picker of Ritz pairs ``(values, vectors, residuals, ok)``."""
    if k < 1:
        raise ValueError(f"k must be at least 1; got {k}")
    if v0 is None:
        gen = torch.Generator().manual_seed(seed)
        v0 = torch.randn(op.n_params, generator=gen, dtype=op.theta.dtype)
    v0 = torch.as_tensor(v0, dtype=op.theta.dtype).to(op.theta.device).reshape(1, -1)
    res = lanczos(op, v0, max(max_iter, k + 1), keep_basis=True, tol=tol, k=k, which=which)
    values, vectors, residuals = ritz(res.alpha[0], res.beta[0])
    basis = res.basis[:, 0].double()  # (m, P)

    def pick(end: str):
        idx = (np.argsort(-values) if end == "LA" else np.argsort(values))[:k]
        x = (torch.as_tensor(vectors[:, idx].T, device=basis.device) @ basis).float().cpu().numpy()  # (k, P)
        ok = bool(ritz_converged(values, residuals, tol)[idx].all())  # the rule lanczos stopped on
        return values[idx], x, residuals[idx], ok

    return pick


def _extreme_pairs(op: HessianOperator, k: int, which: str, tol: float, max_iter: int, v0, seed: int):
    return lanczos_pairs(op, k, which, tol, max_iter, v0, seed)(which)


def hessian_top_eigs(
    model: nn.Module,
    params: Mapping[str, Tensor],
    data,
    *,
    k: int = 1,
    tol: float = 1e-3,
    max_iter: int = 100,
    which: str = "LA",
    v0: Tensor | None = None,
    seed: int = 0,
    n_samples: int | None = None,
    **kwargs,
) -> HessianEigs:
    """Top ``k`` Hessian eigenvalues and eigenvectors by Lanczos.

    Parameters
    ----------
    k : int
        Number of eigenpairs.
    tol : float
        Stop when each residual ``|| H x - lambda x ||`` is at most
        ``tol * max(|lambda|, 1e-3 * lambda_max)``, ``lambda_max`` the largest ``|lambda|``
        Lanczos has seen (:func:`engine.probes.core.lanczos.ritz_converged`); ``converged`` reports
        the same test. The floor lets eigenvalues near 0 converge (a Hessian has exact null
        directions); the eigenvalue error is then at most the residual, and about
        ``residual**2 / gap``.
    max_iter : int
        Most Lanczos steps (Hessian-vector products).
    which : {"LA", "SA"}
        Largest or smallest (most negative) eigenvalues.
    v0 : Tensor, shape (P,), optional
        Starting vector (warm start); Gaussian drawn with ``seed`` by default.
    n_samples, seed : int
        Data subset size and its seed; see :func:`hessian_operator`.
    **kwargs
        ``bn``, ``buffers``, ``loss_fn``, ``split``, ``mode`` as in :func:`hessian_operator`.

    References
    ----------
    Ghorbani et al. 2019; Yao et al. 2020 (PyHessian uses power iteration instead).
    """
    if which not in ("LA", "SA"):
        raise ValueError(f"which must be 'LA' or 'SA'; got {which!r}")
    start = time.perf_counter()
    op = hessian_operator(model, params, data, n_samples=n_samples, seed=seed, **kwargs)
    values, vectors, residuals, ok = _extreme_pairs(op, k, which, tol, max_iter, v0, seed)
    return HessianEigs(eigenvalues=values, eigenvectors=vectors, residuals=residuals, n_products=op.n_products,
                       converged=ok, n_samples=op.n_samples, bn=op.bn, seconds=time.perf_counter() - start)


@dataclass(frozen=True)
class Sharpness:
    """Top Hessian eigenvalues along a training run, beside its learning rate.

    Attributes
    ----------
    steps : np.ndarray, shape (n,)
        Step of each checkpoint (its index when no steps were given).
    eigenvalues : np.ndarray, shape (n, k)
        Top ``k`` eigenvalues at each checkpoint, descending.
    lr : np.ndarray or None, shape (n,)
        Learning rate at each checkpoint.
    threshold : np.ndarray or None, shape (n,)
        ``2 / lr``: gradient descent on a quadratic is stable only below it.
    n_products : np.ndarray, shape (n,)
        Hessian-vector products per checkpoint (warm starts need fewer).
    """

    steps: np.ndarray
    eigenvalues: np.ndarray
    lr: np.ndarray | None
    threshold: np.ndarray | None
    n_products: np.ndarray
    n_samples: int
    bn: str
    seconds: float


def sharpness_over_training(
    model: nn.Module,
    checkpoints: Sequence[Mapping[str, Tensor]],
    data,
    *,
    steps: Sequence[int] | None = None,
    lr: float | Sequence[float] | None = None,
    k: int = 1,
    tol: float = 1e-3,
    max_iter: int = 100,
    seed: int = 0,
    n_samples: int | None = None,
    progress: Callable[[float, str], None] | None = None,
    **kwargs,
) -> Sharpness:
    """Top Hessian eigenvalue at every checkpoint of a run, each Lanczos warm-started.

    Parameters
    ----------
    checkpoints : sequence of dict
        Parameter or state dicts in training order.
    steps : sequence of int, optional
        Training step of each checkpoint.
    lr : float or sequence of float, optional
        Learning rate (per checkpoint for a schedule), for the ``2 / lr`` line.
    k, tol, max_iter, seed, n_samples, **kwargs
        As in :func:`hessian_top_eigs`; the same data subset is used at every checkpoint.
    progress : callable, optional
        ``progress(fraction, message)`` after each checkpoint.

    References
    ----------
    Cohen et al. 2021 (edge of stability); Jastrzebski et al., "The break-even point on
    optimization trajectories of deep neural networks", ICLR 2020.
    """
    if not checkpoints:
        raise ValueError("sharpness_over_training needs at least one checkpoint; got 0")
    if steps is not None and len(steps) != len(checkpoints):
        raise ValueError(f"got {len(steps)} steps for {len(checkpoints)} checkpoints")
    start = time.perf_counter()
    eigs, counts, v0, op = [], [], None, None
    for i, ckpt in enumerate(checkpoints):
        op = hessian_operator(model, ckpt, data, n_samples=n_samples, seed=seed, **kwargs)
        values, vectors, _, _ = _extreme_pairs(op, k, "LA", tol, max_iter, v0, seed)
        eigs.append(values)
        counts.append(op.n_products)
        v0 = torch.from_numpy(vectors[0])  # warm start: sharpness moves slowly between checkpoints
        if progress is not None:
            progress((i + 1) / len(checkpoints), f"checkpoint {i + 1}/{len(checkpoints)}: λ1 = {values[0]:.4g}")
    lrs = None if lr is None else np.broadcast_to(np.asarray(lr, dtype=float), (len(checkpoints),)).copy()
    return Sharpness(
        steps=np.arange(len(checkpoints)) if steps is None else np.asarray(steps),
        eigenvalues=np.stack(eigs), lr=lrs, threshold=None if lrs is None else 2.0 / lrs,
        n_products=np.asarray(counts), n_samples=op.n_samples, bn=op.bn, seconds=time.perf_counter() - start,
    )
