"""What single-run and population training share: device choice, loss, results, callbacks."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "CheckpointCallback",
    "ProgressCallback",
    "RunResult",
    "eval_subset",
    "resolve_device",
    "task_loss",
    "task_metrics",
]

Status = Literal["done", "diverged", "cancelled"]


class CheckpointCallback(Protocol):
    def __call__(
        self, run: int, step: int, epoch: float, state: dict[str, Tensor], metrics: dict[str, float]
    ) -> None: ...


ProgressCallback = Callable[[int, int, list[float]], None]  # (step, total_steps, current losses)


@dataclass(frozen=True)
class RunResult:
    """How a run ended.

    ``metrics`` holds the last checkpoint's ``train_loss``, ``train_acc``, ``test_loss``
    and ``test_acc``; ``diverged_step`` is the first step whose loss was NaN/inf.
    """

    status: Status
    steps: int
    diverged_step: int | None
    metrics: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    device: str = "cpu"


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but CUDA is not available; use device='auto' or 'cpu'")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def task_loss(out: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy for integer targets, mean squared error for float targets."""
    if y.dtype in (torch.int64, torch.int32):
        return F.cross_entropy(out, y)
    return F.mse_loss(out, y.view_as(out))


def task_metrics(out: Tensor, y: Tensor) -> tuple[float, float]:
    """(loss, accuracy) of one evaluation; accuracy is NaN for regression."""
    loss = float(task_loss(out, y))
    if y.dtype in (torch.int64, torch.int32):
        return loss, float((out.argmax(-1) == y).float().mean())
    return loss, math.nan


def eval_subset(x: Tensor, y: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """The first ``size`` samples: a fixed evaluation subset, identical for every run."""
    return x[:size], y[:size]
