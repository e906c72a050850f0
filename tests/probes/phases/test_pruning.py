"""Magnitude pruning against an explicit loop, its scopes and ties, the masked fine-tune, and the regime rules."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.func import functional_call

from engine.config import ArchSpec, OptimSpec
from engine.nets import build
from engine.probes import (
    Pruning,
    classify_regimes,
    fine_tune,
    prunable_names,
    prune,
    pruning_regime,
    temperature_effect,
)
from engine.train import task_loss


def _mlp(seed=0, width=12, depth=2):
    model = build(ArchSpec(name="mlp", width=width, depth=depth), (7,), 3, seed=seed)
    return model, {k: v.detach().clone() for k, v in model.named_parameters()}


def _reference_masks(params, names, sparsity, scope):
    """The slow, obvious rule: list every weight, sort by (|w|, tensor order, position), drop the first k."""
    groups = [names] if scope == "global" else [[n] for n in names]
    masks = {n: torch.ones_like(params[n], dtype=torch.bool) for n in names}
    for group in groups:
        entries = []
        for t, n in enumerate(group):
            for i, w in enumerate(params[n].reshape(-1).tolist()):
                entries.append((abs(w), t, i, n))
        entries.sort(key=lambda e: (e[0], e[1], e[2]))
        k = int(math.floor(sparsity * len(entries) + 0.5))
        for _, _, i, n in entries[:k]:
            masks[n].view(-1)[i] = False
    return masks


def test_prunable_tensors_are_linear_weights_not_biases():
    model, _ = _mlp()
    assert prunable_names(model) == ["layers.0.linear.weight", "layers.1.linear.weight", "head.weight"]
    bn = nn.Sequential(nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4), nn.Flatten(), nn.Linear(4 * 5, 2))
    assert prunable_names(bn) == ["0.weight", "3.weight"]  # BatchNorm scale / shift and biases stay dense


@pytest.mark.parametrize("scope", ["global", "layerwise"])
@pytest.mark.parametrize("sparsity", [0.0, 0.13, 0.5, 0.9, 1.0])
def test_masks_equal_the_explicit_loop(scope, sparsity):
    model, params = _mlp(seed=3)
    names = prunable_names(model)
    got = prune(model, params, sparsity, scope=scope)
    ref = _reference_masks(params, names, sparsity, scope)
    assert set(got.masks) == set(names)
    for n in names:
        assert torch.equal(got.masks[n], ref[n]), n
        assert torch.equal(got.params[n], params[n] * ref[n])
    for n in set(params) - set(names):  # biases untouched
        assert torch.equal(got.params[n], params[n])


def test_exact_sparsity_and_semantics_of_the_two_scopes():
    model, params = _mlp(seed=1)
    names = prunable_names(model)
    n = sum(params[k].numel() for k in names)
    g = prune(model, params, 0.7, scope="global")
    assert n - g.n_kept == int(math.floor(0.7 * n + 0.5)) and g.density == pytest.approx(0.3, abs=1 / n)
    # global: one threshold -- every kept weight is at least as large as every pruned one
    kept = torch.cat([params[k][g.masks[k]].abs() for k in names])
    dropped = torch.cat([params[k][~g.masks[k]].abs() for k in names])
    assert kept.min() >= dropped.max()
    # layerwise: every tensor keeps the same fraction, up to rounding
    lw = prune(model, params, 0.7, scope="layerwise")
    for k, d in lw.layer_density().items():
        assert abs(d - 0.3) <= 0.5 / params[k].numel() + 1e-9, k
    assert len({round(d, 2) for d in g.layer_density().values()}) > 1  # global densities differ by layer


def test_ties_are_broken_by_position_deterministically():
    model, params = _mlp()
    params = {k: torch.ones_like(v) if k in prunable_names(model) else v for k, v in params.items()}
    a = prune(model, params, 0.25)
    b = prune(model, params, 0.25)
    assert all(torch.equal(a.masks[k], b.masks[k]) for k in a.masks)
    first = prunable_names(model)[0]
    n_first = params[first].numel()
    n = sum(m.numel() for m in a.masks.values())
    k = int(math.floor(0.25 * n + 0.5))
    assert k <= n_first and int((~a.masks[first]).sum()) == k  # the earliest positions go first
    assert not a.masks[first].view(-1)[:k].any() and a.masks[first].view(-1)[k:].all()


def test_pruning_only_zero_weights_keeps_the_function():
    model, params = _mlp(seed=2)
    names = prunable_names(model)
    gen = torch.Generator().manual_seed(0)
    zeroed = {k: (v * (torch.rand(v.shape, generator=gen) > 0.4)) if k in names else v for k, v in params.items()}
    frac = sum(int((zeroed[k] == 0).sum()) for k in names) / sum(zeroed[k].numel() for k in names)
    pr = prune(model, zeroed, frac)
    x = torch.randn(32, 7, generator=gen)
    assert torch.equal(functional_call(model, pr.params, (x,)), functional_call(model, zeroed, (x,)))
    assert all(torch.equal(pr.masks[k], zeroed[k] != 0) for k in names)
    assert isinstance(pr, Pruning) and pr.params is not zeroed


@pytest.mark.parametrize("optim", ["sgd", "momentum", "adamw"])
def test_fine_tune_keeps_pruned_weights_at_zero_and_lowers_the_loss(optim):
    model, params = _mlp(seed=4)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(256, 7, generator=gen)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    pr = prune(model, params, 0.8)
    spec = OptimSpec(name=optim, lr=0.05 if optim != "adamw" else 0.01, weight_decay=0.01)
    tuned, _ = fine_tune(model, pr, (x, y), spec, steps=60, batch_size=32, seed=0)
    for k, m in pr.masks.items():
        assert torch.all(tuned.params[k][~m] == 0), k
        assert not torch.equal(tuned.params[k][m], pr.params[k][m])
    before = float(task_loss(functional_call(model, pr.params, (x,)), y))
    after = float(task_loss(functional_call(model, tuned.params, (x,)), y))
    assert after < before
    assert tuned.masks.keys() == pr.masks.keys() and tuned.density == pr.density
    again, _ = fine_tune(model, pr, (x, y), spec, steps=60, batch_size=32, seed=0)
    assert all(torch.equal(again.params[k], tuned.params[k]) for k in tuned.params)  # same seed, same result


def test_bad_inputs_say_what_was_wrong():
    model, params = _mlp()
    with pytest.raises(ValueError, match=r"sparsity must be a fraction in \[0, 1\].*got 1.5"):
        prune(model, params, 1.5)
    with pytest.raises(ValueError, match="scope must be 'global' or 'layerwise'; got 'row'"):
        prune(model, params, 0.5, scope="row")
    with pytest.raises(ValueError, match=r"names \['nope'\] are not parameters"):
        prune(model, params, 0.5, names=["nope"])
    bad = dict(params, **{"head.weight": params["head.weight"] * float("nan")})
    with pytest.raises(ValueError, match="hold NaN/inf weights"):
        prune(model, bad, 0.5)
    with pytest.raises(ValueError, match="steps must be >= 0; got -1"):
        fine_tune(model, prune(model, params, 0.5), (torch.zeros(4, 7), torch.zeros(4).long()), OptimSpec(),
                  steps=-1, batch_size=2)


def test_regimes_and_temperature_effect():
    assert [pruning_regime(True, True), pruning_regime(False, False), pruning_regime(False, True)] == \
        ["I", "II-A", "II-B"]
    cells = pd.DataFrame({"temperature": [1.0, 2.0, 4.0] * 2, "load": [0.1] * 3 + [0.5] * 3,
                          "barrier_aligned": [0.5, 0.3, 0.01, 0.0, 0.0, 0.02],
                          "cka_output": [0.5, 0.6, 0.7, 0.95, 0.9, 0.8],
                          "test_error": [0.6, 0.5, 0.4, 0.2, 0.25, 0.3]})
    r = classify_regimes(cells, barrier_cut=0.1, similarity_cut=0.85)
    assert r["regime"].tolist() == ["I", "I", "II-A", "II-B", "II-B", "II-A"]
    eff = temperature_effect(cells).set_index("load")
    assert eff.loc[0.1, "effect"] == "hotter helps" and eff.loc[0.5, "effect"] == "hotter hurts"
    assert eff.loc[0.1, "rho"] == pytest.approx(-1.0) and eff.loc[0.5, "hot_minus_cold"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="cells have no column 'cka_mean'"):
        classify_regimes(cells, barrier_cut=0.1, similarity_cut=0.5, similarity_metric="cka_mean")
    assert np.isnan(temperature_effect(cells.iloc[:1])["slope"].iloc[0])


def test_pruned_cell_table_groups_seeds_by_temperature_and_density():
    from engine.probes import pruned_cell_table, pruned_rows

    rows = pd.concat([pruned_rows([f"r{lr}{s}"], [0.1, 0.5], {"test_error": [[0.5 + lr + s / 10, 0.2 + lr]]})
                      .assign(hp_lr=lr) for lr in (0.1, 0.2) for s in (0, 1)], ignore_index=True)
    cells = pruned_cell_table(rows, "lr/batch_size", ["test_error"], {"batch_size": 10})
    assert cells[["temperature", "load"]].values.tolist() == [[0.01, 0.1], [0.02, 0.1], [0.01, 0.5], [0.02, 0.5]]
    assert cells["n_runs"].tolist() == [2, 2, 2, 2]
    assert cells["test_error"].tolist() == pytest.approx([0.65, 0.75, 0.3, 0.4])
    with pytest.raises(ValueError, match="runs have no 'density' column"):
        pruned_cell_table(rows.drop(columns="density"), "lr", ["test_error"])
