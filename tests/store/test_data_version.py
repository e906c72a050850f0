"""Store.data_version: per-table write counters, the keys of the dashboard's cached reads.

A cached read keyed on the versions of the tables it reads must be read again after any write
to one of them (never stale), and may stay cached across writes to other tables (the point).
"""

from __future__ import annotations

import pyarrow as pa
import pytest

import store

TABLES = ("zoo", "run", "checkpoint", "metric", "metric.probe", "job", "probe", "bundle")


def _versions(st) -> dict[str, int]:
    return dict(zip(TABLES, st.data_version(*TABLES)))


def _moved(before: dict[str, int], after: dict[str, int]) -> set[str]:
    return {t for t in TABLES if after[t] != before[t]}


@pytest.fixture
def zoo_run(st):
    zoo = st.create_zoo("demo", None)
    (run,) = st.add_runs([{"zoo_id": zoo, "name": "r0", "seed": 0, "config": {}, "hparams": {}}])
    return zoo, run


def test_each_write_moves_exactly_the_tables_it_wrote(st, zoo_run):
    zoo, run = zoo_run
    steps = [
        (lambda: st.create_zoo("other", None), {"zoo"}),
        (lambda: st.update_run(run, status="running"), {"run"}),
        (lambda: st.add_checkpoint(run, 10, test_acc=0.5), {"checkpoint"}),
        (lambda: st.add_metrics([{"run_id": run, "step": 1, "split": "batch", "name": "loss", "value": 1.0}]),
         {"metric"}),
        (lambda: st.add_metrics([{"run_id": run, "step": 1, "split": "probe", "name": "sharp", "value": 2.0}]),
         {"metric", "metric.probe"}),
        (lambda: st.submit_job("train", {}, owner="ann"), {"job"}),
    ]
    for write, tables in steps:
        before = _versions(st)
        write()
        assert _moved(before, _versions(st)) == tables


def test_an_ingested_bundle_moves_its_tables_and_a_probe_metric_counts_as_one(st):
    before = _versions(st)
    store.write_bundle(st.path, "j1", {
        "checkpoint": pa.table({"checkpoint_id": ["c1"], "run_id": ["r1"], "step": [0]}),
        "metric": [{"run_id": "r1", "step": 0, "split": "batch", "name": "loss", "value": 1.0}]})
    assert st.ingest_bundles().ingested == ["j1/000000"]
    assert _moved(before, _versions(st)) == {"checkpoint", "metric", "bundle"}
    before = _versions(st)
    store.write_bundle(st.path, "j1", {
        "metric": [{"run_id": "r1", "step": 0, "split": "probe", "name": "sharp", "value": 1.0}]}, part=1)
    st.ingest_bundles()
    assert _moved(before, _versions(st)) == {"metric", "metric.probe", "bundle"}


def test_a_transaction_that_names_no_table_moves_every_table(st, zoo_run):
    zoo, _ = zoo_run
    before = _versions(st)
    st.delete_zoo(zoo)  # raw SQL over four tables: counted for all, never missed
    assert _moved(before, _versions(st)) == set(TABLES)


def test_a_failed_write_moves_nothing(st, zoo_run):
    _, run = zoo_run
    before = _versions(st)
    with pytest.raises(store.NotFoundError, match="no run with run_id 'nope'"):
        st.update_run("nope", status="done")
    assert _versions(st) == before
    assert st.get_run(run)["status"] != "done"
