"""Curvature of the loss through Hessian-vector products: operator, top eigenvalues, sharpness.

The Hessian is never formed. A product ``H v`` is a double backward pass through the
gradient of the loss as a function of the flat parameter vector (``HessianOperator``: on one
data chunk autograd's graph of the gradient is kept and each product is one reverse pass
through it; over several chunks ``torch.func`` rebuilds each chunk's graph), or
forward-over-reverse (``torch.func.jvp`` of ``torch.func.grad``, ``mode="jvp"``).

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
from engine.probes.landscape.chain_hvp import ChainHessian

__all__ = [
    "HVP_MEMORY_BYTES",
    "CheckpointSweep",
    "HessianEigs",
    "HessianOperator",
    "ProductProgress",
    "Sharpness",
    "hessian_operator",
    "hessian_top_eigs",
    "hvp_rows",
    "over_checkpoints",
    "sharpness_over_training",
]


class HessianOperator:
    """The Hessian of the mean loss at ``theta`` as a matrix-vector product.

    Two ways to form ``H v``, both exact:

    - ``"vjp"`` (default): reverse-over-reverse (``H`` is symmetric, so
      ``v^T H = (H v)^T``), the cost of PyHessian's double backward. On one data chunk the
      forward and backward pass at ``theta`` run once and their graph is kept (the gradient
      computed with ``create_graph``); each product is then one reverse pass through it,
      ``torch.autograd.grad(g, theta, v, retain_graph=True)``. That took 1.9 ms a product on
      the width-100 MNIST-1D MLP (1,000 samples, one thread) where ``torch.func``'s ``vjp`` of
      ``grad`` took 2.4 (width 512: 22.9 against 23.6 ms; the CNN: the same). Over several
      chunks the per-chunk graphs are built with ``torch.func`` (:meth:`_chunk_products`).
      For a plain ReLU MLP under the library's cross-entropy the same products are written
      out by hand instead (:class:`~engine.probes.landscape.chain_hvp.ChainHessian`,
      Pearlmutter's R-operator): the forward and backward pass at ``theta`` are kept (per
      chunk: recomputed for every product) and a product is a handful of matrix products per
      layer, without autograd's per-operation bookkeeping.
    - ``"jvp"``: ``torch.func.jvp`` of ``torch.func.grad`` (forward-over-reverse), which
      recomputes the forward and backward pass for every product; nothing is kept
      between products (less memory).

    **Data chunks.** The loss is a mean over ``N`` samples, so its Hessian is the
    sample-weighted mean of the chunks' Hessians, ``H v = sum_c (n_c / N) H_c v``. When the
    data do not fit one chunk (:func:`hvp_rows`), each product runs the double backward
    chunk by chunk and sums the weighted results: the activation memory is one chunk's,
    whatever ``N``, at the price of recomputing each chunk's forward and backward pass for
    every product (nothing is kept between products). With ``bn="batch"`` the data are
    always one chunk, since chunks would change the batch statistics.

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
    by_hand : bool
        Whether the products are :class:`~engine.probes.landscape.chain_hvp.ChainHessian`'s
        (a plain ReLU MLP under cross-entropy, ``mode="vjp"``) rather than autograd's.
    rows : int
        Data rows per chunk (``n_samples`` when the data are one chunk).
    n_products : int
        Hessian-vector products computed so far (each row of a batch counts).
    work : float
        Products done so far, counting finished chunks of the current one as fractions.
    callback : callable or None
        ``callback(op)`` after every chunk of every product (progress, cancellation).
    """

    def __init__(self, ev: Evaluator, theta: Tensor, bn: str, mode: str = "vjp", *, rows: int | None = None,
                 callback: Callable[[HessianOperator], None] | None = None):
        if mode not in ("vjp", "jvp"):
            raise ValueError(f"mode must be 'vjp' or 'jvp'; got {mode!r}")
        self.layout, self.theta, self.bn, self.mode = ev.layout, theta.to(ev.device), bn, mode
        self.n_samples = len(ev.x)
        self.rows = hvp_rows(ev, self.theta, rows)
        self.n_products, self.work, self.callback = 0, 0.0, callback
        self._ev = ev
        n = self.n_samples
        self.chunks = [(lo, min(n, lo + self.rows)) for lo in range(0, n, self.rows)]
        self._kept = self._chain_state = None
        self._chain = ChainHessian.of(ev, self.theta) if mode == "vjp" else None
        if len(self.chunks) == 1 and self._chain is not None:
            self._chain_state = self._chain.state(0, n)  # the forward and backward pass, kept
        elif len(self.chunks) == 1 and mode == "vjp":
            with torch.enable_grad():  # primal forward + backward, their graph kept
                leaf = self.theta.detach().requires_grad_(True)
                (g,) = torch.autograd.grad(self._loss(0, n)(leaf), leaf, create_graph=True)
            self._kept = (leaf, g)

    @property
    def by_hand(self) -> bool:
        return self._chain is not None

    @property
    def n_params(self) -> int:
        return self.layout.numel

    def _loss(self, lo: int, hi: int) -> Callable[[Tensor], Tensor]:
        ev = self._ev

        def loss(t: Tensor) -> Tensor:
            return ev.loss_fn(ev.forward(ev.layout.unflatten(t), ev.x[lo:hi]), ev.y[lo:hi])

        return loss

    def _chunk_products(self, lo: int, hi: int, v: Tensor) -> Tensor:
        """``H_c v_i`` for every row of ``v`` (shape ``(k, P)``) on rows lo:hi."""
        if self._chain is not None:
            state = self._chain_state if self._chain_state is not None else self._chain.state(lo, hi)
            return self._chain.products(state, v)
        if self._kept is not None:
            leaf, g = self._kept
            with torch.enable_grad():
                if len(v) == 1:
                    return torch.autograd.grad(g, leaf, v[0], retain_graph=True)[0][None]
                return torch.autograd.grad(g, leaf, v, retain_graph=True, is_grads_batched=True)[0]
        if self.mode == "vjp":
            with torch.enable_grad():
                _, pullback = vjp(grad(self._loss(lo, hi)), self.theta)  # freed when this chunk ends
        else:
            grad_loss = grad(self._loss(lo, hi))

            def forward_over_reverse(u: Tensor) -> Tensor:
                return jvp(grad_loss, (self.theta,), (u,))[1]

            return forward_over_reverse(v[0])[None] if len(v) == 1 else vmap(forward_over_reverse)(v)
        if len(v) == 1:  # vmap over one vector costs half a product more (measured at width 100)
            return pullback(v[0])[0][None]
        return vmap(lambda u: pullback(u)[0])(v)

    def __call__(self, v: Tensor) -> Tensor:
        """``H v`` for ``v`` of shape ``(P,)``, or ``H V^T`` row-wise for ``(k, P)``."""
        single = v.ndim == 1
        vs = v[None] if single else v  # (k, P)
        done, out = self.work, None
        with torch.no_grad():
            for lo, hi in self.chunks:
                part = self._chunk_products(lo, hi, vs)  # (k, P)
                weight = (hi - lo) / self.n_samples
                out = part.mul_(weight) if out is None else out.add_(part, alpha=weight)
                del part
                self.work += len(vs) * weight
                if self.callback is not None:
                    self.callback(self)
        self.n_products += len(vs)
        self.work = done + len(vs)
        return out[0] if single else out


#: Memory for one data chunk's double-backward graph on a CPU (on a GPU: half the free memory).
HVP_MEMORY_BYTES = 768 * 2**20
# Bytes of the double-backward graph per data row, per float of ``Evaluator.activation_floats`` (which
# counts twice the leaf modules' outputs): 4.5-5.6 measured on a CIFAR-stem ResNet-18 (100 rows; torch.func
# vjp of grad the most, autograd's double backward the least).
_GRAPH_BYTES_PER_FLOAT = 6


def hvp_rows(ev: Evaluator, theta: Tensor, rows: int | None = None, memory: int | None = None) -> int:
    """Data rows per chunk of a Hessian-vector product.

    ``rows`` if given; all rows with ``bn="batch"`` (chunks would change the batch
    statistics); otherwise as many as keep one chunk's double-backward graph, estimated
    from one forward pass at ``theta`` (about ``6 * Evaluator.activation_floats`` bytes a row),
    within ``memory`` bytes: :data:`HVP_MEMORY_BYTES` on a CPU, half the free memory on a GPU.
    """
    n = len(ev.x)
    if rows is not None:
        if int(rows) < 1:
            raise ValueError(f"rows must be a positive integer; got {rows!r}")
        if ev.bn == "batch" and int(rows) < n:
            raise ValueError(f"rows={rows} would split the {n} samples into chunks, which changes the batch "
                             "statistics of bn='batch'; use bn='running' or leave rows unset")
        return min(int(rows), n)
    if ev.bn == "batch":
        return n
    if memory is None:
        memory = torch.cuda.mem_get_info(ev.device)[0] // 2 if ev.device.type == "cuda" else HVP_MEMORY_BYTES
    per_row = _GRAPH_BYTES_PER_FLOAT * ev.activation_floats(theta) / max(1, n)
    return int(max(1, min(n, memory // max(1.0, per_row))))


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
    rows: int | None = None,
    callback: Callable[[HessianOperator], None] | None = None,
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
    rows : int, optional
        Data rows per chunk of a product; by default sized to a memory budget
        (:func:`hvp_rows`). Results are the same up to float rounding.
    callback : callable, optional
        ``callback(op)`` after every chunk of every product; raise from it to stop.
    bn, buffers, loss_fn, split
        As in :func:`engine.probes.core.point_eval.evaluate_points`.
    """
    params, state_buffers = split_state(model, params)
    x, y = resolve_data(data, split, n_samples=n_samples, seed=seed)
    ev = Evaluator(model, (x, y), layout=ParamLayout.from_module(model),
                   buffers=state_buffers if buffers is None else buffers, bn=bn, loss_fn=loss_fn, split=split,
                   cpu_kernels=False)
    return HessianOperator(ev, ev.layout.flatten(params), bn, mode, rows=rows, callback=callback)


class ProductProgress:
    """Progress, ETA and a cancellation point for work counted in Hessian-vector products.

    Use as the operator's ``callback`` (called after every data chunk of every product, so a
    cancellation raised from ``progress`` stops within one chunk) and, for Lanczos, as its
    ``on_step`` (adds the current Ritz value and residual to the message).

    Parameters
    ----------
    progress : callable
        ``progress(fraction, message)``.
    total : float
        Products the work takes at most (Lanczos may stop earlier).
    start, end : float
        The fraction range this work covers.
    label : str
        Start of every message.
    tol : float, optional
        Lanczos' stopping tolerance: with it, :meth:`on_step` extrapolates the geometric
        decay of the wanted pair's relative residual over the last three steps to the step
        where it reaches ``tol``, and the ETA (and fraction) use that estimate; the bound
        from ``total`` is shown beside it.
    which : {"LA", "SA"}
        Which end of the spectrum is reported.
    """

    def __init__(self, progress: Callable[[float, str], None], total: float, *, start: float = 0.0,
                 end: float = 1.0, label: str = "Hessian-vector products", tol: float | None = None,
                 which: str = "LA"):
        self.progress, self.total, self.start, self.end, self.label = progress, max(total, 1e-9), start, end, label
        self.tol, self.which = tol, which
        self.began, self.detail, self.expected, self.history, self.fraction = time.perf_counter(), "", None, [], start

    def __call__(self, op: HessianOperator) -> None:
        done = op.work  # one reporter per operator: its work starts at 0
        elapsed = time.perf_counter() - self.began
        rate = elapsed / done if done > 0 else float("nan")
        bound = f"≤ {rate * max(0.0, self.total - done):.0f} s left"
        if done == 0:
            eta = "ETA after the first chunk"
        elif self.expected is not None:
            eta = f"about {rate * max(0.0, self.expected - done):.0f} s left ({bound})"
        else:
            eta = bound
        expected = self.total if self.expected is None else self.expected
        self.fraction = max(self.fraction, self.start + (self.end - self.start) * min(0.99, done / expected))
        detail = f"; {self.detail}" if self.detail else ""
        self.progress(self.fraction, f"{self.label}: {done:.1f} of ≤ {self.total:g} products{detail}; "
                                     f"{elapsed:.0f} s, {eta}")

    def on_step(self, step: int, alpha: np.ndarray, beta: np.ndarray) -> None:
        values, _, residuals = ritz(alpha[0], beta[0])
        i = -1 if self.which == "LA" else 0
        self.detail = f"Lanczos step {step + 1}, λ ≈ {values[i]:.4g} (residual {residuals[i]:.2g})"
        self.history.append(residuals[i] / max(abs(values[i]), 1e-30))
        if self.tol is not None and len(self.history) >= 4:
            ratio = (self.history[-1] / max(self.history[-4], 1e-300)) ** (1 / 3)
            if 0 < ratio < 1 and self.history[-1] > self.tol:
                steps = np.log(self.tol / self.history[-1]) / np.log(ratio)
                self.expected = float(min(self.total, step + 1 + np.ceil(steps)))


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


def _combine(basis: list[Tensor], coeffs: np.ndarray) -> np.ndarray:
    """``coeffs @ basis`` (shape ``(k, P)``) summed in float64 one basis vector at a time, so
    that no float64 copy of the whole basis is made."""
    out = torch.zeros(len(coeffs), basis[0].numel(), dtype=torch.float64, device=basis[0].device)
    c = torch.as_tensor(coeffs, dtype=torch.float64, device=out.device)  # (k, m)
    for j, q in enumerate(basis):
        out.addr_(c[:, j], q.double())
    return out.float().cpu().numpy()


def lanczos_pairs(op: HessianOperator, k: int, which: str, tol: float, max_iter: int, v0, seed: int,
                  on_step=None):
    """One Lanczos run; returns a picker of Ritz pairs ``(values, vectors, residuals, ok)``."""
    if k < 1:
        raise ValueError(f"k must be at least 1; got {k}")
    if v0 is None:
        gen = torch.Generator().manual_seed(seed)
        v0 = torch.randn(op.n_params, generator=gen, dtype=op.theta.dtype)
    v0 = torch.as_tensor(v0, dtype=op.theta.dtype).to(op.theta.device).reshape(1, -1)
    res = lanczos(op, v0, max(max_iter, k + 1), keep_basis=True, tol=tol, k=k, which=which, on_step=on_step)
    values, vectors, residuals = ritz(res.alpha[0], res.beta[0])
    basis = [q[0] for q in res.basis]  # m vectors of shape (P,)

    def pick(end: str):
        idx = (np.argsort(-values) if end == "LA" else np.argsort(values))[:k]
        x = _combine(basis, vectors[:, idx].T)  # (k, P)
        ok = bool(ritz_converged(values, residuals, tol)[idx].all())  # the rule lanczos stopped on
        return values[idx], x, residuals[idx], ok

    return pick


def _extreme_pairs(op: HessianOperator, k: int, which: str, tol: float, max_iter: int, v0, seed: int,
                   on_step=None):
    return lanczos_pairs(op, k, which, tol, max_iter, v0, seed, on_step)(which)


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
    progress: Callable[[float, str], None] | None = None,
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
    progress : callable, optional
        ``progress(fraction, message)`` after every data chunk of every product, with the
        current Ritz value and an upper bound on the time left (:class:`ProductProgress`);
        an exception raised from it stops the computation.
    **kwargs
        ``bn``, ``buffers``, ``loss_fn``, ``split``, ``mode``, ``rows`` as in :func:`hessian_operator`.

    References
    ----------
    Ghorbani et al. 2019; Yao et al. 2020 (PyHessian uses power iteration instead).
    """
    if which not in ("LA", "SA"):
        raise ValueError(f"which must be 'LA' or 'SA'; got {which!r}")
    start = time.perf_counter()
    reporter = None if progress is None else ProductProgress(progress, max(max_iter, k + 1), label="top eigenvalues",
                                                             tol=tol, which=which)
    op = hessian_operator(model, params, data, n_samples=n_samples, seed=seed, callback=reporter, **kwargs)
    values, vectors, residuals, ok = _extreme_pairs(op, k, which, tol, max_iter, v0, seed,
                                                    None if reporter is None else reporter.on_step)
    return HessianEigs(eigenvalues=values, eigenvectors=vectors, residuals=residuals, n_products=op.n_products,
                       converged=ok, n_samples=op.n_samples, bn=op.bn, seconds=time.perf_counter() - start)


@dataclass(frozen=True)
class CheckpointSweep:
    """A Hessian measurement at every checkpoint of a run, as :func:`over_checkpoints` returns it.

    Attributes
    ----------
    results : list
        What ``measure`` returned at each checkpoint, in training order.
    steps : np.ndarray, shape (n,)
        Step of each checkpoint (its index when no steps were given).
    lr : np.ndarray or None, shape (n,)
        Learning rate at each checkpoint.
    threshold : np.ndarray or None, shape (n,)
        ``2 / lr``: gradient descent on a quadratic is stable only below it.
    n_products : np.ndarray, shape (n,)
        Hessian-vector products per checkpoint.
    operator : HessianOperator
        The last checkpoint's operator (its layout, data subset and ``bn``).
    seconds : float
        Wall time of the whole sweep.
    """

    results: list
    steps: np.ndarray
    lr: np.ndarray | None
    threshold: np.ndarray | None
    n_products: np.ndarray
    operator: HessianOperator
    seconds: float


def over_checkpoints(
    what: str,
    model: nn.Module,
    checkpoints: Sequence[Mapping[str, Tensor]],
    data,
    measure: Callable[[HessianOperator, ProductProgress | None, object], tuple[object, str]],
    *,
    steps: Sequence[int] | None = None,
    lr: float | Sequence[float] | None = None,
    seed: int = 0,
    n_samples: int | None = None,
    progress: Callable[[float, str], None] | None = None,
    reporter: Callable[[int, int], ProductProgress] | None = None,
    **kwargs,
) -> CheckpointSweep:
    """Build the Hessian operator at each checkpoint of a run and measure it there.

    What :func:`sharpness_over_training` and
    :func:`engine.probes.landscape.per_layer.per_layer_hessian_over_training` share: the
    checks, the same data subset at every checkpoint, progress after each checkpoint, and
    the steps and ``2 / lr`` line beside the measurements.

    Parameters
    ----------
    what : str
        The calling function's name, for error messages.
    model, data
        As in :func:`hessian_operator`.
    checkpoints : sequence of dict
        Parameter or state dicts in training order.
    measure : callable
        ``measure(op, reporter, previous) -> (result, note)`` at each checkpoint: ``reporter``
        is the checkpoint's :class:`ProductProgress` (None without ``reporter``), ``previous``
        the result at the checkpoint before (None at the first; for warm starts), and
        ``note`` ends that checkpoint's progress message.
    steps : sequence of int, optional
        Training step of each checkpoint.
    lr : float or sequence of float, optional
        Learning rate (per checkpoint for a schedule), for the ``2 / lr`` line.
    seed, n_samples : int
        The data subset, the same at every checkpoint; see :func:`hessian_operator`.
    progress : callable, optional
        ``progress(fraction, message)`` after each checkpoint.
    reporter : callable, optional
        ``reporter(i, n)`` gives checkpoint ``i`` of ``n`` its :class:`ProductProgress`, the
        operator's callback, so that progress moves (and a cancellation stops) within a checkpoint.
    **kwargs
        ``bn``, ``buffers``, ``loss_fn``, ``split``, ``mode``, ``rows`` as in :func:`hessian_operator`.
    """
    if not checkpoints:
        raise ValueError(f"{what} needs at least one checkpoint; got 0")
    n = len(checkpoints)
    if steps is not None and len(steps) != n:
        raise ValueError(f"got {len(steps)} steps for {n} checkpoints; give one step per checkpoint")
    start = time.perf_counter()
    results, counts, op, previous = [], [], None, None
    for i, ckpt in enumerate(checkpoints):
        rep = None if reporter is None else reporter(i, n)
        op = hessian_operator(model, ckpt, data, n_samples=n_samples, seed=seed, callback=rep, **kwargs)
        previous, note = measure(op, rep, previous)
        results.append(previous)
        counts.append(op.n_products)
        if progress is not None:
            progress((i + 1) / n, f"checkpoint {i + 1}/{n}: {note}")
    lrs = None if lr is None else np.broadcast_to(np.asarray(lr, dtype=float), (n,)).copy()
    return CheckpointSweep(
        results=results, steps=np.arange(n) if steps is None else np.asarray(steps), lr=lrs,
        threshold=None if lrs is None else 2.0 / lrs, n_products=np.asarray(counts), operator=op,
        seconds=time.perf_counter() - start)


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
    checkpoints, steps, lr
        As in :func:`over_checkpoints`: parameter or state dicts in training order, the
        training step of each, and the learning rate (per checkpoint for a schedule).
    k, tol, max_iter, seed, n_samples, **kwargs
        As in :func:`hessian_top_eigs`; the same data subset is used at every checkpoint.
    progress : callable, optional
        ``progress(fraction, message)`` after each checkpoint and every data chunk of every
        product (see :class:`ProductProgress`); an exception raised from it stops the computation.

    References
    ----------
    Cohen et al. 2021 (edge of stability); Jastrzebski et al., "The break-even point on
    optimization trajectories of deep neural networks", ICLR 2020.
    """
    def reporter(i: int, n: int) -> ProductProgress:
        return ProductProgress(progress, max(max_iter, k + 1), start=i / n, end=(i + 1) / n,
                               label=f"checkpoint {i + 1}/{n}", tol=tol)

    def top(op: HessianOperator, rep: ProductProgress | None, previous):
        v0 = None if previous is None else torch.from_numpy(previous[1][0])  # warm start: sharpness moves slowly
        values, vectors, _, _ = _extreme_pairs(op, k, "LA", tol, max_iter, v0, seed,
                                               None if rep is None else rep.on_step)
        return (values, vectors), f"λ1 = {values[0]:.4g}"

    run = over_checkpoints("sharpness_over_training", model, checkpoints, data, top, steps=steps, lr=lr, seed=seed,
                           n_samples=n_samples, progress=progress, reporter=None if progress is None else reporter,
                           **kwargs)
    return Sharpness(
        steps=run.steps, eigenvalues=np.stack([values for values, _ in run.results]), lr=run.lr,
        threshold=run.threshold, n_products=run.n_products, n_samples=run.operator.n_samples, bn=run.operator.bn,
        seconds=run.seconds,
    )
