"""A plane over an MLP evaluated as a plain chain of products, without ``functional_call``.

When the part of a model after its first layer (see :class:`~engine.probes.core.plane_eval.FirstLayer`)
is a chain ``activation -> Linear -> activation -> ... -> Linear`` with nothing else in it
(``Identity`` and eval-mode ``Dropout`` pass through), a point of the plane is a handful of
tensor operations on the first layer's combined output. Going through ``functional_call``
instead costs per point a copy of the state dict, a swap of every tensor into the module and
back, and a fresh output for every activation; on the width-100 MNIST-1D MLP that was a third
of the CPU time of a point (``bench/results/core_measurements.md``). Here the weights at
``theta_a + b * d2`` are formed per point (``theta_a = theta0 + a * d1`` once per grid row,
per thread), and the chain runs feature-major: the first layer's kept outputs are stored
transposed, ``(features, N)``, so every layer is ``W @ h`` with the samples along the fast
axis. On one core that ran the ``(100, 101) x (101, 4000)`` product of the width-100 MNIST-1D
MLP at 465 against 548 us row-major, the narrow head at 56 against 90 us, and its logits come
out class-major, where :func:`~engine.probes.core.cpu_kernels.cross_entropy_and_accuracy` is
fast. The first ReLU runs fused with the combination ``z_a + b * Z2`` (one pass instead of two),
later ReLUs in place on the product they follow, and the bias of the layer after the first ReLU
becomes a column of its weight (see :func:`_bias_as_column`). Where the point scores its own
logits, a worker's block of up to 16 consecutive points writes them side by side and scores them in
one pass (``point.batch``, :meth:`~engine.probes.core.cpu_kernels.ClassMajorScore.many`): the
scorer's dozen calls, each a GIL hand-over on the two point workers, once a block instead of once a
point. Interleaved runs of that surface at 2 threads: 0.83-0.89 against 0.95-1.02 s (at 1 thread no
change: 1.69-1.70 against 1.66-1.70 s; ``bench/results/*issue19_*batched_ab*``). The same operations on the same
values as the module: the results equal the generic path up to the rounding of the products,
and the chain is only used after it reproduced the model's output at three points of the plane.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call

from engine.probes.core.cpu_kernels import ClassMajorScore
from engine.probes.core.evaluator import Evaluator
from engine.probes.core.module_chain import linear_chain

__all__ = ["mlp_plane_point"]


def _chain(ev: Evaluator, first_path: str, theta0: Tensor) -> list | None:
    """The steps after the first layer: ("act", module) or ("linear", weight name, bias name, narrow)."""
    if ev.device.type != "cpu":
        return None
    found = linear_chain(ev, theta0, after=first_path)
    return None if found is None else found.steps


def _run_chain(steps: list, h: Tensor, params: dict[str, Tensor], start: int = 0, out: Tensor | None = None) -> Tensor:
    """Steps ``start:`` of the chain on ``h`` (features, rows), feature-major, which the caller
    owns (it may be changed in place); ``params`` as :func:`_prepared` names them. Returns
    (outputs, rows), written into ``out`` when given (the last step then a linear one)."""
    fresh = True  # h is a tensor of this point's own, so an activation may run in place
    last = len(steps) - 1
    for i, step in enumerate(steps[start:], start):
        if step[0] == "act":
            act = step[1]
            h = h.relu_() if fresh and type(act) is nn.ReLU else act(h)
            fresh = True
            continue
        w, b = params[f"{i}.weight"], params.get(f"{i}.bias")
        dst = {"out": out} if i == last and out is not None else {}
        h = torch.mm(w, h, **dst) if b is None else torch.addmm(b, w, h, **dst)  # (out, rows)
        fresh = True
    return h


def _prepared(steps: list, p: dict[str, Tensor]) -> dict[str, Tensor]:
    """The chain's parameters as :func:`_run_chain` uses them, keyed by step: a weight, and a bias
    as a column ``(out, 1)``; for "linear+1" the bias is the weight's last column."""
    out = {}
    for i, step in enumerate(steps):
        if step[0] == "act":
            continue
        kind, w_name, b_name, _ = step
        w, b = p[w_name], None if b_name is None else p[b_name]
        if kind == "linear+1":
            out[f"{i}.weight"] = torch.cat([w, b[:, None]], 1)  # (out, in + 1)
        else:
            out[f"{i}.weight"] = w
            if b is not None:
                out[f"{i}.bias"] = b[:, None]
    return out


_FUSED_ADD_RELU = getattr(torch.ops.aten, "_add_relu", None)  # ATen's kernel for TorchScript's add + relu fusion


def _add_relu(a: Tensor, b: Tensor, alpha: float) -> Tensor:
    """``relu(a + alpha * b)`` in one pass, bit for bit the two passes it replaces (measured on
    one core for (101, 4000): 166 against 205 us); two passes where ATen lacks the kernel."""
    if _FUSED_ADD_RELU is None:
        return torch.add(a, b, alpha=alpha).relu_()
    return _FUSED_ADD_RELU(a, b, alpha=alpha)


class _Row(threading.local):
    """One thread's state along a grid row: the chain's parameters at ``theta0 + a * d1`` and
    ``Z0 + a * Z1`` (feature-major) for the last ``a``, and a buffer the parameters of a point
    ``theta_a + b * d2`` are written into (:meth:`point_params`).

    The parameters are one flat vector, so a point forms them in one operation instead of one
    per tensor, into views made once per thread: with two point workers every small operation
    also waits for the GIL.
    """

    def __init__(self, names: list[tuple[str, torch.Size]], flat: tuple[Tensor, Tensor, Tensor], z0: Tensor,
                 z1: Tensor):
        self.names, self.flat, self.z0, self.z1, self.a = names, flat, z0, z1, None
        self.buffer = torch.empty_like(flat[0])  # this thread's own: a point's parameters are written here
        self.views = _unpacked(self.buffer, names)

    def at(self, a: float) -> Tensor:
        """``Z0 + a * Z1``, (F, N), for this thread's current row."""
        if a != self.a:
            self.a = a
            self.params_a = torch.add(self.flat[0], self.flat[1], alpha=a)
            self.z = torch.add(self.z0, self.z1, alpha=a)
        return self.z

    def point_params(self, b: float) -> dict[str, Tensor]:
        """The chain's parameters at ``theta_a + b * d2`` (after :meth:`at`), valid until this thread's next point."""
        torch.add(self.params_a, self.flat[2], alpha=b, out=self.buffer)
        return self.views


class _Logits(threading.local):
    """One thread's ``(k, C, N)`` logits of a block of points, grown to the largest block asked for."""

    def __init__(self, shape: torch.Size, dtype: torch.dtype):
        self.shape, self.dtype, self.buffer = shape, dtype, None

    def of(self, k: int) -> Tensor:
        if self.buffer is None or len(self.buffer) < k:
            self.buffer = torch.empty(k, *self.shape, dtype=self.dtype)
        return self.buffer[:k]


def _packed(params: dict[str, Tensor]) -> Tensor:
    return torch.cat([t.reshape(-1) for t in params.values()])


def _unpacked(flat: Tensor, names: list[tuple[str, torch.Size]]) -> dict[str, Tensor]:
    out, at = {}, 0
    for name, shape in names:
        n = shape.numel()
        out[name] = flat[at : at + n].view(shape)
        at += n
    return out


def mlp_plane_point(ev: Evaluator, first_path: str, theta0: Tensor, d1: Tensor, d2: Tensor, zs: list[Tensor],
                    coords: Tensor) -> Callable | None:
    """A point function ``(a, b) -> (loss, acc)`` for the plane loop, or None when the model
    after its first layer is not a plain chain of activations and Linear layers on a 2-D
    first-layer output, or the chain does not reproduce the model (first 64 samples) at both
    ends of ``coords`` (G, 2) and at (0.7, -0.3).

    ``zs`` are the first layer's outputs at ``theta0``, ``d1`` and ``d2`` for all samples, (N, F).
    """
    checks = [tuple(float(c) for c in coords[0]), tuple(float(c) for c in coords[-1]), (0.7, -0.3)]
    steps = _chain(ev, first_path, theta0)
    if steps is None or zs[0].ndim != 2:
        return None
    if _bias_as_column(steps):
        steps = [steps[0], ("linear+1", *steps[1][1:]), *steps[2:]]
        zs = [torch.cat([z, torch.full_like(z[:, :1], float(k == 0))], 1) for k, z in enumerate(zs)]  # (N, F + 1)
    zt = [z.T.contiguous() for z in zs]  # (F [+ 1], N): feature-major
    prepared = [_prepared(steps, ev.layout.unflatten(t)) for t in (theta0, d1, d2)]
    if not _agrees(ev, steps, theta0, d1, d2, zt, checks):
        return None
    names = [(k, v.shape) for k, v in prepared[0].items()]
    row = _Row(names, tuple(_packed(p) for p in prepared), zt[0], zt[1])
    fused = steps[0][0] == "act" and type(steps[0][1]) is nn.ReLU  # a first ReLU runs with the combination
    score = _scorer(ev, steps)

    def logits_at(ai: Tensor, bi: Tensor, out: Tensor | None = None) -> Tensor:
        """The point's outputs on all rows, (outputs, rows), written into ``out`` when given."""
        b = float(bi)
        z_a, params = row.at(float(ai)), row.point_params(b)
        h = _add_relu(z_a, zt[2], b) if fused else torch.add(z_a, zt[2], alpha=b)
        return _run_chain(steps, h, params, start=int(fused), out=out)

    def point(ai: Tensor, bi: Tensor) -> tuple[Tensor, Tensor]:
        if score is not None:  # all rows in one pass, class logits: scored here (the logits are this point's own)
            return score(logits_at(ai, bi))
        b = float(bi)
        z_a, params = row.at(float(ai)), row.point_params(b)

        def outputs(lo: int, hi: int) -> Tensor:  # (rows, outputs): a view of class-major logits
            za, z2 = (z_a, zt[2]) if hi - lo == z_a.shape[1] else (z_a[:, lo:hi], zt[2][:, lo:hi])
            h = _add_relu(za, z2, b) if fused else torch.add(za, z2, alpha=b)  # (F, rows), this point's own
            return _run_chain(steps, h, params, start=int(fused)).T

        return ev.chunked(outputs)

    if score is not None:
        logits = _Logits(score.before.shape, ev.x.dtype)  # (C, N), as the scorer's mask

        def block(items: list[tuple[Tensor, Tensor]]) -> list[tuple[Tensor, Tensor]]:
            """The points of ``items`` (consecutive ones of a grid row), their logits written side by side
            and scored together: one scorer's dozen calls for the block instead of for every point."""
            out = logits.of(len(items))
            for j, (ai, bi) in enumerate(items):
                logits_at(ai, bi, out=out[j])
            return list(zip(*(t.unbind(0) for t in score.many(out))))

        point.batch = block

    # Products and element-wise passes: faster on one-thread workers than on the caller's OpenMP threads
    # (point_parallel's docstring), but by too little for a few timed points to tell every time: on the
    # width-100 MNIST-1D MLP's 41 x 41 surface at 2 threads the choice went to the caller in 1 of 4, then
    # 3 of 6, processes (probes 620-940 us a point either way), and the surface then took 1.17-1.45 s
    # against 0.91-1.08 s on workers. So these points go to the workers unmeasured.
    point.on_workers = True
    return point


def _scorer(ev: Evaluator, steps: list) -> ClassMajorScore | None:
    """The scorer of this evaluation's points, or None where ``ev.chunked`` must score them: other
    losses, data in chunks, outputs that are not (C, N) class logits, targets outside ``[0, C)``."""
    last = steps[-1] if steps else None
    if last is None or last[0] == "act" or not ev.classification or ev.rows < len(ev.x):
        return None
    return ClassMajorScore.exact_for(ev.loss_fn, ev.y, ev.layout.shapes[ev.layout.names.index(last[1])][0])


def _bias_as_column(steps: list) -> bool:
    """Whether the chain starts ReLU -> wide Linear with a bias on a 2-D first-layer output.

    Then the first layer's outputs get one more feature, 1 at ``theta0`` and 0 along the
    directions, so that every point's combined output has an exact 1 that the ReLU keeps, and the
    next layer's bias is one more column of its weight: one product instead of a product plus a
    pass that adds the bias (measured row-major: 540 against 665 us for (4000, 100) x (100, 100)
    on one core). Only the rounding of the sum changes (the bias is added inside it).
    """
    return (len(steps) >= 2 and steps[0][0] == "act" and type(steps[0][1]) is nn.ReLU and steps[1][0] == "linear"
            and steps[1][2] is not None and not steps[1][3])


def _agrees(ev: Evaluator, steps: list, theta0: Tensor, d1: Tensor, d2: Tensor, zt: list[Tensor],
            checks: list[tuple[float, float]]) -> bool:
    n = min(64, len(ev.x))
    try:
        with torch.no_grad():
            for a, b in checks:
                theta = theta0 + a * d1 + b * d2
                params = ev.layout.unflatten(theta)
                z = (zt[0][:, :n] + a * zt[1][:, :n] + b * zt[2][:, :n]).contiguous()
                mine = _run_chain(steps, z, _prepared(steps, params)).T
                theirs = functional_call(ev.module, {**params, **ev.buffers}, (ev.x[:n],))
                if mine.shape != theirs.shape or not torch.allclose(mine, theirs, rtol=1e-4, atol=1e-5):
                    return False
    except Exception:  # noqa: BLE001 - any failure means the chain does not apply
        return False
    return True
