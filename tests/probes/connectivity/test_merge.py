"""Merging: averages, the exact diagonal Fisher against a slow loop, Fisher merging, BN reset,
and merging of permuted copies recovering the original."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from engine.config import ArchSpec
from engine.nets import apply_permutation, build, permutation_spec, random_permutation
from engine.probes.connectivity import average_states, diagonal_fisher, fisher_merge, merge_models
from engine.probes.core import bn_reset_batches, reset_bn_stats


def _mlp(seed=0, bn=False, width=6):
    m = build(ArchSpec(name="mlp", width=width, depth=2, options={"batchnorm": bn}), (1, 5), 3, seed=seed)
    if bn:
        m.train()
        with torch.no_grad():
            m(torch.randn(32, 1, 5, generator=torch.Generator().manual_seed(seed)))
    return m.eval()


def _data(n=40, regression=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 5, generator=g)
    y = torch.randn(n, 3, generator=g) if regression else torch.randint(0, 3, (n,), generator=g)
    return x, y


def test_average_states_weights_and_errors():
    a, b = _mlp(0).state_dict(), _mlp(1).state_dict()
    avg = average_states([a, b], [3, 1])
    torch.testing.assert_close(avg["head.bias"], 0.75 * a["head.bias"] + 0.25 * b["head.bias"])
    same = average_states([a, a, a])
    for k in a:
        torch.testing.assert_close(same[k], a[k])
    with pytest.raises(ValueError, match="non-negative numbers with a positive sum"):
        average_states([a, b], [1, -1])
    with pytest.raises(ValueError, match="expected at least one state"):
        average_states([])


def _slow_fisher(model, state, x, regression):
    """Per sample, per class: autograd of log p(c|x) (or of each output), weighted by p(c|x)."""
    params = {k: v.clone().requires_grad_(True) for k, v in state.items() if k in dict(model.named_parameters())}
    buffers = {k: v for k, v in state.items() if k not in params}
    total = {k: torch.zeros_like(v) for k, v in params.items()}
    for xi in x:
        out = functional_call(model, {**params, **buffers}, (xi[None],))[0]
        targets = out if regression else F.log_softmax(out, -1)
        weights = torch.ones(3) if regression else targets.exp().detach()
        for c in range(3):
            grads = torch.autograd.grad(targets[c], list(params.values()), retain_graph=True)
            for (k, _), g in zip(params.items(), grads):
                total[k] += weights[c] * g**2
    return {k: v / len(x) for k, v in total.items()}


@pytest.mark.parametrize("regression", [False, True])
def test_diagonal_fisher_matches_a_slow_loop(regression):
    model = _mlp(0, bn=True)
    x, y = _data(12, regression)
    fast = diagonal_fisher(model, model.state_dict(), (x, y), n_samples=None, batch_size=5)
    slow = _slow_fisher(model, model.state_dict(), x, regression)
    for k in slow:
        torch.testing.assert_close(fast[k], slow[k], rtol=1e-4, atol=1e-7)
    assert all((v >= 0).all() for v in fast.values())


def test_fisher_merge_limits():
    a, b = _mlp(0).state_dict(), _mlp(1).state_dict()
    ones = {k: torch.ones_like(v) for k, v in a.items()}
    equal = fisher_merge([a, b], [ones, ones], normalize=False)
    plain = average_states([a, b])
    for k in a:
        torch.testing.assert_close(equal[k], plain[k])
    tiny = {k: torch.full_like(v, 1e-12) for k, v in a.items()}
    dominated = fisher_merge([a, b], [ones, tiny], normalize=False, floor=0.0)
    for k in a:
        torch.testing.assert_close(dominated[k], a[k], rtol=1e-6, atol=1e-9)
    floored = fisher_merge([a, b], [tiny, {k: 1e-3 * t for k, t in tiny.items()}], normalize=False, floor=1e-6)
    torch.testing.assert_close(floored["head.weight"], plain["head.weight"])  # both below the floor
    scaled = fisher_merge([a, b], [ones, {k: 1e6 * v for k, v in ones.items()}], normalize=True)
    torch.testing.assert_close(scaled["head.bias"], plain["head.bias"])  # normalisation removes the scale
    with pytest.raises(ValueError, match="one Fisher per state"):
        fisher_merge([a, b], [ones])


@pytest.mark.parametrize("method", ["average", "fisher"])
def test_merging_a_permuted_copy_recovers_the_model(method):
    model = _mlp(0, bn=True)
    spec = permutation_spec(model)
    a = model.state_dict()
    b = apply_permutation(spec, random_permutation(spec, a, seed=2), a)
    data = _data(64)
    aligned = merge_models(model, [a, b], data, method=method, align="weight", bn="average",
                           fisher_samples=16)
    for k in a:
        torch.testing.assert_close(aligned.state[k], a[k], rtol=1e-5, atol=1e-6)
    assert aligned.loss == pytest.approx(aligned.member_loss[0], rel=1e-5)
    naive = merge_models(model, [a, b], data, method=method, align="none", bn="average", fisher_samples=16)
    assert not torch.allclose(naive.state["head.weight"], a["head.weight"])
    assert naive.split == "given" and aligned.align == "weight" and naive.align == "none"


def test_merge_with_bn_reset_recomputes_statistics():
    model, other = _mlp(0, bn=True), _mlp(1, bn=True)
    states = [model.state_dict(), other.state_dict()]
    data = _data(64)
    result = merge_models(model, states, data, align="weight", bn="reset", bn_batches=2, bn_batch_size=16, seed=1)
    params = {k: v for k, v in result.state.items() if k in dict(model.named_parameters())}
    expected = reset_bn_stats(model, params, bn_reset_batches(data[0], n_batches=2, batch_size=16, seed=1))
    for k, v in expected.items():
        torch.testing.assert_close(result.state[k], v)
    assert set(result.state) == set(model.state_dict())
    assert result.member_error.shape == (2,) and np.isfinite(result.loss)


def test_merge_errors():
    model = _mlp(0)
    a = model.state_dict()
    with pytest.raises(ValueError, match="at least two states"):
        merge_models(model, [a], _data())
    with pytest.raises(ValueError, match="method must be 'average' or 'fisher'"):
        merge_models(model, [a, a], _data(), method="ties")
    with pytest.raises(ValueError, match="reference must index states"):
        merge_models(model, [a, a], _data(), reference=2)
