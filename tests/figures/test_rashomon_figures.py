"""Rashomon figures build from probe results and show the numbers that matter."""

import json

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from torch import nn
from torch.func import stack_module_state

from engine.figures.rashomon import (
    contested_samples_table,
    disagreement_histogram,
    fis_halo_figure,
    fis_swarm_figure,
    importance_cloud_figure,
    importance_pair_figure,
    multiplicity_curve_figure,
    rashomon_epsilon_slider,
    rashomon_scatter,
    rashomon_size_curve,
)
from engine.figures.rashomon.trees import (
    filter_trees,
    tree_diagram,
    tree_feature_usage,
    tree_list_table,
    tree_set_scatter,
    tree_sunburst,
)
from engine.probes.rashomon import (
    feature_interaction_cloud,
    multiplicity_curve,
    predictive_multiplicity,
    rashomon_curve,
    variable_importance_cloud,
)
from engine.probes.rashomon._tree_decode import decode_model_set
from engine.probes.rashomon.trees import _recount

RNG = np.random.default_rng(0)
LOSSES = RNG.uniform(0.2, 0.5, size=40)
PREDS = RNG.integers(0, 2, size=(40, 25))


def _valid(fig):
    assert isinstance(fig, go.Figure)
    json.loads(fig.to_json())  # serializable for the HTML report
    return fig


def test_membership_scatter_and_slider():
    fig = _valid(rashomon_scatter(LOSSES, epsilon=0.1, mode="relative", labels=[f"<b>{i}" for i in range(40)],
                                  selected=[0, 3]))
    assert "relative ε" in fig.layout.title.text
    members = int((LOSSES <= LOSSES.min() * 1.1).sum())
    assert f"{members} of 40" in fig.layout.annotations[0].text
    assert sorted(fig.data[0].customdata) == list(range(40))
    assert "&lt;b&gt;" in fig.data[0].text[0]  # user labels are escaped
    slider = _valid(rashomon_epsilon_slider(LOSSES, [0.0, 0.5, 3.0], mode="absolute"))
    steps = slider.layout.sliders[0].steps
    assert len(steps) == 3 and "40 of 40" in steps[2].args[0]["title.text"]
    assert "absolute ε" in steps[0].args[0]["title.text"]
    _valid(rashomon_size_curve(rashomon_curve(LOSSES, np.linspace(0, 1, 5)), epsilon=0.2))


def test_multiplicity_views():
    curve = multiplicity_curve(LOSSES, PREDS, np.linspace(0, 1, 6))
    _valid(multiplicity_curve_figure(curve, epsilon=0.3))
    mult = predictive_multiplicity(np.stack([1 - PREDS, PREDS], -1) * 0.8 + 0.1, PREDS[0])
    fig = _valid(disagreement_histogram(mult))
    assert len(fig.data) == 2
    table = _valid(contested_samples_table(mult, RNG.normal(size=(25, 2)), ["age", "x<y"], k=5))
    assert "x&lt;y" in table.data[0].header.values and len(table.data[0].cells.values[0]) == 5


def test_importance_and_interaction_views():
    models = [nn.Linear(3, 2).double() for _ in range(6)]
    params = {k: v.detach() for k, v in stack_module_state(models)[0].items()}
    x = torch.randn(60, 3, dtype=torch.float64)
    y = (x[:, 0] > 0).long()
    cloud = variable_importance_cloud(models[0], params, (x, y), n_repeats=2, feature_names=["a", "b", "c"])
    for kind in ("strip", "violin", "box"):
        fig = _valid(importance_cloud_figure(cloud, kind=kind, reference=0))
        assert len(fig.data) == 4
    _valid(importance_cloud_figure(cloud, selected=[1, 2], order="range"))
    with pytest.raises(ValueError, match="kind must be 'strip', 'violin' or 'box'; got 'pie'"):
        importance_cloud_figure(cloud, kind="pie")
    _valid(importance_pair_figure(cloud, 0, 1, reference=0, color=np.arange(6)))
    inter = feature_interaction_cloud(models[0], params, (x, y), n_repeats=2, feature_names=["a", "b", "c"])
    swarm = _valid(fis_swarm_figure(inter, top=2))
    assert len(swarm.data) == 2
    halo = _valid(fis_halo_figure(inter, 0, reference=1))
    assert "a × b" in halo.layout.title.text


def _tiny_tree_set():
    leaf0 = {"count": 1, "terminal": True, "prediction": 0, "mapping": {}}
    leaf1 = {"count": 1, "terminal": True, "prediction": 1, "mapping": {}}
    split = {"count": 2, "terminal": False, "prediction": 0, "mapping": {"0": [[1, 0]], "1": [[1, 0]]}}
    raw = {"storage": [leaf0, leaf1, split],
           "available_metric_values": {"metric_pointers": [2, 0], "metric_values": [[0.2, 0, 2], [0.6, 2, 1]]}}
    x = np.array([[1, 0], [1, 1], [0, 0], [0, 1]], np.uint8)
    y = np.array([1, 1, 0, 0])
    return _recount(decode_model_set(raw, np.array([0, 1]), 2), x, y, np.array([0, 1]), ("a", "b"),
                    0.1, 3.0, None, 3, False)


def test_tree_views():
    trees = _tiny_tree_set()
    assert trees.size == 3
    sun = _valid(tree_sunburst(trees))
    assert sum(v for i, v in zip(sun.data[0].ids, sun.data[0].values) if i.count("/") == 1) == 3
    diagram = _valid(tree_diagram(trees, 0))
    assert "a" in diagram.data[2].text and "class 1" in diagram.data[2].text
    _valid(tree_list_table(trees, order_by="leaves"))
    with pytest.raises(ValueError, match="order_by must be one of"):
        tree_list_table(trees, order_by="size")
    _valid(tree_feature_usage(trees))
    _valid(tree_set_scatter(trees))
    assert filter_trees(trees, must_use=["a"]).tolist() == [0]
    assert filter_trees(trees, max_leaves=1).tolist() == [1]  # sorted: split on a, leaf, split on b
