"""Functional-dimension figures: what each draws is the result's numbers."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from engine.figures import (
    functional_dimension_over_training_figure,
    functional_dimension_runs_figure,
    hidden_symmetry_probability_figure,
    scree_figure,
)
from engine.probes import functional_dimension, functional_dimension_over_training


@pytest.fixture(scope="module")
def dead():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    params = {k: v.detach().clone() for k, v in net.named_parameters()}
    params["0.bias"][0] = -1e3
    return net, params, torch.randn(60, 2, generator=torch.Generator().manual_seed(1))


def test_scree_splits_counted_values_at_the_tolerance_and_marks_rank_and_bound(dead):
    net, params, x = dead
    result = functional_dimension(net, params, x)
    fig = scree_figure(result)
    counted, below = fig.data
    assert len(counted.y) == result.rank and (np.asarray(counted.y) > result.tolerance).all()
    assert len(below.x) == len(result.singular_values) - result.rank
    shapes = fig.layout.shapes
    assert any(s.y0 == pytest.approx(result.tolerance) for s in shapes)
    assert {s.x0 for s in shapes if s.x0 is not None} >= {result.bound + 0.5, result.rank + 0.5}
    title = fig.layout.title.text
    assert f"rank {result.rank} of {result.bound}" in title and "deficit 3: hidden" in title


def test_over_training_draws_the_ranks_and_the_bound(dead):
    net, params, x = dead
    curve = functional_dimension_over_training(net, [dict(net.named_parameters()), params], x, steps=[0, 5])
    fig = functional_dimension_over_training_figure(curve)
    assert list(fig.data[0].x) == [0, 5] and list(fig.data[0].y) == list(curve.ranks)
    assert fig.layout.shapes[0].y0 == curve.bound


def test_runs_figure_plots_rank_over_bound_against_the_hyperparameter():
    table = pd.DataFrame({"hp_arch.width": [4, 8], "rank": [20, 45], "bound": [25, 45], "name": ["<b>a</b>", "b"]})
    fig = functional_dimension_runs_figure(table, "hp_arch.width")
    assert list(fig.data[0].y) == [0.8, 1.0]
    assert "&lt;b&gt;" in fig.data[0].customdata[0][2]  # run names are escaped
    assert list(functional_dimension_runs_figure(table, "hp_arch.width", y="deficit").data[0].y) == [5, 0]
    with pytest.raises(ValueError, match=r"table lacks columns \['hp_lr'\]"):
        functional_dimension_runs_figure(table, "hp_lr")
    with pytest.raises(ValueError, match="y must be 'ratio', 'deficit' or 'rank'; got 'foo'"):
        functional_dimension_runs_figure(table, "hp_arch.width", y="foo")


def test_probability_figure_has_one_line_per_level_with_wilson_bars():
    rows = [{"panel": "w", "width": w, "depth": d, "full": s < (10 - 3 * d + w)} for w in (1, 2)
            for d in (1, 2, 3) for s in range(10)]
    fig = hidden_symmetry_probability_figure(pd.DataFrame(rows), {"w": "width"})
    assert [t.name for t in fig.data] == ["width = 1", "width = 2"]
    first = fig.data[0]
    assert list(first.y) == [0.8, 0.5, 0.2]
    lo = np.asarray(first.y) - np.asarray(first.error_y.arrayminus)
    hi = np.asarray(first.y) + np.asarray(first.error_y.array)
    assert (lo >= 0).all() and (hi <= 1).all() and (lo < first.y).all() and (hi > first.y).all()
