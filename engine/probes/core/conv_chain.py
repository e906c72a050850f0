"""Whether a model is the built-in 1-D ConvNet, and its blocks: what :mod:`engine.probes.core.conv_plane` computes.

The model must be ``engine.nets.cnn.ConvNet`` over sequences, recognised by its class's module and
name (the probes do not import the nets), with the built-in blocks and nothing changed: no
``forward`` of its own, no hooks, only the layers the chain computes (:func:`conv_chain`). What a
recognised model computes is still checked against the model by the chain's users.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from engine.probes.core.cpu_kernels import NarrowLinear, PairMaxPool1d, PoolFirstConvBlock, TapConv1d, hooked
from engine.probes.core.evaluator import Evaluator

__all__ = ["ConvChain", "ConvStep", "conv_chain"]

#: The classes recognised, by module and name (the probes do not import the nets).
_CONVNET = ("engine.nets.cnn", "ConvNet")
_BLOCKS = {("engine.nets.cnn", "ConvBlock"), (PoolFirstConvBlock.__module__, PoolFirstConvBlock.__qualname__)}


@dataclass(frozen=True)
class ConvStep:
    """One block: conv (odd kernel ``k``, 'same' padding) -> [BatchNorm at ``norm``] -> ReLU -> [2x max pool]."""

    path: str
    k: int
    c_in: int
    c_out: int
    length: int  # input positions
    bias: bool
    norm: str | None  # the BatchNorm's path
    affine: bool
    eps: float
    pool: bool

    @property
    def out_length(self) -> int:
        return self.length // 2 if self.pool else self.length


@dataclass(frozen=True)
class ConvChain:
    """The built-in ConvNet on the evaluator's data: its blocks (lengths included) and its head."""

    steps: tuple[ConvStep, ...]
    head: str
    head_bias: bool
    n_out: int


def conv_chain(ev: Evaluator) -> ConvChain | None:
    """The evaluator's model as a :class:`ConvChain`, or None.

    None unless on a CPU with running BatchNorm statistics: the model is the built-in ``ConvNet``
    over sequences (module ``engine.nets.cnn``, not a subclass, no ``forward`` of its own), every
    layer a built-in ``ConvBlock`` with a ``Conv1d`` (odd kernel, 'same' zero padding, stride and
    dilation 1, one group), an evaluation-mode ``BatchNorm1d`` with running statistics or nothing, an
    ``nn.ReLU`` and a 2-wide max pool or nothing, the head an ``nn.Linear``; no module hooked; data
    ``(N, channels, length)`` of the parameters' dtype.
    """
    m = ev.module
    if (ev.device.type != "cpu" or ev.bn != "running" or (type(m).__module__, type(m).__qualname__) != _CONVNET
            or "forward" in vars(m) or getattr(m, "spatial_dims", None) != 1 or ev.x.ndim != 3):
        return None
    if any(hooked(sub) for sub in m.modules()) or type(m.head) not in (nn.Linear, NarrowLinear):
        return None
    steps, (c_in, length) = [], ev.x.shape[1:]
    for i, block in enumerate(m.layers):
        step = _step(f"layers.{i}", block, c_in, length)
        if step is None:
            return None
        steps.append(step)
        c_in, length = step.c_out, step.out_length
    if not steps or m.head.in_features != c_in or ev.x.dtype != m.head.weight.dtype:
        return None
    return ConvChain(tuple(steps), "head", m.head.bias is not None, m.head.out_features)


def _step(path: str, block: nn.Module, c_in: int, length: int) -> ConvStep | None:
    if (type(block).__module__, type(block).__qualname__) not in _BLOCKS or "forward" in vars(block):
        return None
    conv, norm, act, pool = (getattr(block, n, None) for n in ("conv", "norm", "act", "pool"))
    if type(conv) not in (nn.Conv1d, TapConv1d) or type(act) is not nn.ReLU:
        return None
    k = conv.kernel_size[0]
    if (k % 2 == 0 or conv.stride != (1,) or conv.dilation != (1,) or conv.groups != 1 or conv.padding != (k // 2,)
            or conv.padding_mode != "zeros" or conv.in_channels != c_in):
        return None
    if type(norm) is nn.BatchNorm1d:
        if norm.training or norm.running_var is None or norm.num_features != conv.out_channels:
            return None
    elif type(norm) is not nn.Identity:
        return None
    pooled = type(pool) in (nn.MaxPool1d, PairMaxPool1d)
    if pooled and not (pool.kernel_size in (2, (2,)) and pool.stride in (2, (2,)) and pool.padding in (0, (0,))
                       and pool.dilation in (1, (1,)) and not pool.ceil_mode and not pool.return_indices):
        return None
    if (not pooled and type(pool) is not nn.Identity) or (pooled and length < 2):
        return None
    bn = type(norm) is nn.BatchNorm1d
    return ConvStep(path=path, k=k, c_in=c_in, c_out=conv.out_channels, length=int(length),
                    bias=conv.bias is not None, norm=f"{path}.norm" if bn else None,
                    affine=bn and norm.weight is not None, eps=float(norm.eps) if bn else 0.0, pool=pooled)
