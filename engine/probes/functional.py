"""Functional evaluation: a model's parameters as one flat vector, many vectors at once.

Every probe that looks at "many parameter vectors" -- a 2D landscape, an interpolation
path, a random subspace, a Rashomon sample -- goes through :func:`evaluate_points`.
Each point is evaluated from its own coordinates with
:func:`torch.func.functional_call`; the module passed in is never mutated.

How the points are evaluated is chosen by device and by measurement (see
:mod:`engine.probes.batching`): on a GPU many small evaluations are latency-bound and
``vmap`` over chunks of points wins; on a CPU a plain loop over points runs the big
matrix products near the machine's peak when the cores are free, while ``vmap`` wins
when they are oversubscribed, so each call times both on its first points. A plane of
points (a 2D landscape) goes through :func:`engine.probes.plane_eval.evaluate_plane`,
which also reuses the first layer.

Conventions
-----------
- A flat vector follows :class:`ParamLayout` order, by default the order of
  ``model.named_parameters()``.
- ``data`` is an ``(inputs, targets)`` pair, an iterable of such batches (a
  ``DataLoader``), or any object with ``x_train, y_train, x_test, y_test`` (an
  ``engine.data.Dataset``), from which ``split`` picks.
- The loss is cross-entropy for integer targets and mean squared error for float
  targets. Accuracy is the argmax accuracy for integer targets and NaN for regression.
- ``bn="running"`` evaluates BatchNorm with its running statistics (the model in
  eval mode); ``bn="batch"`` uses the statistics of the evaluated batch, never
  updating the running ones. Dropout is always off.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from engine.probes.batching import _activation_floats, _auto_chunk, _data_rows, _keep_freed_memory, _pick_strategy, _run


__all__ = [
    "ParamLayout",
    "default_loss",
    "fast_default_loss",
    "evaluate_points",
    "flatten_params",
    "functional_module",
    "resolve_data",
    "shallow_copy",
    "split_state",
    "unflatten_params",
]

LossFn = Callable[[Tensor, Tensor], Tensor]
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
    """Mean cross-entropy for integer targets, mean squared error for float targets."""
    if targets.is_floating_point():
        return F.mse_loss(outputs, targets.reshape(outputs.shape))
    return F.cross_entropy(outputs, targets)


def fast_default_loss(outputs: Tensor, targets: Tensor) -> Tensor:
    """:func:`default_loss` computed faster: equal up to float rounding, not bit for bit.

    Cross-entropy of ``(N, C)`` logits as ``logsumexp - gather`` is 4.6x faster on a CPU
    than ``F.cross_entropy`` for 4000 x 10 logits (PyTorch's ``log_softmax`` kernel is slow
    along a short last axis), which was a sixth of a whole MLP evaluation in a landscape.
    The landscape functions use it unless given a ``loss_fn``.
    """
    if targets.is_floating_point() or outputs.ndim != 2:
        return default_loss(outputs, targets)
    return (torch.logsumexp(outputs, 1) - outputs.gather(1, targets[:, None])[:, 0]).mean()


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


class _NarrowLinear(nn.Linear):
    """A ``Linear`` with few outputs, computed as ``(W x^T + b)^T``: the same products, summed alike.

    On a CPU a ``(N, 100) x (100, 10)`` product is a poor shape for the BLAS (353 us for
    N = 4000 on one core, against 139 us for the transposed ``(10, 100) x (100, N)``), and
    the logits come out laid out class-major, along which the loss reductions are fast too.
    """

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 2:
            return super().forward(x)
        if self.bias is None:
            return torch.mm(self.weight, x.T).T
        return torch.addmm(self.bias[:, None], self.weight, x.T).T


class _PairMaxPool1d(nn.MaxPool1d):
    """``MaxPool1d(2)`` (stride 2, no padding) as the maximum of the even and odd positions.

    The same values bit for bit (a maximum is exact), about 2x faster on a CPU than
    ``max_pool1d``'s kernel: 4.7 ms against 10.2 ms on a (4000, 64, 40) tensor, one core.
    """

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 3:
            return super().forward(x)
        even = x[..., 0 : x.shape[-1] - 1 : 2]  # an odd last position is dropped, as max_pool1d does
        return torch.maximum(even, x[..., 1::2])


_NARROW_OUT = 32  # Linear layers with at most this many outputs run transposed on a CPU


def _cpu_kernel(m: nn.Module) -> type[nn.Module] | None:
    """The faster, equal class for module ``m`` on a CPU, if there is one."""
    if type(m) is nn.Linear and m.out_features <= _NARROW_OUT:
        return _NarrowLinear
    if (type(m) is nn.MaxPool1d and m.kernel_size in (2, (2,)) and m.stride in (2, (2,)) and m.padding in (0, (0,))
            and m.dilation in (1, (1,)) and not m.ceil_mode and not m.return_indices):
        return _PairMaxPool1d
    return None


def _with_cpu_kernels(module: nn.Module, *, private: bool = False) -> nn.Module:
    """``module`` with narrow Linear layers made :class:`_NarrowLinear` and 2-wide max pools
    :class:`_PairMaxPool1d`: changed in place when ``private`` (a copy nobody else holds),
    else in a shallow copy (tensors shared)."""
    swaps = [(n, k) for n, m in module.named_modules() if (k := _cpu_kernel(m)) is not None]
    if not swaps:
        return module
    if not private:
        module = shallow_copy(module)
    for name, kind in swaps:
        module.get_submodule(name).__class__ = kind
    return module


def _cross_entropy_and_accuracy(out: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Mean cross-entropy and argmax accuracy of ``(N, C)`` logits, sharing one max per row.

    Equal to :func:`fast_default_loss` and ``(out.argmax(1) == y).mean()`` up to float
    rounding: ``max(1)`` gives each row's largest logit and its first index, the class
    ``argmax`` picks, ties and NaN included. On class-major logits (see :class:`_NarrowLinear`)
    ``max(1)`` is ~20x faster than ``argmax(1)`` (28 against 730 us for 4000 x 10, 2 threads).
    """
    top, pred = out.max(1)
    shift = top.nan_to_num(0.0, 0.0, 0.0)  # a row of infinities or NaN is not shifted
    target = out.gather(1, y[:, None])[:, 0]
    loss = ((out - shift[:, None]).exp().sum(1).log() + shift - target).mean()
    return loss, (pred == y).to(loss.dtype).mean()


def _batched(t: Tensor) -> bool:
    """Whether ``t`` is a per-sample view inside ``vmap`` (where data-dependent branches are refused)."""
    return torch._C._functorch.is_batchedtensor(t)


class _Evaluator:
    """The model, its buffers and one batch of data, ready to evaluate flat vectors.

    On a CPU the data go through in chunks of ``rows`` rows whose activations stay near
    the caches (see :mod:`engine.probes.batching`); losses are recombined as sample-weighted means,
    so ``loss_fn`` must be a mean over samples (the default is). With ``bn="batch"`` the
    whole set is always one batch, since chunks would change the batch statistics.
    """

    def __init__(self, model, data, *, layout, buffers, bn, loss_fn, split, rows=None):
        self.module = functional_module(model, bn)
        self.layout = layout or ParamLayout.from_module(model)
        self.buffers = dict(model.named_buffers()) if buffers is None else dict(buffers)
        self.x, self.y = resolve_data(data, split)
        self.device = self.x.device  # everything runs where the data lives
        if self.device.type == "cpu":
            self.module = _with_cpu_kernels(self.module, private=self.module is not model)
            _keep_freed_memory()
        self.buffers = {k: v.to(self.device) for k, v in self.buffers.items()}
        self.loss_fn = loss_fn or default_loss
        self.classification = not self.y.is_floating_point()
        self.bn = bn
        self.rows = len(self.x) if rows is None else max(1, min(int(rows), len(self.x)))

    def forward(self, params: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(self.module, {**params, **self.buffers}, (x,))

    def score(self, out: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Mean loss and accuracy of outputs ``out`` against targets ``y``."""
        if self.loss_fn is fast_default_loss and self.classification and out.ndim == 2 and not _batched(out):
            return _cross_entropy_and_accuracy(out, y)
        loss = self.loss_fn(out, y)
        if not self.classification:
            return loss, torch.full_like(loss, float("nan"))
        return loss, (out.argmax(-1) == y).to(loss.dtype).mean()

    def chunked(self, outputs) -> tuple[Tensor, Tensor]:
        """Score ``outputs(lo, hi)`` (the model's outputs on rows lo:hi) over all rows."""
        n = len(self.x)
        if self.rows >= n:
            return self.score(outputs(0, n), self.y)
        loss = acc = 0.0
        for lo in range(0, n, self.rows):
            hi = min(n, lo + self.rows)
            part_loss, part_acc = self.score(outputs(lo, hi), self.y[lo:hi])
            loss, acc = loss + part_loss * (hi - lo), acc + part_acc * (hi - lo)
        return loss / n, acc / n

    def point(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        params = self.layout.unflatten(theta)
        return self.chunked(lambda lo, hi: self.forward(params, self.x[lo:hi]))


def evaluate_points(
    model: nn.Module,
    theta: Tensor,
    data,
    *,
    chunk: int | None = None,
    bn: BNMode = "running",
    buffers: Mapping[str, Tensor] | Sequence[Mapping[str, Tensor]] | None = None,
    layout: ParamLayout | None = None,
    loss_fn: LossFn | None = None,
    strategy: Strategy = "auto",
    split: str = "train",
    rows: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Loss and accuracy of many flat parameter vectors on the same data.

    Parameters
    ----------
    model : nn.Module
        The architecture; its own parameter values are not used.
    theta : Tensor, shape (G, P)
        One flat parameter vector per row, in ``layout`` order. Evaluation runs on the
        device of the data; ``theta`` and the buffers are moved there.
    data : pair, loader or Dataset-like
        See :func:`resolve_data`.
    chunk : int, optional
        Points per ``vmap`` call; by default sized to half the free GPU memory.
    bn : {"running", "batch"}
        BatchNorm statistics; see the module docstring.
    buffers : dict or list of dicts, optional
        Buffers (BatchNorm running statistics) to use; the model's by default. A list
        gives each point its own (e.g. statistics interpolated along a path); those
        points run one after the other, sharing one prepared module.
    layout : ParamLayout, optional
        Flat order of ``theta``; ``ParamLayout.from_module(model)`` by default.
    loss_fn : callable, optional
        ``loss_fn(outputs, targets) -> scalar mean loss``; :func:`default_loss` by default.
    strategy : {"auto", "loop", "vmap"}
        "auto" uses chunked ``vmap`` on a GPU; on a CPU it times a loop over points and
        ``vmap`` on the first points and keeps the faster (see :mod:`engine.probes.batching`).
    split : {"train", "test"}
        Split of a Dataset-like ``data``.
    rows : int, optional
        Data rows per forward pass. By default all of them, except on a CPU, where the
        data go in cache-sized chunks (see :mod:`engine.probes.batching`); results are
        sample-weighted means either way.

    Returns
    -------
    loss, acc : Tensor, shape (G,)
        float64 on the CPU. ``acc`` is NaN for regression targets.
    """
    if theta.ndim != 2:
        raise ValueError(f"theta must have shape (G, P); got {tuple(theta.shape)}")
    per_point = buffers is not None and not isinstance(buffers, Mapping)
    if per_point and len(buffers) != len(theta):
        raise ValueError(f"got {len(buffers)} buffer dicts for {len(theta)} points")
    ev = _Evaluator(model, data, layout=layout, buffers=buffers[0] if per_point else buffers, bn=bn,
                    loss_fn=loss_fn, split=split)
    theta = theta.to(ev.device)
    ev.rows = _data_rows(ev, theta[0], rows)
    if per_point:
        out = []
        with torch.no_grad():
            for point, buf in zip(theta, buffers):
                ev.buffers = {k: v.to(ev.device) for k, v in buf.items()}
                out.append(ev.point(point))
        return torch.stack([o[0] for o in out]).double().cpu(), torch.stack([o[1] for o in out]).double().cpu()
    how = _pick_strategy(strategy, ev.device)
    chunk = chunk or (_auto_chunk(ev, _activation_floats(ev, theta[0])) if how != "loop" else 1)
    loss, acc, _ = _run(ev.point, ev.point, (theta,), how, chunk)
    return loss, acc
