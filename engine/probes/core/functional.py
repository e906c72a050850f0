"""Functional evaluation's building blocks: parameters as one flat vector, data, losses, module modes.

A model's parameters become one flat vector in :class:`ParamLayout` order, so that a 2D
landscape, an interpolation path, a random subspace or a Rashomon sample is "many parameter
vectors". They are evaluated by :func:`engine.probes.core.point_eval.evaluate_points` (any
vectors) and :func:`engine.probes.core.plane_eval.evaluate_plane` (a plane, reusing the first
layer), both through :class:`engine.probes.core.evaluator.Evaluator`, which owns the data
chunking and the loop/``vmap`` strategy. Each point is evaluated from its own coordinates
with :func:`torch.func.functional_call`; the module passed in is never mutated.

Conventions
-----------
- A flat vector follows :class:`ParamLayout` order, by default the order of
  ``model.named_parameters()``.
- ``data`` is an ``(inputs, targets)`` pair, an iterable of such batches (a
  ``DataLoader``), or any object with ``x_train, y_train, x_test, y_test`` (an
  ``engine.data.Dataset``), from which ``split`` picks.
- The loss is the run's (:func:`engine.train.loss_fn`); by default the one the targets
  imply: cross-entropy for integer targets (per token for logits ``(B, T, V)`` and
  targets ``(B, T)``), mean squared error for float targets. Accuracy is the argmax
  accuracy (per token for sequences) for integer targets and NaN for regression.
- ``bn="running"`` evaluates BatchNorm with its running statistics (the model in
  eval mode); ``bn="batch"`` uses the statistics of the evaluated batch, never
  updating the running ones. Dropout is always off.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from engine.train.losses import LossFn, auto_loss, check_loss, loss_fn, loss_name

__all__ = [
    "BNMode",
    "LossFn",
    "ParamLayout",
    "Strategy",
    "default_loss",
    "fast_default_loss",
    "flatten_params",
    "functional_module",
    "is_mean_cross_entropy",
    "resolve_data",
    "run_loss",
    "shallow_copy",
    "split_state",
    "unflatten_params",
]

BNMode = Literal["running", "batch"]
Strategy = Literal["auto", "loop", "vmap"]


@dataclass(frozen=True)
class ParamLayout:
    """Where each named tensor lives inside a flat parameter vector.

    Attributes
    ----------
    names : tuple of str
        Parameter names in flat order.
    shapes : tuple of tuple of int
        Shape of each parameter.
    offsets : tuple of int
        Start of each parameter in the flat vector.
    numel : int
        Length ``P`` of the flat vector.
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    offsets: tuple[int, ...]
    numel: int

    @classmethod
    def from_params(cls, params: Mapping[str, Tensor]) -> ParamLayout:
        """Layout of a parameter dict, in the dict's order."""
        names, shapes, offsets, at = [], [], [], 0
        for name, tensor in params.items():
            names.append(name)
            shapes.append(tuple(tensor.shape))
            offsets.append(at)
            at += tensor.numel()
        return cls(tuple(names), tuple(shapes), tuple(offsets), at)

    @classmethod
    def from_module(cls, model: nn.Module) -> ParamLayout:
        """Layout of ``model.named_parameters()``: the default flat order."""
        return cls.from_params(dict(model.named_parameters()))

    def slice(self, name: str) -> slice:
        """The flat index range of parameter ``name``."""
        i = self.names.index(name)
        return slice(self.offsets[i], self.offsets[i] + math.prod(self.shapes[i]))

    def flatten(self, params: Mapping[str, Tensor]) -> Tensor:
        """Concatenate ``params`` into one vector of shape ``(P,)`` in layout order."""
        missing = [n for n in self.names if n not in params]
        extra = [n for n in params if n not in set(self.names)]
        if missing or extra:
            raise ValueError(
                f"parameter dict does not match the layout: missing {missing}, unexpected {extra}; "
                "pass the parameters of the same architecture (buffers go separately)"
            )
        for name, shape in zip(self.names, self.shapes):
            if tuple(params[name].shape) != shape:
                got = tuple(params[name].shape)
                raise ValueError(f"parameter {name!r} has shape {got}; the layout expects {shape}")
        return torch.cat([params[n].detach().reshape(-1) for n in self.names])

    def unflatten(self, theta: Tensor) -> dict[str, Tensor]:
        """Views of ``theta`` (shape ``(..., P)``) as named tensors of shape ``(..., *shape)``."""
        if theta.shape[-1] != self.numel:
            raise ValueError(f"flat vector has {theta.shape[-1]} entries; the layout has {self.numel}")
        lead = theta.shape[:-1]
        # split, not slicing: its backward is one cat, where slices would each zero-fill a (P,) gradient
        pieces = theta.split([math.prod(s) for s in self.shapes], dim=-1)
        return {name: piece.reshape(*lead, *shape) for name, piece, shape in zip(self.names, pieces, self.shapes)}


def flatten_params(params: Mapping[str, Tensor]) -> tuple[Tensor, ParamLayout]:
    """Flatten a parameter dict into ``(theta, layout)``, ``theta`` of shape ``(P,)``."""
    layout = ParamLayout.from_params(params)
    return layout.flatten(params), layout


def unflatten_params(theta: Tensor, layout: ParamLayout) -> dict[str, Tensor]:
    """Inverse of :func:`flatten_params`; returns views of ``theta``."""
    return layout.unflatten(theta)


def split_state(model: nn.Module, state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Split a state dict (or a bare parameter dict) into ``(params, buffers)``.

    Buffers missing from ``state`` are taken from ``model``, so a parameter dict from
    ``named_parameters()`` works as well as a full ``state_dict()``.
    """
    param_names = [n for n, _ in model.named_parameters()]
    missing = [n for n in param_names if n not in state]
    if missing:
        raise ValueError(f"state has no entries for parameters {missing}; was it saved from another architecture?")
    params = {n: state[n].detach() for n in param_names}
    buffers = {n: state.get(n, b).detach() for n, b in model.named_buffers()}
    return params, buffers


def default_loss(outputs: Tensor, targets: Tensor) -> Tensor:
    """The loss the targets imply (``engine.train.loss_fn("auto")``): mean cross-entropy for
    integer targets (over every token for logits ``(B, T, V)``), mean squared error for float ones."""
    return auto_loss(outputs, targets)


def fast_default_loss(outputs: Tensor, targets: Tensor) -> Tensor:
    """:func:`default_loss` computed faster: equal up to float rounding, not bit for bit.

    Cross-entropy of ``(N, C)`` logits as ``logsumexp(z - gather)`` is several times faster on
    a CPU than ``F.cross_entropy`` for few classes (PyTorch's ``log_softmax`` kernel is slow
    along a short last axis; numbers in ``bench/results/core_measurements.md``). The
    landscape functions use it unless given a ``loss_fn``.
    """
    if targets.is_floating_point() or outputs.ndim != 2:
        return default_loss(outputs, targets)
    # logsumexp of z - z_y, not logsumexp(z) - z_y: the latter rounds a small loss to a unit of the largest logit
    return torch.logsumexp(outputs - outputs.gather(1, targets[:, None]), 1).mean()


def is_mean_cross_entropy(fn: LossFn, targets: Tensor, n_classes: int) -> bool:
    """Whether ``fn(outputs, targets)``, for logits ``outputs`` of shape ``(N, n_classes)``, is
    their mean cross-entropy against the class ids ``targets`` (N,), each in ``[0, n_classes)``:
    ``fn`` one of this library's losses that mean it on such targets (:func:`default_loss`,
    :func:`fast_default_loss`, ``engine.train.loss_fn("auto")`` and ``loss_fn("cross_entropy")``).
    For fast paths that write this loss's derivatives out by hand; any other function (even one
    that computes the same loss) keeps the generic path, and so do targets that are not int64 (these
    losses raise on them, or take uint8 as only ``F.cross_entropy`` does: a fast path must not
    accept what the loss itself refuses).
    """
    ours = fn in (default_loss, fast_default_loss, loss_fn("auto"), loss_fn("cross_entropy"))
    return (ours and targets.ndim == 1 and len(targets) > 0 and targets.dtype == torch.long
            and int(targets.min()) >= 0 and int(targets.max()) < n_classes)


def run_loss(name: str = "auto", task: str | None = None) -> LossFn:
    """The loss a probe uses for a run trained with ``TrainSpec.loss = name`` on data of ``task``.

    :func:`engine.train.loss_fn`, the function the run was trained with, except that
    classification cross-entropy is :func:`fast_default_loss` (the same loss, computed faster).
    The probe jobs take it from every checkpoint (``LoadedCheckpoint.loss_fn``), so surfaces,
    paths, barriers and Hessians measure the objective the run was trained on.
    """
    if loss_name(name, task) == "cross_entropy":
        check_loss(name, task)
        return fast_default_loss
    return loss_fn(name, task)


def resolve_data(data, split: str = "train", *, n_samples: int | None = None, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Turn ``data`` into one ``(inputs, targets)`` pair.

    Parameters
    ----------
    data : tuple, iterable of batches or Dataset-like
        See the module docstring. Batches of a loader are concatenated.
    split : {"train", "test"}
        Which split of a Dataset-like object; ignored for pairs and loaders.
    n_samples : int, optional
        Keep a random subset of this size (drawn with ``seed``); all when None.
    seed : int
        Seed of the subset.
    """
    if hasattr(data, "x_train"):
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
        x, y = (data.x_train, data.y_train) if split == "train" else (data.x_test, data.y_test)
    elif isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], Tensor):
        x, y = data
    elif isinstance(data, Iterable):
        batches = list(data)
        if not batches:
            raise ValueError("data loader yielded no batches")
        x = torch.cat([b[0] for b in batches])
        y = torch.cat([b[1] for b in batches])
    else:
        raise TypeError(f"data must be an (inputs, targets) pair, a loader or a Dataset; got {type(data).__name__}")
    if len(x) != len(y):
        raise ValueError(f"inputs and targets differ in length: {len(x)} vs {len(y)}")
    if n_samples is not None and n_samples < len(x):
        gen = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(x), generator=gen)[:n_samples].to(x.device)
        x, y = x[idx], y[idx]
    return x, y


def shallow_copy(model: nn.Module) -> nn.Module:
    """A copy of the module objects that shares every parameter and buffer tensor with ``model``.

    For changing modes, classes or submodules of a model without touching the caller's.
    """
    memo = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    return copy.deepcopy(model, memo)


def functional_module(model: nn.Module, bn: BNMode = "running") -> nn.Module:
    """``model`` in the mode ``bn`` asks for, without touching ``model`` itself.

    Returns ``model`` when it is already in that mode, otherwise a shallow copy whose
    parameters and buffers are shared with ``model`` (only the mode flags differ).
    """
    if bn not in ("running", "batch"):
        raise ValueError(f"bn must be 'running' or 'batch'; got {bn!r}")
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not any(m.training for m in model.modules()) and (bn == "running" or not bns):
        return model
    module = shallow_copy(model)
    module.eval()
    if bn == "batch":
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.train()
                m.track_running_stats = False  # use batch statistics, never update running ones
    return module
