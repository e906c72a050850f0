"""Permutation alignment: planted permutations recovered exactly, functions preserved for every
architecture, agreement with a slow reference, the self-check, STE, and singular vectors."""

import itertools
import warnings
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from engine.config import ArchSpec
from engine.nets import PermutationSpec, apply_permutation, build, permutation_spec, random_permutation
from engine.probes.connectivity import (
    Alignment,
    FunctionNotPreservedError,
    activation_matching,
    apply_alignment,
    check_function_preserved,
    feature_sites,
    interpolate,
    singular_vector_alignment,
    solve_assignment,
    ste_matching,
    weight_matching,
)


@dataclass(frozen=True)
class Case:
    name: str
    input_shape: tuple
    vocab_size: int | None = None
    options: dict = field(default_factory=dict)

    def build(self, seed=0, width=8):
        spec = ArchSpec(name=self.name, width=width, depth=2, options=self.options)
        return build(spec, self.input_shape, 3, vocab_size=self.vocab_size, seed=seed).eval()

    def inputs(self, n=24, seed=0):
        g = torch.Generator().manual_seed(seed)
        if self.vocab_size:
            return torch.randint(0, self.vocab_size, (n, *self.input_shape), generator=g)
        return torch.randn((n, *self.input_shape), generator=g)


CASES = [
    Case("mlp", (1, 12)),
    Case("mlp", (5,), options={"batchnorm": True, "activation": "tanh"}),
    Case("cnn1d", (2, 16)),
    Case("cnn1d", (1, 16), options={"batchnorm": True}),
    Case("cnn2d", (1, 8, 8), options={"batchnorm": True}),
    Case("resnet", (1, 8, 8)),
    Case("resnet", (2, 12), options={"batchnorm": False}),
    Case("transformer", (3,), vocab_size=7, options={"heads": 2}),
]
IDS = [f"{c.name}{'-bn' if c.options.get('batchnorm') else ''}{len(c.input_shape)}d" for c in CASES]


def _with_stats(case: Case, model):
    """Give BatchNorm non-trivial running statistics, so forgetting to permute them shows."""
    model.train()
    with torch.no_grad():
        model(case.inputs(64, seed=9))
    return model.eval()


def _planted(case: Case, noise=1e-3, seed=3):
    model = _with_stats(case, case.build())
    spec = permutation_spec(model)
    a = model.state_dict()
    planted = random_permutation(spec, a, seed=seed)
    g = torch.Generator().manual_seed(seed)
    b = {k: v + noise * torch.randn(v.shape, generator=g) if v.is_floating_point() else v
         for k, v in apply_permutation(spec, planted, a).items()}
    return model, spec, a, b, planted


def _inverse(perm):
    return torch.argsort(perm).numpy()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_weight_matching_recovers_a_planted_permutation(case):
    model, spec, a, b, planted = _planted(case)
    al = weight_matching(a, b, spec, seed=0)
    for name, perm in planted.items():
        np.testing.assert_array_equal(al.perms[name], _inverse(perm), err_msg=name)
    # Scores are float64 sums of exact float32 products, so the only rounding is float64
    # summation: ~1e-16 relative per term, far below 1e-12 for these few thousand weights, on
    # any CPU. Scores rounded in float32 (~6e-8 relative, CPU-dependent) broke both checks.
    scale = abs(al.history).max()
    assert np.all(np.diff(al.history) >= -1e-12 * scale)
    # The last pass changed nothing, so its entry (the objective recomputed from scratch) must
    # equal the previous one (start plus every accepted gain): the gains were exact.
    assert al.iterations >= 2 and abs(al.history[-1] - al.history[-2]) <= 1e-12 * scale


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_permuted_model_computes_the_same_function(case):
    model = _with_stats(case, case.build(seed=1))
    spec = permutation_spec(model)
    state = model.state_dict()
    x = case.inputs()
    for seed in range(3):
        permuted = apply_permutation(spec, random_permutation(spec, state, seed=seed), state)
        assert check_function_preserved(model, state, permuted, x) < 1e-4
    other = case.build(seed=2).state_dict()
    al = weight_matching(state, other, spec, seed=0)
    apply_alignment(model, other, al, (x, torch.zeros(len(x), dtype=torch.long)), spec=spec)  # checks, or raises


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_activation_matching_recovers_a_planted_permutation(case):
    model, spec, a, b, planted = _planted(case, noise=0.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        al = activation_matching(model, a, b, case.inputs(96), spec)
    for name, perm in planted.items():
        np.testing.assert_array_equal(al.perms[name], _inverse(perm), err_msg=name)
    missing = set(spec.perm_to_axes) - set(feature_sites(model, spec))
    assert bool(missing) == any("no features for perms" in str(w.message) for w in caught)
    assert 0.5 < al.objective <= 1.0 + 1e-6  # dead ReLU units have no correlation to offer


def test_self_check_catches_a_spec_that_forgets_batchnorm_buffers():
    case = CASES[1]
    model = _with_stats(case, case.build())
    spec = permutation_spec(model)
    broken = PermutationSpec.from_axes({k: ((None,) * len(ax) if "running" in k else ax)
                                        for k, ax in spec.axes_to_perm.items()})
    state = model.state_dict()
    perms = random_permutation(spec, state, seed=0)
    permuted = apply_permutation(broken, perms, state)
    with pytest.raises(FunctionNotPreservedError, match="BatchNorm buffer is missing"):
        check_function_preserved(model, state, permuted, case.inputs())
    with pytest.raises(FunctionNotPreservedError, match="outputs differ"):
        apply_alignment(model, state, Alignment({k: v.numpy() for k, v in perms.items()}, "weight_matching"),
                        case.inputs(), spec=broken)


def test_solve_assignment_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        score = rng.standard_normal((5, 5))
        best = max(itertools.permutations(range(5)), key=lambda p: score[np.arange(5), list(p)].sum())
        np.testing.assert_array_equal(solve_assignment(score), best)


def _reference_weight_matching(a, b, spec, seed, max_iter=100):
    """Git Re-Basin's Algorithm 1 written plainly: no skipping, no reduction."""
    keys = [k for k in spec.axes_to_perm if k in a and not k.endswith(("running_mean", "running_var",
                                                                        "num_batches_tracked"))]
    sizes = {p: a[axes[0][0]].shape[axes[0][1]] for p, axes in spec.perm_to_axes.items()}
    perm = {p: torch.arange(n) for p, n in sizes.items()}
    names = sorted(sizes)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(max_iter):
        progress = False
        for i in torch.randperm(len(names), generator=gen).tolist():
            p, n = names[i], sizes[names[i]]
            score = torch.zeros(n, n, dtype=torch.float64)
            for k, axis in spec.perm_to_axes[p]:
                if k not in keys:
                    continue
                wb = b[k]
                for j, q in enumerate(spec.axes_to_perm[k]):
                    if j != axis and q is not None:
                        wb = wb.index_select(j, perm[q])
                score += (torch.movedim(a[k], axis, 0).reshape(n, -1) @ torch.movedim(wb, axis, 0).reshape(n, -1).T
                          ).double()
            _, col = linear_sum_assignment(score.numpy(), maximize=True)
            old, new = score[torch.arange(n), perm[p]].sum(), score[torch.arange(n), torch.from_numpy(col)].sum()
            if new > old + 1e-12 * max(1.0, abs(float(old))):
                perm[p], progress = torch.from_numpy(col), True
        if not progress:
            break
    return {p: t.numpy() for p, t in perm.items()}


@pytest.mark.parametrize("seed", [0, 1])
def test_weight_matching_agrees_with_the_plain_algorithm(seed):
    case = CASES[0]
    a, b = case.build(seed=0, width=24).state_dict(), case.build(seed=1, width=24).state_dict()
    spec = permutation_spec(case.build(width=24))
    ours = weight_matching(a, b, spec, seed=seed)
    reference = _reference_weight_matching(a, b, spec, seed)
    for name in reference:
        np.testing.assert_array_equal(ours.perms[name], reference[name])
    again = weight_matching(a, b, spec, seed=seed)
    assert all(np.array_equal(again.perms[k], ours.perms[k]) for k in ours.perms)


def test_weight_matching_reduces_the_barrier_of_independently_trained_mlps():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 1, 12, generator=g)
    y = (x[:, 0, :4].sum(1) > 0).long() + (x[:, 0, 4:8].sum(1) > 0).long()  # 3 classes
    case = CASES[0]
    states = []
    for seed in (0, 1):
        model = case.build(seed=seed, width=128).train()
        velocity = [torch.zeros_like(p) for p in model.parameters()]
        for _ in range(60):  # full-batch SGD with momentum, written out (torch.optim is slow to import)
            grads = torch.autograd.grad(torch.nn.functional.cross_entropy(model(x), y), list(model.parameters()))
            with torch.no_grad():
                for p, v, g in zip(model.parameters(), velocity, grads):
                    p.sub_(0.1 * v.mul_(0.9).add_(g))
        states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    model = case.build(width=128)
    spec = permutation_spec(model)
    al = weight_matching(states[0], states[1], spec, seed=0)
    aligned = apply_alignment(model, states[1], al, (x, y))
    naive = interpolate(model, states[0], states[1], (x, y), alphas=11).barrier().value
    matched = interpolate(model, states[0], aligned, (x, y), alphas=11).barrier().value
    assert naive > 0.2
    assert matched < 0.5 * naive


def test_weight_matching_init_and_fixed():
    model, spec, a, b, planted = _planted(CASES[0])
    identity = Alignment.identity(spec, a)
    held = weight_matching(a, b, spec, init=identity, fixed=["layers.0"])
    np.testing.assert_array_equal(held.perms["layers.0"], np.arange(8))
    with pytest.raises(ValueError, match="is not a permutation of range"):
        weight_matching(a, b, spec, init={"layers.0": np.zeros(8, dtype=int)})
    with pytest.raises(ValueError, match="max_iter must be a positive integer"):
        weight_matching(a, b, spec, max_iter=0)
    with pytest.raises(ValueError, match="same architecture"):
        weight_matching(a, {**b, "head.weight": torch.zeros(3, 9)}, spec)


def test_ste_matching_runs_within_its_budget_and_keeps_the_function():
    model, spec, a, b, planted = _planted(CASES[1], noise=0.05)
    x = CASES[1].inputs(64)
    y = torch.randint(0, 3, (64,), generator=torch.Generator().manual_seed(0))
    al = ste_matching(model, a, b, (x, y), spec, steps=4, batch_size=16, seed=0)
    assert al.method == "ste_matching" and al.iterations == 4 and al.history.shape == (4,)
    assert np.isfinite(al.history).all()
    apply_alignment(model, b, al, (x, y), spec=spec)
    short = ste_matching(model, a, b, (x, y), spec, steps=1000, budget_s=1e-9)
    assert short.iterations == 1
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        ste_matching(model, a, b, (x, y), spec, steps=0)


def test_singular_vectors_line_up_after_recovering_a_planted_permutation():
    model, spec, a, b, planted = _planted(CASES[0], noise=0.0)
    al = weight_matching(a, b, spec)
    sv = singular_vector_alignment(a, b, al, spec)
    assert sv.layers == ("layers.0.linear.weight", "layers.1.linear.weight", "head.weight")
    for after_l, after_r in zip(sv.cos_left_after, sv.cos_right_after):
        np.testing.assert_allclose(after_l, 1.0, atol=1e-6)
        np.testing.assert_allclose(after_r, 1.0, atol=1e-6)
    np.testing.assert_allclose(sv.distance_after, 0.0, atol=1e-6)
    assert np.all(sv.distance_before > 0.1)
    for s_a, s_b in zip(sv.singular_values_a, sv.singular_values_b):
        np.testing.assert_allclose(s_a, s_b, rtol=1e-6)
    top = singular_vector_alignment(a, b, al, spec, top_k=2, layers=["layers.1.linear.weight"])
    assert top.cos_left_before[0].shape == (2,)
    with pytest.raises(ValueError, match="are not in the state"):
        singular_vector_alignment(a, b, al, spec, layers=["nope"])
