"""User-registered architectures: build, determinism, perm specs and their absence."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

from engine.config import ArchSpec
from engine.nets import (
    PermutationSpec,
    apply_permutation,
    available,
    build,
    permutation_spec,
    random_permutation,
    register,
    registry,
)


@pytest.fixture(autouse=True)
def _private_registry(monkeypatch):
    """Registrations made by a test vanish after it."""
    monkeypatch.setattr(registry, "ARCHITECTURES", registry.ARCHITECTURES.copy())


class TwoLayer(nn.Module):
    def __init__(self, d_in: int, width: int, n_outputs: int):
        super().__init__()
        self.fc1 = nn.Linear(d_in, width)
        self.fc2 = nn.Linear(width, n_outputs)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x.flatten(1))))


def two_layer(spec, input_shape, n_outputs, vocab_size):
    return TwoLayer(int(torch.tensor(input_shape).prod()), spec.width, n_outputs)


def two_layer_perm_spec(model):
    return PermutationSpec.from_axes(
        {"fc1.weight": ("hidden", None), "fc1.bias": ("hidden",), "fc2.weight": (None, "hidden"), "fc2.bias": (None,)}
    )


def test_user_factory_builds_deterministically_and_permutes():
    register("two_layer", two_layer, perm_spec=two_layer_perm_spec)
    assert "two_layer" in available()
    spec = ArchSpec(name="two_layer", width=6, init_scale=2.0)
    model = build(spec, (2, 3), 4, seed=1)
    assert isinstance(model, TwoLayer)
    assert torch.equal(model.fc1.weight, build(spec, (2, 3), 4, seed=1).fc1.weight)
    assert not torch.equal(model.fc1.weight, build(spec, (2, 3), 4, seed=2).fc1.weight)
    unscaled = build(spec.model_copy(update={"init_scale": 1.0}), (2, 3), 4, seed=1)
    torch.testing.assert_close(model.fc1.weight, 2.0 * unscaled.fc1.weight)

    pspec, state = permutation_spec(model), model.state_dict()
    x = torch.randn(5, 2, 3)
    permuted = apply_permutation(pspec, random_permutation(pspec, state, seed=0), state)
    torch.testing.assert_close(functional_call(model, permuted, (x,)), model(x), atol=1e-5, rtol=1e-5)
    assert model(x).shape == (5, 4)


def test_without_perm_spec_the_spec_is_inferred_from_the_graph():
    register("plain", two_layer)
    model = build(ArchSpec(name="plain", width=4), (3,), 2)
    inferred = permutation_spec(model)
    assert sorted(map(sorted, inferred.perm_to_axes.values())) == sorted(
        map(sorted, two_layer_perm_spec(model).perm_to_axes.values()))
    assert permutation_spec(model) is inferred  # cached per model


def test_registration_errors():
    with pytest.raises(ValueError, match=r"architecture 'mlp' is already registered as engine\.nets\.mlp\.build_mlp; "
                                         r"refusing to replace it with .*two_layer\. Register yours under another"):
        register("mlp", two_layer)
    with pytest.raises(ValueError, match=r"architecture name must be a non-empty string .*; got ''"):
        register("", two_layer)
    with pytest.raises(TypeError, match=r"factory must be callable"):
        register("x", "not a function")
    register("not_a_module", lambda spec, shape, n, vocab: "oops")
    with pytest.raises(TypeError, match=r"the factory of architecture 'not_a_module' returned str, not an nn.Module"):
        build(ArchSpec(name="not_a_module"), (3,), 2)


def test_reregistering_is_a_no_op_and_a_different_entry_is_refused():
    register("two_layer", two_layer, perm_spec=two_layer_perm_spec)
    register("two_layer", two_layer, perm_spec=two_layer_perm_spec)  # the same again: nothing changes
    with pytest.raises(ValueError, match=r"architecture 'two_layer' is already registered"):
        register("two_layer", two_layer)  # without perm_spec: a different entry
    model = build(ArchSpec(name="two_layer", width=4), (3,), 2)
    assert set(permutation_spec(model).perm_to_axes) == {"hidden"}


def test_perm_spec_naming_missing_tensors_is_caught():
    register("wrong", two_layer, perm_spec=lambda m: PermutationSpec.from_axes({"fc9.weight": ("h", None)}))
    model = build(ArchSpec(name="wrong", width=4), (3,), 2)
    with pytest.raises(ValueError, match=r"permutation spec of architecture 'wrong' lists 'fc9.weight', "
                                         r"which the model does not have"):
        permutation_spec(model)


def test_model_not_made_by_build():
    with pytest.raises(ValueError, match=r"permutation_spec needs a model made by engine.nets.build .* got a TwoLayer "
                                         r"that was not: call engine.nets.infer_perm_spec\(model, example_input\)"):
        permutation_spec(TwoLayer(3, 4, 2))


def test_random_state_outside_build_is_untouched_by_user_factory():
    register("two_layer", two_layer)
    torch.manual_seed(11)
    expected = torch.rand(2)
    torch.manual_seed(11)
    build(ArchSpec(name="two_layer", width=4), (3,), 2, seed=5)
    assert torch.equal(torch.rand(2), expected)
