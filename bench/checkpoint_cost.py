"""What a DuckDB CHECKPOINT costs the store's owner, on a store of realistic size.

The owner checkpoints after every batch of ingested result bundles (and after other
catalog changes the dispatcher reports), so that the WAL never holds commits that a
deleted WAL plus a crash could lose (see store/durability.py). This measures, on a
catalog of ``--zoos`` x ``--runs`` runs with checkpoints and metric rows:

- ingesting one typical training bundle (one checkpoint, its artifact row, metrics),
- the CHECKPOINT that follows it,
- a CHECKPOINT after a job's progress update only,
- a CHECKPOINT with nothing to write (the check alone),
- closing the store.

Each is the median (and max) of ``--repeat`` rounds, wall and CPU time of this process.

    .venv/bin/python bench/checkpoint_cost.py [--zoos 40] [--runs 25] [--repeat 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

import store  # noqa: E402

SHA = "0" * 64


def _run_rows(zoo: int, run: int, ckpts: int, metrics: int) -> dict[str, list[dict]]:
    run_id = f"z{zoo}r{run}"
    rows = {
        "run": [{"run_id": run_id, "zoo_id": f"z{zoo}", "status": "done", "seed": run, "name": f"seed={run}",
                 "config": {"steps": 1500, "arch": {"name": "mlp", "width": 64}}, "hparams": {"seed": run}}],
        "checkpoint": [{"checkpoint_id": f"{run_id}-{s}", "run_id": run_id, "step": s * 75,
                        "artifact_sha": f"{zoo:08x}{run:08x}{s:08x}".ljust(64, "a"), "test_acc": s / ckpts,
                        "train_loss": 1.0 / (s + 1)} for s in range(ckpts)],
        "metric": [{"run_id": run_id, "step": s, "split": split, "name": name, "value": 1.0 / (s + 1)}
                   for s in range(metrics // 4) for split in ("train", "test") for name in ("loss", "acc")],
    }
    rows["artifact"] = [{"sha": c["artifact_sha"], "size_bytes": 40_000, "kind": "weights"} for c in rows["checkpoint"]]
    return rows


def build(path: Path, zoos: int, runs: int, ckpts: int, metrics: int) -> None:
    """A catalog filled the way workers fill it: one bundle per zoo, ingested by the owner."""
    with store.open_store(path) as st:
        for z in range(zoos):
            st.create_zoo(f"zoo {z}")
            tables: dict[str, list[dict]] = {}
            for r in range(runs):
                for table, rows in _run_rows(z, r, ckpts, metrics).items():
                    tables.setdefault(table, []).extend(rows)
            for table in tables:
                if table == "run":
                    for row in tables[table]:
                        row["zoo_id"] = st.get_zoo(f"zoo {z}")["zoo_id"]
            store.write_bundle(path, f"build{z}", tables)
            st.ingest_bundles()


def _timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _summary(name: str, samples: list[tuple[float, float]]) -> str:
    wall = [w * 1e3 for w, _ in samples]
    cpu = [c * 1e3 for _, c in samples]
    return (f"{name:<46} wall median {statistics.median(wall):7.1f} ms  max {max(wall):7.1f} ms   "
            f"cpu median {statistics.median(cpu):7.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoos", type=int, default=40)
    ap.add_argument("--runs", type=int, default=25, help="runs per zoo")
    ap.add_argument("--ckpts", type=int, default=20, help="checkpoints per run")
    ap.add_argument("--metrics", type=int, default=800, help="metric rows per run")
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store"
        t0 = time.perf_counter()
        build(path, args.zoos, args.runs, args.ckpts, args.metrics)
        st = store.open_store(path)
        counts = st.table_counts()
        size_mb = (path / "store.duckdb").stat().st_size / 2**20
        print(f"store: {counts['zoo']} zoos, {counts['run']} runs, {counts['checkpoint']} checkpoints, "
              f"{counts['metric']} metric rows; store.duckdb {size_mb:.1f} MB "
              f"(built in {time.perf_counter() - t0:.0f} s)")
        job_id = st.submit_job("train", {"x": 1}, owner="bench")
        ingest, after_ingest, after_progress, idle, closing = [], [], [], [], []
        for i in range(args.repeat):
            rows = _run_rows(10_000 + i, 0, 1, 20)  # one checkpoint + 20 metric rows: a worker's typical part
            store.write_bundle(path, f"live{i}", rows)
            ingest.append(_timed(lambda: st.ingest_bundles(checkpoint=False)))
            after_ingest.append(_timed(st.checkpoint))
            st.update_job(job_id, progress=i / args.repeat, message=f"step {i}")
            after_progress.append(_timed(st.checkpoint))
            idle.append(_timed(st.checkpoint))
        st.close()
        for _ in range(max(3, args.repeat // 4)):
            st = store.open_store(path)
            st.update_job(job_id, progress=0.5)
            closing.append(_timed(st.close))
    print(_summary("ingest one bundle (1 checkpoint, 20 metrics)", ingest))
    print(_summary("CHECKPOINT after it", after_ingest))
    print(_summary("CHECKPOINT after a progress update", after_progress))
    print(_summary("checkpoint() with nothing to write", idle))
    print(_summary("close (with its checkpoint)", closing))


if __name__ == "__main__":
    main()
