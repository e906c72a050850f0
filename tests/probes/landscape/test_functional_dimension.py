"""Functional dimension: hand-worked ranks, a slow autograd reference for the Jacobian,
invariance under the known symmetries, and the messages that say what was wrong.

Hand counts (one hidden layer, ``n0`` inputs, ``n1`` ReLU neurons, one output):
``D = n1 * (n0 + 1) + n1 + 1`` parameters, ``n1`` positive scalings, so the bound is
``D - n1 = n1 * (n0 + 1) + 1``; generic weights on enough generic inputs reach it.
A dead neuron (negative pre-activation on every input) has zero gradient for its ``n0``
incoming weights, its bias and its outgoing weight (``n0 + 2`` parameters), of which the
live neuron contributed ``n0 + 2 - 1`` (its scaling is one of them): the rank drops by
``n0 + 1`` while the bound stays. In a second hidden layer's terms: a dead first-layer
neuron of a ``(n0, n1, n2, 1)`` network silences ``n0 + 1`` incoming and ``n2`` outgoing
parameters, so the rank drops by ``n0 + n2``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from engine.nets.mlp import MLP
from engine.probes import (
    FunctionalDimensionCurve,
    functional_dimension,
    functional_dimension_over_training,
    parameter_jacobian,
    scaling_symmetries,
)


def relu_net(widths: tuple[int, ...], seed: int, bias_std: float = 0.1) -> nn.Sequential:
    """Linear/ReLU layers of ``widths`` (input first, output last), He-normal weights, small normal biases."""
    gen = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        lin = nn.Linear(a, b)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(b, a, generator=gen) * math.sqrt(2 / a))
            lin.bias.copy_(torch.randn(b, generator=gen) * bias_std)
        layers += [lin, nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def gaussian(n: int, dim: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def params_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def slow_jacobian(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One ``torch.autograd.grad`` call per (input, output) on a float64 copy: the obvious reference."""
    import copy

    m = copy.deepcopy(model).double()
    rows = []
    for xi in x.double():
        out = m(xi[None])[0]
        for k in range(out.numel()):
            grads = torch.autograd.grad(out[k], list(m.parameters()), retain_graph=True)
            rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows)


# -- hand-worked ranks -----------------------------------------------------------------------------------

@pytest.mark.parametrize("n0, n1", [(2, 3), (3, 5), (4, 6)])
def test_one_hidden_layer_reaches_the_hand_counted_rank(n0, n1):
    net = relu_net((n0, n1, 1), seed=0)
    result = functional_dimension(net, params_of(net), gaussian(200, n0))
    assert result.n_params == n1 * (n0 + 1) + n1 + 1
    assert result.n_hidden_neurons == n1
    assert result.symmetry_bound == result.bound == n1 * (n0 + 1) + 1
    assert result.rank == n1 * (n0 + 1) + 1
    assert not result.has_hidden_symmetries and result.deficit == 0


@pytest.mark.parametrize("n0, n1", [(2, 3), (3, 5)])
def test_a_dead_neuron_drops_the_rank_by_its_parameters_less_its_scaling(n0, n1):
    net = relu_net((n0, n1, 1), seed=0)
    x = gaussian(200, n0)
    full = functional_dimension(net, params_of(net), x)
    params = params_of(net)
    params["0.bias"][0] = -1e3  # neuron 0 never fires on these inputs
    assert (x @ params["0.weight"][0] + params["0.bias"][0] < 0).all()
    dead = functional_dimension(net, params, x)
    assert full.rank == full.bound
    assert dead.rank == full.rank - (n0 + 1)  # n0 weights + bias + outgoing weight, less 1 scaling
    assert dead.bound == full.bound and dead.deficit == n0 + 1 and dead.has_hidden_symmetries


def test_a_dead_first_layer_neuron_of_a_deeper_net_silences_its_in_and_out_weights():
    n0, n1, n2 = 3, 5, 4
    net = relu_net((n0, n1, n2, 1), seed=0)
    x = gaussian(600, n0)
    full = functional_dimension(net, params_of(net), x)
    params = params_of(net)
    params["0.bias"][2] = -1e3
    dead = functional_dimension(net, params, x)
    # the same network with neuron 2 removed: (n0, n1 - 1, n2, 1)
    keep = [0, 1, 3, 4]
    reduced = relu_net((n0, n1 - 1, n2, 1), seed=0)
    small = {"0.weight": params["0.weight"][keep], "0.bias": params["0.bias"][keep],
             "2.weight": params["2.weight"][:, keep], "2.bias": params["2.bias"], "4.weight": params["4.weight"],
             "4.bias": params["4.bias"]}
    removed = functional_dimension(reduced, small, x)
    assert full.rank == full.bound == n1 * (n0 + 1) + n2 * (n1 + 1) + n2 + 1 - (n1 + n2)
    assert dead.rank == removed.rank == removed.bound  # a dead neuron is as good as no neuron
    assert dead.rank == full.rank - (n0 + n2)  # n0 + 1 incoming, n2 outgoing, less 1 scaling


def test_rank_agrees_with_numpy_matrix_rank_and_its_tolerance():
    net = relu_net((3, 4, 4, 2), seed=1)
    x = gaussian(40, 3)
    result = functional_dimension(net, params_of(net), x)
    jac = parameter_jacobian(net, params_of(net), x).numpy()
    assert result.rank == np.linalg.matrix_rank(jac)
    sv = np.linalg.svd(jac, compute_uv=False)
    assert np.allclose(result.singular_values, sv, rtol=1e-10, atol=1e-12)
    assert result.tolerance == pytest.approx(sv.max() * max(jac.shape) * np.finfo(np.float64).eps)
    assert result.dtype == "float64" and result.n_outputs == 2 and result.n_rows == 80


def test_rtol_overrides_the_default_tolerance():
    net = relu_net((2, 3, 1), seed=0)
    x = gaussian(50, 2)
    loose = functional_dimension(net, params_of(net), x, rtol=0.5)
    assert loose.tolerance == pytest.approx(0.5 * loose.singular_values.max())
    assert loose.rank == int((loose.singular_values > loose.tolerance).sum()) < loose.bound


# -- the Jacobian ----------------------------------------------------------------------------------------

def test_jacobian_matches_a_loop_of_autograd_calls_per_output():
    net = relu_net((3, 4, 2), seed=2)
    x = gaussian(7, 3)
    fast = parameter_jacobian(net, params_of(net), x)
    slow = slow_jacobian(net, x)
    assert fast.shape == (7 * 2, sum(p.numel() for p in net.parameters()))
    assert fast.dtype == torch.float64
    assert torch.allclose(fast, slow, rtol=0, atol=1e-12)


def test_chunking_does_not_change_the_jacobian():
    net = relu_net((3, 5, 5, 2), seed=4)
    x = gaussian(23, 3)
    whole = parameter_jacobian(net, params_of(net), x)
    assert torch.allclose(whole, parameter_jacobian(net, params_of(net), x, chunk_size=5), rtol=0, atol=1e-13)


def test_the_engine_mlp_and_a_state_dict_work_and_the_model_is_untouched():
    torch.manual_seed(0)
    model = MLP(4, 6, 2, 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = functional_dimension(model, model.state_dict(), gaussian(200, 4))
    assert scaling_symmetries(model) == result.n_hidden_neurons == 12
    assert result.n_params == sum(p.numel() for p in model.parameters())
    assert result.n_outputs == 3 and result.bound == result.n_params - 12
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.dtype == torch.float32 for p in model.parameters())


# -- symmetries ------------------------------------------------------------------------------------------

def test_known_symmetries_leave_the_function_and_the_rank_unchanged():
    net = relu_net((3, 5, 4, 1), seed=5)
    x = gaussian(300, 3)
    base = functional_dimension(net, params_of(net), x)
    p = params_of(net)
    c = torch.tensor([0.3, 2.0, 5.0, 1.0, 0.7])  # positive scaling of the first hidden layer
    p["0.weight"] *= c[:, None]
    p["0.bias"] *= c
    p["2.weight"] /= c[None, :]
    perm = torch.tensor([2, 0, 1, 3])  # and a permutation of the second
    p["2.weight"], p["2.bias"], p["4.weight"] = p["2.weight"][perm], p["2.bias"][perm], p["4.weight"][:, perm]
    out = torch.func.functional_call(net, p, (x,))
    assert torch.allclose(out, net(x), atol=1e-5)
    moved = functional_dimension(net, p, x)
    assert moved.rank == base.rank and moved.bound == base.bound


# -- seeds, batches, warnings ----------------------------------------------------------------------------

def test_same_seeds_give_the_same_result():
    a = functional_dimension(relu_net((3, 6, 6, 1), seed=7), params_of(relu_net((3, 6, 6, 1), seed=7)),
                             gaussian(150, 3, seed=9))
    b = functional_dimension(relu_net((3, 6, 6, 1), seed=7), params_of(relu_net((3, 6, 6, 1), seed=7)),
                             gaussian(150, 3, seed=9))
    assert a.rank == b.rank and np.array_equal(a.singular_values, b.singular_values)
    other = relu_net((3, 6, 6, 1), seed=8)
    assert not np.array_equal(functional_dimension(other, params_of(other), gaussian(150, 3, seed=9)).singular_values,
                              a.singular_values)


def test_a_batch_too_small_for_the_bound_warns_and_bounds_by_its_rows():
    net = relu_net((3, 5, 1), seed=0)  # bound 21
    with pytest.warns(UserWarning, match=r"10 inputs x 1 outputs = 10 Jacobian rows cannot reach the symmetry bound "
                                         r"21.*at least 21 inputs"):
        result = functional_dimension(net, params_of(net), gaussian(10, 3))
    assert result.batch_limited and result.bound == 10 and result.rank <= 10


def test_over_training_matches_each_checkpoint_and_rebuilds_them():
    nets = [relu_net((2, 4, 4, 1), seed=s) for s in (0, 1, 2)]
    x = gaussian(200, 2)
    curve = functional_dimension_over_training(nets[0], [params_of(n) for n in nets], x, steps=[0, 10, 20],
                                               source="gaussian")
    assert isinstance(curve, FunctionalDimensionCurve) and len(curve) == 3
    assert list(curve.steps) == [0, 10, 20] and curve.inputs == "gaussian"
    for i, net in enumerate(nets):
        single = functional_dimension(net, params_of(net), x)
        assert curve.ranks[i] == single.rank == curve.at(i).rank
        assert np.array_equal(curve.at(i).singular_values, single.singular_values)
    assert curve.singular_values.shape == (3, min(200, curve.n_params))


# -- messages --------------------------------------------------------------------------------------------

class Conv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 2, 3)
        self.head = nn.Linear(2, 1)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x[:, None])).mean(-1))


@pytest.mark.parametrize("model, match", [
    (Conv(), r"holds modules \['conv \(Conv1d\)'\].*pass n_hidden_neurons"),
    (MLP(3, 4, 2, 1, act="tanh"), r"holds modules .*Tanh.*pass n_hidden_neurons"),
    (MLP(3, 4, 2, 1, use_bn=True), r"BatchNorm1d.*pass n_hidden_neurons"),
    (nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1)), r"2 Linear layers and no ReLU module"),
])
def test_architectures_without_a_known_scaling_count_are_refused(model, match):
    with pytest.raises(ValueError, match=match):
        scaling_symmetries(model)


def test_an_explicit_symmetry_count_is_used_for_other_architectures():
    model = Conv()
    result = functional_dimension(model, params_of(model), gaussian(40, 5), n_hidden_neurons=2)
    assert result.n_hidden_neurons == 2 and result.symmetry_bound == result.n_params - 2


@pytest.mark.parametrize("kwargs, match", [
    ({"rtol": 0.0}, r"rtol must be positive or None; got 0.0"),
    ({"chunk_size": 0}, r"chunk_size must be a positive integer or None; got 0"),
    ({"n_hidden_neurons": 99}, r"n_hidden_neurons must be in \[0, 17\) for 17 parameters; got 99"),
])
def test_bad_arguments_are_explained(kwargs, match):
    net = relu_net((2, 4, 1), seed=0)
    with pytest.raises(ValueError, match=match):
        functional_dimension(net, params_of(net), gaussian(20, 2), **kwargs)


def test_an_empty_batch_is_explained():
    net = relu_net((2, 4, 1), seed=0)
    with pytest.raises(ValueError, match=r"inputs must be a non-empty batch .* got shape \(0, 2\)"):
        functional_dimension(net, params_of(net), torch.zeros(0, 2))
