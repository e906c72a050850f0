"""Intrinsic dimension: random subspace training recovers a known dimension."""

import numpy as np
import pytest
import torch
from torch import nn

from engine.probes.landscape import intrinsic_dimension, subspace_projection


def _linear_teacher(k=6, d_in=16, n=256, seed=0):
    """Only the first k of d_in input features are non-zero, so exactly k weights matter:
    the solutions form an affine subspace of codimension k in weight space."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, d_in)
    x[:, :k] = torch.randn(n, k, generator=g)
    w_star = torch.randn(k, 1, generator=g)
    y = x[:, :k] @ w_star  # (n, 1)
    torch.manual_seed(seed)
    model = nn.Linear(d_in, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    return model, (x, y)


def test_linear_teacher_intrinsic_dimension_is_found():
    k = 6
    model, data = _linear_teacher(k=k)
    res = intrinsic_dimension(model, dict(model.named_parameters()), data, dims=range(4, 8), seeds=(0, 1),
                              n_steps=300, lr=0.3)
    assert res.metric == "r2" and res.projection == "dense"
    assert res.baseline == pytest.approx(1.0, abs=1e-3)
    # R^2 of the best fit in a random d-dim subspace of the k relevant weights is about d / k,
    # so 90% of the baseline is reached just below k and an (almost) exact fit exactly at k.
    assert k - 1 <= res.d_int90 <= k
    assert res.d_at(0.99) == k
    assert res.scores.shape == (2, 4)
    assert np.all(res.scores[:, list(res.dims).index(k) :] > 0.99)


def test_classification_scores_are_accuracies_and_deterministic():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(120, 4, generator=g)
    y = (x[:, 0] > 0).long()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    kw = dict(dims=[3], seeds=(3,), n_steps=25, lr=0.05)
    calls = []
    a = intrinsic_dimension(model, dict(model.named_parameters()), (x, y), progress=lambda f, m: calls.append(m), **kw)
    assert calls == ["seed 3, d = 3"]
    b = intrinsic_dimension(model, dict(model.named_parameters()), (x, y), **kw)
    assert a.metric == "accuracy" and 0.5 <= a.baseline <= 1.0
    np.testing.assert_array_equal(a.scores, b.scores)
    assert ((a.scores >= 0) & (a.scores <= 1)).all()
    with pytest.raises(ValueError, match="dims must be a non-empty list of positive integers"):
        intrinsic_dimension(model, dict(model.named_parameters()), (x, y), dims=[0])


@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_projection_has_unit_columns_and_is_seeded(kind):
    project, used = subspace_projection(400, 5, kind=kind, seed=1)
    again, _ = subspace_projection(400, 5, kind=kind, seed=1)
    assert used == kind
    cols = torch.stack([project(e) for e in torch.eye(5)])  # (5, D)
    np.testing.assert_allclose(cols.norm(dim=1).numpy(), 1.0, rtol=0.1)
    z = torch.randn(5)
    assert torch.equal(project(z), again(z))
    if kind == "sparse":
        assert (cols != 0).sum().item() <= 5 * 20  # about sqrt(D) non-zeros per column
    assert subspace_projection(10**6, 100)[1] == "sparse"
