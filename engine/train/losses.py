"""The per-run loss: one function that every trainer and every probe asks for the objective.

A run's ``TrainSpec.loss`` names it: ``"cross_entropy"`` (classification, logits ``(N, C)``
and class ids ``(N,)``), ``"mse"`` (regression, outputs and float targets of the same number
of elements per sample), ``"token_cross_entropy"`` (sequence models, logits ``(B, T, V)``
and token ids ``(B, T)``, the mean over all ``B*T`` positions) or ``"auto"``, which picks
from the data set's task (cross-entropy for classification, MSE for regression, token
cross-entropy for sequences) or, without a task, from the targets: float targets are
regression, integer targets with one axis fewer than the outputs are class ids.

Training (one run and populations), the evaluator behind surfaces, paths, barriers and
Hessians, and the probes that compute a loss themselves all get it from :func:`loss_fn`, so
a landscape of a regression net is an MSE landscape and a Hessian of a language model is
the Hessian of its token-level cross-entropy. Every loss is a mean over samples (tokens),
which lets the evaluator recombine data chunks as weighted means.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import vmap

__all__ = ["LOSS_NAMES", "TASKS", "LossFn", "check_loss", "loss_fn", "loss_name", "score", "stacked_accuracy",
           "stacked_loss_fn"]

LossFn = Callable[[Tensor, Tensor], Tensor]
LOSS_NAMES = ("auto", "cross_entropy", "mse", "token_cross_entropy")
TASKS = ("classification", "regression", "sequence")
_FOR_TASK = {"classification": "cross_entropy", "regression": "mse", "sequence": "token_cross_entropy"}
_TASK_OF = {v: k for k, v in _FOR_TASK.items()}


def cross_entropy(outputs: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of logits ``(N, C)`` against class ids ``(N,)``."""
    if outputs.ndim != 2 or targets.shape != outputs.shape[:1]:
        raise ValueError(f"loss 'cross_entropy' takes logits (N, C) and class ids (N,); got outputs "
                         f"{tuple(outputs.shape)} and targets {tuple(targets.shape)}. For a sequence model "
                         "(logits (B, T, V)) use loss='token_cross_entropy'")
    return F.cross_entropy(outputs, targets)


def token_cross_entropy(outputs: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy over every position: logits ``(B, T, V)``, token ids ``(B, T)``."""
    if outputs.ndim != 3 or targets.shape != outputs.shape[:2]:
        raise ValueError(f"loss 'token_cross_entropy' takes logits (B, T, V) and token ids (B, T); got outputs "
                         f"{tuple(outputs.shape)} and targets {tuple(targets.shape)}. Does the model return "
                         "one distribution per position (a causal language model), and the data set targets "
                         "(B, T)?")
    return F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1))


def mse(outputs: Tensor, targets: Tensor) -> Tensor:
    """Mean squared error over every element; targets are reshaped to the outputs' shape."""
    if not targets.is_floating_point():
        raise ValueError(f"loss 'mse' takes float regression targets; got {targets.dtype} targets of shape "
                         f"{tuple(targets.shape)} (class ids?). Use loss='auto' or 'cross_entropy' for labels")
    if targets.numel() != outputs.numel():
        raise ValueError(f"loss 'mse': outputs {tuple(outputs.shape)} and targets {tuple(targets.shape)} differ "
                         "in size; the model needs one output per regression target")
    return F.mse_loss(outputs, targets.reshape(outputs.shape).to(outputs.dtype))


def auto_loss(outputs: Tensor, targets: Tensor) -> Tensor:
    """The loss the targets imply: MSE for float targets, (token) cross-entropy for integer ones."""
    if targets.is_floating_point():
        return mse(outputs, targets)
    if outputs.ndim == 3 and targets.ndim == 2:
        return token_cross_entropy(outputs, targets)
    return cross_entropy(outputs, targets)


_LOSSES: dict[str, LossFn] = {"auto": auto_loss, "cross_entropy": cross_entropy, "mse": mse,
                              "token_cross_entropy": token_cross_entropy}


def loss_name(name: str = "auto", task: str | None = None) -> str:
    """The concrete loss ``name`` stands for on a data set of ``task`` (``"auto"`` without a task)."""
    if name not in _LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSS_NAMES)}; got {name!r}")
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
    if name == "auto":
        return _FOR_TASK[task] if task is not None else "auto"
    return name


def check_loss(name: str, task: str | None, dataset: str = "the data set") -> None:
    """Refuse a loss that cannot fit a task (MSE on class ids, cross-entropy on regression targets)."""
    chosen = loss_name(name, task)
    if task is None or chosen == "auto" or _TASK_OF[chosen] == task:
        return
    raise ValueError(f"loss {name!r} is for {_TASK_OF[chosen]} but {dataset} is a {task} data set; "
                     f"use loss='auto' (here {_FOR_TASK[task]!r}) or another data set")


def loss_fn(name: str = "auto", task: str | None = None) -> LossFn:
    """The loss function of a run: ``fn(outputs, targets) -> scalar mean loss``.

    Parameters
    ----------
    name : {"auto", "cross_entropy", "mse", "token_cross_entropy"}
        ``TrainSpec.loss`` of the run.
    task : {"classification", "regression", "sequence"}, optional
        ``Dataset.task`` of its data; decides what ``"auto"`` means. Without it ``"auto"``
        decides from each call's targets (float: MSE, integer: cross-entropy).

    Raises
    ------
    ValueError
        An unknown name or task, or a loss that does not fit the task (:func:`check_loss`).
    """
    check_loss(name, task)
    return _LOSSES[loss_name(name, task)]


def stacked_loss_fn(name: str = "auto", task: str | None = None) -> LossFn:
    """The loss of K runs at once: ``fn(outputs (K, N, ...), targets (K, N, ...)) -> (K,)``.

    Run ``k``'s entry is ``loss_fn(name, task)(outputs[k], targets[k])`` up to float rounding.
    Cross-entropy (also per token) is computed as ``logsumexp(z - gather)`` over all runs in one
    pass: PyTorch's ``log_softmax`` kernel, which ``F.cross_entropy`` runs, is several times
    slower along a short class axis (10 classes: 0.45 ms against ~0.1 ms for 32 runs x 100
    samples on one core), and its backward is the same ``softmax - onehot``. Other losses, and
    outputs of shapes a loss refuses (so that its own error is raised), go through ``vmap``.
    """
    fn = loss_fn(name, task)
    if fn is cross_entropy or fn is token_cross_entropy:
        return partial(_stacked_cross_entropy, fn)
    return vmap(fn)


def _stacked_cross_entropy(fn: LossFn, outputs: Tensor, targets: Tensor) -> Tensor:
    ndim = 3 if fn is cross_entropy else 4  # (K, N, C) or (K, B, T, V)
    if outputs.ndim != ndim or targets.shape != outputs.shape[:-1] or targets.is_floating_point():
        return vmap(fn)(outputs, targets)  # raises the loss's own message
    logits = outputs.flatten(1, -2)  # (K, N, C)
    picked = logits.gather(-1, targets.flatten(1).unsqueeze(-1))  # (K, N, 1)
    # logsumexp of z - z_y, not logsumexp(z) - z_y: the latter rounds a small loss to a unit of the largest logit
    return torch.logsumexp(logits - picked, -1).mean(-1)  # (K,)


def stacked_accuracy(outputs: Tensor, targets: Tensor) -> Tensor:
    """Accuracy of K runs at once: class scores ``(K, N, ..., C)``, class ids ``(K, N, ...)`` -> ``(K,)``.

    A prediction is right when ``outputs.argmax(-1)`` (the first of equal maxima) is the target,
    as in :func:`score`; it is computed as "the target's score is the maximum and no earlier
    class reaches it" because ``argmax`` along a short class axis is slow on a CPU (6 ms for
    32 runs x 2,048 samples x 10 classes, against 0.5 ms for these passes). NaN as ``argmax``
    takes it, the largest score: a row's first NaN is its prediction.
    """
    top = outputs.amax(-1, keepdim=True)  # (K, N, ..., 1); NaN where the row has one
    at_top = outputs == top
    if top.isnan().any():  # a pass over the maxima only (1/C of the scores); NaN == NaN is False
        at_top |= outputs.isnan()  # rows with a NaN: its places, rows without: unchanged
    hit = at_top.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    classes = torch.arange(outputs.shape[-1], device=outputs.device)
    earlier = (at_top & (classes < targets.unsqueeze(-1))).any(-1)
    return (hit & ~earlier).to(torch.float32).flatten(1).mean(1)


def score(outputs: Tensor, targets: Tensor, fn: LossFn = auto_loss) -> tuple[float, float]:
    """``(loss, accuracy)`` of one evaluation; accuracy is per sample (per token for sequences),
    NaN for regression."""
    loss = float(fn(outputs, targets))
    if targets.is_floating_point():
        return loss, math.nan
    return loss, float((outputs.argmax(-1) == targets).to(torch.float32).mean())
