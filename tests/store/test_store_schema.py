"""Store folder layout, path resolution, schema versions and migrations."""

from __future__ import annotations

import duckdb
import pytest

import store
from store.schema import COLUMNS, SCHEMA_VERSION, migrate


def test_resolve_store_path_prefers_cli_then_env_then_default(monkeypatch, tmp_path):
    monkeypatch.setenv("ZOOSCOPE_STORE", str(tmp_path / "from-env"))
    assert store.resolve_store_path(str(tmp_path / "cli")) == tmp_path / "cli"
    assert store.resolve_store_path(None) == tmp_path / "from-env"
    monkeypatch.delenv("ZOOSCOPE_STORE")
    monkeypatch.chdir(tmp_path)
    assert store.resolve_store_path(None) == tmp_path / "zoo-store"
    assert store.resolve_store_path("") == tmp_path / "zoo-store"


def test_open_creates_layout_at_current_version(tmp_path):
    root = tmp_path / "s"
    with store.open_store(root) as st:
        assert st.schema_version == SCHEMA_VERSION
        assert st.is_owner
    for name in ("store.duckdb", "artifacts", "inbox", "requests", "owner.lock"):
        assert (root / name).exists(), name
    assert not (root / "owner.json").exists()  # removed on a clean close


def test_columns_constant_matches_migrated_catalog(tmp_path):
    con = duckdb.connect(str(tmp_path / "c.duckdb"))
    migrate(con)
    for table, columns in COLUMNS.items():
        actual = tuple(row[1] for row in con.execute(f"PRAGMA table_info('{table}')").fetchall())
        assert actual == columns, table


def test_migrates_version_1_catalog_to_current_keeping_rows(tmp_path):
    root = tmp_path / "old"
    root.mkdir()
    con = duckdb.connect(str(root / "store.duckdb"))
    assert migrate(con, target=1) == 1
    con.execute("INSERT INTO zoo VALUES ('z1', 'legacy', NULL, NULL, 'ann')")
    con.execute("INSERT INTO run (run_id, zoo_id, seed, status) VALUES ('r1', 'z1', 3, 'done')")
    con.execute("INSERT INTO job (job_id, kind, status) VALUES ('j1', 'train', 'done')")
    con.close()
    with store.open_store(root) as st:
        assert st.schema_version == SCHEMA_VERSION
        run = st.get_run("r1")
        assert (run["seed"], run["status"], run["name"]) == (3, "done", None)
        assert st.get_job("j1")["zoo_id"] is None
        assert st.table_counts()["bundle"] == 0


def test_newer_schema_is_refused_with_both_versions(tmp_path):
    root = tmp_path / "new"
    store.open_store(root).close()
    con = duckdb.connect(str(root / "store.duckdb"))
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION + 5)])
    con.close()
    with pytest.raises(store.StoreVersionError,
                       match=rf"version {SCHEMA_VERSION + 5}.*up to {SCHEMA_VERSION}.*upgrade Zooscope"):
        store.open_store(root)
    with pytest.raises(store.StoreVersionError, match="upgrade Zooscope"):
        store.open_store(root, owner=False)
    # a refused open leaves the store free for the next attempt
    assert not (root / "owner.json").exists()


def test_read_only_open(tmp_path):
    root = tmp_path / "ro"
    with pytest.raises(store.StoreError, match="no store at"):
        store.open_store(root, owner=False)
    with store.open_store(root) as st:
        st.create_zoo("a")
    with store.open_store(root, owner=False) as ro, store.open_store(root, owner=False) as ro2:
        assert len(ro.list_zoos()) == 1 and len(ro2.list_zoos()) == 1
        with pytest.raises(store.StoreError, match="read-only.*owner=True"):
            ro.create_zoo("b")
        with pytest.raises(store.StoreBusyError):
            store.open_store(root)


def test_read_only_refuses_old_schema(tmp_path):
    root = tmp_path / "old"
    root.mkdir()
    con = duckdb.connect(str(root / "store.duckdb"))
    migrate(con, target=1)
    con.close()
    with pytest.raises(store.StoreVersionError, match="version 1, older.*owner=True"):
        store.open_store(root, owner=False)


def test_closed_store_says_how_to_reopen(tmp_path):
    st = store.open_store(tmp_path / "s")
    st.close()
    st.close()  # idempotent
    with pytest.raises(store.StoreError, match="is closed; open it again"):
        st.list_zoos()


def test_v3_keeps_every_run_and_adds_provenance_and_the_stopped_status():
    import duckdb

    con = duckdb.connect(":memory:")
    migrate(con, target=2)
    con.execute("INSERT INTO run (run_id, zoo_id, status, name, seed) VALUES ('r1', 'z', 'done', 'n', 7)")
    assert migrate(con) == SCHEMA_VERSION
    assert con.execute("SELECT run_id, status, name, seed, origin, built_by_json FROM run").fetchall() == [
        ("r1", "done", "n", 7, "trained", None)]
    cols = [r[0] for r in con.execute("SELECT column_name FROM information_schema.columns "
                                      "WHERE table_name = 'run' ORDER BY ordinal_position").fetchall()]
    assert tuple(cols) == COLUMNS["run"]
    con.execute("UPDATE run SET status = 'stopped'")
    with pytest.raises(duckdb.ConstraintException, match="CHECK"):
        con.execute("UPDATE run SET status = 'vanished'")
