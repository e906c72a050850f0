"""Zoo map figures: points carry their run ids (selection), the merge tree shows the cut, paths per run."""

import numpy as np
import pandas as pd
import pytest

from engine.figures.zoo_map import dendrogram_figure, distance_heatmap, trajectory_map_figure, zoo_map_figure
from engine.probes import ZooDistances, cluster_models, embed_models


def _setup():
    rng = np.random.default_rng(0)
    pts = np.concatenate([rng.normal(0, 0.1, (3, 2)), rng.normal(3, 0.1, (3, 2))])
    d = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    labels = tuple(f"<b>run {i}</b>" for i in range(6))  # user text: escaped
    dist = ZooDistances(labels, d, "cka", "1 − mean linear CKA")
    points = pd.DataFrame({"label": labels, "run_id": [f"r{i}" for i in range(6)], "hp_lr": [0.1, 0.2] * 3,
                           "final_test_acc": np.linspace(0.5, 0.9, 6)})
    return dist, points


def test_map_points_carry_run_ids_and_colour_by_any_column():
    dist, points = _setup()
    emb = embed_models(dist)
    clusters = cluster_models(dist, threshold=1.0)
    points["cluster"] = [f"cluster {c}" for c in clusters.clusters]
    fig = zoo_map_figure(emb, points, color_by="cluster", hover=["hp_lr"])
    ids = [row[0] for trace in fig.data for row in trace.customdata]
    assert sorted(ids) == sorted(points["run_id"]) and len(fig.data) == 2
    assert {t.name for t in fig.data} == {"cluster 1", "cluster 2"}
    assert all("<b>run" not in t for trace in fig.data for t in trace.text)  # escaped
    numeric = zoo_map_figure(emb, points.assign(final_test_acc=np.linspace(0, 1, 6)), color_by="final_test_acc")
    assert len(numeric.data) == 1
    with pytest.raises(ValueError, match="one row per model"):
        zoo_map_figure(emb, points.iloc[:3])


def test_merge_tree_draws_the_cut_and_every_leaf():
    dist, _ = _setup()
    c = cluster_models(dist, threshold=1.0, method="single")
    fig = dendrogram_figure(c, label="cka")
    leaves = fig.data[-1]
    assert len(leaves.x) == 6
    assert any(s.y0 == pytest.approx(1.0) for s in fig.layout.shapes)
    assert "2 clusters" in fig.layout.annotations[0].text
    heat = distance_heatmap(dist, c.order)
    assert np.asarray(heat.data[0].z).shape == (6, 6)


def test_trajectory_map_has_a_path_per_run():
    d = np.abs(np.subtract.outer(np.arange(6.0), np.arange(6.0)))
    dist = ZooDistances(tuple(f"m{i}" for i in range(6)), d, "weight")
    emb = embed_models(dist)
    points = pd.DataFrame({"label": dist.labels, "run_id": ["a"] * 3 + ["b"] * 3, "run_name": ["A"] * 3 + ["B"] * 3,
                           "step": [0, 10, 100] * 2})
    fig = trajectory_map_figure(emb, points)
    paths = [t for t in fig.data if t.mode == "lines+markers"]
    assert [p.name for p in paths] == ["A", "B"] and all(len(p.x) == 3 for p in paths)
