"""Hessian-vector products accumulated over data chunks: the same operator, one chunk's memory.

Why the float32 tolerance is what it is. The loss is a mean, so ``H v = sum_c (n_c/N) H_c v``
exactly; chunking changes only the order in which float32 arithmetic adds the same ``N``
per-sample contributions: inside each chunk (the batch reductions of the weight-gradient
products run over ``n_c`` rows instead of ``N``) and across chunks (``C`` weighted partial
results added one after another). With round-to-nearest each addition contributes a relative
error of at most ``eps``; for independent rounding errors the accumulated error of ``C``
additions grows like ``sqrt(C) eps`` times the size of the summands (Higham, "Accuracy and
Stability of Numerical Algorithms", 2002, sec. 4.2, the probabilistic bound). So against the
exact (float64) product

    ||chunked - exact|| <= a * sqrt(C) * eps32 * sum_c (n_c/N) ||H_c v||  +  b * ||whole - exact||,

the first term for the accumulation over chunks, the second for the in-chunk reductions,
which are of the kind (and size) of the whole-batch computation's own rounding error; the
test uses a = b = 4 as the safety factor. In float64 the two agree to ~1e-13.
"""

import copy
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from engine.probes.core import Evaluator, ParamLayout, evaluate_plane, evaluate_points
from engine.probes.landscape import hessian_operator, hessian_top_eigs, hvp_rows
from engine.probes.landscape.curvature import HessianOperator

EPS32 = torch.finfo(torch.float32).eps
EPS64 = torch.finfo(torch.float64).eps
ROOT = Path(__file__).resolve().parents[3]


def _problem(n=96, bn=False, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    layers = [nn.Linear(5, 8)] + ([nn.BatchNorm1d(8)] if bn else []) + [nn.Tanh(), nn.Linear(8, 3)]
    model = nn.Sequential(*layers).to(dtype)
    if bn:  # running statistics that are not the defaults
        model.train()
        with torch.no_grad():
            model(torch.randn(256, 5, dtype=dtype))
        model.eval()
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(n, 5, generator=g).to(dtype)
    y = torch.randint(0, 3, (n,), generator=g)
    return model, model.state_dict(), (x, y)


def _dense_hessian(model, state, data):
    model = copy.deepcopy(model).double().eval()
    layout = ParamLayout.from_module(model)
    params = {k: v.double() for k, v in state.items() if k in dict(model.named_parameters())}
    buffers = {k: (v.double() if v.is_floating_point() else v) for k, v in state.items() if k not in params}
    x, y = data

    def loss(t):
        return F.cross_entropy(functional_call(model, {**layout.unflatten(t), **buffers}, (x.double(),)), y)

    return torch.autograd.functional.hessian(loss, layout.flatten(params))


@pytest.mark.parametrize("mode", ["vjp", "jvp"])
@pytest.mark.parametrize("bn", [False, True])
def test_chunked_hvp_equals_whole_batch_in_float64(mode, bn):
    model, state, data = _problem(bn=bn, dtype=torch.float64)
    whole = hessian_operator(model, state, data, mode=mode)
    chunked = hessian_operator(model, state, data, mode=mode, rows=10)  # 10 chunks, the last of 6 rows
    assert whole.rows == 96 and chunked.rows == 10 and len(chunked.chunks) == 10
    v = torch.randn(3, whole.n_params, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x, y = data
    n = len(x)
    fan_in = max(w[0].numel() for k, w in state.items() if k.endswith("weight") and w.ndim > 1)
    # sum_i (1/N) ||H_i v||, each sample's product on its own: the size of the summands
    sizes = sum(hessian_operator(model, state, (x[i:i + 1], y[i:i + 1]), mode=mode)(v).norm(dim=1) / n
                for i in range(n))
    bound = 2 * (n + fan_in) * EPS64 * sizes  # (3,), one per vector
    assert torch.all((chunked(v) - whole(v)).norm(dim=1) <= bound)
    assert (chunked(v[0]) - whole(v[0])).norm() <= bound[0]
    assert chunked.n_products == whole.n_products == 4


@pytest.mark.parametrize("rows", [1, 7, 24, 48])
def test_chunked_hvp_in_float32_within_the_rounding_bound(rows):
    model, state, data = _problem()
    h = _dense_hessian(model, state, data)
    v = torch.randn(hessian_operator(model, state, data).n_params, generator=torch.Generator().manual_seed(1))
    exact = h @ v.double()
    whole = hessian_operator(model, state, data)(v).double()
    op = hessian_operator(model, state, data, rows=rows)
    chunked = op(v).double()
    # size of the summands: sum_c (n_c/N) ||H_c v||, each chunk's product on its own
    parts = sum((hi - lo) / op.n_samples * float(hessian_operator(model, state, (data[0][lo:hi], data[1][lo:hi]))(v)
                                                  .double().norm()) for lo, hi in op.chunks)
    bound = 4 * np.sqrt(len(op.chunks)) * EPS32 * parts + 4 * float((whole - exact).norm())
    assert float((chunked - exact).norm()) <= bound
    assert float((chunked - exact).norm()) <= 1e-5 * float(exact.norm())  # and small in absolute terms


@pytest.mark.parametrize("rows", [None, 5, 16, 33, 96])
def test_top_eigenvalue_matches_dense_hessian_with_any_chunk(rows):
    model, state, data = _problem()
    top = float(torch.linalg.eigvalsh(_dense_hessian(model, state, data))[-1])
    eigs = hessian_top_eigs(model, state, data, k=1, tol=1e-5, rows=rows)
    assert eigs.converged
    assert eigs.eigenvalues[0] == pytest.approx(top, rel=1e-4)


def test_batch_statistics_refuse_chunks():
    model, state, data = _problem(bn=True)
    with pytest.raises(ValueError, match=r"rows=8 would split the 96 samples .* bn='running'"):
        hessian_operator(model, state, data, bn="batch", rows=8)
    assert hessian_operator(model, state, data, bn="batch").rows == 96  # unset: one chunk
    with pytest.raises(ValueError, match="rows must be a positive integer; got 0"):
        hessian_operator(model, state, data, rows=0)


def test_default_rows_follow_the_memory_budget():
    model, state, data = _problem(n=512)
    ev = Evaluator(model, data)
    theta = ev.layout.flatten({k: state[k] for k in ev.layout.names})
    per_row = 6 * ev.activation_floats(theta) / 512
    assert hvp_rows(ev, theta, memory=int(100 * per_row)) == 100
    assert hvp_rows(ev, theta, memory=1) == 1
    assert hvp_rows(ev, theta, memory=10**12) == 512


def test_chunked_surface_points_equal_unchunked():
    model, state, data = _problem(n=200, bn=True)
    layout = ParamLayout.from_module(model)
    params = {k: v for k, v in state.items() if k in layout.names}
    buffers = {k: v for k, v in state.items() if k not in layout.names}
    theta0 = layout.flatten(params)
    gen = torch.Generator().manual_seed(3)
    d1, d2 = torch.randn(layout.numel, generator=gen), torch.randn(layout.numel, generator=gen)
    coords = torch.cartesian_prod(torch.linspace(-1, 1, 4), torch.linspace(-1, 1, 3))
    thetas = theta0 + coords[:, :1] * d1 + coords[:, 1:] * d2
    kw = dict(buffers=buffers, strategy="loop")
    whole = evaluate_points(model, thetas, data, rows=200, **kw)
    for rows in (1, 7, 64):
        for got in (evaluate_points(model, thetas, data, rows=rows, **kw),
                    evaluate_plane(model, theta0, d1, d2, coords, data, rows=rows, **kw)):
            torch.testing.assert_close(got[0], whole[0], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(got[1], whole[1], rtol=0, atol=1e-9)  # accuracy: counts, exact


def test_point_progress_is_reported_for_every_point():
    model, state, data = _problem(n=50)
    layout = ParamLayout.from_module(model)
    theta = layout.flatten({k: state[k] for k in layout.names}).repeat(6, 1)
    seen = []
    evaluate_points(model, theta, data, strategy="loop", progress=lambda done, total: seen.append((done, total)))
    assert seen == [(i, 6) for i in range(1, 7)]


def test_progress_messages_and_eta_per_chunk():
    model, state, data = _problem()
    messages = []
    eigs = hessian_top_eigs(model, state, data, k=1, tol=1e-3, rows=24, max_iter=30,
                            progress=lambda f, m: messages.append((f, m)))
    assert len(messages) == 4 * eigs.n_products  # one report per chunk of every product
    fractions = [f for f, _ in messages]
    assert fractions == sorted(fractions) and 0 < fractions[0] and fractions[-1] <= 1
    last = messages[-1][1]
    assert "top eigenvalues:" in last and "products" in last and "s left" in last and "λ ≈" in last
    assert any("about" in m and "(≤" in m for _, m in messages)  # extrapolated from the residual decay


class _Stop(Exception):
    pass


def test_an_exception_from_progress_stops_within_one_chunk():
    model, state, data = _problem()
    calls = []

    def stop_at_third(op: HessianOperator) -> None:
        calls.append(op.work)
        if len(calls) == 3:
            raise _Stop

    op = hessian_operator(model, state, data, rows=12, callback=stop_at_third)  # 8 chunks a product
    with pytest.raises(_Stop):
        op(torch.ones(op.n_params))
    assert len(calls) == 3 and calls[-1] == pytest.approx(3 / 8)
    assert op.n_products == 0  # the product was never completed


def test_hvp_peak_memory_scales_with_the_chunk_not_the_data():
    """Peak RSS of one product, each in a fresh process, for chunks of 32 rows, a quarter of the data
    and the whole batch (the kernel's peak is reset before it and read as the rise over the RSS then):
    a wide layer whose activations, not its parameters, fill the memory. A quarter of the data per
    chunk needs well under half the whole batch's memory above the fixed cost (32-row chunks)."""
    script = textwrap.dedent("""
        import sys, torch
        from torch import nn
        from engine.probes.landscape import hessian_operator

        def status(field):  # KiB, from the kernel's accounting of this process
            for line in open("/proc/self/status"):
                if line.startswith(field + ":"):
                    return int(line.split()[1])

        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(16, 4096), nn.Tanh(), nn.Linear(4096, 10))
        x, y = torch.randn(2048, 16), torch.randint(0, 10, (2048,))
        params = dict(model.named_parameters())
        warm = hessian_operator(model, params, (x[:32], y[:32]))  # one-time costs (allocator, kernels)
        warm(torch.ones(warm.n_params))
        rows = None if sys.argv[1] == "all" else int(sys.argv[1])
        v = torch.ones(sum(p.numel() for p in params.values()))
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset the peak (VmHWM) to the current RSS
        start = status("VmRSS")
        op = hessian_operator(model, params, (x, y), rows=rows)  # (one chunk: its pullback is built here)
        op(v)
        print(status("VmHWM") - start)  # the operator's and its product's rise
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    tiny, quarter, whole = (  # KiB of rise, each in a fresh process (freed memory stays in the process)
        int(subprocess.run([sys.executable, "-c", script, rows], capture_output=True, text=True, check=True,
                           env=env).stdout.split()[-1])
        for rows in ("32", "512", "all"))
    assert whole - tiny > 100 * 1024  # the whole batch's graph: a few hundred MiB above the fixed cost
    assert quarter - tiny < 0.5 * (whole - tiny)  # the 32-row chunk's rise is the fixed cost (gradients)
