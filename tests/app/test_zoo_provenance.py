"""The Zoo page says where each run came from and what code built it, as plain text."""

from __future__ import annotations

import json

import store

XSS = "<img src=x onerror=alert(1)>"
FACTORY = {"factory": "my_models:WideNet", "kwargs": {"width": 8, "note": XSS}, "output": "logits",
           "source": "plugin", "source_file": "my_models.py", "source_sha256": "3f2a9c1b" + "0" * 56}
BUILTIN = {"builtin": "mlp", "width": 8, "depth": 2, "options": {}, "code_version": "0.1"}


def _zoo(path) -> str:
    with store.open_store(path) as st_:
        zoo_id = st_.create_zoo("mixed", {}, owner="local")
        st_.add_runs([
            {"zoo_id": zoo_id, "name": "here", "status": "done", "hparams": {"seed": 0}, "origin": "trained",
             "built_by_json": json.dumps(FACTORY)},
            {"zoo_id": zoo_id, "name": "script", "status": "running", "hparams": {"seed": 1}, "origin": "logged",
             "built_by_json": json.dumps(BUILTIN)},
            {"zoo_id": zoo_id, "name": "folder", "status": "done", "hparams": {"seed": 2}, "origin": "imported"},
        ])
    return zoo_id


def test_runs_table_shows_origin_and_built_by(app, empty_store):
    zoo_id = _zoo(empty_store)
    at = app(empty_store, zoo=zoo_id)
    assert not at.exception, at.exception
    table = at.dataframe(key="runs_table").value.set_index("name")
    assert table.loc["here", "origin"] == "trained here"
    assert table.loc["script", "origin"] == "logged from a script"
    assert table.loc["folder", "origin"] == "imported"
    built = table.loc["here", "built by"]
    assert built.startswith("my_models:WideNet(width=8, note=") and built.endswith("→ .logits · my_models.py@3f2a9c1b")
    assert XSS in built  # a cell of the grid: drawn as text, never as HTML
    assert table.loc["script", "built by"] == "built-in mlp"
    assert table.loc["folder", "built by"] == ""


def test_full_record_of_selected_runs(app, empty_store):
    zoo_id = _zoo(empty_store)
    with store.open_store(empty_store, owner=False) as st_:
        here = st_.list_runs(zoo_id).set_index("name").loc["here", "run_id"]
    at = app(empty_store, zoo=zoo_id, runs=here)
    assert not at.exception, at.exception
    (record,) = [j for j in at.json]
    assert json.loads(record.value) == FACTORY
