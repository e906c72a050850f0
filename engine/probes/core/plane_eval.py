"""Evaluating a plane of parameter vectors, with the first layer computed once.

A ``Linear`` or ``Conv`` layer is linear in its parameters, so when it is
the first parametrised layer (its input depends on the data alone) its output at
``theta0 + a * d1 + b * d2`` is ``Z0 + a * Z1 + b * Z2`` with ``Z_k`` the layer applied to
its input with the parameters of ``theta0``, ``d1`` and ``d2``. :class:`FirstLayer`
finds that layer by tracing one forward pass and evaluates the rest of the model with
the layer replaced by a stub returning the given output, in a private shallow copy of
the model (the caller's module is never changed). It is only used after it reproduced
the full model's output at three points of the plane.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

from engine.probes.core.evaluator import Evaluator, PointProgress
from engine.probes.core.functional import BNMode, LossFn, ParamLayout, Strategy, shallow_copy
from engine.probes.core.mlp_plane import mlp_plane_point
from engine.probes.core.point_parallel import thread_module  # points may run on worker threads

__all__ = ["FirstLayer", "evaluate_plane", "evaluate_plane_with_strategy", "find_first_layer"]

_LINEAR_IN_PARAMS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
# Combining Z0 + a*Z1 + b*Z2 costs a pass over the layer's output; recomputing the layer costs
# 2 * fan_in FLOPs per output. Measured on MNIST-1D: a conv with fan-in 3 (1 channel, kernel 3)
# was cheaper to recompute; a Linear with fan-in 40 saved time.
_MIN_FAN_IN = 32


class _Given(nn.Module):
    """Stands in for a layer whose output is already known."""

    def __init__(self):
        super().__init__()
        self.value: Tensor | None = None

    def forward(self, *args, **kwargs) -> Tensor:
        return self.value


class _Stop(Exception):
    pass


def _owns_tensors(m: nn.Module) -> bool:
    return bool(list(m.parameters(recurse=False)) or list(m.buffers(recurse=False)))


def _trace(module: nn.Module, state: dict, x: Tensor) -> list[tuple[str, nn.Module]]:
    """Modules owning parameters or buffers, in the order a forward pass calls them."""
    calls, handles = [], []
    for path, m in module.named_modules():
        if _owns_tensors(m):
            handles.append(m.register_forward_pre_hook(lambda mod, args, p=path: calls.append((p, mod))))
    try:
        with torch.no_grad():
            functional_call(module, state, (x,))
    finally:
        for h in handles:
            h.remove()
    return calls


def _layer_input(module: nn.Module, layer: nn.Module, state: dict, x: Tensor) -> Tensor:
    """What ``layer`` receives when ``module`` runs on ``x`` (the rest is not computed)."""
    seen = []

    def grab(_m, args):
        seen.append(args[0])
        raise _Stop

    handle = layer.register_forward_pre_hook(grab)
    try:
        with torch.no_grad():
            functional_call(module, state, (x,))
    except _Stop:
        pass
    finally:
        handle.remove()
    return seen[0]


@dataclass
class FirstLayer:
    """The model split at its first layer, with that layer's input for the whole data.

    Attributes
    ----------
    path : str
        Module path of the first layer.
    names : tuple of (str, str)
        (name inside the layer, name in the model) of its parameters.
    layer : nn.Module
        The layer itself.
    inputs : Tensor
        The layer's input for every sample.
    rest : nn.Module
        Shallow copy of the model whose first layer is a stub (see :meth:`run_rest`).
    """

    path: str
    names: tuple[tuple[str, str], ...]
    layer: nn.Module
    inputs: Tensor
    rest: nn.Module

    def output(self, params: Mapping[str, Tensor]) -> Tensor:
        """The layer's output for all samples with the model-level parameters ``params``."""
        local = {inner: params[outer] for inner, outer in self.names}
        return functional_call(thread_module(self.layer), local, (self.inputs,))

    def run_rest(self, z: Tensor, state: Mapping[str, Tensor], x: Tensor) -> Tensor:
        """Model output when the first layer outputs ``z``; ``state`` is parameters + buffers."""
        skip = {outer for _, outer in self.names}
        rest = thread_module(self.rest)
        stub = rest.get_submodule(self.path)
        stub.value = z
        try:
            return functional_call(rest, {k: v for k, v in state.items() if k not in skip}, (x,))
        finally:
            stub.value = None


def find_first_layer(module: nn.Module, state: dict[str, Tensor], x: Tensor) -> FirstLayer | None:
    """Split ``module`` at its first layer if that layer is linear in its parameters.

    Parameters
    ----------
    module : nn.Module
        The model in the evaluation mode wanted.
    state : dict
        Parameters and buffers at ``theta0`` (model-level names).
    x : Tensor
        All inputs.

    Returns
    -------
    FirstLayer or None
        None when the first module that owns tensors is not a Linear/Conv without
        buffers and with fan-in of at least 32, or is called more than once.
    """
    calls = _trace(module, state, x[:8])
    if not calls:
        return None
    path, layer = calls[0]
    if not isinstance(layer, _LINEAR_IN_PARAMS) or list(layer.buffers(recurse=False)):
        return None
    if isinstance(layer, nn.Embedding) or layer.weight[0].numel() < _MIN_FAN_IN:
        return None  # a lookup or a thin layer is cheaper to recompute than to combine
    if any(p == path for p, _ in calls[1:]):
        return None
    if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and layer.padding_mode != "zeros":
        return None
    if not path:
        return None  # the model is a single layer: nothing to gain
    names = tuple((n, f"{path}.{n}") for n, _ in layer.named_parameters())
    inputs = _layer_input(module, layer, state, x)
    rest = shallow_copy(module)  # shares every tensor; only the stub differs
    rest.set_submodule(path, _Given())
    return FirstLayer(path=path, names=names, layer=layer, inputs=inputs, rest=rest)


def _agrees(first: FirstLayer, module: nn.Module, layout, buffers: dict, theta0: Tensor, d1: Tensor,
           d2: Tensor, x: Tensor, points: list[tuple[float, float]]) -> bool:
    """Whether the split reproduces the full model on the first 64 samples at ``points``."""
    n = min(64, len(x))
    sub = FirstLayer(path=first.path, names=first.names, layer=first.layer, inputs=first.inputs[:n], rest=first.rest)
    try:
        with torch.no_grad():
            for a, b in points:
                params = layout.unflatten(theta0 + a * d1 + b * d2)
                z = sub.output(params)
                mine = sub.run_rest(z, {**params, **buffers}, x[:n])
                theirs = functional_call(module, {**params, **buffers}, (x[:n],))
                if mine.shape != theirs.shape or not torch.allclose(mine, theirs, rtol=1e-4, atol=1e-5):
                    return False
    except Exception:  # noqa: BLE001 - any failure means the split does not apply
        return False
    return True


def evaluate_plane(
    model: nn.Module,
    theta0: Tensor,
    d1: Tensor,
    d2: Tensor,
    coords: Tensor,
    data,
    *,
    chunk: int | None = None,
    bn: BNMode = "running",
    buffers: Mapping[str, Tensor] | None = None,
    layout: ParamLayout | None = None,
    loss_fn: LossFn | None = None,
    strategy: Strategy = "auto",
    split: str = "train",
    rows: int | None = None,
    progress: PointProgress | None = None,
) -> tuple[Tensor, Tensor]:
    """Loss and accuracy at ``theta0 + a * d1 + b * d2`` for each row ``(a, b)`` of ``coords``.

    Same as :func:`evaluate_points` on the stacked vectors, but exploits what is exact
    and cheaper along a plane: when the model's first parametrised layer is a
    ``Linear`` or ``Conv`` (fan-in at least 32) fed by the input alone, that layer is
    linear in its parameters, so its outputs at every point are ``Z0 + a * Z1 + b * Z2`` with
    ``Z0, Z1, Z2`` computed once (``Z1 = X D1^T + d1_bias``); see :class:`FirstLayer`.

    Parameters
    ----------
    theta0, d1, d2 : Tensor, shape (P,)
        Origin and directions, flat in ``layout`` order.
    coords : Tensor, shape (G, 2)
        Plane coordinates of the points.

    Other parameters (``progress`` included) are as in :func:`evaluate_points`.

    Returns
    -------
    loss, acc : Tensor, shape (G,)
    """
    loss, acc, _ = evaluate_plane_with_strategy(model, theta0, d1, d2, coords, data, chunk=chunk, bn=bn,
                                                buffers=buffers, layout=layout, loss_fn=loss_fn, strategy=strategy,
                                                split=split, rows=rows, progress=progress)
    return loss, acc


def evaluate_plane_with_strategy(model, theta0, d1, d2, coords, data, *, chunk=None, bn="running", buffers=None,
                                 layout=None, loss_fn=None, strategy="auto", split="train",
                                 rows=None, progress: PointProgress | None = None) -> tuple[Tensor, Tensor, str]:
    """:func:`evaluate_plane`, also returning the strategy used ("loop" or "vmap")."""
    ev = Evaluator(model, data, layout=layout, buffers=buffers, bn=bn, loss_fn=loss_fn, split=split)
    theta0, d1, d2 = (t.to(ev.device) for t in (theta0, d1, d2))
    how = ev.resolve_strategy(strategy)
    ev.choose_rows(theta0, rows)
    coords = coords.to(device=ev.device, dtype=theta0.dtype)
    a, b = coords[:, 0].contiguous(), coords[:, 1].contiguous()
    chunk = chunk or (ev.points_per_call(theta0) if how != "loop" else 1)
    first = _first_layer(ev, theta0, d1, d2, coords)
    with torch.no_grad():
        zs = None if first is None else [first.output(ev.layout.unflatten(t)) for t in (theta0, d1, d2)]  # (N, ...)
    row = _RowCache(theta0, d1, zs)

    def point_loop(ai, bi):  # grid points come row by row: theta0 + a*d1 (and Z0 + a*Z1) are reused
        a_val, b_val = float(ai), float(bi)
        theta_a, z_a = row.at(a_val)
        theta = torch.add(theta_a, d2, alpha=b_val)
        if first is None:
            return ev.point(theta)
        z = torch.add(z_a, zs[2], alpha=b_val)
        return _rest(ev, first, theta, lambda lo, hi: z[lo:hi])

    if first is not None and how != "vmap":  # an MLP: a plain chain of products (engine/probes/core/mlp_plane.py)
        point_loop = mlp_plane_point(ev, first.path, theta0, d1, d2, zs, coords) or point_loop

    def point_vmap(ai, bi):
        theta = theta0 + ai * d1 + bi * d2
        if first is None:
            return ev.point(theta)
        return _rest(ev, first, theta, lambda lo, hi: zs[0][lo:hi] + ai * zs[1][lo:hi] + bi * zs[2][lo:hi])

    return ev.map_points(point_loop, point_vmap, (a, b), how, chunk, progress)


class _RowCache(threading.local):
    """``theta0 + a * d1`` (and ``Z0 + a * Z1``) for the last ``a`` seen (one per thread)."""

    def __init__(self, theta0: Tensor, d1: Tensor, zs):
        self.theta0, self.d1, self.zs, self.a = theta0, d1, zs, None

    def at(self, a: float):
        if a != self.a:
            self.a = a
            self.theta = torch.add(self.theta0, self.d1, alpha=a)
            self.z = None if self.zs is None else torch.add(self.zs[0], self.zs[1], alpha=a)
        return self.theta, self.z


def _rest(ev: Evaluator, first: FirstLayer, theta: Tensor, z_rows) -> tuple[Tensor, Tensor]:
    """Loss and accuracy with the first layer's output on rows lo:hi given by ``z_rows(lo, hi)``."""
    state = {**ev.layout.unflatten(theta), **ev.buffers}
    return ev.chunked(lambda lo, hi: first.run_rest(z_rows(lo, hi), state, ev.x[lo:hi]))


def _first_layer(ev: Evaluator, theta0: Tensor, d1: Tensor, d2: Tensor, coords: Tensor):
    """The first-layer split of the model if it applies and checks out on this plane."""
    state = {**ev.layout.unflatten(theta0), **ev.buffers}
    try:
        first = find_first_layer(ev.module, state, ev.x)
    except Exception:  # noqa: BLE001 - a model we cannot trace is evaluated the plain way
        return None
    if first is None:
        return None
    ends = [tuple(float(c) for c in coords[0]), tuple(float(c) for c in coords[-1]), (0.7, -0.3)]
    ok = _agrees(first, ev.module, ev.layout, ev.buffers, theta0, d1, d2, ev.x, ends)
    return first if ok else None

