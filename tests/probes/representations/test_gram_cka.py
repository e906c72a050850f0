"""The streamed (Gram-accumulated) linear CKA grid equals the one from all activations at once."""

import numpy as np
import pytest
import torch
from torch import nn

from engine.probes.representations import (
    capture_activations,
    layer_grams,
    linear_cka_grid_streamed,
    similarity_grid,
)


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(x + self.bn(self.conv(x)))


def _cnn(seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.Sequential(Block(6), Block(6)),
                          nn.Flatten(), nn.Linear(6 * 8 * 8, 5)).eval()
    return model, model.state_dict()


@pytest.fixture(scope="module")
def pair():
    x = torch.randn(40, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    return _cnn(0), _cnn(1), x


def test_streamed_grid_equals_the_full_computation(pair):
    (ma, sa), (mb, sb), x = pair
    full = similarity_grid(capture_activations(ma, sa, x, pool="flatten"),
                           capture_activations(mb, sb, x, pool="flatten"), "linear_cka")
    layer_bytes = 4 * len(x) * 6 * 8 * 8
    for memory in (10**9, layer_bytes):  # everything in one pass; one layer per pass
        streamed = linear_cka_grid_streamed(ma, sa, mb, sb, x, memory=memory, batch_size=7)
        assert streamed.rows == full.rows and streamed.cols == full.cols
        np.testing.assert_allclose(streamed.values, full.values, rtol=1e-5, atol=1e-6)  # float32 features


def test_grams_are_centred_and_grouped_by_memory(pair):
    (ma, sa), _, x = pair
    calls = []
    budget = 4 * len(x) * (6 * 8 * 8 + 5)  # one block and the output
    grams = layer_grams(ma, sa, x, memory=budget, progress=lambda d, t, m: calls.append((d, t)))
    assert list(grams) == ["1.0", "1.1", "output"]
    assert calls[-1][0] == calls[-1][1] == 2  # two blocks together exceed the budget; the output joins the last
    for k in grams.values():
        assert k.shape == (40, 40) and k.dtype == torch.float64
        np.testing.assert_allclose(k.sum(0).numpy(), 0.0, atol=1e-6 * float(k.abs().max()))  # H K H: centred


def test_progress_reports_both_models(pair):
    (ma, sa), (mb, sb), x = pair
    seen = []
    linear_cka_grid_streamed(ma, sa, mb, sb, x, progress=lambda f, m: seen.append((f, m)))
    assert [f for f, _ in seen] == [0.5, 1.0]
    assert seen[0][1].startswith("model A") and "s left" in seen[-1][1]
