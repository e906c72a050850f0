"""capture_activations: right layers, functional evaluation, no mutation, seeded subsample."""

import numpy as np
import pytest
import torch
from torch import nn

from engine.probes.representations import Activations, capture_activations, default_layers, subsample_indices


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))


class Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.fc, self.act = nn.Linear(d, d), nn.ReLU()

    def forward(self, x):
        return x + self.act(self.fc(x))


class Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 5), nn.Linear(5, 2)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def data(n=50, shape=(1, 6)):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, *shape, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_default_layers_sequential_mlp_are_activations():
    assert default_layers(mlp()) == ["2", "4"]


def test_default_layers_blocks_and_fallback():
    net = nn.Sequential(nn.Linear(4, 4), nn.Sequential(Block(4), Block(4)), nn.Linear(4, 2))
    assert default_layers(net) == ["1.0", "1.1"]
    assert default_layers(Custom()) == ["fc1", "fc2"]


def test_matches_manual_forward_and_uses_given_params():
    model = mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = {k: 2.0 * v for k, v in model.named_parameters()}
    x, y = data()
    acts = capture_activations(model, params, (x, y), batch_size=7)
    assert list(acts) == ["2", "4", "output"]
    ref = torch.func.functional_call(model, params, (x,))
    torch.testing.assert_close(acts["output"], ref.detach())
    h = torch.relu(nn.functional.linear(x.flatten(1), params["1.weight"], params["1.bias"]))
    torch.testing.assert_close(acts["2"], h)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert torch.equal(acts.targets, y)


def test_eval_mode_restored_and_batchnorm_stats_untouched():
    model = nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).train()
    stats = model[1].running_mean.clone()
    capture_activations(model, dict(model.named_parameters()), torch.randn(20, 6))
    assert model.training and torch.equal(model[1].running_mean, stats)


def test_max_samples_is_seeded():
    model, (x, y) = mlp(), data(100)
    a = capture_activations(model, dict(model.named_parameters()), (x, y), max_samples=30, seed=3)
    b = capture_activations(model, dict(model.named_parameters()), (x, y), max_samples=30, seed=3)
    c = capture_activations(model, dict(model.named_parameters()), (x, y), max_samples=30, seed=4)
    assert a.n_samples == 30 and np.array_equal(a.indices, b.indices) and not np.array_equal(a.indices, c.indices)
    torch.testing.assert_close(a["4"], b["4"])
    assert torch.equal(a.targets, y[torch.as_tensor(a.indices)])
    with pytest.raises(ValueError, match="max_samples must be a positive integer"):
        subsample_indices(10, 0)


def test_conv_pooling_mean_and_flatten():
    model = nn.Sequential(nn.Conv1d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2))
    x = torch.randn(10, 1, 6)
    params = dict(model.named_parameters())
    mean = capture_activations(model, params, x, ["1"])
    flat = capture_activations(model, params, x, ["1"], pool="flatten", include_output=False)
    assert mean["1"].shape == (10, 3) and flat["1"].shape == (10, 12) and list(flat) == ["1"]
    torch.testing.assert_close(mean["1"], flat["1"].reshape(10, 3, 4).mean(2))


def test_unknown_layer_is_a_clear_error():
    model = mlp()
    with pytest.raises(ValueError, match=r"layers \['fc9'\] are not submodules of Sequential"):
        capture_activations(model, dict(model.named_parameters()), data()[0], ["fc9"])


def test_reused_module_gets_numbered_keys_and_state_round_trip():
    act = nn.ReLU()
    model = nn.Sequential(nn.Linear(6, 4), act, nn.Linear(4, 4), act)
    acts = capture_activations(model, dict(model.named_parameters()), torch.randn(5, 6), ["1"])
    assert list(acts) == ["1", "1#1", "output"]
    back = Activations.from_state(acts.to_state())
    assert list(back) == list(acts) and np.array_equal(back.indices, acts.indices)
    torch.testing.assert_close(back["1#1"], acts["1#1"])


ARCHS = [("mlp", (1, 40)), ("cnn1d", (1, 40)), ("resnet", (1, 40)), ("transformer", (2,))]


@pytest.mark.parametrize("name,shape", ARCHS)
def test_zooscope_architectures_give_block_outputs(name, shape):
    from engine.config import ArchSpec
    from engine.nets import build

    tokens = name == "transformer"
    model = build(ArchSpec(name=name, width=16, depth=2), shape, 5, vocab_size=7 if tokens else None, seed=0)
    x = torch.randint(0, 7, (9, 2)) if tokens else torch.randn(9, *shape)
    acts = capture_activations(model, dict(model.named_parameters()), x)
    assert len(acts) == 3 and list(acts)[-1] == "output"
    assert all(v.shape == (9, 16) for k, v in acts.items() if k != "output")


def test_token_models_pool_over_tokens():
    model = nn.Sequential(nn.Embedding(7, 4), nn.LayerNorm(4), nn.ReLU())
    x = torch.randint(0, 7, (5, 3))
    acts = capture_activations(model, dict(model.named_parameters()), x, ["1"], include_output=False)
    ref = nn.functional.layer_norm(model[0](x), (4,), model[1].weight, model[1].bias).mean(1)
    torch.testing.assert_close(acts["1"], ref.detach())
    with pytest.raises(ValueError, match="pool must be"):
        capture_activations(model, dict(model.named_parameters()), x, pool="max")


def test_capture_over_checkpoints_uses_the_same_rows():
    from engine.probes.representations import capture_over_checkpoints

    model, (x, y) = mlp(), data(60)
    ckpts = [{k: s * v for k, v in model.named_parameters()} for s in (0.5, 1.0)]
    runs = capture_over_checkpoints(model, ckpts, (x, y), max_samples=20, seed=2)
    assert len(runs) == 2 and np.array_equal(runs[0].indices, runs[1].indices)
    assert not torch.equal(runs[0]["output"], runs[1]["output"])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_activations_keep_the_models_dtype(dtype):
    model = mlp().to(dtype)
    x, y = data()
    acts = capture_activations(model, dict(model.named_parameters()), (x.to(dtype), y))
    assert {t.dtype for t in acts.values()} == {dtype}
    if dtype == torch.float64:  # the same numbers as a float32 capture, to float32 precision
        ref = capture_activations(mlp(), dict(mlp().named_parameters()), (x, y))
        for name in ref:
            torch.testing.assert_close(acts[name].float(), ref[name], rtol=1e-5, atol=1e-6)
