"""A measured floor for a point of the width-100 MLP's 41x41 loss surface, and the ratio it allows.

Run: .venv/bin/python bench/surface_bound.py [--n 4000] [--res 41] [--threads 2 1] [--tag NAME]

A point of the surface of the MNIST-1D MLP 40 -> 100 -> 100 -> 10 (4,000 samples) needs at least:

- one pass that forms the first layer's output at the point, ``relu(Z_a + b * Z2)`` over the kept
  outputs (the cheapest exact way found: recomputing the 40 -> 100 layer measured no faster);
- the hidden 100 x 101 product (bias as a weight column) over all samples;
- the 10 x 100 head over all samples;
- the loss and accuracy of the (10, N) logits.

Each is timed alone here on the model's own tensors, warm, in the fastest layout measured (row- or
feature-major; the fastest loss formulation), best of and median of many calls. At 2 threads an
operation's time is the smaller of (a) one call on two OpenMP threads and (b) two one-thread
threads running it side by side, per call (how Zooscope's point workers run). Their sum is the
floor: what a point costs with nothing else (no ReLU after the hidden product, no cold caches,
no per-operation overhead beyond each operation's own). It is printed next to Zooscope's point
time and ``loss-landscapes``' (each the 41 x 41 surface's time over its points, measured in this
run), and ``loss-landscapes``' point time over the floor is the largest speed-up any method
running these operations could reach on this machine.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import landscape_common as common
import torch
from landscape_surface import MODELS, li_style, loss_landscapes_plane
from torch import nn

from engine.nets import build
from engine.probes.core import ParamLayout
from engine.probes.core.cpu_kernels import (
    ClassMajorScore,  # the point's own scorer, timed alone
    PairMaxPool1d,
    TapConv1d,
    cross_entropy_and_accuracy,
)
from engine.probes.landscape import loss_surface_2d, random_direction


def timed_alone(fn, reps: int) -> tuple[float, float]:
    """(best, median) seconds of ``fn()`` on this thread, after a warm-up."""
    for _ in range(max(3, reps // 10)):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def timed_side_by_side(fn, reps: int, workers: int, rounds: int = 7) -> tuple[float, float]:
    """(best, median) over ``rounds`` of the wall time of ``workers`` one-thread threads each
    calling ``fn()`` ``reps`` times at once, per call. The workers read the clock themselves:
    at real-time priority on two cores the waiting main thread is not run until they block."""
    per_call = []
    for _ in range(rounds):
        barrier, spans = threading.Barrier(workers), []

        def work(barrier=barrier, spans=spans):
            torch.set_num_threads(1)
            fn()
            barrier.wait()
            start = time.perf_counter()
            for _ in range(reps):
                fn()
            spans.append((start, time.perf_counter()))

        threads = [threading.Thread(target=work) for _ in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = max(end for _, end in spans) - min(start for start, _ in spans)
        per_call.append(wall / (workers * reps))
    return min(per_call), statistics.median(per_call)


def shared_max_score(logits, y):
    """Loss and exact first-argmax accuracy of (C, N) logits with finite maxima from one ``amax``:
    ``e = logits - top`` is 0 exactly at each column's maxima, and the first of them is argmax's
    class (the fastest formulation timed alone; Zooscope's is faster inside a point)."""
    top = logits.amax(0)
    e = logits - top
    loss = (e.exp().sum(0).log_() - e.gather(0, y[None])[0]).mean()
    classes = logits.shape[0]
    first = torch.arange(classes, 0, -1, dtype=e.dtype)[:, None]
    pred = classes - e.sign_().add_(1).mul_(first).amax(0)
    return loss, (pred == y).to(loss.dtype).mean()


def operations(model, params, d1, d2, layout, x, y) -> dict[str, list]:
    """Each irreducible operation of a point, in every layout tried: {name: [(layout, fn), ...]}."""
    theta0, f1, f2 = layout.flatten(params), d1.flat(layout), d2.flat(layout)
    a, b = 0.35, -0.6
    p = layout.unflatten(theta0 + a * f1 + b * f2)
    first = model.layers[0].linear
    with torch.no_grad():
        zs = [nn.functional.linear(x.flatten(1), q["layers.0.linear.weight"], q["layers.0.linear.bias"])
              for q in (layout.unflatten(t) for t in (theta0, f1, f2))]
    ones = torch.ones(len(x), 1)
    za = torch.cat([zs[0] + a * zs[1], ones], 1)  # (N, 101): bias as a weight column
    z2 = torch.cat([zs[2], 0 * ones], 1)
    zat, z2t = za.T.contiguous(), z2.T.contiguous()  # (101, N)
    w2 = torch.cat([p["layers.1.linear.weight"], p["layers.1.linear.bias"][:, None]], 1)  # (100, 101)
    z, zt = torch.add(za, z2, alpha=b).relu_(), torch.add(zat, z2t, alpha=b).relu_()
    h, ht = torch.mm(z, w2.T).relu_(), torch.mm(w2, zt).relu_()
    w3, b3 = p["head.weight"], p["head.bias"]
    logits_t = torch.addmm(b3[:, None], w3, ht)  # (10, N)
    add_relu = getattr(torch.ops.aten, "_add_relu", None)
    own_score = ClassMajorScore(y, logits_t.shape[0])  # leaves the logits as they are
    assert first.in_features == 40 and w2.shape == (100, 101)
    return {
        "first layer: relu(z_a + b Z2), one pass": [
            ("row-major, add + relu", lambda: torch.add(za, z2, alpha=b).relu_()),
            ("feature-major, fused", lambda: add_relu(zat, z2t, alpha=b)),
        ],
        "hidden product 100 x 101": [
            ("row-major z @ W^T", lambda: torch.mm(z, w2.T)),
            ("feature-major W @ z", lambda: torch.mm(w2, zt)),
        ],
        "head 10 x 100 (+ bias)": [
            ("row-major, transposed", lambda: torch.addmm(b3[:, None], w3, h.T)),
            ("feature-major", lambda: torch.addmm(b3[:, None], w3, ht)),
        ],
        "loss + accuracy": [
            ("class-major, Zooscope's", lambda: cross_entropy_and_accuracy(logits_t.T, y)),
            ("class-major, one shared max", lambda: shared_max_score(logits_t, y)),
            ("class-major, the plane point's own (mlp_plane)", lambda: own_score(logits_t)),
        ],
        "(not in the floor) cross-entropy alone": [
            ("class-major (1, C, N)", lambda: nn.functional.cross_entropy(logits_t[None], y[None])),
        ],
        "(not in the floor) ReLU after the hidden product": [
            ("feature-major, in place", lambda: ht.relu_()),
        ],
    }


def spans_of(n: int, rows: int) -> list[tuple[int, int]]:
    return [(lo, min(n, lo + rows)) for lo in range(0, n, rows)]


def over_rows(make, spans) -> callable:
    """An operation over all rows in the chunks ``spans``: ``make(lo, hi)`` prepares one chunk's call
    (its inputs sliced and laid out before timing), and the result calls them in turn."""
    fns = [make(lo, hi) for lo, hi in spans]
    return lambda: [f() for f in fns]


def shifted_gemm_conv(p: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None):
    """A 'same' kernel-3 ``conv1d`` of (n, C, L) ``p`` as three accumulated (M, C) x (C, C_out) products
    on the zero-padded input laid out channels-last and flattened, ``X`` of (n (L + 2), C):
    ``out[i] = sum_k X[i + k] W_k^T`` for i < M = n (L + 2) - 2 holds sample s's output l at row
    s (L + 2) + l (the two rows between samples are computed and unused). Exact up to the sum's order;
    returns the call and a check of it against ``F.conv1d``."""
    n, c, length = p.shape
    x = nn.functional.pad(p, (1, 1)).transpose(1, 2).contiguous().reshape(-1, c)
    m = len(x) - 2
    wk = [w[:, :, k].T.contiguous() for k in range(3)]
    out = torch.empty(m, w.shape[0])
    bias = torch.zeros(w.shape[0]) if b is None else b

    def run():
        torch.addmm(bias, x[0:m], wk[0], out=out)
        out.addmm_(x[1 : m + 1], wk[1])
        return out.addmm_(x[2 : m + 2], wk[2])

    def check():
        got = nn.functional.pad(run(), (0, 0, 0, 2)).reshape(n, length + 2, -1)[:, :length].transpose(1, 2)
        return float((got - nn.functional.conv1d(p, w, b, padding=1)).abs().max())

    return run, check


def im2col_gemm_conv(p: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None):
    """The same convolution as one (M, 3C) x (3C, C_out) product whose left factor is the overlapping
    view ``A[i, k C + c] = X[i + k, c]`` of the padded channels-last input (torch copies it for the BLAS:
    that copy, the im2col, is part of what is timed)."""
    n, c, _ = p.shape
    x = nn.functional.pad(p, (1, 1)).transpose(1, 2).contiguous().reshape(-1, c)
    m = len(x) - 2
    a = x.as_strided((m, 3 * c), (c, 1))
    wcat = w.permute(2, 1, 0).reshape(3 * c, -1).contiguous()
    bias = torch.zeros(w.shape[0]) if b is None else b
    return lambda: torch.addmm(bias, a, wcat)


def cnn_operations(blocks, head, first_ways, x, y, spans_by_rows) -> dict[str, list]:
    """The irreducible operations of a point of a ``cnn1d`` (conv -> [folded BN] -> pool -> ReLU blocks
    on MNIST-1D, mean, head): ``blocks`` holds each block's (weight, bias) at the point (BatchNorm
    folded in), ``first_ways`` the ways of forming the first block's output on rows lo:hi
    ({label: make(lo, hi)}). Every operation is timed over all rows in each chunking of
    ``spans_by_rows`` ({rows: spans}); the floor takes the fastest."""
    n = len(x)
    with torch.no_grad():
        acts, h = [], x  # each block's conv output (its pool's input) and pooled ReLU output, all rows
        for w, b in blocks:
            z = nn.functional.conv1d(h, w, b, padding=w.shape[-1] // 2)
            h = PairMaxPool1d(2)(z).relu_()
            acts.append((z, h))
        wh, bh = head
        length = h.shape[-1]
        w_flat = (wh / length).repeat_interleave(length, 1)  # the mean folded into the head: (10, C L)
        logits_t = torch.addmm(bh[:, None], wh, h.mean(2).T)
    ops: dict[str, list] = {}

    def add(name, label, make):
        for rows, spans in spans_by_rows.items():
            tag = "all rows" if rows >= n else f"{rows}-row chunks"
            ops.setdefault(name, []).append((f"{label}, {tag}", over_rows(make, spans)))

    for label, make in first_ways.items():
        add(f"first layer (1 -> {blocks[0][0].shape[0]}) output", label, make)
    for i, ((w, b), (z, _)) in enumerate(zip(blocks, acts)):
        pooled_input = acts[i - 1][1] if i else None
        if i:
            name = f"conv {w.shape[1]} -> {w.shape[0]} at L={pooled_input.shape[-1]}"
            add(name, "oneDNN F.conv1d", lambda lo, hi, p=pooled_input, w=w, b=b:
                lambda: nn.functional.conv1d(p[lo:hi], w, b, padding=1))
            add(name, "3 shifted GEMMs, channels-last", lambda lo, hi, p=pooled_input, w=w, b=b:
                shifted_gemm_conv(p[lo:hi], w, b)[0])
            add(name, "im2col + 1 GEMM, channels-last", lambda lo, hi, p=pooled_input, w=w, b=b:
                im2col_gemm_conv(p[lo:hi], w, b))
        add(f"max pool {z.shape[-1]} -> {z.shape[-1] // 2} (pair max)", "PairMaxPool1d",
            lambda lo, hi, z=z: (lambda zc: lambda: torch.maximum(zc[..., 0::2], zc[..., 1::2]))(z[lo:hi]))
        add(f"(not in the floor) ReLU after pool {i}", "in place",
            lambda lo, hi, h=acts[i][1]: (lambda hc: lambda: hc.relu_())(h[lo:hi]))
    last = acts[-1][1]
    add("mean + head", "mean, then class-major head",
        lambda lo, hi: (lambda hc: lambda: torch.addmm(bh[:, None], wh, hc.mean(2).T))(last[lo:hi]))
    add("mean + head", "head over the flattened positions (mean folded in)",
        lambda lo, hi: (lambda hc: lambda: torch.addmm(bh[:, None], w_flat, hc.T))(last[lo:hi].reshape(hi - lo, -1)))
    add("loss + accuracy", "class-major, Zooscope's",
        lambda lo, hi: (lambda lc, yc: lambda: cross_entropy_and_accuracy(lc.T, yc))(
            logits_t[:, lo:hi].contiguous(), y[lo:hi]))
    add("loss + accuracy", "class-major, one shared max",
        lambda lo, hi: (lambda lc, yc: lambda: shared_max_score(lc, yc))(logits_t[:, lo:hi].contiguous(), y[lo:hi]))
    for i, (w, b) in enumerate(blocks[1:], 1):  # the GEMM forms are exact: checked here, not timed
        err = shifted_gemm_conv(acts[i - 1][1][:64], w, b)[1]()
        assert err < 1e-4, f"shifted-GEMM conv {i} differs by {err}"
    return ops


def evaluator_rows(model, x, y, theta) -> tuple[int, int]:
    """(the cache-sized chunk the evaluator would try, the rows it chooses) for ``model`` on ``x``."""
    from engine.probes.core import Evaluator

    ev = Evaluator(model, (x, y))
    return ev.cache_sized_rows(theta), ev.choose_rows(theta)


def tap_conv(w, b):
    conv = nn.Conv1d(1, w.shape[0], w.shape[-1], padding=w.shape[-1] // 2)
    conv.__class__ = TapConv1d
    return lambda xc: conv._conv_forward(xc, w, b)


def timed_median(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cnn_surface_case(args, out):
    """The 41 x 41 surface of the MNIST-1D CNN, width 32, depth 3: operations and the real points."""
    x, y = common.mnist1d(args.n, torch.device("cpu"))
    model = build(MODELS["cnn"], (1, 40), 10, seed=0)
    params = {k: v.detach() for k, v in model.named_parameters()}
    layout = ParamLayout.from_module(model)
    d1, d2 = random_direction(params, seed=1), random_direction(params, seed=2)
    theta0, f1, f2 = layout.flatten(params), d1.flat(layout), d2.flat(layout)
    a, b = 0.35, -0.6
    p = layout.unflatten(theta0 + a * f1 + b * f2)
    blocks = [(p[f"layers.{i}.conv.weight"], p[f"layers.{i}.conv.bias"]) for i in range(3)]
    small, chosen = evaluator_rows(model, x, y, theta0 + a * f1 + b * f2)
    with torch.no_grad():
        qa, q2 = layout.unflatten(theta0 + a * f1), layout.unflatten(f2)
        za = nn.functional.conv1d(x, qa["layers.0.conv.weight"], qa["layers.0.conv.bias"], padding=1)
        z2 = nn.functional.conv1d(x, q2["layers.0.conv.weight"], q2["layers.0.conv.bias"], padding=1)
    taps = tap_conv(*blocks[0])
    first_ways = {
        "combine kept outputs Z_a + b Z2": lambda lo, hi: (lambda u, v: lambda: torch.add(u, v, alpha=b))(
            za[lo:hi], z2[lo:hi]),
        "recompute by taps (TapConv1d)": lambda lo, hi: (lambda xc: lambda: taps(xc))(x[lo:hi]),
        "recompute by oneDNN F.conv1d": lambda lo, hi: (lambda xc: lambda: nn.functional.conv1d(
            xc, *blocks[0], padding=1))(x[lo:hi]),
    }
    spans = {len(x): spans_of(len(x), len(x)), small: spans_of(len(x), small)}
    ops = cnn_operations(blocks, (p["head.weight"], p["head.bias"]), first_ways, x, y, spans)
    res, points = args.res, args.res**2

    def zoo():
        with torch.enable_grad():
            return loss_surface_2d(model, params, (x, y), d1, d2, resolution=res)

    li_rows = 2
    axis = torch.linspace(-1, 1, res)
    coords = torch.cartesian_prod(axis, axis)[: li_rows * res]
    refs = {
        "loss-landscapes": (lambda: loss_landscapes_plane(model, theta0, f1, f2, res, x, y), points, 1),
        "Li et al.'s loop": (lambda: li_style(model, params, d1, d2, coords, x, y), len(coords), 1),
    }
    li_style(model, params, d1, d2, coords[:2], x, y)  # first calls pay one-off costs (oneDNN kernels)
    notes = (f"N={len(x)}, surface {res}x{res}; evaluator rows: {chosen} chosen (of all {len(x)} or "
             f"{small}-row chunks)")
    profile = (lambda: profile_surface_point(model, params, d1, d2, x, y, out)) if args.profile else None
    return ops, zoo, points, refs, notes, profile


def cnn_bn_interpolation_case(args, out):
    """The 25-point interpolation between two MNIST-1D CNNs, width 64, depth 3, BatchNorm."""
    from connectivity_interpolation import ALPHAS, loader_loop

    from engine.config import ArchSpec
    from engine.data import load
    from engine.probes.connectivity import interpolate
    from engine.probes.core.cpu_kernels import _folded  # the kernels' BatchNorm fold, an internal, on purpose

    ds = load("mnist1d")
    x, y = ds.x_train, ds.y_train
    arch = ArchSpec(name="cnn1d", width=64, depth=3, options={"batchnorm": True})
    model = build(arch, ds.input_shape, ds.n_outputs, seed=0).train()
    with torch.no_grad():
        model(x[:512])  # running statistics, as the benchmark sets them
    model.eval()
    end_a = {k: v.clone() for k, v in model.state_dict().items()}
    end_b = {k: v.clone() for k, v in build(arch, ds.input_shape, ds.n_outputs, seed=1).state_dict().items()}
    alpha = 0.35
    mixed = build(arch, ds.input_shape, ds.n_outputs, seed=0).eval()
    mixed.load_state_dict({k: torch.lerp(end_a[k], end_b[k], alpha) if end_a[k].is_floating_point() else end_a[k]
                           for k in end_a})
    blocks = [_folded(layer.conv, layer.norm) for layer in mixed.layers]
    blocks = [(w.detach(), b.detach()) for w, b in blocks]
    layout = ParamLayout.from_module(mixed)
    theta = layout.flatten({k: v.detach() for k, v in mixed.named_parameters()})
    small, chosen = evaluator_rows(mixed, x, y, theta)
    with torch.no_grad():
        za = nn.functional.conv1d(x, end_a["layers.0.conv.weight"], padding=1)
        zb = nn.functional.conv1d(x, end_b["layers.0.conv.weight"], padding=1)
    taps = tap_conv(*blocks[0])
    first_ways = {
        "lerp of the ends' kept outputs (BN affine not counted)": lambda lo, hi: (
            lambda u, v: lambda: torch.lerp(u, v, alpha))(za[lo:hi], zb[lo:hi]),
        "recompute by taps, BN folded": lambda lo, hi: (lambda xc: lambda: taps(xc))(x[lo:hi]),
        "recompute by oneDNN F.conv1d, BN folded": lambda lo, hi: (lambda xc: lambda: nn.functional.conv1d(
            xc, *blocks[0], padding=1))(x[lo:hi]),
    }
    spans = {len(x): spans_of(len(x), len(x)), small: spans_of(len(x), small)}
    head = (mixed.head.weight.detach(), mixed.head.bias.detach())
    ops = cnn_operations(blocks, head, first_ways, x, y, spans)
    interpolate(model, end_a, end_b, (x[:64], y[:64]), alphas=3)  # warm-up
    interpolate(model, end_a, end_b, (x, y), alphas=3)  # the row-chunk choice, once per process and shape
    ref_model = build(arch, ds.input_shape, ds.n_outputs, seed=0)
    refs = {"DataLoader loop (batch 128)": (lambda: loader_loop(ref_model, end_a, end_b, x, y, 128), len(ALPHAS), 3)}
    notes = (f"N={len(x)}, 25 alphas; evaluator rows: {chosen} chosen (of all {len(x)} or {small}-row chunks)")
    zoo = lambda: interpolate(model, end_a, end_b, (x, y), alphas=25)  # noqa: E731
    profile = (lambda: profile_by_patching(zoo, 25, torch.get_num_threads(), out)) if args.profile else None
    return ops, zoo, 25, refs, notes, profile


def profile_surface_point(model, params, d1, d2, x, y, out, points: int = 41) -> None:
    """A plain-timer profile of Zooscope's CNN surface point, on the caller's thread: a row of ``points``
    grid points run as ``evaluate_plane``'s loop runs them (row cache, first-layer combination per chunk,
    the rest of the model, the score), each leaf module and block timed by clock reads in forward
    hooks; medians a point, to set against the operations timed alone above."""
    from engine.probes.core import Evaluator
    from engine.probes.core.plane_eval import _rest, _RowCache, first_layer_split  # evaluate_plane's loop, on purpose

    layout = ParamLayout.from_module(model)
    theta0, f1, f2 = layout.flatten(params), d1.flat(layout), d2.flat(layout)
    ev = Evaluator(model, (x, y), layout=layout)
    ev.choose_rows(theta0)
    coords = torch.cartesian_prod(torch.linspace(-1, 1, points), torch.linspace(-1, 1, points))
    checks = [tuple(coords[0].tolist()), tuple(coords[-1].tolist()), (0.7, -0.3)]  # as evaluate_plane checks
    first = first_layer_split(ev, theta0, f1, f2, checks, kept=3)  # None: recomputing measured faster than combining
    zs = None if first is None else [first.output(layout.unflatten(t)) for t in (theta0, f1, f2)]
    row = _RowCache(theta0, f1, zs)
    spent: dict[str, float] = {}

    def clocked(name, fn):
        start = time.perf_counter()
        result = fn()
        spent[name] = spent.get(name, 0.0) + time.perf_counter() - start
        return result

    starts = {}
    hooks = []
    for path, m in (ev.module if first is None else first.rest).named_modules():
        if path and (not list(m.children()) or path.count(".") == 1):
            label = f"{path} ({type(m).__name__})"
            hooks.append(m.register_forward_pre_hook(lambda _m, _a, label=label: starts.__setitem__(
                label, time.perf_counter())))
            hooks.append(m.register_forward_hook(lambda _m, _a, _o, label=label: spent.__setitem__(
                label, spent.get(label, 0.0) + time.perf_counter() - starts[label])))
    score = ev.score
    ev.score = lambda o, t: clocked("score: loss + accuracy", lambda: score(o, t))
    per_point: dict[str, list] = {}

    def one_point(a, b):
        theta_a, z_a = clocked("row cache (theta0 + a d1, Z0 + a Z1; once a row)", lambda: row.at(a))
        theta = clocked("theta_a + b d2", lambda: torch.add(theta_a, f2, alpha=b))
        if first is None:
            return clocked("whole rest (unflatten, chunks, model, score)", lambda: ev.point(theta))
        return clocked("whole rest (unflatten, chunks, model, score)", lambda: _rest(
            ev, first, theta, lambda lo, hi: clocked("first layer: Z_a + b Z2", lambda: torch.add(
                z_a[lo:hi], zs[2][lo:hi], alpha=b))))

    try:
        for a, b in coords[: 2 * points].tolist():
            spent.clear()
            start = time.perf_counter()
            one_point(a, b)
            spent["whole point"] = time.perf_counter() - start
            for k, v in spent.items():
                per_point.setdefault(k, []).append(v)
    finally:
        for h in hooks:
            h.remove()
        ev.score = score
    how = "recomputed (TapConv1d)" if first is None else "combined from kept outputs"
    out(f"profile of Zooscope's point on the caller's thread ({torch.get_num_threads()} thread(s), rows per "
        f"pass {ev.rows}, first layer {how}; median of the second grid row's {points} points; a block's time "
        "includes its conv and pool, the ReLU is the rest):")
    for k, v in per_point.items():
        out(f"  {k:64s} {statistics.median(v[points:]) * 1e6:8.1f} us")


def profile_by_patching(run, points: int, threads: int, out) -> None:
    """A plain-timer profile of a real call ``run()`` evaluating ``points`` points: the CPU kernels'
    methods, the convolutions, the BatchNorm fold, ``torch.lerp`` and the score are wrapped in clock reads
    at class level (no module hooks, which would turn the fold off), time summed over the threads running
    points. Printed per point and divided by the number of threads that ran them (workers run side by
    side), to set against the per-call times of the operations alone above."""
    from engine.probes.core import Evaluator, cpu_kernels  # cpu_kernels._folded patched below: an internal, on purpose

    spent: dict[str, float] = {}
    lock, seen = threading.Lock(), set()

    def clocked(name, fn):
        def wrapper(*a, **k):
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                with lock:
                    spent[name] = spent.get(name, 0.0) + time.perf_counter() - start
                    seen.add(threading.get_ident())
        return wrapper

    patches = [(cpu_kernels.PoolFirstConvBlock, "forward", "conv block (all of it)"),
               (nn.Conv1d, "_conv_forward", "  conv (oneDNN)"), (TapConv1d, "_conv_forward", "  first conv (taps)"),
               (cpu_kernels, "_folded", "  BatchNorm fold"), (PairMaxPool1d, "forward", "  max pool (pair max)"),
               (cpu_kernels.NarrowLinear, "forward", "head (NarrowLinear)"), (Evaluator, "score", "score"),
               (torch, "lerp", "torch.lerp (first layer along the line; buffers)")]
    saved = [(owner, attr, getattr(owner, attr)) for owner, attr, _ in patches]
    for owner, attr, name in patches:
        setattr(owner, attr, clocked(name, getattr(owner, attr)))
    try:
        run()  # warm, with the patches in
        spent.clear(), seen.clear()
        start = time.perf_counter()
        run()
        wall = time.perf_counter() - start
    finally:
        for owner, attr, fn in saved:
            setattr(owner, attr, fn)
    out(f"profile of Zooscope's real call (plain timers, {points} points, torch {threads} thread(s), the points ran "
        f"on {len(seen)} thread(s); thread time a point / {len(seen)}): wall {wall / points * 1e3:.2f} ms a point")
    for name, total in spent.items():
        out(f"  {name:64s} {total / points / len(seen) * 1e6:8.1f} us")


TARGETS = {"cnn": {"loss-landscapes": 2.0, "Li et al.'s loop": 10.0}, "cnn64bn": {"DataLoader loop (batch 128)": 3.0}}
CASES = {"cnn": cnn_surface_case, "cnn64bn": cnn_bn_interpolation_case}


def floor_of(ops, threads: int, reps: int, out) -> tuple[float, float]:
    """Times every way of every operation (printing each) and sums the fastest of each into (best, median)."""
    floor_best = floor_med = 0.0
    for name, ways in ops.items():
        rows = []
        for label, fn in ways:
            best, med = timed_alone(fn, reps)
            if threads > 1:
                side = timed_side_by_side(fn, max(1, reps // 4), threads)
                label, best, med = (label + ", side by side", *side) if side[1] < med else (label, best, med)
            rows.append((med, best, label))
            out(f"  {name:48s} {label:44s} best {best * 1e6:7.1f} us   median {med * 1e6:7.1f} us")
        med, best, label = min(rows)
        if not name.startswith("(not"):
            out(f"  {'':48s} -> floor part: {label}")
            floor_best, floor_med = floor_best + best, floor_med + med
    return floor_best, floor_med


def run_cnn_case(case: str, args, out):
    ops, zoo, points, refs, notes, profile = CASES[case](args, out)
    t = torch.get_num_threads()
    out(f"\n# {case}, {t} thread(s), torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M')}, load average "
        f"{common.load_average()}; {notes}; best / median of {args.reps} calls (2 threads: the better of one call "
        "on two OpenMP threads and two one-thread threads side by side, per call)")
    with torch.no_grad():
        floor_best, floor_med = floor_of(ops, t, args.reps, out)
    if profile is not None:
        profile()
    zoo()  # warm
    t_zoo = timed_median(zoo, 3) / points
    out(f"floor (sum of the fastest way of each): best {floor_best * 1e3:.2f} ms, median {floor_med * 1e3:.2f} ms "
        "a point")
    out(f"Zooscope: {t_zoo * 1e3:.2f} ms a point (median of 3 runs over {points} points) = {t_zoo / floor_med:.2f}x "
        f"the median floor ({(t_zoo - floor_med) * 1e3:.2f} ms above it)")
    for label, (fn, n_points, repeats) in refs.items():
        t_ref = timed_median(fn, repeats) / n_points
        cap, target = t_ref / floor_med, TARGETS[case][label]
        out(f"{label}: {t_ref * 1e3:.2f} ms a point (median of {repeats} over {n_points} points); Zooscope is "
            f"{t_ref / t_zoo:.2f}x faster; the floor caps any method at {cap:.2f}x (median) / "
            f"{t_ref / floor_best:.2f}x (best); target >= {target:g}x: "
            + ("bounded (measured: the cap is below the target)" if cap < target else
               "NOT met, NOT bounded (the cap is above the target)"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=["mlp100", *CASES], default="mlp100")
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--res", type=int, default=41)
    parser.add_argument("--reps", type=int, default=300)
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--tag", default="", help="suffix of the results file name")
    parser.add_argument("--profile", action="store_true", help="also a plain-timer profile of a real point")
    args = parser.parse_args()
    if args.case != "mlp100":
        what = f"{args.res}x{args.res}" if args.case == "cnn" else "interpolation"
        out = common.Report(f"surface_bound_{args.case}_{what}" + "".join(f"_t{t}" for t in args.threads)
                            + (f"_{args.tag}" if args.tag else ""))
        torch.set_grad_enabled(False)
        for t in args.threads:
            torch.set_num_threads(t)
            run_cnn_case(args.case, args, out)
        print(f"saved {out.save()}")
        return
    dev = torch.device("cpu")
    out = common.Report(f"surface_bound_{args.res}x{args.res}" + "".join(f"_t{t}" for t in args.threads)
                        + (f"_{args.tag}" if args.tag else ""))
    x, y = common.mnist1d(args.n, dev)
    model = build(MODELS["mlp100"], (1, 40), 10, seed=0)
    params = {k: v.detach() for k, v in model.named_parameters()}
    layout = ParamLayout.from_module(model)
    d1, d2 = random_direction(params, seed=1), random_direction(params, seed=2)
    points = args.res**2
    torch.set_grad_enabled(False)
    for t in args.threads:
        torch.set_num_threads(t)
        out(f"\n# mlp100, N={args.n}, {t} thread(s), torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M')}, "
            f"load average {common.load_average()}; best / median of {args.reps} calls (2 threads: the better of "
            "one call on two OpenMP threads and two one-thread threads side by side, per call)")
        floor_best = floor_med = 0.0
        for name, ways in operations(model, params, d1, d2, layout, x, y).items():
            rows = []
            for label, fn in ways:
                best, med = timed_alone(fn, args.reps)
                if t > 1:
                    side = timed_side_by_side(fn, args.reps // 4, t)
                    label, best, med = (label + ", side by side", *side) if side[1] < med else (label, best, med)
                rows.append((med, best, label))
                out(f"  {name:48s} {label:44s} best {best * 1e6:7.1f} us   median {med * 1e6:7.1f} us")
            med, best, label = min(rows)
            if not name.startswith("(not"):
                floor_best, floor_med = floor_best + best, floor_med + med
        with torch.enable_grad():
            surface_times = []
            for _ in range(3):
                start = time.perf_counter()
                loss_surface_2d(model, params, (x, y), d1, d2, resolution=args.res)
                surface_times.append(time.perf_counter() - start)
            theta0, f1, f2 = layout.flatten(params), d1.flat(layout), d2.flat(layout)
            start = time.perf_counter()
            loss_landscapes_plane(model, theta0, f1, f2, args.res, x, y)
            t_ll = time.perf_counter() - start
        t_zoo = statistics.median(surface_times)
        out(f"floor (sum of the fastest way of each): best {floor_best * 1e6:.0f} us, median {floor_med * 1e6:.0f} us "
            "a point")
        out(f"Zooscope surface: {t_zoo:.3f} s (median of 3) = {t_zoo / points * 1e6:.0f} us a point "
            f"({t_zoo / points / floor_med:.2f}x the median floor)")
        out(f"loss-landscapes:  {t_ll:.3f} s = {t_ll / points * 1e6:.0f} us a point; Zooscope is {t_ll / t_zoo:.2f}x "
            f"faster; the floor caps any method at {t_ll / points / floor_med:.2f}x (median) / "
            f"{t_ll / points / floor_best:.2f}x (best)")
    print(f"saved {out.save()}")


if __name__ == "__main__":
    main()
