"""Training: one run with a plain loop, or a population at once with torch.func."""

from .batches import BatchOrder
from .common import RunResult, resolve_device, task_loss, task_metrics
from .loop import train_run
from .losses import LOSS_NAMES, LossFn, check_loss, loss_fn, loss_name
from .optim import OptimState, init_optim_state, optim_step
from .population import population_groups, train_population
from .specs import check_registered

__all__ = [
    "BatchOrder",
    "LOSS_NAMES",
    "LossFn",
    "OptimState",
    "RunResult",
    "check_loss",
    "check_registered",
    "init_optim_state",
    "loss_fn",
    "loss_name",
    "optim_step",
    "population_groups",
    "resolve_device",
    "task_loss",
    "task_metrics",
    "train_population",
    "train_run",
]
