"""Curvature probes against a dense Hessian on tiny models."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from engine.probes.core import ParamLayout, lanczos, ritz
from engine.probes.landscape import (
    hessian_operator,
    hessian_spectral_density,
    hessian_top_eigs,
    hessian_trace,
    sharpness_over_training,
)


def _problem(seed=0, n=64, bn=False):
    torch.manual_seed(seed)
    layers = [nn.Linear(5, 6)] + ([nn.BatchNorm1d(6)] if bn else []) + [nn.Tanh(), nn.Linear(6, 3)]
    model = nn.Sequential(*layers)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(n, 5, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    return model, dict(model.named_parameters()), (x, y)


def _dense_hessian(model, params, data):
    layout = ParamLayout.from_module(model)
    theta = layout.flatten(params).double()
    x, y = data
    model = copy.deepcopy(model).double().eval()
    buffers = {k: v.double() for k, v in model.named_buffers()}

    def loss(t):
        return F.cross_entropy(functional_call(model, {**layout.unflatten(t), **buffers}, (x.double(),)), y)

    return torch.autograd.functional.hessian(loss, theta)


@pytest.fixture(scope="module")
def tiny():
    model, params, data = _problem()
    h = _dense_hessian(model, params, data)
    return model, params, data, h, torch.linalg.eigvalsh(h)


def test_hvp_matches_dense_product(tiny):
    model, params, data, h, _ = tiny
    op = hessian_operator(model, params, data)
    v = torch.randn(3, op.n_params, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(op(v[0]).double(), h @ v[0].double(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(op(v).double(), v.double() @ h, rtol=1e-4, atol=1e-5)  # batched
    assert op.n_products == 4


def test_forward_over_reverse_products_equal_reverse_over_reverse(tiny):
    model, params, data, h, _ = tiny
    v = torch.randn(2, h.shape[0], generator=torch.Generator().manual_seed(1))
    fwd = hessian_operator(model, params, data, mode="jvp")
    rev = hessian_operator(model, params, data, mode="vjp")
    torch.testing.assert_close(fwd(v), rev(v), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="mode must be 'vjp' or 'jvp'; got 'dense'"):
        hessian_operator(model, params, data, mode="dense")


def test_top_eigenvalues_match_dense(tiny):
    model, params, data, h, evals = tiny
    res = hessian_top_eigs(model, params, data, k=3, tol=1e-5)
    np.testing.assert_allclose(res.eigenvalues, evals.flip(0)[:3].numpy(), rtol=1e-3)
    assert res.converged and res.n_products <= h.shape[0]
    x = torch.from_numpy(res.eigenvectors[0]).double()
    assert x.norm().item() == pytest.approx(1.0, rel=1e-4)
    torch.testing.assert_close(h @ x, res.eigenvalues[0] * x, rtol=0, atol=1e-3 * abs(res.eigenvalues[0]))


def test_bottom_eigenvalue_and_determinism(tiny):
    model, params, data, _, evals = tiny
    res = hessian_top_eigs(model, params, data, which="SA", tol=1e-5)
    assert res.eigenvalues[0] == pytest.approx(evals[0].item(), rel=1e-3, abs=1e-6)
    again = hessian_top_eigs(model, params, data, which="SA", tol=1e-5)
    np.testing.assert_array_equal(res.eigenvalues, again.eigenvalues)


def test_bottom_eigenvalue_at_a_null_direction_converges():
    # Softmax regression: shifting every class's weights and bias alike changes no loss, so
    # the Hessian's smallest eigenvalue is exactly 0 (a 6-dimensional null space). A residual
    # relative to |lambda| = 0 is unreachable; the rule's floor (1e-3 * lambda_max) is not,
    # and Lanczos stops on the same rule it reports.
    _, _, data = _problem()  # 5 features, 3 classes
    model = nn.Linear(5, 3)
    params = dict(model.named_parameters())
    evals = torch.linalg.eigvalsh(_dense_hessian(model, params, data))
    lam_max = evals[-1].item()
    assert abs(evals[0].item()) < 1e-12 * lam_max
    res = hessian_top_eigs(model, params, data, which="SA", tol=1e-3)
    assert res.converged and res.n_products < len(evals)
    assert res.residuals[0] <= 1e-3 * 1e-3 * lam_max
    # |ritz value - nearest eigenvalue| <= residual; float32 products add ~1e-7 * lam_max
    assert abs(res.eigenvalues[0] - evals[0].item()) <= res.residuals[0] + 1e-6 * lam_max
    short = hessian_top_eigs(model, params, data, which="SA", tol=1e-3, max_iter=2)
    assert not short.converged and short.n_products == 2


def test_trace_within_error_bars(tiny):
    model, params, data, h, _ = tiny
    est = hessian_trace(model, params, data, n_probes=300, seed=0)
    exact = torch.trace(h).item()
    assert abs(est.trace - exact) <= 3 * est.stderr
    assert est.stderr > 0 and est.samples.shape == (300,)
    same = hessian_trace(model, params, data, n_probes=300, seed=0)
    assert same.trace == est.trace
    # the CPU default is one product at a time; batches draw the same probes and give the same
    # quadratic forms (each v^T H v within float32 rounding of the tiny model's: 1e-5 of its size)
    batched = hessian_trace(model, params, data, n_probes=300, seed=0, batch=7)
    np.testing.assert_allclose(batched.samples, est.samples, rtol=0, atol=1e-5 * np.abs(est.samples).max())


def test_hutch_plus_plus_is_within_error_bars_and_tighter(tiny):
    model, params, data, h, _ = tiny
    exact = torch.trace(h).item()
    plain = hessian_trace(model, params, data, n_probes=60, seed=0)
    hpp = hessian_trace(model, params, data, n_probes=60, seed=0, method="hutch++")
    assert hpp.method == "hutch++" and hpp.n_probes == 60
    assert abs(hpp.trace - exact) <= 3 * hpp.stderr + 1e-6 * abs(exact)
    assert hpp.stderr < plain.stderr
    with pytest.raises(ValueError, match="method must be 'hutchinson' or 'hutch\\+\\+'; got 'exact'"):
        hessian_trace(model, params, data, method="exact")


def test_spectral_density_matches_dense(tiny):
    model, params, data, h, evals = tiny
    dens = hessian_spectral_density(model, params, data, n_iter=h.shape[0], n_runs=4, seed=0)
    lo, hi = dens.extremes
    assert hi == pytest.approx(evals[-1].item(), rel=1e-3)
    assert lo == pytest.approx(evals[0].item(), rel=1e-3, abs=1e-4 * abs(evals[-1].item()))
    np.testing.assert_allclose(dens.weights.sum(1), 1.0, rtol=1e-5)
    area = np.trapezoid(dens.density, dens.grid)
    assert area == pytest.approx(1.0, rel=1e-2)
    # With a full Krylov space the quadrature is exact for v^T H v: the SLQ trace is Hutchinson's.
    assert abs(dens.trace - torch.trace(h).item()) < 0.5 * abs(torch.trace(h).item()) + 1e-3
    mean = np.trapezoid(dens.grid * dens.density, dens.grid)
    assert mean == pytest.approx(dens.trace / dens.n_params, rel=1e-2, abs=1e-4)


def test_lanczos_on_known_matrix_finds_extremes_quickly():
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(200, 200, generator=gen, dtype=torch.float64))
    spectrum = torch.cat([torch.tensor([50.0, 20.0, -5.0]), torch.rand(197, generator=gen) * 2 - 1]).double()
    a = q @ torch.diag(spectrum) @ q.T
    res = lanczos(lambda v: v @ a, torch.randn(1, 200, generator=gen, dtype=torch.float64), 200, tol=1e-8, k=1,
                  which="both")
    values, _, _ = ritz(res.alpha[0], res.beta[0])
    assert values[-1] == pytest.approx(50.0, rel=1e-8)
    assert values[0] == pytest.approx(-5.0, rel=1e-8)
    assert res.n_steps < 60  # far fewer products than the dimension


def test_sharpness_over_training_warm_start_agrees_with_cold():
    model, params, data = _problem()
    gen = torch.Generator().manual_seed(5)
    ckpts = [{k: v.detach() + s * 0.1 * torch.randn(v.shape, generator=gen) for k, v in params.items()}
             for s in range(2)]
    calls = []
    sharp = sharpness_over_training(model, ckpts, data, steps=[0, 10], lr=[0.05, 0.1], k=2, tol=1e-5,
                                    progress=lambda f, msg: calls.append(f))
    assert calls[-1] == 1.0 and 0.5 in calls  # after each checkpoint, and within each as products go
    assert calls == sorted(calls) and len(calls) > 2
    assert sharp.eigenvalues.shape == (2, 2)
    np.testing.assert_allclose(sharp.threshold, [40.0, 20.0])
    np.testing.assert_array_equal(sharp.steps, [0, 10])
    for i, ckpt in enumerate(ckpts):
        cold = hessian_top_eigs(model, ckpt, data, k=2, tol=1e-5)
        np.testing.assert_allclose(sharp.eigenvalues[i], cold.eigenvalues, rtol=1e-3)


def test_batchnorm_hessian_uses_running_stats_and_records_it():
    model, params, data = _problem(bn=True)
    model[1].running_mean.uniform_(-1, 1)
    model[1].running_var.uniform_(0.5, 2)
    h = _dense_hessian(model, params, data)
    res = hessian_top_eigs(model, params, data, tol=1e-5)
    assert res.bn == "running"
    assert res.eigenvalues[0] == pytest.approx(torch.linalg.eigvalsh(h)[-1].item(), rel=1e-3)


def test_errors_are_actionable(tiny):
    model, params, data, _, _ = tiny
    with pytest.raises(ValueError, match="k must be at least 1; got 0"):
        hessian_top_eigs(model, params, data, k=0)
    with pytest.raises(ValueError, match="which must be 'LA' or 'SA'; got 'LM'"):
        hessian_top_eigs(model, params, data, which="LM")
    with pytest.raises(ValueError, match="n_probes must be at least 2"):
        hessian_trace(model, params, data, n_probes=1)
    with pytest.raises(ValueError, match="at least one checkpoint"):
        sharpness_over_training(model, [], data)
    with pytest.raises(ValueError, match=r"got 1 steps for 2 checkpoints; give one step per checkpoint"):
        sharpness_over_training(model, [params, params], data, steps=[0])
