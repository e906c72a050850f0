"""A plane over an MLP evaluated as a plain chain of products, without ``functional_call``.

When the part of a model after its first layer (see :class:`~engine.probes.core.plane_eval.FirstLayer`)
is a chain ``activation -> Linear -> activation -> ... -> Linear`` with nothing else in it
(``Identity`` and eval-mode ``Dropout`` pass through), a point of the plane is a handful of
tensor operations on the first layer's combined output. Going through ``functional_call``
instead costs per point a copy of the state dict, a swap of every tensor into the module and
back, and a fresh output for every activation; on the width-100 MNIST-1D MLP that was a third
of the CPU time of a point (``bench/results/core_measurements.md``). Here the weights at
``theta_a + b * d2`` are formed per point (``theta_a = theta0 + a * d1`` once per grid row,
per thread), ReLU runs in place on the product it follows, and the narrow last layer runs
transposed as :class:`~engine.probes.core.cpu_kernels.NarrowLinear` does, and the bias of the
layer after the first ReLU becomes a column of its weight (see :func:`_bias_as_column`). The same
operations on the same values as the module: the results equal the generic path up to the
rounding of the products, and the chain is only used after it reproduced the model's output
at three points of the plane.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call

from engine.probes.core.evaluator import Evaluator
from engine.probes.core.module_chain import linear_chain

__all__ = ["mlp_plane_point"]


def _chain(ev: Evaluator, first_path: str, theta0: Tensor) -> list | None:
    """The steps after the first layer: ("act", module) or ("linear", weight name, bias name, narrow)."""
    if ev.device.type != "cpu":
        return None
    found = linear_chain(ev, theta0, after=first_path)
    return None if found is None else found.steps


def _run_chain(steps: list, z: Tensor, params: dict[str, Tensor]) -> Tensor:
    """The chain on ``z``, the first layer's output, which the caller owns (it may be changed in place)."""
    h, fresh = z, True  # ``fresh``: h is a tensor of this point's own, so an activation may run in place
    for step in steps:
        if step[0] == "act":
            act = step[1]
            h = h.relu_() if fresh and type(act) is nn.ReLU else act(h)
            fresh = True
            continue
        kind, w_name, b_name, narrow = step
        w, b = params[w_name], None if b_name is None else params[b_name]
        if kind == "linear+1":  # h ends in a column of ones: the bias is one more weight column
            h = torch.mm(h, torch.cat([w, b[:, None]], 1).T)
        elif narrow and h.ndim == 2:  # (W h^T + b)^T, as NarrowLinear computes it
            h = (torch.mm(w, h.T) if b is None else torch.addmm(b[:, None], w, h.T)).T
        else:
            h = torch.nn.functional.linear(h, w, b)
        fresh = True
    return h


class _Row(threading.local):
    """``theta0 + a * d1`` restricted to the chain's parameters, for the last ``a`` (one per thread)."""

    def __init__(self, base: dict, d1: dict, z0: Tensor, z1: Tensor):
        self.base, self.d1, self.z0, self.z1, self.a = base, d1, z0, z1, None

    def at(self, a: float) -> tuple[dict[str, Tensor], Tensor]:
        if a != self.a:
            self.a = a
            self.params = {k: torch.add(v, self.d1[k], alpha=a) for k, v in self.base.items()}
            self.z = torch.add(self.z0, self.z1, alpha=a)
        return self.params, self.z


def mlp_plane_point(ev: Evaluator, first_path: str, theta0: Tensor, d1: Tensor, d2: Tensor, zs: list[Tensor],
                    coords: Tensor) -> Callable | None:
    """A point function ``(a, b) -> (loss, acc)`` for the plane loop, or None when the model
    after its first layer is not a plain chain of activations and Linear layers, or the chain
    does not reproduce the model (first 64 samples) at both ends of ``coords`` (G, 2) and at
    (0.7, -0.3).

    ``zs`` are the first layer's outputs at ``theta0``, ``d1`` and ``d2`` for all samples.
    """
    checks = [tuple(float(c) for c in coords[0]), tuple(float(c) for c in coords[-1]), (0.7, -0.3)]
    steps = _chain(ev, first_path, theta0)
    if steps is None:
        return None
    names = [n for s in steps if s[0] == "linear" for n in s[1:3] if n is not None]
    p0, p1, p2 = (ev.layout.unflatten(t) for t in (theta0, d1, d2))
    base, dir1, dir2 = ({n: p[n] for n in names} for p in (p0, p1, p2))
    if _bias_as_column(steps) and zs[0].ndim == 2:
        steps = [steps[0], ("linear+1", *steps[1][1:]), *steps[2:]]
        zs = [torch.cat([z, torch.full_like(z[:, :1], float(k == 0))], 1) for k, z in enumerate(zs)]  # (N, width + 1)
    if not _agrees(ev, steps, theta0, d1, d2, zs, checks):
        return None
    row = _Row(base, dir1, zs[0], zs[1])

    def point(ai: Tensor, bi: Tensor) -> tuple[Tensor, Tensor]:
        b = float(bi)
        params_a, z_a = row.at(float(ai))
        params = {k: torch.add(v, dir2[k], alpha=b) for k, v in params_a.items()}
        z = torch.add(z_a, zs[2], alpha=b)  # (N, width [+ 1]), this point's own
        return ev.chunked(lambda lo, hi: _run_chain(steps, z[lo:hi] if hi - lo < len(z) else z, params))

    return point


def _bias_as_column(steps: list) -> bool:
    """Whether the chain starts ReLU -> wide Linear with a bias on a 2-D first-layer output.

    Then the first layer's outputs get one more column, 1 at ``theta0`` and 0 along the
    directions, so that every point's combined output ends in an exact 1 that the ReLU keeps,
    and the next layer's bias is one more column of its weight: one product instead of a
    product plus a pass that adds the bias (measured: 540 against 665 us for (4000, 100) x
    (100, 100) on one core). Only the rounding of the sum changes (the bias is added inside it).
    """
    return (len(steps) >= 2 and steps[0][0] == "act" and type(steps[0][1]) is nn.ReLU and steps[1][0] == "linear"
            and steps[1][2] is not None and not steps[1][3])


def _agrees(ev: Evaluator, steps: list, theta0: Tensor, d1: Tensor, d2: Tensor, zs: list[Tensor],
            checks: list[tuple[float, float]]) -> bool:
    n = min(64, len(ev.x))
    try:
        with torch.no_grad():
            for a, b in checks:
                theta = theta0 + a * d1 + b * d2
                params = ev.layout.unflatten(theta)
                z = (zs[0][:n] + a * zs[1][:n] + b * zs[2][:n]).clone()
                mine = _run_chain(steps, z, params)
                theirs = functional_call(ev.module, {**params, **ev.buffers}, (ev.x[:n],))
                if mine.shape != theirs.shape or not torch.allclose(mine, theirs, rtol=1e-4, atol=1e-5):
                    return False
    except Exception:  # noqa: BLE001 - any failure means the chain does not apply
        return False
    return True
