"""engine.figures.style.escape: user text in a Plotly figure is shown as itself, never as Plotly's
pseudo-HTML (links, styles, line breaks) or as a hover-template field; and the zoo figures that draw
users' hyperparameter values, column and run names pass them through it."""

from __future__ import annotations

import html

import pandas as pd
import pytest

from engine.figures import zoo as zfig
from engine.figures.style import escape

HOSTILE = [
    '<a href="http://127.0.0.1:9/x">click</a>',
    '<span style="fill:url(http://127.0.0.1:9/x.svg#a)">s</span>',
    "<b>bold</b><br>next line <i>it</i> <sup>2</sup>",
    "&lt;b&gt; &amp; &#60;i&#62;",
    "%{customdata[0]} %{x:.3f}",
    "![t](http://127.0.0.1:9/x.png) $x$",
    "plain name · «ü»",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_escaped_text_has_no_tag_no_entity_of_its_own_and_no_template_field(text):
    out = escape(text)
    assert "<" not in out and ">" not in out
    assert "%{" not in out
    assert html.unescape(out) == text  # what Plotly shows: it decodes entities, nothing else


def _runs_and_metrics(value: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    runs = pd.DataFrame({"run_id": ["r1", "r2", "r3", "r4"], "name": [value, "b", "c", "d"],
                         "hp_opt": [value, value, "sgd", "sgd"], "hp_lr": [0.1, 0.2, 0.1, 0.2],
                         "final_test_acc": [0.5, 0.6, 0.7, 0.8]})
    metrics = pd.DataFrame({"run_id": ["r1", "r2", "r3", "r4"], "step": [1, 1, 1, 1], "split": ["train"] * 4,
                            "name": ["loss"] * 4, "value": [1.0, 2.0, 3.0, 4.0]})
    return runs, metrics


def _strings(node) -> list[str]:
    """Every string a figure hands to Plotly (titles, names, labels, categories, templates)."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, (list, tuple)) or hasattr(node, "tolist"):
        return [s for v in (node.tolist() if hasattr(node, "tolist") else node) for s in _strings(v)]
    return []


@pytest.mark.parametrize("text", HOSTILE[:2])
def test_zoo_figures_escape_hyperparameter_values_and_run_names(text):
    runs, metrics = _runs_and_metrics(text)
    for fig in (zfig.training_curves(metrics, runs, color_by="hp_opt"), zfig.training_curves(metrics, runs),
                zfig.phase_diagram(runs, "hp_opt", "hp_lr", "final_test_acc"),
                zfig.parallel_coordinates(runs, ["hp_opt", "hp_lr"], "final_test_acc")):
        shown = _strings(fig.to_plotly_json())
        assert not [s for s in shown if "<a " in s or "<span" in s]
        assert [s for s in shown if escape(text) in s]  # the name is there, as text


def test_the_phase_diagram_categories_are_the_escaped_values():
    """A page matching a clicked cell back to runs compares escaped values (zoo_views.phase_section)."""
    runs, _ = _runs_and_metrics("<b>adam</b>")
    fig = zfig.phase_diagram(runs, "hp_opt", "hp_lr", "final_test_acc")
    assert sorted(fig.data[0].x) == sorted(runs["hp_opt"].map(escape).unique())
