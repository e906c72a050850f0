"""The per-run loss: one function for training and every probe (engine.train.losses)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine import data as zdata
from engine import nets
from engine.config import TrainSpec
from engine.probes import evaluate_points, flatten_params, loss_surface_2d, random_direction, run_loss
from engine.probes.landscape.curvature import hessian_operator
from engine.train import check_loss, loss_fn, loss_name, task_metrics, train_population, train_run


class TinyCausalLM(nn.Module):
    """Embedding, one causal self-attention layer and a head: logits (B, T, V) for tokens (B, T)."""

    def __init__(self, vocab: int, d: int = 16, length: int = 16):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(length, d) * 0.1)
        self.attn = nn.MultiheadAttention(d, 2, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, d))
        self.head = nn.Linear(d, vocab)
        self.register_buffer("mask", torch.triu(torch.ones(length, length, dtype=torch.bool), 1), persistent=False)

    def forward(self, tokens):
        t = tokens.shape[-1]
        h = self.embed(tokens) + self.pos[:t]  # (B, T, d)
        a, _ = self.attn(h, h, h, attn_mask=self.mask[:t, :t], need_weights=False)
        h = h + a
        h = h + self.mlp(h)
        return self.head(h)  # (B, T, V)


def _tiny_lm(spec, input_shape, n_outputs, vocab_size):
    return TinyCausalLM(vocab_size, d=spec.width, length=input_shape[0])


@pytest.fixture(autouse=True)
def _lm_architecture(monkeypatch):
    """The test LM, registered in a copy of the registry (no architecture leaks into other test modules)."""
    from engine.nets import registry

    monkeypatch.setattr(registry, "ARCHITECTURES", registry.ARCHITECTURES.copy())
    nets.register("test_causal_lm", _tiny_lm)


def test_auto_resolves_from_the_task_and_refuses_a_mismatch():
    assert loss_name("auto", "classification") == "cross_entropy"
    assert loss_name("auto", "regression") == "mse"
    assert loss_name("auto", "sequence") == "token_cross_entropy"
    check_loss("mse", "regression")
    with pytest.raises(ValueError, match=r"loss 'mse' is for regression but digits is a classification data set"):
        check_loss("mse", "classification", "digits")
    with pytest.raises(ValueError, match=r"loss must be one of auto, cross_entropy, mse, "
                                         r"token_cross_entropy; got 'l1'"):
        loss_fn("l1")


def test_token_cross_entropy_equals_an_explicit_loop_over_positions():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 7, 11, generator=g)
    targets = torch.randint(0, 11, (4, 7), generator=g)
    loop = sum(float(-torch.log_softmax(logits[b, t], 0)[targets[b, t]]) for b in range(4) for t in range(7)) / 28
    for name in ("token_cross_entropy", "auto"):
        assert float(loss_fn(name, "sequence")(logits, targets)) == pytest.approx(loop, rel=1e-6)
    assert float(loss_fn("auto")(logits, targets)) == pytest.approx(loop, rel=1e-6)  # decided from the shapes
    _, acc = task_metrics(logits, targets, loss_fn("token_cross_entropy"))
    assert acc == pytest.approx(float((logits.argmax(-1) == targets).float().mean()))  # token accuracy
    with pytest.raises(ValueError, match=r"loss 'token_cross_entropy' takes logits \(B, T, V\) and token ids \(B, T\); "
                                         r"got outputs \(4, 11\)"):
        loss_fn("token_cross_entropy")(logits[:, 0], targets)


def _regression_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2))


def test_regression_surface_centre_is_the_hand_computed_mse():
    model = _regression_net()
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(1))
    y = torch.randn(64, 2, generator=torch.Generator().manual_seed(2))
    params = dict(model.named_parameters())
    d1, d2 = random_direction(params, seed=0), random_direction(params, seed=1)
    surface = loss_surface_2d(model, params, (x, y), d1, d2, resolution=3, loss_fn=run_loss("auto", "regression"))
    with torch.no_grad():
        by_hand = float(F.mse_loss(model(x), y))
    assert surface.center_loss == pytest.approx(by_hand, rel=1e-5)
    assert float(surface.loss[1, 1]) == pytest.approx(by_hand, rel=1e-5)
    assert math.isnan(surface.center_accuracy)


def test_hessian_vector_products_of_mse_agree_with_the_dense_hessian():
    model = _regression_net()
    x = torch.randn(32, 3, generator=torch.Generator().manual_seed(1)).double()
    y = torch.randn(32, 2, generator=torch.Generator().manual_seed(2)).double()
    model = model.double()
    params = {k: v.detach() for k, v in model.named_parameters()}
    theta, layout = flatten_params(params)
    op = hessian_operator(model, params, (x, y), loss_fn=run_loss("mse", "regression"))

    def loss(t):
        return F.mse_loss(torch.func.functional_call(model, layout.unflatten(t), (x,)), y)

    dense = torch.autograd.functional.hessian(loss, theta)  # (P, P)
    v = torch.randn(len(theta), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert torch.allclose(op(v), dense @ v, atol=1e-10)
    assert not torch.allclose(op(v), torch.autograd.functional.hessian(
        lambda t: F.l1_loss(torch.func.functional_call(model, layout.unflatten(t), (x,)), y), theta) @ v)


def test_evaluate_points_of_a_language_model_is_token_cross_entropy():
    ds = zdata.load({"name": "markov", "options": {"n_samples": 64, "length": 8, "vocab": 6}})
    torch.manual_seed(0)
    model = TinyCausalLM(6, d=8, length=8).eval()
    theta, layout = flatten_params(dict(model.named_parameters()))
    loss, acc = evaluate_points(model, theta[None], ds, split="test", layout=layout,
                                loss_fn=run_loss("auto", ds.task))
    logits = model(ds.x_test)
    assert float(loss[0]) == pytest.approx(float(F.cross_entropy(logits.reshape(-1, 6), ds.y_test.reshape(-1))),
                                           rel=1e-5)
    assert float(acc[0]) == pytest.approx(float((logits.argmax(-1) == ds.y_test).float().mean()), rel=1e-6)


def _lm_spec(seed: int = 0, **kw) -> TrainSpec:
    return TrainSpec.model_validate({
        "dataset": {"name": "markov", "options": {"n_samples": 256, "length": 8, "vocab": 6}},
        "arch": {"name": "test_causal_lm", "width": 16, "depth": 1},
        "optim": {"name": "adamw", "lr": 0.01}, "steps": 60, "batch_size": 32, "checkpoints": [0, 60],
        "eval_size": 64, "seed": seed, **kw})


def test_a_tiny_language_model_trains_on_token_cross_entropy():
    for loss in ("auto", "token_cross_entropy"):
        seen: list[dict] = []
        result = train_run(_lm_spec(loss=loss), on_checkpoint=lambda r, s, e, st, m, seen=seen: seen.append(m))
        assert result.status == "done"
        assert seen[-1]["train_loss"] < seen[0]["train_loss"] - 0.2  # it learns the chain
        assert 0.0 <= seen[-1]["train_acc"] <= 1.0
    with pytest.raises(ValueError, match=r"loss 'cross_entropy' is for classification but the data set is a "
                                         r"sequence data set"):
        train_run(_lm_spec(loss="cross_entropy"))


def test_population_training_of_language_models_matches_single_runs():
    specs = [_lm_spec(seed=s) for s in (0, 1)]
    pop = train_population(specs)
    for spec, res in zip(specs, pop):
        single = train_run(spec)
        assert res.metrics["train_loss"] == pytest.approx(single.metrics["train_loss"], rel=1e-3)
        assert res.metrics["test_acc"] == pytest.approx(single.metrics["test_acc"], abs=1e-3)


def test_a_tiny_gpt2_from_transformers_trains_and_its_surface_is_token_cross_entropy():
    transformers = pytest.importorskip("transformers")
    from engine.probes import loss_surface_1d

    config = transformers.GPT2Config(vocab_size=6, n_positions=8, n_embd=16, n_layer=1, n_head=2, resid_pdrop=0.0,
                                     embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)

    class GPT2Logits(nn.Module):  # the local wrapper: logits (B, T, V) from the output object
        def __init__(self):
            super().__init__()
            self.lm = transformers.GPT2LMHeadModel(config)

        def forward(self, tokens):
            return self.lm(input_ids=tokens).logits

    nets.register("test_tiny_gpt2", lambda spec, shape, n_out, vocab: GPT2Logits())
    seen: list[dict] = []
    spec = _lm_spec().model_copy(update={"arch": _lm_spec().arch.model_copy(update={"name": "test_tiny_gpt2"})})
    assert train_run(spec, on_checkpoint=lambda r, s, e, st, m: seen.append(m)).status == "done"
    assert seen[-1]["train_loss"] < seen[0]["train_loss"] - 0.2
    torch.manual_seed(0)
    model = GPT2Logits().eval()
    params = {k: v.detach() for k, v in model.named_parameters()}
    ds = zdata.load(spec.dataset)
    surface = loss_surface_1d(model, params, ds, random_direction(params, seed=0), resolution=3,
                              loss_fn=run_loss(spec.loss, ds.task))
    with torch.no_grad():
        logits = model(ds.x_train)
    by_hand = sum(float(F.cross_entropy(logits[:, t], ds.y_train[:, t])) for t in range(8)) / 8  # every position
    assert surface.center_loss == pytest.approx(by_hand, rel=1e-5)


def test_diagonal_fisher_of_a_language_model_averages_over_positions():
    from engine.probes.connectivity.merge import diagonal_fisher

    torch.manual_seed(0)
    model = TinyCausalLM(5, d=4, length=3).eval()
    x = torch.randint(0, 5, (4, 3), generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 5, (4, 3), generator=torch.Generator().manual_seed(2))
    fisher = diagonal_fisher(model, dict(model.named_parameters()), (x, y))
    want = {k: torch.zeros_like(v) for k, v in model.named_parameters()}
    for n in range(4):
        for t in range(3):
            p = torch.softmax(model(x[n : n + 1])[0, t], -1).detach()
            for c in range(5):
                model.zero_grad()
                torch.log_softmax(model(x[n : n + 1])[0, t], -1)[c].backward()
                for k, v in model.named_parameters():
                    want[k] += p[c] * v.grad**2 / 12
    for k in want:
        torch.testing.assert_close(fisher[k], want[k], atol=1e-6, rtol=1e-4)
