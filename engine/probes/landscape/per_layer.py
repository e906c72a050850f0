"""Curvature of each layer's (or block's) diagonal block of the Hessian.

The diagonal block ``H_BB`` of parameter group ``B`` is the Hessian of the loss as a
function of ``B``'s parameters alone, the others held fixed. Its product with a vector
``v_B`` is a full Hessian-vector product with a vector that is zero outside ``B``, read
back on ``B``: ``H_BB v_B = (H [v_B; 0])_B``. Lanczos on that restricted product gives
the block's top eigenvalue; Hutchinson's estimator with probes supported on ``B`` (or,
for a block with no more entries than probes, the exact sum of ``e_i^T H e_i``) its trace.

The whole Hessian's ``lambda_max`` is at least every block's (a diagonal block is a
compression of ``H``, Cauchy interlacing), and the whole trace is the sum of the
blocks' traces at the finest level.

References
----------
Z. Yao, A. Gholami, K. Keutzer and M. Mahoney, "PyHessian: Neural networks through the
lens of the Hessian", IEEE BigData 2020 (layer-wise eigenvalues and trace).
J. Cohen, S. Kaur, Y. Li, J. Z. Kolter and A. Talwalkar, "Gradient descent on neural
networks typically occurs at the edge of stability", ICLR 2021.
M. F. Hutchinson, "A stochastic estimator of the trace of the influence matrix for
Laplacian smoothing splines", Communications in Statistics 18 (1989).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from engine.probes.core import lanczos, ritz, ritz_converged
from engine.probes.landscape.curvature import HessianOperator, over_checkpoints

__all__ = ["BLOCK_LEVELS", "PerLayerHessian", "parameter_blocks", "per_layer_hessian",
           "per_layer_hessian_over_training"]

BLOCK_LEVELS = ("tensor", "layer", "block")


def _group(name: str, level: str) -> str:
    parts = name.split(".")
    if level == "tensor" or len(parts) == 1:
        return name
    if level == "layer":  # the module that owns the tensor
        return ".".join(parts[:-1])
    for i, part in enumerate(parts[:-1]):  # "block": up to the first index of a module list
        if part.isdigit():
            return ".".join(parts[: i + 1])
    return parts[0]


def parameter_blocks(names: Sequence[str], level: str = "layer") -> dict[str, list[str]]:
    """Group parameter names by module prefix, in first-appearance order.

    Parameters
    ----------
    names : sequence of str
        Parameter names as ``model.named_parameters()`` gives them.
    level : {"tensor", "layer", "block"}
        "tensor": each parameter tensor alone; "layer": the module that owns it
        (``layers.0.linear.weight`` -> ``layers.0.linear``); "block": the prefix up to the
        first numeric index of a module list (``layers.0.linear.weight`` -> ``layers.0``,
        ``blocks.3.attn.qkv.weight`` -> ``blocks.3``), the first name component for
        parameters outside any list (``head.weight`` -> ``head``).

    Returns
    -------
    dict of str to list of str
        Block name -> its parameter names.
    """
    if level not in BLOCK_LEVELS:
        raise ValueError(f"level must be one of {list(BLOCK_LEVELS)}; got {level!r}")
    out: dict[str, list[str]] = {}
    for name in names:
        out.setdefault(_group(name, level), []).append(name)
    return out


@dataclass(frozen=True)
class PerLayerHessian:
    """Top eigenvalue and trace of each diagonal Hessian block, at one or more checkpoints.

    Attributes
    ----------
    blocks : tuple of str
        Block names (``B`` of them), in parameter order.
    sizes : np.ndarray, shape (B,)
        Parameters per block.
    steps : np.ndarray, shape (n,)
        Training step of each checkpoint (its index when none were given).
    top : np.ndarray, shape (n, B)
        Largest eigenvalue of each block.
    residuals : np.ndarray, shape (n, B)
        ``|| H_BB x - lambda x ||`` of each top Ritz pair (bounds the eigenvalue's error).
    converged : np.ndarray of bool, shape (n, B)
        Whether each top pair met the stopping rule (``ritz_converged`` with ``tol``).
    trace : np.ndarray, shape (n, B)
        Trace of each block.
    trace_stderr : np.ndarray, shape (n, B)
        Standard error of a Hutchinson estimate; 0 where the trace is exact.
    lr : np.ndarray or None, shape (n,)
        Learning rate at each checkpoint.
    threshold : np.ndarray or None, shape (n,)
        ``2 / lr``, the edge of stability for gradient descent.
    level : str
        Grouping level ("tensor", "layer" or "block").
    n_products : int
        Hessian-vector products used in all.
    """

    blocks: tuple[str, ...]
    sizes: np.ndarray
    steps: np.ndarray
    top: np.ndarray
    residuals: np.ndarray
    converged: np.ndarray
    trace: np.ndarray
    trace_stderr: np.ndarray
    lr: np.ndarray | None
    threshold: np.ndarray | None
    level: str
    n_products: int
    n_samples: int
    bn: str
    seconds: float


def _block_index(op: HessianOperator, names: list[str]) -> Tensor:
    idx = [torch.arange(op.layout.slice(n).start, op.layout.slice(n).stop) for n in names]
    return torch.cat(idx).to(op.theta.device)


def _restricted(op: HessianOperator, idx: Tensor) -> Callable[[Tensor], Tensor]:
    """``V -> (H [V; 0])_B`` row-wise: the diagonal block's product."""

    def matvec(v: Tensor) -> Tensor:  # (R, p) -> (R, p)
        full = v.new_zeros(len(v), op.n_params)
        full[:, idx] = v
        return op(full)[:, idx]

    return matvec


def _block_top(matvec, p: int, like: Tensor, gen: torch.Generator, tol: float, max_iter: int):
    v0 = torch.randn(1, p, generator=gen, dtype=torch.float64).to(like)
    res = lanczos(matvec, v0, max(1, min(max_iter, p)), tol=tol, k=1, which="LA")
    values, _, residuals = ritz(res.alpha[0], res.beta[0])
    i = int(np.argmax(values))
    return float(values[i]), float(residuals[i]), bool(ritz_converged(values, residuals, tol)[i])


def _block_trace(matvec, p: int, like: Tensor, gen: torch.Generator, n_probes: int, batch: int):
    """Exact (unit vectors) when ``p <= n_probes``, else Hutchinson with Rademacher probes."""
    if p <= n_probes:
        eye = torch.eye(p, dtype=like.dtype, device=like.device)
        diag = [torch.diagonal(matvec(eye[s : s + batch]), offset=s).sum() for s in range(0, p, batch)]
        return float(torch.stack(diag).double().sum()), 0.0
    forms = []
    for s in range(0, n_probes, batch):
        z = (torch.randint(0, 2, (min(batch, n_probes - s), p), generator=gen) * 2 - 1).to(like)  # (b, p)
        forms.append((matvec(z) * z).sum(1).double().cpu())
    q = torch.cat(forms).numpy()
    return float(q.mean()), float(q.std(ddof=1) / np.sqrt(len(q)))


def _one_checkpoint(op: HessianOperator, groups: dict[str, list[str]], *, tol, max_iter, n_probes, batch, seed):
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for names in groups.values():
        idx = _block_index(op, names)
        mv = _restricted(op, idx)
        top = _block_top(mv, len(idx), op.theta, gen, tol, max_iter)
        rows.append(top + _block_trace(mv, len(idx), op.theta, gen, n_probes, batch))
    return np.array(rows, dtype=float)  # (B, 5): top, residual, converged, trace, stderr


def _check(level: str, n_probes: int, max_iter: int) -> None:
    if level not in BLOCK_LEVELS:
        raise ValueError(f"level must be one of {list(BLOCK_LEVELS)}; got {level!r}")
    if n_probes < 2:
        raise ValueError(f"n_probes must be at least 2 for a trace with an error bar; got {n_probes}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be at least 1; got {max_iter}")


def per_layer_hessian_over_training(
    model: nn.Module,
    checkpoints: Sequence[Mapping[str, Tensor]],
    data,
    *,
    level: str = "layer",
    steps: Sequence[int] | None = None,
    lr: float | Sequence[float] | None = None,
    tol: float = 1e-3,
    max_iter: int = 64,
    n_probes: int = 32,
    batch: int = 16,
    seed: int = 0,
    n_samples: int | None = None,
    progress: Callable[[float, str], None] | None = None,
    **kwargs,
) -> PerLayerHessian:
    """Per-block top eigenvalue and trace at every checkpoint of a run, beside ``2 / lr``.

    Parameters
    ----------
    checkpoints, steps, lr
        As in :func:`engine.probes.landscape.curvature.over_checkpoints`: parameter or state
        dicts in training order, the training step of each, and the optimiser's learning
        rate (per checkpoint for a schedule).
    level : {"tensor", "layer", "block"}
        How parameters are grouped; see :func:`parameter_blocks`.
    tol, max_iter : float, int
        Lanczos stopping rule and most steps per block (a block of ``p <= max_iter``
        parameters is solved exactly in at most ``p`` steps).
    n_probes, batch : int
        Rademacher probes per block for the trace (a block with at most ``n_probes``
        parameters gets its exact trace from unit vectors instead), and probes per batched product.
    seed, n_samples : int
        Seed of the Lanczos start vectors and probes, and the data subset (the same at every checkpoint).
    progress : callable, optional
        ``progress(fraction, message)`` after each checkpoint.
    **kwargs
        ``bn``, ``buffers``, ``loss_fn``, ``split``, ``mode`` as in
        :func:`engine.probes.landscape.hessian_operator`.
    """
    _check(level, n_probes, max_iter)
    groups = parameter_blocks([n for n, _ in model.named_parameters()], level)

    def blocks(op: HessianOperator, _reporter, _previous):
        table = _one_checkpoint(op, groups, tol=tol, max_iter=max_iter, n_probes=n_probes, batch=batch, seed=seed)
        return table, f"{len(groups)} blocks"

    run = over_checkpoints("per_layer_hessian_over_training", model, checkpoints, data, blocks, steps=steps, lr=lr,
                           seed=seed, n_samples=n_samples, progress=progress, **kwargs)
    table = np.stack(run.results)  # (n, B, 5)
    op = run.operator
    sizes = [sum(int(np.prod(op.layout.shapes[op.layout.names.index(n)])) for n in g) for g in groups.values()]
    return PerLayerHessian(
        blocks=tuple(groups), sizes=np.asarray(sizes), steps=run.steps, top=table[..., 0], residuals=table[..., 1],
        converged=table[..., 2] > 0.5, trace=table[..., 3], trace_stderr=table[..., 4], lr=run.lr,
        threshold=run.threshold, level=level, n_products=int(run.n_products.sum()), n_samples=op.n_samples,
        bn=op.bn, seconds=run.seconds)


def per_layer_hessian(
    model: nn.Module,
    params: Mapping[str, Tensor],
    data,
    *,
    level: str = "layer",
    lr: float | None = None,
    step: int = 0,
    **kwargs,
) -> PerLayerHessian:
    """Top eigenvalue and trace of each layer's (or block's) diagonal Hessian block.

    Parameters
    ----------
    model : nn.Module
        Architecture.
    params : dict
        Parameters (a state dict also works: its buffers are used).
    data : pair, loader or Dataset-like
        See :func:`engine.probes.core.functional.resolve_data`.
    level : {"tensor", "layer", "block"}
        How parameters are grouped; see :func:`parameter_blocks`.
    lr : float, optional
        Learning rate, for the ``2 / lr`` edge-of-stability mark.
    step : int
        Training step recorded with the result.
    **kwargs
        ``tol``, ``max_iter``, ``n_probes``, ``batch``, ``seed``, ``n_samples`` and the
        operator's options, as in :func:`per_layer_hessian_over_training`.

    Returns
    -------
    PerLayerHessian
        With one row (``top[0]``, ``trace[0]``).

    References
    ----------
    Yao et al. 2020; Cohen et al. 2021.
    """
    return per_layer_hessian_over_training(model, [params], data, level=level, steps=[step],
                                           lr=None if lr is None else [lr], **kwargs)
