"""Permutation specs: a random permutation of hidden units leaves the function unchanged."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from engine.config import ArchSpec
from engine.nets import PermutationSpec, apply_permutation, build, permutation_spec, random_permutation

ATOL = 1e-5


def _trained_bn_stats(case, model):
    """A few train-mode forwards so BatchNorm running statistics are not at their init."""
    model.train()
    for seed in range(3):
        x = case.inputs(batch=8, seed=100 + seed)
        model(x if case.vocab_size else x * (1 + seed) + seed)
    model.eval()
    return model


def test_spec_covers_every_state_tensor(case):
    model = case.build()
    pspec = permutation_spec(model)
    state = model.state_dict()
    assert set(pspec.axes_to_perm) == set(state)
    for key, axes in pspec.axes_to_perm.items():
        assert len(axes) == state[key].ndim, key
    for perm, axes in pspec.perm_to_axes.items():
        assert all(pspec.axes_to_perm[key][axis] == perm for key, axis in axes)


def test_random_permutation_keeps_outputs_in_eval_mode(case):
    model = _trained_bn_stats(case, case.build(seed=2))
    pspec = permutation_spec(model)
    state = model.state_dict()
    permuted = apply_permutation(pspec, random_permutation(pspec, state, seed=5), state)
    x = case.inputs(batch=10, seed=1)
    torch.testing.assert_close(functional_call(model, permuted, (x,)), model(x), atol=ATOL, rtol=ATOL)


def test_permuted_state_differs_from_original(case):
    model = case.build(seed=2)
    pspec = permutation_spec(model)
    state = model.state_dict()
    original = {k: v.clone() for k, v in state.items()}
    perms = random_permutation(pspec, state, seed=5)
    permuted = apply_permutation(pspec, perms, state)
    assert all(torch.equal(state[k], original[k]) for k in state)  # the input is not modified
    assert any(not torch.equal(permuted[k], state[k]) for k in state)
    for name, perm in perms.items():
        if not torch.equal(perm, torch.arange(len(perm))):
            assert any(not torch.equal(permuted[k], state[k]) for k, _ in pspec.perm_to_axes[name]), name


def test_bn_running_stats_follow_the_permutation_in_train_mode(bn_case):
    model = _trained_bn_stats(bn_case, bn_case.build(seed=2)).train()
    pspec = permutation_spec(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    perms = random_permutation(pspec, state, seed=9)
    permuted = apply_permutation(pspec, perms, {k: v.clone() for k, v in state.items()})
    x = bn_case.inputs(batch=8, seed=4)
    out, out_perm = functional_call(model, state, (x,)), functional_call(model, permuted, (x,))
    torch.testing.assert_close(out_perm, out, atol=ATOL, rtol=ATOL)
    # the in-place running-stat updates of the permuted model are the permuted updates
    expected = apply_permutation(pspec, perms, state)
    for key in state:
        torch.testing.assert_close(permuted[key], expected[key], atol=ATOL, rtol=ATOL)


def test_inverse_permutation_restores_state(case):
    model = case.build(seed=1)
    pspec = permutation_spec(model)
    state = model.state_dict()
    perms = random_permutation(pspec, state, seed=3)
    inverse = {name: torch.argsort(p) for name, p in perms.items()}
    restored = apply_permutation(pspec, inverse, apply_permutation(pspec, perms, state))
    assert all(torch.equal(restored[k], state[k]) for k in state)


def test_parameter_dict_alone_can_be_permuted():
    model = build(ArchSpec(name="mlp", width=8), (4,), 3)
    params = {k: v.detach() for k, v in model.named_parameters()}
    pspec = permutation_spec(model)
    permuted = apply_permutation(pspec, random_permutation(pspec, params, seed=0), params)
    x = torch.randn(5, 4)
    torch.testing.assert_close(functional_call(model, permuted, (x,)), model(x), atol=ATOL, rtol=ATOL)
    assert torch.equal(params["layers.0.linear.weight"], model.layers[0].linear.weight)


def test_random_permutation_is_seeded_and_leaves_global_rng_alone():
    model = build(ArchSpec(name="resnet", width=8, depth=2), (1, 6, 6), 3)
    pspec, state = permutation_spec(model), model.state_dict()
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    a, b, c = (random_permutation(pspec, state, seed=s) for s in (1, 1, 2))
    assert torch.equal(torch.rand(3), expected)
    assert a.keys() == set(pspec.perm_to_axes)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize(
    "name, shape, vocab, options, perms",
    [
        ("mlp", (4,), None, {}, {"layers.0", "layers.1"}),
        ("cnn2d", (1, 6, 6), None, {"batchnorm": True}, {"layers.0", "layers.1"}),
        ("resnet", (1, 6, 6), None, {}, {"residual", "blocks.0.inner", "blocks.1.inner"}),
        ("transformer", (2,), 5, {"heads": 2}, {"residual"} | {
            f"blocks.{i}.{p}" for i in range(2) for p in ("attn.heads", "attn.qk", "attn.v", "mlp.hidden")}),
    ],
)
def test_perm_names(name, shape, vocab, options, perms):
    model = build(ArchSpec(name=name, width=8, depth=2, options=options), shape, 3, vocab_size=vocab)
    assert set(permutation_spec(model).perm_to_axes) == perms


def test_residual_stream_is_one_perm_across_blocks():
    model = build(ArchSpec(name="resnet", width=8, depth=3), (1, 6, 6), 3)
    axes = dict(permutation_spec(model).perm_to_axes["residual"])
    assert axes["stem.conv.weight"] == 0 and axes["head.weight"] == 1
    assert all(axes[f"blocks.{i}.conv2.weight"] == 0 and axes[f"blocks.{i}.conv1.weight"] == 1 for i in range(3))
    assert axes["blocks.2.norm2.running_var"] == 0


def test_bad_permutations_are_explained():
    model = build(ArchSpec(name="mlp", width=4, depth=1), (3,), 2)
    pspec, state = permutation_spec(model), model.state_dict()
    with pytest.raises(ValueError, match=r"unknown perm\(s\) \['layers.7'\]; the spec has \['layers.0'\]"):
        apply_permutation(pspec, {"layers.7": torch.arange(4)}, state)
    with pytest.raises(ValueError, match=r"perm 'layers.0' has length 3 but the axes it acts on have 4 units"):
        apply_permutation(pspec, {"layers.0": torch.arange(3)}, state)
    with pytest.raises(ValueError, match=r"perm 'layers.0' is not a permutation of range\(4\)"):
        apply_permutation(pspec, {"layers.0": torch.tensor([0, 0, 1, 2])}, state)
    with pytest.raises(ValueError, match=r"perm 'layers.0' must be a 1-D integer tensor; got dtype torch.float32"):
        apply_permutation(pspec, {"layers.0": torch.arange(4.0)}, state)
    wrong = dict(state, **{"head.weight": state["head.weight"].flatten()})
    with pytest.raises(ValueError,
                       match=r"tensor 'head.weight' has shape \(8,\) but the permutation spec lists 2 axes"):
        apply_permutation(pspec, {}, wrong)


def test_spec_from_axes_and_inconsistent_sizes():
    pspec = PermutationSpec.from_axes({"a.weight": ("P", None), "b.weight": (None, "P"), "b.bias": (None,)})
    assert pspec.perm_to_axes == {"P": (("a.weight", 0), ("b.weight", 1))}
    with pytest.raises(ValueError, match=r"perm 'P' acts on axes of different lengths: "
                                         r"a.weight axis 0 has 3, b.weight axis 1 has 4"):
        pspec.perm_sizes({"a.weight": torch.zeros(3, 2), "b.weight": torch.zeros(2, 4)})
    with pytest.raises(ValueError, match=r"perm 'P' acts on none of the given tensors"):
        random_permutation(pspec, {"b.bias": torch.zeros(2)}, seed=0)
