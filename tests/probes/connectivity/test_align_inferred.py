"""Alignment with an inferred spec, end to end: a user architecture registered without a
perm_spec (a Hugging Face ResNet-18 layout) is built, two copies trained briefly, and
weight matching under the spec :func:`engine.nets.permutation_spec` infers lowers the
interpolation barrier between them; the alignment self-check also runs on a model with tied
weights (GPT-2)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from engine.config import ArchSpec
from engine.nets import (
    apply_permutation,
    build,
    infer_perm_spec,
    permutation_spec,
    random_permutation,
    register,
    registry,
)
from engine.probes.connectivity import activation_matching, apply_alignment, compare_paths, weight_matching

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _private_registry(monkeypatch):
    monkeypatch.setattr(registry, "ARCHITECTURES", registry.ARCHITECTURES.copy())


class Logits(nn.Module):
    """The classifier's ``.logits``: the probes expect a tensor out."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x).logits


def resnet18_narrow(spec, input_shape, n_outputs, vocab_size):
    """ResNet-18's layout ([2, 2, 2, 2] basic blocks, downsampling shortcuts) at widths w..8w."""
    w = spec.width
    config = transformers.ResNetConfig(num_channels=input_shape[0], embedding_size=w, depths=[2, 2, 2, 2],
                                       hidden_sizes=[w, 2 * w, 4 * w, 8 * w], layer_type="basic", num_labels=n_outputs)
    return Logits(transformers.ResNetForImageClassification(config))


def templates_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ten classes, each a smooth random 3x16x16 template, plus noise."""
    g = torch.Generator().manual_seed(0)
    templates = nn.functional.interpolate(torch.randn(10, 3, 4, 4, generator=g), size=16, mode="bilinear")
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    return templates[y] + 0.8 * torch.randn(n, 3, 16, 16, generator=g), y


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int, steps: int = 60) -> dict:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=g)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_matching_under_the_inferred_spec_lowers_the_barrier_of_two_resnet18s():
    register("resnet18_narrow", resnet18_narrow)  # no perm_spec: it is inferred
    spec = ArchSpec(name="resnet18_narrow", width=8)
    x, y = templates_data(512, seed=1)
    theta_a = train(build(spec, (3, 16, 16), 10, seed=0), x, y, seed=10)
    theta_b = train(build(spec, (3, 16, 16), 10, seed=1), x, y, seed=11)
    model = build(spec, (3, 16, 16), 10, seed=0)
    pspec = permutation_spec(model)
    assert len(pspec.perm_to_axes) == 4 + 8
    result = compare_paths(model, theta_a, theta_b, (x, y), methods=("none", "weight"), bn=("reset",), alphas=7,
                           bn_batches=2, bn_batch_size=256)
    naive = result.curves[("none", "reset", "given")].barrier().value
    matched = result.curves[("weight", "reset", "given")].barrier().value
    assert result.check_max_diff["weight"] < 1e-4  # the permuted B computes what B computed
    assert matched < naive  # measured: 2.37 naive, 2.02 matched (mid-point loss; endpoints < 0.01)


class LastTokenLogits(nn.Module):
    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, tokens):
        return self.lm(tokens, use_cache=False).logits[:, -1]


def test_the_self_check_of_an_alignment_handles_tied_weights():
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=50, n_positions=16, n_embd=16, n_layer=2, n_head=4,
                                     bos_token_id=0, eos_token_id=0)
    model = LastTokenLogits(transformers.GPT2LMHeadModel(config))  # lm_head.weight is wte.weight
    tokens = torch.randint(0, 50, (4, 8))
    spec = infer_perm_spec(model, tokens)
    state = model.state_dict()
    planted = apply_permutation(spec, random_permutation(spec, state, seed=1), state)
    alignment = weight_matching(state, planted, spec)
    aligned = apply_alignment(model, planted, alignment, tokens, spec=spec)  # runs the function-preservation check
    assert all(torch.equal(aligned[k], state[k]) for k in state)


class AttentionEncoder(nn.Module):
    def __init__(self, d: int = 8, heads: int = 2):
        super().__init__()
        self.embed = nn.Linear(3, d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.norm = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 16)
        self.head = nn.Linear(16, 2)

    def forward(self, x):  # (B, T, 3)
        h = self.embed(x)
        a, _ = self.attn(h, h, h)
        return self.head(torch.relu(self.fc(self.norm(h + a))).mean(1))


def test_activation_matching_leaves_head_perms_to_weight_matching():
    torch.manual_seed(0)
    model = AttentionEncoder()
    x = torch.randn(64, 5, 3)
    spec = infer_perm_spec(model, x[:2])
    state = model.state_dict()
    planted = apply_permutation(spec, random_permutation(spec, state, seed=2), state)
    with pytest.warns(UserWarning, match=r"no features for perms \['attn.heads'\]; they were weight-matched"):
        alignment = activation_matching(model, state, planted, x, spec)
    recovered = alignment.apply(spec, planted)
    assert all(torch.equal(recovered[k], state[k]) for k in state)
