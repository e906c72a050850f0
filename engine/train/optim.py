"""Functional optimisers shared by single-run and population training.

One update rule serves both loops, so a run trained alone and the same run trained
inside a population follow the same arithmetic. Hyperparameters may be Python
floats (one run) or tensors of shape ``(K,)`` (one value per stacked run); they are
broadcast against parameters of shape ``(K, ...)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from engine.config import OptimSpec

__all__ = ["OptimState", "init_optim_state", "optim_step", "stack_hparams"]

Hyper = float | Tensor


@dataclass
class OptimState:
    """Per-parameter buffers: momentum (``buf``), Adam moments (``m``, ``v``) and the step count."""

    step: int = 0
    buf: dict[str, Tensor] = field(default_factory=dict)
    m: dict[str, Tensor] = field(default_factory=dict)
    v: dict[str, Tensor] = field(default_factory=dict)


def init_optim_state(params: dict[str, Tensor], name: str) -> OptimState:
    zeros = {k: torch.zeros_like(p) for k, p in params.items()}
    if name == "momentum":
        return OptimState(buf=zeros)
    if name == "adamw":
        return OptimState(m=zeros, v={k: torch.zeros_like(p) for k, p in params.items()})
    return OptimState()


def stack_hparams(specs: list[OptimSpec], device: torch.device) -> dict[str, Tensor]:
    """Per-run hyperparameters as ``(K,)`` tensors."""

    def col(values: list[float]) -> Tensor:
        return torch.tensor(values, dtype=torch.float32, device=device)

    return {
        "lr": col([s.lr for s in specs]),
        "weight_decay": col([s.weight_decay for s in specs]),
        "momentum": col([s.momentum for s in specs]),
        "beta1": col([s.betas[0] for s in specs]),
        "beta2": col([s.betas[1] for s in specs]),
        "eps": col([s.eps for s in specs]),
    }


def _b(h: Hyper, p: Tensor) -> Hyper:
    """Broadcast a per-run ``(K,)`` hyperparameter against ``p`` of shape ``(K, ...)``."""
    if isinstance(h, Tensor):
        return h.view(-1, *([1] * (p.dim() - 1)))
    return h


@torch.no_grad()
def optim_step(
    name: str,
    params: dict[str, Tensor],
    grads: dict[str, Tensor],
    state: OptimState,
    hp: dict[str, Hyper],
    active: Tensor | None = None,
) -> None:
    """Update ``params`` in place with one step of ``name`` ("sgd", "momentum", "adamw").

    ``sgd``/``momentum`` apply weight decay as L2 (added to the gradient, as
    ``torch.optim.SGD``); ``adamw`` decouples it (Loshchilov & Hutter 2019).
    ``active`` (bool ``(K,)``) freezes runs that have stopped (diverged).
    """
    state.step += 1
    t = state.step
    for k, p in params.items():
        g = grads[k]
        lr = _b(hp["lr"], p)
        if active is not None:
            lr = lr * _b(active.to(p.dtype), p)
        wd = _b(hp["weight_decay"], p)
        if name == "adamw":
            b1, b2, eps = _b(hp["beta1"], p), _b(hp["beta2"], p), _b(hp["eps"], p)
            p.mul_(1 - lr * wd)
            m, v = state.m[k], state.v[k]
            m.mul_(b1).add_((1 - b1) * g)
            v.mul_(b2).add_((1 - b2) * g * g)
            m_hat = m / (1 - b1**t)
            v_hat = v / (1 - b2**t)
            p.sub_(lr * m_hat / (v_hat.sqrt() + eps))
            continue
        g = torch.addcmul(g, wd, p) if isinstance(wd, Tensor) else g + wd * p  # one pass for per-run tensors
        if name == "momentum":
            buf = state.buf[k]
            buf.mul_(_b(hp["momentum"], p)).add_(g)
            g = buf
        if isinstance(lr, Tensor):
            p.addcmul_(lr, g, value=-1)  # p - lr * g, the same rounding in one pass
        else:
            p.sub_(lr * g)

