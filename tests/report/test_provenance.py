"""Provenance: the ids, configs and versions behind a report; stored reports export the same figures."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from importlib import metadata

from report_helpers import XSS, zoo_figures

import engine
from engine.report import DraftBook, build_report, figure_item, load_report, render_html, save_report, table_item


def _figure_blocks(text: str) -> list[dict]:
    return [json.loads(m) for m in re.findall(r'<script type="application/json" id="fig-\d+-json">(.*?)</script>',
                                                text)]


def _draft(st, ids):
    book = DraftBook(st)
    curves, phase, surface = zoo_figures(st, ids["zoo_id"])
    book.pin("d", figure_item(curves, title="curves", params={"metric": "loss"}, run_ids=ids["run_ids"]))
    book.pin("d", figure_item(phase, title="phase", params={"x": "lr"}, checkpoint_ids=ids["checkpoint_ids"][1:3],
                              probe_keys=["k" * 64]))
    book.pin("d", figure_item(surface, title="surface", params={}, checkpoint_ids=["no-such-checkpoint"]))
    draft = book.load("d")
    draft.items.append(table_item(st.runs_table(ids["zoo_id"])[["name", "hp_lr"]], title="runs"))
    return draft


def test_provenance_names_the_zoo_runs_checkpoints_configs_versions_time_and_author(small_store):
    st, ids = small_store
    st.put_probe("k" * 64, "landscape.surface", params={"resolution": 21}, inputs=ids["checkpoint_ids"][1:3],
                 code_version="3", result={"big": list(range(100))})
    now = datetime(2026, 5, 1, 12, 30, tzinfo=UTC)
    report = build_report(st, _draft(st, ids), author="ann", now=now)
    p = report.provenance
    assert (p["generated_at"], p["author"], p["zooscope_version"]) == (
        "2026-05-01T12:30:00Z", "ann", engine.__version__)
    assert [z["zoo_id"] for z in p["zoos"]] == [ids["zoo_id"]] and p["zoos"][0]["sweep"]["name"] == "small"
    assert [c["checkpoint_id"] for c in p["checkpoints"]] == ids["checkpoint_ids"][1:3]
    assert sorted(r["run_id"] for r in p["runs"]) == sorted(ids["run_ids"])
    for run in p["runs"]:
        assert run["config"] == st.get_run(run["run_id"])["config"] and run["config"]["arch"]["name"] == "mlp"
    assert p["probes"][0]["params"] == {"resolution": 21} and "result" not in p["probes"][0]
    assert p["missing"] == {"checkpoint": ["no-such-checkpoint"]}
    assert p["environment"]["packages"]["torch"] == metadata.version("torch")
    assert p["environment"]["packages"]["plotly"] == metadata.version("plotly")
    json.dumps(report.model_dump(mode="json"), allow_nan=False)  # plain JSON all the way down

    text = render_html(report)
    for needle in (ids["zoo_id"], *ids["checkpoint_ids"][1:3], *ids["run_ids"], "no-such-checkpoint",
                   engine.__version__, "2026-05-01T12:30:00Z", "&lt;script&gt;alert(1)&lt;/script&gt;"):
        assert needle in text
    assert XSS not in text


def test_exporting_a_stored_report_again_gives_the_same_figures(small_store):
    st, ids = small_store
    draft = _draft(st, ids)
    report = build_report(st, draft, author="ann")
    report_id = save_report(st, report)
    first, second = (render_html(load_report(st, report_id)) for _ in range(2))
    assert first == second == render_html(report)
    assert _figure_blocks(first) == _figure_blocks(second) == [i.figure for i in draft.items if i.figure]
    # a later change to the draft does not touch the stored report
    DraftBook(st).save(draft.model_copy(update={"items": draft.items[:1], "title": "changed"}))
    assert render_html(load_report(st, report_id)) == first
