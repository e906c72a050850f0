"""Intrinsic dimension of an objective: train in random subspaces of growing size.

Parameters are restricted to ``theta = theta0 + P z`` with a fixed random ``P`` of shape
``(D, d)`` (unit columns) and only ``z`` (``d`` numbers, starting at 0) is trained. The
intrinsic dimension ``d_int90`` is the smallest ``d`` whose score reaches 90% of the
score of the full model trained the same way.

``P`` is a dense Gaussian matrix when ``D * d`` is small and otherwise a very sparse
random projection (entries ``+-1/sqrt(k)`` at ``k ~ sqrt(D)`` random rows per column;
Li, Hastie & Church 2006), one of the two structured choices of Li et al. (2018b), the
other being the Fastfood transform, which is not implemented here.

The score is accuracy for classification and the coefficient of determination R^2 for
regression. The model is given as an ``nn.Module`` plus the ``theta0`` parameter dict (a
job builds it from a spec with ``engine.nets.build`` and passes
``dict(model.named_parameters())``); the training loop is the small one below, on plain
tensors. Models with BatchNorm are trained and evaluated with batch statistics.

References
----------
C. Li, H. Farkhoor, R. Liu and J. Yosinski, "Measuring the intrinsic dimension of
objective landscapes", ICLR 2018.
P. Li, T. J. Hastie and K. W. Church, "Very sparse random projections", KDD 2006.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from engine.probes.core import Evaluator, LossFn, ParamLayout, evaluate_points, resolve_data, split_state

__all__ = ["IntrinsicDimension", "intrinsic_dimension", "subspace_projection"]

_DENSE_MAX_ENTRIES = 1 << 22  # 16 MB of float32 for a dense P


@dataclass(frozen=True)
class IntrinsicDimension:
    """Scores of subspace training versus the subspace dimension.

    Attributes
    ----------
    dims : np.ndarray, shape (n_dims,)
        Subspace dimensions tried, ascending.
    scores : np.ndarray, shape (n_seeds, n_dims)
        Score (accuracy, or R^2 for regression) on the evaluation data per projection
        seed and dimension.
    baseline : float
        Score of the full model (all ``D`` parameters) trained with the same loop.
    metric : str
        "accuracy" or "r2".
    projection : str
        "dense" or "sparse" (the largest ``d`` decides for "auto" per ``d``).
    n_params : int
        ``D``.
    seeds : tuple of int
    n_steps : int
    lr : float
    seconds : float
    """

    dims: np.ndarray
    scores: np.ndarray
    baseline: float
    metric: str
    projection: str
    n_params: int
    seeds: tuple[int, ...]
    n_steps: int
    lr: float
    seconds: float

    def d_at(self, fraction: float) -> int | None:
        """Smallest ``d`` whose mean score reaches ``fraction * baseline``; None if none does."""
        mean = self.scores.mean(0)
        hit = np.nonzero(mean >= fraction * self.baseline)[0]
        return int(self.dims[hit[0]]) if len(hit) else None

    @property
    def d_int90(self) -> int | None:
        """Li et al.'s intrinsic dimension: 90% of the full model's score."""
        return self.d_at(0.9)


def subspace_projection(
    n_params: int, d: int, *, kind: str = "auto", seed: int = 0, device=None, dtype=torch.float32
) -> tuple[Callable[[Tensor], Tensor], str]:
    """A random map ``z (d,) -> P z (D,)`` with unit-norm columns.

    Parameters
    ----------
    n_params, d : int
        ``D`` and ``d``.
    kind : {"auto", "dense", "sparse"}
        "auto" is dense while ``D * d <= 2**22``.
    seed : int
        Same seed, same ``P``.

    Returns
    -------
    project : callable
    kind : str
        The kind used.
    """
    if kind not in ("auto", "dense", "sparse"):
        raise ValueError(f"kind must be 'auto', 'dense' or 'sparse'; got {kind!r}")
    if d < 1:
        raise ValueError(f"subspace dimension must be positive; got {d}")
    if kind == "auto":
        kind = "dense" if n_params * d <= _DENSE_MAX_ENTRIES else "sparse"
    gen = torch.Generator().manual_seed(seed)
    if kind == "dense":
        p = torch.randn(n_params, d, generator=gen)
        p = (p / p.norm(dim=0, keepdim=True)).to(device=device, dtype=dtype)  # (D, d)
        return (lambda z: p @ z), kind
    k = max(1, round(math.sqrt(n_params)))  # nonzeros per column
    rows = torch.randint(0, n_params, (d * k,), generator=gen)
    cols = torch.arange(d).repeat_interleave(k)
    vals = (torch.randint(0, 2, (d * k,), generator=gen) * 2 - 1).to(dtype) / math.sqrt(k)
    p = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (n_params, d)).coalesce().to(device)
    return (lambda z: torch.sparse.mm(p, z[:, None])[:, 0]), kind


def _train(ev: Evaluator, theta0: Tensor, project, d: int, *, n_steps, lr, batch_size, seed) -> Tensor:
    """Adam on ``z`` in ``theta0 + project(z)``; returns the final flat parameters."""
    z = torch.zeros(d, dtype=theta0.dtype, device=theta0.device, requires_grad=True)
    opt = torch.optim.Adam([z], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n = len(ev.x)
    for _ in range(n_steps):
        if batch_size is None or batch_size >= n:
            xb, yb = ev.x, ev.y
        else:
            idx = torch.randint(0, n, (batch_size,), generator=gen).to(ev.device)
            xb, yb = ev.x[idx], ev.y[idx]
        theta = theta0 + project(z)
        loss = ev.loss_fn(ev.forward(ev.layout.unflatten(theta), xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return theta0 + project(z)


def _score(model, theta: Tensor, eval_xy, kw, classification: bool) -> float:
    if classification:
        return float(evaluate_points(model, theta[None], eval_xy, **kw)[1][0])
    x, y = eval_xy
    loss, _ = evaluate_points(model, theta[None], eval_xy, **kw)  # mean squared error
    return 1.0 - float(loss[0]) / float(((y - y.mean(0)) ** 2).mean())


def intrinsic_dimension(
    model: nn.Module,
    params: Mapping[str, Tensor],
    data,
    *,
    dims: Sequence[int],
    seeds: Sequence[int] = (0,),
    n_steps: int = 500,
    lr: float = 1e-2,
    batch_size: int | None = None,
    projection: str = "auto",
    eval_data=None,
    baseline: float | None = None,
    loss_fn: LossFn | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> IntrinsicDimension:
    """Train in random subspaces of each dimension in ``dims`` and score the result.

    Parameters
    ----------
    model : nn.Module
        Architecture.
    params : dict
        ``theta0``, the fixed random initialisation the subspace passes through.
    data : pair, loader or Dataset-like
        Training data (the train split of a Dataset).
    dims : sequence of int
        Subspace dimensions to try.
    seeds : sequence of int
        One random projection (and data order) per seed.
    n_steps : int
        Adam steps per training run.
    lr : float
        Adam learning rate (for ``z`` and for the full-model baseline).
    batch_size : int, optional
        Mini-batch size; full batch when None.
    projection : {"auto", "dense", "sparse"}
        See :func:`subspace_projection`.
    eval_data : pair, optional
        Where scores are measured; the test split of a Dataset, else the training data.
    baseline : float, optional
        The full model's score, if already known; otherwise trained here.
    loss_fn : callable, optional
        Mean loss; cross-entropy / MSE by target type.
    progress : callable, optional
        ``progress(fraction, message)`` after each training run.

    References
    ----------
    Li et al. 2018, "Measuring the intrinsic dimension of objective landscapes".
    """
    if not dims or min(dims) < 1:
        raise ValueError(f"dims must be a non-empty list of positive integers; got {list(dims)}")
    start = time.perf_counter()
    params, buffers = split_state(model, params)
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    bn = "batch" if has_bn else "running"
    train_xy = resolve_data(data, "train")
    eval_xy = resolve_data(eval_data if eval_data is not None else data,
                           "test" if eval_data is None and hasattr(data, "x_test") else "train")
    ev = Evaluator(model, train_xy, layout=ParamLayout.from_module(model), buffers=buffers, bn=bn,
                   loss_fn=loss_fn, split="train")
    theta0 = ev.layout.flatten(params).to(ev.device)
    kw = dict(bn=bn, buffers=buffers, loss_fn=loss_fn)
    fit = dict(n_steps=n_steps, lr=lr, batch_size=batch_size)
    dims = sorted(int(d) for d in dims)
    if baseline is None:
        full = _train(ev, theta0, lambda z: z, ev.layout.numel, seed=seeds[0], **fit)
        baseline = _score(model, full, eval_xy, kw, ev.classification)
    scores = np.zeros((len(seeds), len(dims)))
    kinds = set()
    total = len(seeds) * len(dims)
    for i, seed in enumerate(seeds):
        for j, d in enumerate(dims):
            if progress is not None:
                progress((i * len(dims) + j) / total, f"seed {seed}, d = {d}")
            project, kind = subspace_projection(ev.layout.numel, d, kind=projection, seed=seed * 100003 + d,
                                                device=ev.device, dtype=theta0.dtype)
            kinds.add(kind)
            theta = _train(ev, theta0, project, d, seed=seed, **fit)
            scores[i, j] = _score(model, theta, eval_xy, kw, ev.classification)
    return IntrinsicDimension(
        dims=np.asarray(dims), scores=scores, baseline=float(baseline),
        metric="accuracy" if ev.classification else "r2", projection="+".join(sorted(kinds)),
        n_params=ev.layout.numel, seeds=tuple(seeds), n_steps=n_steps, lr=lr, seconds=time.perf_counter() - start,
    )
