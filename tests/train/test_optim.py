import pytest
import torch

from engine.train import init_optim_state, optim_step


def _reference(name, lr, wd, steps, grads_seq, p0):
    p = torch.nn.Parameter(p0.clone())
    if name == "sgd":
        opt = torch.optim.SGD([p], lr=lr, weight_decay=wd)
    elif name == "momentum":
        opt = torch.optim.SGD([p], lr=lr, momentum=0.9, weight_decay=wd)
    else:
        opt = torch.optim.AdamW([p], lr=lr, weight_decay=wd, betas=(0.9, 0.999), eps=1e-8)
    for g in grads_seq[:steps]:
        p.grad = g.clone()
        opt.step()
    return p.detach()


@pytest.mark.parametrize("name", ["sgd", "momentum", "adamw"])
def test_functional_update_matches_torch_optim(name):
    gen = torch.Generator().manual_seed(0)
    p0 = torch.randn(5, 3, generator=gen)
    grads = [torch.randn(5, 3, generator=gen) for _ in range(6)]
    hp = {"lr": 0.05, "weight_decay": 0.01, "momentum": 0.9, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
    params = {"w": p0.clone()}
    state = init_optim_state(params, name)
    for g in grads:
        optim_step(name, params, {"w": g}, state, hp)
    torch.testing.assert_close(params["w"], _reference(name, 0.05, 0.01, 6, grads, p0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["sgd", "momentum", "adamw"])
def test_stacked_runs_use_their_own_hyperparameters(name):
    gen = torch.Generator().manual_seed(1)
    p0 = torch.randn(3, 4, 2, generator=gen)  # (K, ...)
    grads = [torch.randn(3, 4, 2, generator=gen) for _ in range(4)]
    lrs, wds = [0.1, 0.01, 0.3], [0.0, 0.1, 0.01]
    hp = {"lr": torch.tensor(lrs), "weight_decay": torch.tensor(wds), "momentum": torch.full((3,), 0.9),
          "beta1": torch.full((3,), 0.9), "beta2": torch.full((3,), 0.999), "eps": torch.full((3,), 1e-8)}
    params = {"w": p0.clone()}
    state = init_optim_state(params, name)
    for g in grads:
        optim_step(name, params, {"w": g}, state, hp)
    for k in range(3):
        ref = _reference(name, lrs[k], wds[k], 4, [g[k] for g in grads], p0[k])
        torch.testing.assert_close(params["w"][k], ref, rtol=1e-5, atol=1e-6)


def test_inactive_runs_are_frozen():
    params = {"w": torch.ones(2, 3)}
    hp = {"lr": 0.5, "weight_decay": 0.0}
    optim_step("sgd", params, {"w": torch.ones(2, 3)}, init_optim_state(params, "sgd"), hp,
               active=torch.tensor([True, False]))
    assert torch.equal(params["w"][1], torch.ones(3)) and torch.allclose(params["w"][0], torch.full((3,), 0.5))
