"""Zoos, runs, checkpoints and metrics: the training side of the catalog."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from store.core import StoreCore
from store.errors import NotFoundError
from store.rows import decode_row, new_id, utcnow
from store.schema import RUN_STATUSES

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["RunsCatalog"]

_TERMINAL_RUN = ("done", "diverged", "failed", "cancelled")


def as_list(values: str | Iterable[str] | None) -> list[str] | None:
    """One value or many as a list for an ``IN`` filter; None (no filter) stays None."""
    if values is None:
        return None
    return [values] if isinstance(values, str) else list(values)


def check_status(status: Any, allowed: tuple[str, ...], what: str) -> None:
    """Raise ValueError naming the allowed statuses."""
    if status is not None and status not in allowed:
        raise ValueError(f"{what} status must be one of {list(allowed)}; got {status!r}")


class RunsCatalog(StoreCore):
    """Methods for the ``zoo``, ``run``, ``checkpoint`` and ``metric`` tables."""

    # -- zoos -----------------------------------------------------------------

    def create_zoo(self, name: str, sweep: Mapping[str, Any] | None = None, *,
                   owner: str | None = None, zoo_id: str | None = None) -> str:
        """Record a new zoo (a population from one sweep spec); returns its ``zoo_id``."""
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"zoo name must be a non-empty string; got {name!r}")
        zoo_id = zoo_id or new_id()
        self._insert("zoo", [{"zoo_id": zoo_id, "name": name, "sweep": sweep,
                              "created_at": utcnow(), "owner": owner}])
        return zoo_id

    def get_zoo(self, zoo: str) -> dict[str, Any]:
        """A zoo by id, or else by name (the newest zoo of that name).

        Returns a dict with ``sweep`` parsed from ``sweep_json``.
        """
        rows = self._dicts(
            "SELECT * FROM zoo WHERE zoo_id = ? OR name = ? "
            "ORDER BY zoo_id = ? DESC, created_at DESC LIMIT 1", [zoo, zoo, zoo])
        if not rows:
            raise NotFoundError(f"no zoo with id or name {zoo!r} in store {self.path}; `zooscope ls zoos` lists them")
        return decode_row(rows[0])

    def list_zoos(self) -> pd.DataFrame:
        """All zoos, newest first, with run counts (``n_runs``, ``n_done``, ``n_diverged``, ``n_failed``)."""
        return self._df("""
            SELECT z.zoo_id, z.name, z.created_at, z.owner,
                   count(r.run_id) AS n_runs,
                   count(*) FILTER (WHERE r.status = 'done') AS n_done,
                   count(*) FILTER (WHERE r.status = 'diverged') AS n_diverged,
                   count(*) FILTER (WHERE r.status = 'failed') AS n_failed,
                   z.sweep_json
            FROM zoo z LEFT JOIN run r ON r.zoo_id = z.zoo_id
            GROUP BY ALL ORDER BY z.created_at DESC, z.zoo_id""")

    def delete_zoo(self, zoo_id: str) -> dict[str, int]:
        """Delete a zoo with its runs, checkpoints and metrics.

        Artifact files and rows stay (other probes may use them); see
        :meth:`gc_artifacts`. Returns the number of rows deleted per table.
        """
        self._get("zoo", "zoo_id", zoo_id)
        runs = "SELECT run_id FROM run WHERE zoo_id = ?"
        counts = {}
        with self._tx() as con:
            for table in ("metric", "checkpoint"):
                counts[table] = con.execute(f"DELETE FROM {table} WHERE run_id IN ({runs})", [zoo_id]).fetchone()[0]
            counts["run"] = con.execute("DELETE FROM run WHERE zoo_id = ?", [zoo_id]).fetchone()[0]
            counts["zoo"] = con.execute("DELETE FROM zoo WHERE zoo_id = ?", [zoo_id]).fetchone()[0]
        return counts

    # -- runs -----------------------------------------------------------------

    def add_runs(self, runs: Iterable[Mapping[str, Any]]) -> list[str]:
        """Insert runs in one transaction; returns their ids in order.

        Each dict holds ``run`` columns; ``config=`` / ``hparams=`` may be
        dicts. ``run_id`` defaults to a new uuid, ``status`` to ``'queued'``.
        """
        rows = []
        for run in runs:
            row = {"status": "queued", **run}
            row.setdefault("run_id", new_id())
            check_status(row["status"], RUN_STATUSES, "run")
            rows.append(row)
        self._insert("run", rows)
        return [row["run_id"] for row in rows]

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set columns of one run.

        Setting ``status='running'`` fills ``started_at`` and a final status
        fills ``finished_at`` (now, UTC) unless given or already set.
        """
        check_status(fields.get("status"), RUN_STATUSES, "run")
        with self._tx():
            fields = self._stamp_times("run", "run_id", run_id, fields, _TERMINAL_RUN)
            self._update("run", "run_id", run_id, fields)

    def get_run(self, run_id: str) -> dict[str, Any]:
        """One run as a dict (``config`` and ``hparams`` parsed)."""
        return self._get("run", "run_id", run_id)

    def list_runs(self, zoo_id: str | None = None, *, status: str | Sequence[str] | None = None) -> pd.DataFrame:
        """Runs (all columns, JSON as text), optionally of one zoo and/or with given statuses."""
        where, params = ["TRUE"], []
        if zoo_id is not None:
            where.append("zoo_id = ?")
            params.append(zoo_id)
        if status is not None:
            where.append("list_contains(?, status)")
            params.append(as_list(status))
        return self._df(f"SELECT * FROM run WHERE {' AND '.join(where)} ORDER BY zoo_id, name, seed, run_id", params)

    def runs_table(self, zoo_id: str | None = None) -> pd.DataFrame:
        """One row per run (of a zoo, or of the whole store): hyperparameters and final metrics.

        Columns: ``run_id, zoo_id, name, status, seed, owner, device, diverged_step, wall_s``;
        one ``hp_<key>`` column per key of ``hparams`` (nested keys joined with '.');
        ``origin`` ('trained', 'logged', 'imported'), ``built_by_json`` (the code that built the
        model, JSON text or None) and ``message`` (why a run ended as it did, or None); then from
        the run's last checkpoint ``steps, final_epoch, final_train_loss, final_train_acc,
        final_test_loss, final_test_acc, last_checkpoint_id`` (NaN if none) and ``final_gap`` =
        train accuracy − test accuracy; then one ``probe_<name>`` column per metric a probe
        wrote for the run (``metric`` rows with split ``"probe"``, e.g. by the ``sweep.cell``
        probe), the value at the highest step it was measured at.
        """
        import json

        import pandas as pd

        base = self._df("""
            SELECT r.run_id, r.zoo_id, r.name, r.status, r.seed, r.owner, r.device, r.diverged_step, r.wall_s,
                   r.hparams_json, r.origin, r.built_by_json, r.message,
                   c.step AS steps, c.epoch AS final_epoch, c.train_loss AS final_train_loss,
                   c.train_acc AS final_train_acc, c.test_loss AS final_test_loss, c.test_acc AS final_test_acc,
                   c.checkpoint_id AS last_checkpoint_id
            FROM run r LEFT JOIN (
                SELECT * FROM checkpoint
                WHERE $zoo IS NULL OR run_id IN (SELECT run_id FROM run WHERE zoo_id = $zoo)
                QUALIFY row_number() OVER (PARTITION BY run_id ORDER BY step DESC) = 1
            ) c ON c.run_id = r.run_id
            WHERE $zoo IS NULL OR r.zoo_id = $zoo ORDER BY r.name, r.seed, r.run_id""", {"zoo": zoo_id})
        hparams = pd.json_normalize([json.loads(h) if isinstance(h, str) else {} for h in base.pop("hparams_json")])
        hparams.index = base.index
        hparams.columns = [f"hp_{c}" for c in hparams.columns]
        split = base.columns.get_loc("wall_s") + 1
        table = pd.concat([base.iloc[:, :split], hparams, base.iloc[:, split:]], axis=1)
        table["final_gap"] = table["final_train_acc"] - table["final_test_acc"]
        return self._with_probe_columns(table, zoo_id)

    def _with_probe_columns(self, table: pd.DataFrame, zoo_id: str | None) -> pd.DataFrame:
        """``table`` plus a ``probe_<name>`` column per probe metric (latest step per run)."""
        probed = self._df("""
            SELECT m.run_id, m.name, m.value FROM metric m
            WHERE m.split = 'probe' AND ($zoo IS NULL OR m.run_id IN (SELECT run_id FROM run WHERE zoo_id = $zoo))
            QUALIFY row_number() OVER (PARTITION BY m.run_id, m.name ORDER BY m.step DESC) = 1""", {"zoo": zoo_id})
        if probed.empty:
            return table
        wide = probed.pivot(index="run_id", columns="name", values="value")
        wide.columns = [f"probe_{c}" for c in wide.columns]
        return table.join(wide, on="run_id")

    def latest_batch_loss(self, zoo_id: str) -> pd.DataFrame:
        """Each run's most recent training-batch loss: ``run_id, step, loss`` (for live progress)."""
        return self._df("""
            SELECT m.run_id, m.step, m.value AS loss FROM metric m
            WHERE m.split = 'batch' AND m.name = 'loss'
              AND m.run_id IN (SELECT run_id FROM run WHERE zoo_id = $zoo)
            QUALIFY row_number() OVER (PARTITION BY m.run_id ORDER BY m.step DESC) = 1""", {"zoo": zoo_id})

    # -- checkpoints ----------------------------------------------------------

    def add_checkpoint(self, run_id: str, step: int, artifact_sha: str | None = None, *,
                       epoch: float | None = None, train_loss: float | None = None,
                       train_acc: float | None = None, test_loss: float | None = None,
                       test_acc: float | None = None, checkpoint_id: str | None = None) -> str:
        """Record a checkpoint; returns its id.

        A checkpoint already recorded for (run_id, step) is kept, and its id
        is returned.
        """
        row = {"checkpoint_id": checkpoint_id or new_id(), "run_id": run_id, "step": int(step),
               "epoch": epoch, "artifact_sha": artifact_sha, "train_loss": train_loss,
               "train_acc": train_acc, "test_loss": test_loss, "test_acc": test_acc,
               "created_at": utcnow()}
        with self._tx():
            self._insert("checkpoint", [row], on_conflict="ignore")
            return self._scalar("SELECT checkpoint_id FROM checkpoint WHERE run_id = ? AND step = ?",
                                [run_id, int(step)])

    def get_checkpoint(self, checkpoint_id: str) -> dict[str, Any]:
        """One checkpoint as a dict, with its run's ``zoo_id``."""
        rows = self._dicts("SELECT c.*, r.zoo_id FROM checkpoint c LEFT JOIN run r ON r.run_id = c.run_id "
                           "WHERE c.checkpoint_id = ?", [checkpoint_id])
        if not rows:
            raise NotFoundError(f"no checkpoint with checkpoint_id {checkpoint_id!r} in store {self.path}")
        return rows[0]

    def last_checkpoint(self, run_id: str) -> dict[str, Any] | None:
        """The run's checkpoint with the highest step, or None."""
        rows = self._dicts("SELECT * FROM checkpoint WHERE run_id = ? ORDER BY step DESC LIMIT 1", [run_id])
        return rows[0] if rows else None

    def list_checkpoints(self, run_id: str | Sequence[str] | None = None, *,
                         zoo_id: str | None = None) -> pd.DataFrame:
        """Checkpoints of some runs and/or one zoo (with ``zoo_id``), by run then step."""
        where, params = ["TRUE"], []
        if run_id is not None:
            where.append("list_contains(?, c.run_id)")
            params.append(as_list(run_id))
        if zoo_id is not None:
            where.append("r.zoo_id = ?")
            params.append(zoo_id)
        return self._df(f"SELECT c.*, r.zoo_id FROM checkpoint c LEFT JOIN run r ON r.run_id = c.run_id "
                        f"WHERE {' AND '.join(where)} ORDER BY c.run_id, c.step", params)

    # -- metrics --------------------------------------------------------------

    def add_metrics(self, rows: Iterable[Mapping[str, Any]] | pd.DataFrame) -> int:
        """Insert metric rows (``run_id, step, split, name, value``) in one transaction.

        Rows already recorded (same run, step, split, name) are kept.
        Returns the number of rows offered.
        """
        import pyarrow as pa

        if hasattr(rows, "columns"):  # DataFrame
            return self._insert("metric", pa.Table.from_pandas(rows, preserve_index=False), on_conflict="ignore")
        return self._insert("metric", list(rows), on_conflict="ignore")

    def metrics(self, run_ids: str | Sequence[str] | None = None, *, zoo_id: str | None = None,
                names: str | Sequence[str] | None = None, split: str | None = None) -> pd.DataFrame:
        """Metrics in long form: columns ``run_id, step, split, name, value``, sorted."""
        where, params = ["TRUE"], []
        for column, values in (("run_id", as_list(run_ids)), ("name", as_list(names))):
            if values is not None:
                where.append(f"list_contains(?, m.{column})")
                params.append(values)
        if split is not None:
            where.append("m.split = ?")
            params.append(split)
        if zoo_id is not None:
            where.append("m.run_id IN (SELECT run_id FROM run WHERE zoo_id = ?)")
            params.append(zoo_id)
        return self._df(f"SELECT m.* FROM metric m WHERE {' AND '.join(where)} "
                        "ORDER BY m.run_id, m.step, m.split, m.name", params)
