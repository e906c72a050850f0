"""The HTML file: plotly.js once, figures as inert JSON, user text escaped, Markdown safe, no network."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html.parser import HTMLParser

import numpy as np
import plotly.graph_objects as go
import pytest
from plotly.offline import get_plotlyjs_version
from report_helpers import XSS

from engine.report import Report, ReportItem, figure_item, markdown_to_html, render_html, table_item

BREAKOUT = "</script><script>alert(2)</script>"


class Doc(HTMLParser):
    """Every start tag with its attributes, and the text of every <script>."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[tuple[dict, str]] = []
        self._in_script: dict | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = dict(attrs)
            self.scripts.append((self._in_script, ""))

    def handle_data(self, data):
        if self._in_script is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = None


def _figures(n: int) -> list[go.Figure]:
    x = np.arange(20)
    figs = [go.Figure(go.Scatter(x=x, y=np.sin(x / (k + 1)), name=f"{XSS} {k}")) for k in range(n)]
    figs[0].add_trace(go.Scatter(x=[0], y=[0], name=BREAKOUT))
    return figs


def _report(n_figures: int = 3) -> Report:
    items = [figure_item(f, title=f"{XSS} figure {k}", params={"metric": XSS, "k": k}, note=f"note {XSS}",
                         checkpoint_ids=[f"ckpt-{k}"], source="Zoo", pinned_by=XSS)
             for k, f in enumerate(_figures(n_figures))]
    import pandas as pd

    items.append(table_item(pd.DataFrame({"run": [XSS, "b"], "loss": [0.5, np.nan]}), title=f"table {XSS}"))
    provenance = {"generated_at": "2026-01-01T00:00:00Z", "author": XSS, "zooscope_version": "0.1.0",
                  "runs": [{"run_id": "r1", "name": XSS, "config": {"name": XSS}}],
                  "checkpoints": [{"checkpoint_id": "ckpt-0", "run_id": "r1", "step": 5}],
                  "environment": {"packages": {"numpy": "2.0"}}}
    return Report(title=f"Report {XSS}", notes=f"# Notes\n\n{XSS}", author=XSS, created_at="2026-01-01T00:00:00Z",
                  items=items, provenance=provenance)


def test_plotlyjs_is_embedded_once_and_nothing_is_loaded_from_anywhere():
    text = render_html(_report(3))
    doc = Doc(text)
    assert text.count(f"plotly.js v{get_plotlyjs_version()}") == 1
    executable = [s for s in doc.scripts if s[0].get("type") != "application/json"]
    assert len(executable) == 2  # plotly.js and the loop that draws every figure
    assert not [t for t, a in doc.tags if "src" in a or t in ("link", "iframe", "img", "object", "embed")]
    assert all(a["href"].startswith("#") for t, a in doc.tags if "href" in a)
    assert "cdn.plot.ly/plotly" not in text.split("<script>", 1)[0]  # no CDN reference outside plotly.js itself


def test_every_figure_is_an_inert_json_block_holding_exactly_the_pinned_figure():
    report = _report(3)
    doc = Doc(render_html(report))
    blocks = {a["id"]: json.loads(t) for a, t in doc.scripts if a.get("type") == "application/json"}
    assert list(blocks) == ["fig-1-json", "fig-2-json", "fig-3-json"]
    assert list(blocks.values()) == report.figures
    assert [a.get("data-source") for t, a in doc.tags if "zs-figure" in a.get("class", "")] == list(blocks)
    assert report.figures[0]["data"][1]["name"] == BREAKOUT  # survived the trip through the HTML


def test_user_text_is_escaped_everywhere():
    text = render_html(_report(2))
    doc = Doc(text)
    assert XSS not in text and BREAKOUT not in text
    assert text.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 10  # title, notes, items, params, table, runs
    assert not [a for _, a in doc.tags if any(k.startswith("on") for k in a)]
    executable = [t for a, t in doc.scripts if a.get("type") != "application/json"]
    assert not [t for t in executable if "alert(" in t]


def test_content_security_policy_allows_only_the_two_inline_scripts():
    text = render_html(_report(1))
    doc = Doc(text)
    csp = next(a["content"] for t, a in doc.tags if a.get("http-equiv") == "Content-Security-Policy")
    hashes = set(re.findall(r"'(sha256-[^']+)'", csp))
    scripts = [t for a, t in doc.scripts if a.get("type") != "application/json"]
    assert hashes == {"sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() for s in scripts}
    assert "default-src 'none'" in csp and "http" not in csp


def test_markdown_renders_and_raw_html_and_unsafe_links_do_not():
    out = markdown_to_html("# Title\n\n*em* **strong** `code` [ok](https://example.org) [bad](javascript:alert(1)) "
                           "![pic](http://example.com/pic.png) <b>raw</b> <img src=x onerror=alert(1)>\n\n"
                           "| a | b |\n|---|---|\n| 1 | 2 |\n\n- one\n- two")
    doc = Doc(out)
    tags = [t for t, _ in doc.tags]
    assert {"h1", "em", "strong", "code", "a", "table", "ul", "li"} <= set(tags)
    assert "img" not in tags and "b" not in tags and "&lt;b&gt;raw&lt;/b&gt;" in out
    assert [a["href"] for t, a in doc.tags if t == "a"] == ["https://example.org", "http://example.com/pic.png"]
    assert not [a for _, a in doc.tags if "onerror" in a]


def test_rendering_is_a_function_of_the_report_alone():
    report = _report(2)
    again = Report.from_body(json.loads(json.dumps(report.model_dump(mode="json"))))
    assert render_html(report) == render_html(again)


def test_non_finite_numbers_in_a_figure_dict_become_null():
    item = ReportItem(kind="figure", title="nan", figure={"data": [{"type": "scatter", "y": [1.0, float("nan")]}]})
    doc = Doc(render_html(Report(title="t", items=[item])))
    block = next(t for a, t in doc.scripts if a.get("type") == "application/json")
    assert json.loads(block)["data"][0]["y"] == [1.0, None]


def test_a_body_from_a_newer_zooscope_is_refused_with_advice():
    with pytest.raises(ValueError, match="format 99.*Upgrade Zooscope"):
        Report.from_body({"format": 99, "title": "future"})


def test_an_item_needs_the_payload_its_kind_names():
    with pytest.raises(ValueError, match="a 'figure' item needs exactly its 'figure' payload"):
        ReportItem(kind="figure", title="x", table={"columns": [], "rows": []})
