"""Evaluating a plane of parameter vectors, with the first layer computed once.

A ``Linear`` or ``Conv`` layer is linear in its parameters, so when it is
the first parametrised layer (its input depends on the data alone) its output at
``theta0 + a * d1 + b * d2`` is ``Z0 + a * Z1 + b * Z2`` with ``Z_k`` the layer applied to
its input with the parameters of ``theta0``, ``d1`` and ``d2``. :class:`FirstLayer`
finds that layer by tracing one forward pass and evaluates the rest of the model with
the layer replaced by a stub returning the given output, in a private shallow copy of
the model (the caller's module is never changed). It is only used after it reproduced
the full model's output at three points of the plane, when the outputs kept fit
:data:`~engine.probes.core.evaluator.EVAL_MEMORY_BYTES`, and, for a thin layer, when combining
measured faster than recomputing (:func:`combining_pays`). Paths use the same split
(:func:`engine.probes.core.path_eval.evaluate_line`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

from engine.probes.core.conv_plane import conv_plane_point
from engine.probes.core.evaluator import EVAL_MEMORY_BYTES, Evaluator, PointProgress
from engine.probes.core.functional import BNMode, LossFn, ParamLayout, Strategy, shallow_copy
from engine.probes.core.mlp_plane import mlp_plane_point
from engine.probes.core.point_parallel import (  # points may run on worker threads
    as_point_worker,
    best_seconds,
    remember_choice,
    thread_module,
)

__all__ = ["FirstLayer", "combining_pays", "evaluate_plane", "evaluate_plane_with_strategy", "find_first_layer",
           "first_layer_split"]

_LINEAR_IN_PARAMS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
# Combining Z0 + a*Z1 + b*Z2 costs a pass over the layer's output; recomputing the layer costs
# 2 * fan_in FLOPs per output. A layer with a fan-in of 32 or more always saved time (a Linear with
# fan-in 40 on MNIST-1D); below that it depends on the machine: a conv with fan-in 3 (1 channel,
# kernel 3) was cheaper to recompute on a 2-core AMD EPYC and 4.7x dearer than combining on an Intel
# Xeon (oneDNN at 2-3 GFLOP/s on that shape), so thin layers are measured (:func:`combining_pays`).
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

    def on_rows(self, n: int) -> FirstLayer:
        """The same split with the inputs of the first ``n`` samples only."""
        return FirstLayer(path=self.path, names=self.names, layer=self.layer, inputs=self.inputs[:n], rest=self.rest)

    def output(self, params: Mapping[str, Tensor], lo: int = 0, hi: int | None = None) -> Tensor:
        """The layer's output for samples ``lo:hi`` (all by default) with the model-level parameters ``params``."""
        local = {inner: params[outer] for inner, outer in self.names}
        inputs = self.inputs if lo == 0 and hi is None else self.inputs[lo:hi]
        return functional_call(thread_module(self.layer), local, (inputs,))

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


def find_first_layer(module: nn.Module, state: dict[str, Tensor], x: Tensor, *,
                     thin: bool = False) -> FirstLayer | None:
    """Split ``module`` at its first layer if that layer is linear in its parameters.

    Parameters
    ----------
    module : nn.Module
        The model in the evaluation mode wanted.
    state : dict
        Parameters and buffers at ``theta0`` (model-level names).
    x : Tensor
        All inputs.
    thin : bool
        Also split at a layer with a fan-in under 32 (whether that pays is for the caller
        to measure: :func:`combining_pays`).

    Returns
    -------
    FirstLayer or None
        None when the first module that owns tensors is not a Linear/Conv without
        buffers (with a fan-in of at least 32 unless ``thin``), or is called more than once.
    """
    calls = _trace(module, state, x[:8])
    if not calls:
        return None
    path, layer = calls[0]
    if not isinstance(layer, _LINEAR_IN_PARAMS) or list(layer.buffers(recurse=False)):
        return None
    if isinstance(layer, nn.Embedding) or (layer.weight[0].numel() < _MIN_FAN_IN and not thin):
        return None  # a lookup, or a thin layer (often cheaper to recompute than to combine)
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
    sub = first.on_rows(n)
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
    ``Z0, Z1, Z2`` computed once (``Z1 = X D1^T + d1_bias``); see :class:`FirstLayer`. The
    built-in 1-D ConvNet instead runs as plain operations in cache-sized row blocks
    (:func:`~engine.probes.core.conv_plane.conv_plane_point`), MLPs as a chain of products
    (:func:`~engine.probes.core.mlp_plane.mlp_plane_point`), each only after it reproduced the model.

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
    coords = coords.to(device=ev.device, dtype=theta0.dtype)
    a, b = coords[:, 0].contiguous(), coords[:, 1].contiguous()
    # the built-in 1-D ConvNet: plain operations in row blocks of its own (engine/probes/core/conv_plane.py)
    chain_point = conv_plane_point(ev, theta0, d1, d2, coords, rows) if how != "vmap" else None
    if chain_point is None:
        ev.choose_rows(theta0, rows)
    elif how == "measure":
        # The chain's loop is several times faster than vmap over the generic model (MNIST-1D CNN, 4,000
        # rows: 5.4 against 15-18 ms a point at 2 threads, 9 against 28 at 1), while timing both on a few
        # first points, which pay one-off costs (the chain's block rows are measured then), once picked
        # vmap and took 8.3 s instead of 2.6.
        how = "loop"
    chunk = chunk or (ev.points_per_call(theta0) if how != "loop" else 1)
    first = None if chain_point is not None else _first_layer(ev, theta0, d1, d2, coords, kept=3)
    with torch.no_grad():
        zs = None if first is None else [first.output(ev.layout.unflatten(t)) for t in (theta0, d1, d2)]  # (N, ...)
    row = _RowCache(theta0, d1, zs)

    def point_loop(ai, bi):  # grid points come row by row: theta0 + a*d1 (and Z0 + a*Z1) are reused
        a_val, b_val = float(ai), float(bi)
        theta_a, z_a = row.at(a_val)
        theta = torch.add(theta_a, d2, alpha=b_val)
        if first is None:
            return ev.point(theta)
        return _rest(ev, first, theta, lambda lo, hi: torch.add(z_a[lo:hi], zs[2][lo:hi], alpha=b_val))  # per chunk

    if chain_point is not None:
        point_loop = chain_point
    elif first is not None and how != "vmap":  # an MLP: a plain chain of products (engine/probes/core/mlp_plane.py)
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


def _first_layer(ev: Evaluator, theta0: Tensor, d1: Tensor, d2: Tensor, coords: Tensor, kept: int = 3):
    """The first-layer split of the model if it applies and checks out on this plane."""
    ends = [tuple(float(c) for c in coords[0]), tuple(float(c) for c in coords[-1]), (0.7, -0.3)]
    return first_layer_split(ev, theta0, d1, d2, ends, kept=kept)


def first_layer_split(ev: Evaluator, theta0: Tensor, d1: Tensor, d2: Tensor, checks: list[tuple[float, float]], *,
                      kept: int) -> FirstLayer | None:
    """The model split at its first layer for points ``theta0 + a * d1 + b * d2``, or None.

    None unless the split applies (:func:`find_first_layer`, thin layers included), ``kept``
    outputs of the layer for all rows fit :data:`~engine.probes.core.evaluator.EVAL_MEMORY_BYTES`,
    combining pays (:func:`combining_pays`) and the split reproduces the full model at the
    points ``(a, b)`` of ``checks``. Needs ``ev.rows`` chosen.
    """
    state = {**ev.layout.unflatten(theta0), **ev.buffers}
    try:
        first = find_first_layer(ev.module, state, ev.x, thin=True)
    except Exception:  # noqa: BLE001 - a model we cannot trace is evaluated the plain way
        return None
    if first is None:
        return None
    with torch.no_grad():
        per_row = first.on_rows(1).output(ev.layout.unflatten(theta0)).numel()
    if kept * per_row * len(ev.x) * ev.x.element_size() > EVAL_MEMORY_BYTES:
        return None
    if not combining_pays(ev, first, theta0):
        return None
    ok = _agrees(first, ev.module, ev.layout, ev.buffers, theta0, d1, d2, ev.x, checks)
    return first if ok else None


#: Whether combining a thin first layer's outputs beat recomputing it, per (layer, input shape, threads);
#: at most point_parallel.CHOICES_KEPT of them.
_COMBINE_CHOICE: dict[tuple, bool] = {}


def combining_pays(ev: Evaluator, first: FirstLayer, theta: Tensor) -> bool:
    """Whether combining kept outputs of the first layer (``torch.add(z0, z1, alpha=a)``, a pass
    over two of them) is faster than recomputing the layer, timed as points run: over all the
    rows in chunks of ``ev.rows``, on a one-thread point worker when points run there.

    Always for a fan-in of 32 or more; never on a GPU for a thinner layer (as before these
    were measured); on a CPU measured once per process for each layer shape, data shape,
    chunk size and thread count: combining must take at most half the layer's time (best of 3).
    The kept outputs are as big as in use, so reading them from memory is part of what is
    timed; in use they also compete with the rest of the point for the caches: on an Intel
    Xeon, combining the 64-channel output of a 1-channel conv over 4,000 MNIST-1D rows timed
    at 0.67-0.7 of the conv alone and saved nothing in a 25-point interpolation (1.51 against
    1.43 s at one thread), hence the margin.
    """
    if first.layer.weight[0].numel() >= _MIN_FAN_IN:
        return True
    if ev.device.type != "cpu":
        return False
    rows = max(1, min(len(first.inputs), ev.rows))
    key = (type(first.layer).__name__, tuple(first.layer.weight.shape), first.layer.bias is not None,
           tuple(first.inputs.shape), rows, torch.get_num_threads())
    chosen = _COMBINE_CHOICE.get(key)
    if chosen is None:
        params = ev.layout.unflatten(theta)
        chosen = remember_choice(_COMBINE_CHOICE, key,
                                 as_point_worker(lambda: _combining_faster(first, params, rows), device=ev.device))
    return chosen


def _combining_faster(first: FirstLayer, params: Mapping[str, Tensor], rows: int) -> bool:
    n = len(first.inputs)
    chunks = [(lo, min(n, lo + rows)) for lo in range(0, n, rows)]
    with torch.no_grad():
        z0 = first.output(params)  # the kept outputs, full size
        z1 = z0.clone()

        def layer():
            for lo, hi in chunks:
                first.output(params, lo, hi)

        def combine():
            for lo, hi in chunks:
                torch.add(z0[lo:hi], z1[lo:hi], alpha=0.5)

        layer(), combine()  # warm-up of both kernels
        t_layer, t_combine = best_seconds(layer, 3), best_seconds(combine, 3)
    return t_combine <= 0.5 * t_layer
