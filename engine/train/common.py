"""What single-run and population training share: device choice, loss, results, callbacks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch
from torch import Tensor

from .losses import LossFn, auto_loss, score

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
    """The loss the targets imply (:func:`engine.train.losses.auto_loss`): mean cross-entropy for
    integer targets (per token for logits ``(B, T, V)``), mean squared error for float targets."""
    return auto_loss(out, y)


def task_metrics(out: Tensor, y: Tensor, fn: LossFn = auto_loss) -> tuple[float, float]:
    """(loss, accuracy) of one evaluation with loss ``fn``; accuracy is per token for sequences,
    NaN for regression."""
    return score(out, y, fn)


def eval_subset(x: Tensor, y: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """The first ``size`` samples: a fixed evaluation subset, identical for every run."""
    return x[:size], y[:size]
