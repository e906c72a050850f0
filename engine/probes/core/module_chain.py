"""Whether a model is a plain chain ``Linear -> activation -> Linear -> ...`` of leaf modules.

Two fast paths need to know: the plane over an MLP (:mod:`engine.probes.core.mlp_plane`, the
chain after the first layer) and the Hessian-vector product of an MLP written out by hand
(:mod:`engine.probes.landscape.chain_hvp`, the whole chain). The leaves are recorded in the
order one forward pass calls them; the chain is refused when a leaf is called twice (shared
or looped over), when a leaf is neither a ``Linear``, an activation nor a pass-through, or when
the model has buffers or hooks. A forward pass that calls torch functions between the leaves
other than reshapes (a clamp, a residual connection) is refused too, and each user still checks
that its chain reproduces the model's output (what a leaf's Python code does besides calling
torch functions is not seen).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.overrides import TorchFunctionMode

from engine.probes.core.cpu_kernels import NARROW_OUT, NarrowLinear, hooked
from engine.probes.core.evaluator import Evaluator

__all__ = ["CHAIN_ACTIVATIONS", "LinearChain", "leaf_calls", "linear_chain"]

#: Leaves that pass their input through unchanged in eval mode.
_PASS = (nn.Identity, nn.Dropout)
#: What a chain's forward pass may do outside its leaves: reshape the rows it starts from, look at shapes.
_SHAPE_OPS = frozenset({"flatten", "reshape", "view", "contiguous", "__get__", "size", "dim"})
#: Linear layers: ``nn.Linear`` and the evaluator's own class-major kernel, not subclasses of the
#: user's (a forward of their own may change the derivatives and not the values).
_LINEARS = (nn.Linear, NarrowLinear)
#: Activation modules a chain may hold (its users may accept fewer).
CHAIN_ACTIVATIONS = (nn.ReLU, nn.Tanh, nn.GELU, nn.SiLU, nn.Sigmoid, nn.LeakyReLU, nn.ELU)


@dataclass(frozen=True)
class LinearChain:
    """A model as a chain of steps, found from one forward pass.

    Attributes
    ----------
    steps : list
        ``("act", module)`` or ``("linear", weight name, bias name or None, narrow)``
        (``narrow``: at most ``cpu_kernels.NARROW_OUT`` outputs); pass-through leaves left out.
    x : Tensor
        The data rows the forward pass ran on.
    output : Tensor
        The model's output on them, for checking that the chain reproduces the model.
    """

    steps: list
    x: Tensor
    output: Tensor


def leaf_calls(module: nn.Module, state: dict, x: Tensor, outputs: list | None = None,
               between: list | None = None) -> list[tuple[str, nn.Module]] | None:
    """``(path, module)`` of every leaf module in the order a forward pass on ``x`` calls it
    (a leaf called twice appears twice), or None when the forward pass fails. The model's
    output is appended to ``outputs`` when given; ``(leaves called so far, name)`` of every
    torch function the forward pass calls outside the leaves (a flatten, a clamp, an add) to
    ``between`` when given."""
    calls, handles = [], []
    seen = _Between(calls)
    for path, m in module.named_modules():
        if not list(m.children()):
            handles.append(m.register_forward_pre_hook(lambda mod, args, p=path: seen.enter(p, mod)))
            handles.append(m.register_forward_hook(lambda mod, args, out: seen.leave()))
    try:
        with torch.no_grad(), (seen if between is not None else contextlib.nullcontext()):
            out = functional_call(module, state, (x,))
    except Exception:  # noqa: BLE001 - a model we cannot run this way keeps the generic path
        return None
    finally:
        for h in handles:
            h.remove()
    if outputs is not None:
        outputs.append(out)
    if between is not None:
        between.extend(seen.ops)
    return calls


class _Between(TorchFunctionMode):
    """Records the leaves a forward pass enters, and the torch functions it calls outside them."""

    def __init__(self, calls: list):
        super().__init__()
        self.calls, self.ops, self.depth = calls, [], 0

    def enter(self, path: str, module: nn.Module) -> None:
        self.calls.append((path, module))
        self.depth += 1

    def leave(self) -> None:
        self.depth -= 1

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if self.depth == 0:
            self.ops.append((len(self.calls), getattr(func, "__name__", repr(func))))
        return func(*args, **(kwargs or {}))


def linear_chain(ev: Evaluator, theta: Tensor, after: str | None = None) -> LinearChain | None:
    """The model of ``ev`` (after its leaf ``after``, or from its first leaf) as a chain of steps.

    None when the model has buffers or forward or backward hooks, a leaf is called twice, ``after`` is not
    called, a leaf is something else than an ``nn.Linear`` (not a subclass), an activation of
    :data:`CHAIN_ACTIVATIONS` or a pass-through (``Identity``, eval ``Dropout``), the forward
    pass calls a torch function between the chain's leaves other than a reshape (a clamp: the
    check on a few rows that a user makes need not show it), or the chain does not end in a
    ``Linear``. Found from one forward pass at ``theta`` on the first 8 rows of the data.
    """
    if ev.buffers or any(hooked(m) or _backward_hooked(m) for m in ev.module.modules()):
        return None  # a hook may change a leaf's output (or only its derivative) unseen
    x, outputs, between = ev.x[:8], [], []
    calls = leaf_calls(ev.module, {**ev.layout.unflatten(theta), **ev.buffers}, x, outputs, between)
    if not calls:
        return None
    paths = [p for p, _ in calls]
    if len(set(paths)) != len(paths) or (after is not None and after not in paths):
        return None  # a module called twice is shared or looped over: not a plain chain
    start = 0 if after is None else paths.index(after) + 1
    if any(n >= start and name not in _SHAPE_OPS for n, name in between):
        return None  # a function between the leaves (a clamp, a skip connection) may act on rows not checked
    steps = []
    for path, m in calls[start:]:
        if isinstance(m, _PASS) and not (isinstance(m, nn.Dropout) and m.training):
            continue
        if type(m) in CHAIN_ACTIVATIONS:
            steps.append(("act", m))
        elif type(m) in _LINEARS:
            bias = f"{path}.bias" if m.bias is not None else None
            steps.append(("linear", f"{path}.weight", bias, m.out_features <= NARROW_OUT))
        else:
            return None
    if not steps or steps[-1][0] != "linear":
        return None
    return LinearChain(steps, x, outputs[0])


def _backward_hooked(m: nn.Module) -> bool:
    """Whether a backward hook may change ``m``'s gradients (what a chain written out by hand would not see)."""
    from torch.nn.modules import module as _module  # the global hooks live there

    return bool(m._backward_hooks or m._backward_pre_hooks or _module._global_backward_hooks
                or _module._global_backward_pre_hooks)
