"""RID figure: boxes drawn from the weighted quantiles, CDFs equal to RID's, the cloud beside it."""

import numpy as np
import plotly.graph_objects as go
import pytest

from engine.figures.rashomon import rid_figure
from engine.probes.rashomon import ImportanceCloud, importance_distribution


def _rid(seed=0, names=("age", "<b>x</b>", "noise")):
    rng = np.random.default_rng(seed)
    mats = [rng.normal([0.5, 0.2, 0.0], 0.05, size=(k, 3)) for k in (4, 9, 2)]
    return importance_distribution(mats, feature_names=names, metric="rise in loss when permuted")


def _cloud(names=("age", "<b>x</b>", "noise")):
    mean = np.random.default_rng(1).normal([0.5, 0.2, 0.0], 0.05, size=(7, 3))
    return ImportanceCloud(importances=mean[..., None], mean=mean, baseline=np.zeros(7), mcr_min=mean.min(0),
                           mcr_max=mean.max(0), feature_names=names, metric="loss")


def test_boxes_are_the_weighted_quantiles_ordered_by_mean():
    rid = _rid()
    fig = rid_figure(rid)
    box = fig.data[0]
    assert isinstance(box, go.Box)
    assert list(box.y) == ["age", "&lt;b&gt;x&lt;/b&gt;", "noise"]  # by mean importance, names escaped
    q = rid.quantile([0.05, 0.25, 0.5, 0.75, 0.95])
    np.testing.assert_allclose(box.lowerfence, q[0])
    np.testing.assert_allclose(box.median, q[2])
    np.testing.assert_allclose(box.upperfence, q[4])
    np.testing.assert_allclose(box.mean, rid.mean)
    assert "P(importance > 0) = " in box.hovertext[0]


def test_cdf_lines_are_rid_and_the_cloud_sits_beside():
    rid = _rid()
    fig = rid_figure(rid, kind="cdf", cloud=_cloud(), order="input")
    lines = [t for t in fig.data if isinstance(t, go.Scatter)]
    assert [t.name for t in lines] == ["age", "&lt;b&gt;x&lt;/b&gt;", "noise"]
    np.testing.assert_allclose(lines[2].y, rid.cdf(lines[2].x)[:, 2])
    assert np.all(np.diff(lines[0].y) >= 0) and lines[0].y[-1] == pytest.approx(1.0)
    cloud_boxes = [t for t in fig.data if isinstance(t, go.Box)]
    assert len(cloud_boxes) == 3 and cloud_boxes[0].xaxis == "x2"


def test_several_rids_are_grouped_boxes():
    fig = rid_figure({"trees": _rid(0), "logistic": _rid(1)}, cloud=_cloud())
    assert [t.name for t in fig.data[:2]] == ["trees", "logistic"]
    assert fig.layout.boxmode == "group"


def test_errors_say_what_was_wrong():
    with pytest.raises(ValueError, match="kind must be 'box' or 'cdf'; got 'pie'"):
        rid_figure(_rid(), kind="pie")
    with pytest.raises(ValueError, match="same feature names"):
        rid_figure({"a": _rid(), "b": _rid(names=("p", "q", "r"))})
    with pytest.raises(ValueError, match="the cloud has 2 features, the RID 3"):
        rid_figure(_rid(), cloud=ImportanceCloud(np.zeros((1, 2, 1)), np.zeros((1, 2)), np.zeros(1), np.zeros(2),
                                                 np.zeros(2), ("a", "b"), "loss"))
    with pytest.raises(ValueError, match="kind='cdf' draws one RID; got 2"):
        rid_figure({"a": _rid(), "b": _rid()}, kind="cdf")
