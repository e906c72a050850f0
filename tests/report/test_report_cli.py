"""``zooscope report`` through report_command (the parser is the one engine.cli mounts)."""

from __future__ import annotations

import argparse

import pytest
from report_helpers import XSS, zoo_figures

import store
from engine.report import DraftBook, add_report_arguments, figure_item, list_stored_reports, report_command


def _run(path, *argv: str) -> int:
    parser = add_report_arguments(argparse.ArgumentParser(prog="zooscope report"))
    return report_command(parser.parse_args(list(argv)), path)


@pytest.fixture
def with_draft(small_store_path):
    path, ids = small_store_path
    with store.open_store(path) as st:
        for k, fig in enumerate(zoo_figures(st, ids["zoo_id"])[:2]):
            DraftBook(st).pin("team", figure_item(fig, title=f"{XSS} {k}", params={"k": k},
                                                  checkpoint_ids=ids["checkpoint_ids"][:1]), author="ann")
    return path


def test_from_draft_stores_the_report_and_id_exports_the_same_file(with_draft, tmp_path, capsys):
    out = tmp_path / "out" / "report.html"
    assert _run(with_draft, "--from-draft", "team", "--out", str(out), "--author", "bob") == 0
    printed = capsys.readouterr().out
    with store.open_store(with_draft, owner=False) as st:
        reports = list_stored_reports(st)
    assert reports["author"].tolist() == ["bob"]
    report_id = reports.loc[0, "report_id"]
    assert f"report {report_id}" in printed and "2 figures" in printed
    again = tmp_path / "again.html"
    assert _run(with_draft, "--id", report_id, "--out", str(again)) == 0
    assert again.read_bytes() == out.read_bytes()
    assert XSS not in out.read_text()


def test_list_shows_reports_and_drafts(with_draft, tmp_path, capsys):
    _run(with_draft, "--from-draft", "team", "--out", str(tmp_path / "r.html"), "--title", "Weekly")
    capsys.readouterr()
    assert _run(with_draft, "--list") == 0
    printed = capsys.readouterr().out
    assert "Weekly" in printed and "team" in printed and "ann" in printed


def test_errors_say_what_to_do(with_draft, tmp_path):
    with pytest.raises(ValueError, match=r"draft 'nope' has nothing pinned \(drafts in this store: \['team'\]\)"):
        _run(with_draft, "--from-draft", "nope", "--out", str(tmp_path / "r.html"))
    with pytest.raises(ValueError, match="--out FILE is required"):
        _run(with_draft, "--from-draft", "team")
    with pytest.raises(ValueError, match="is a draft's row, not a report"):
        _run(with_draft, "--id", "draft:123", "--out", str(tmp_path / "r.html"))
    with pytest.raises(store.NotFoundError, match="no report with report_id 'missing'"):
        _run(with_draft, "--id", "missing", "--out", str(tmp_path / "r.html"))
    with pytest.raises(SystemExit):
        _run(with_draft, "--out", str(tmp_path / "r.html"))  # argparse: one of --from-draft/--id/--list


def test_a_store_owned_by_the_dashboard_points_to_the_reports_page(with_draft, tmp_path):
    with store.open_store(with_draft):
        with pytest.raises(store.StoreBusyError, match="export reports from its Reports page"):
            _run(with_draft, "--from-draft", "team", "--out", str(tmp_path / "r.html"))
