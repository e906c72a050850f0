"""Result bundles: written by workers, ingested by the owner exactly once."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

import store


def _tables(job="j1", run="r1", status="running"):
    return {
        "zoo": pa.table({"zoo_id": ["z1"], "name": ["demo"]}),
        "run": pa.table({"run_id": [run], "zoo_id": ["z1"], "status": [status], "seed": [0],
                         "config_json": [json.dumps({"width": 8})]}),
        "checkpoint": pa.table({"checkpoint_id": ["c1", "c2"], "run_id": [run, run], "step": [0, 10],
                                "test_acc": [0.1, 0.8]}),
        "metric": [{"run_id": run, "step": 10, "split": "test", "name": "acc", "value": 0.8}],
    }


def test_write_then_ingest(st):
    folder = store.write_bundle(st.path, "j1", _tables(), {"worker": "w0"})
    assert folder == st.path / "inbox" / "j1" / "part-000000"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["bundle_id"] == "j1/000000" and manifest["worker"] == "w0"
    assert manifest["tables"] == {"zoo": 1, "run": 1, "checkpoint": 2, "metric": 1}
    report = st.ingest_bundles()
    assert report.ingested == ["j1/000000"] and not report.failed and not report.incomplete
    assert st.get_run("r1")["config"] == {"width": 8}
    assert list(st.list_checkpoints("r1")["step"]) == [0, 10]
    assert len(st.metrics("r1")) == 1
    assert not (st.path / "inbox" / "j1").exists()


def test_ingesting_the_same_bundle_twice_changes_nothing(st):
    store.write_bundle(st.path, "j1", _tables())
    st.ingest_bundles()
    before = st.table_counts()
    # a worker re-delivers the same part (say, after a retry), with different values
    tables = _tables(status="failed")
    tables["metric"] = [{"run_id": "r1", "step": 10, "split": "test", "name": "acc", "value": 0.0}]
    store.write_bundle(st.path, "j1", tables)
    report = st.ingest_bundles()
    assert report.duplicate == ["j1/000000"] and report.ingested == []
    assert st.table_counts() == before
    assert st.get_run("r1")["status"] == "running"
    assert st.metrics("r1")["value"].tolist() == [0.8]
    assert st.ingest_bundles() == store.IngestReport()


def test_later_parts_update_run_status_in_order(st):
    store.write_bundle(st.path, "j1", {"run": _tables(status="done")["run"].drop_columns(["config_json"])}, part=1)
    store.write_bundle(st.path, "j1", _tables(status="running"), part=0)
    report = st.ingest_bundles()
    assert report.ingested == ["j1/000000", "j1/000001"]
    run = st.get_run("r1")
    assert run["status"] == "done" and run["config"] == {"width": 8}  # columns absent from part 1 kept


def test_incomplete_bundle_is_left_alone_and_reported(st):
    folder = store.write_bundle(st.path, "j2", _tables(run="r2"))
    (folder / "manifest.json").unlink()  # as if the worker died before finishing
    report = st.ingest_bundles()
    assert report.incomplete == ["j2/000000"] and report.ingested == []
    assert (folder / "run.parquet").exists()
    assert st.table_counts()["run"] == 0
    assert st.discard_bundles("j2") == ["j2/000000"] and not folder.exists()


def test_malformed_parquet_fails_and_writes_nothing(st):
    folder = store.write_bundle(st.path, "j3", _tables())
    (folder / "checkpoint.parquet").write_bytes(b"PAR1 garbage")
    report = st.ingest_bundles()
    assert list(report.failed) == ["j3/000000"]
    assert "cannot read checkpoint.parquet" in report.failed["j3/000000"]
    assert st.table_counts()["run"] == 0 and folder.exists()


def test_constraint_violation_rolls_back_the_whole_bundle(st):
    tables = _tables()
    # zoo and run are inserted first; a NULL step then violates NOT NULL
    tables["checkpoint"] = pa.table({"checkpoint_id": ["c9"], "run_id": ["r1"],
                                     "step": pa.array([None], pa.int64())})
    store.write_bundle(st.path, "j4", tables)
    report = st.ingest_bundles()
    assert "j4/000000" in report.failed and "NOT NULL" in report.failed["j4/000000"]
    counts = st.table_counts()
    assert counts["zoo"] == counts["run"] == counts["bundle"] == 0
    st.submit_job("train", {}, job_id="j5")
    store.write_bundle(st.path, "j5", {"job": [{"job_id": "j5", "progress": 0.5, "message": "epoch 3"}]})
    assert st.ingest_bundles().ingested == ["j5/000000"]  # a bad bundle does not block the others
    assert st.get_job("j5")["progress"] == 0.5


def test_write_bundle_rejects_bad_input_before_writing(st):
    with pytest.raises(ValueError, match=r"bundles may carry tables .*; got 'runs'"):
        store.write_bundle(st.path, "j", {"runs": pa.table({"run_id": ["r"]})})
    with pytest.raises(ValueError, match=r"bundle table 'run' has unknown columns \['colour'\]"):
        store.write_bundle(st.path, "j", {"run": pa.table({"run_id": ["r"], "colour": ["red"]})})
    with pytest.raises(ValueError, match=r"bundle table 'metric' lacks its key columns \['split'\]"):
        store.write_bundle(st.path, "j", {"metric": [{"run_id": "r", "step": 1, "name": "x"}]})
    with pytest.raises(ValueError, match="job_id must be .*; got '../x'"):
        store.write_bundle(st.path, "../x", {})
    with pytest.raises(store.BundleError, match="run.config_json must hold JSON text"):
        store.write_bundle(st.path, "j", {"run": pa.table({"run_id": ["r"], "config_json": [1]})})
    assert not any((st.path / "inbox").iterdir())
    store.write_bundle(st.path, "j", {"run": [{"run_id": "r"}]})
    with pytest.raises(FileExistsError, match="complete and not yet ingested"):
        store.write_bundle(st.path, "j", {"run": [{"run_id": "r"}]})


def test_ingest_requires_owner(tmp_path):
    store.open_store(tmp_path / "s").close()
    with store.open_store(tmp_path / "s", owner=False) as ro:
        with pytest.raises(store.StoreError, match="cannot ingest bundles: .* read-only"):
            ro.ingest_bundles()
