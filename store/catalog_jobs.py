"""Jobs, probe results and reports: the analysis side of the catalog."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from store.catalog_runs import _as_list, check_status
from store.core import StoreCore
from store.rows import canonical_json, decode_row, new_id, utcnow
from store.schema import JOB_STATUSES

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["JobsCatalog", "probe_key"]

_TERMINAL_JOB = ("done", "failed", "cancelled")


def probe_key(kind: str, params: Any, inputs: Any, code_version: str = "") -> str:
    """The cache key of a probe: sha256 of its kind, params, inputs and code version.

    Equal requests (dict key order aside) give equal keys, so a probe is
    computed once and found by everyone through :meth:`Store.get_probe`.
    """
    text = canonical_json({"kind": kind, "params": params, "inputs": inputs, "code_version": code_version})
    return hashlib.sha256(text.encode()).hexdigest()


class JobsCatalog(StoreCore):
    """Methods for the ``job``, ``probe`` and ``report`` tables."""

    # -- jobs -----------------------------------------------------------------

    def submit_job(self, kind: str, spec: Mapping[str, Any], owner: str | None = None, zoo_id: str | None = None,
                   *, job_id: str | None = None, message: str | None = None) -> str:
        """Queue a job; returns its ``job_id``.

        Parameters
        ----------
        kind : str
            What to run (``"train"``, ``"probe.landscape"``, ...), interpreted by engine.jobs.
        spec : dict
            The validated spec, JSON-able (stored as ``spec_json``).
        owner : str, optional
            Who asked (user name); used for fair scheduling.
        zoo_id : str, optional
            The zoo the job works on, for listing.
        """
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"job kind must be a non-empty string; got {kind!r}")
        job_id = job_id or new_id()
        self._insert("job", [{"job_id": job_id, "kind": kind, "spec": dict(spec), "status": "queued",
                              "progress": 0.0, "message": message, "owner": owner,
                              "created_at": utcnow(), "zoo_id": zoo_id}])
        return job_id

    def get_job(self, job_id: str) -> dict[str, Any]:
        """One job as a dict (``spec`` parsed)."""
        return self._get("job", "job_id", job_id)

    def list_jobs(self, status: str | Sequence[str] | None = None, *, kind: str | None = None,
                  owner: str | None = None, zoo_id: str | None = None, limit: int | None = None) -> "pd.DataFrame":
        """Jobs, newest first, filtered by status (one or several), kind, owner, zoo."""
        where, params = ["TRUE"], []
        if status is not None:
            where.append("list_contains(?, status)")
            params.append(_as_list(status))
        for column, value in (("kind", kind), ("owner", owner), ("zoo_id", zoo_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = f"SELECT * FROM job WHERE {' AND '.join(where)} ORDER BY created_at DESC, job_id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self._df(sql, params)

    def update_job(self, job_id: str, **fields: Any) -> None:
        """Set columns of one job (``status``, ``progress``, ``message``, ``error``, ``pid``, ...).

        Setting ``status='running'`` fills ``started_at`` and a final status
        fills ``finished_at`` unless given or already set.
        """
        check_status(fields.get("status"), JOB_STATUSES, "job")
        progress = fields.get("progress")
        if progress is not None and not 0.0 <= float(progress) <= 1.0:
            raise ValueError(f"job progress must be a fraction in [0, 1]; got {progress!r}")
        with self._tx():
            fields = self._stamp_times("job", "job_id", job_id, fields, _TERMINAL_JOB)
            self._update("job", "job_id", job_id, fields)

    def next_queued_job(self, kind: str | Sequence[str] | None = None, *, claim: bool = False,
                        pid: int | None = None) -> dict[str, Any] | None:
        """The job to run next, or None when nothing is queued.

        Fair across owners: the owner with the fewest running jobs goes first,
        then the oldest job. With ``claim=True`` the job is marked running (and
        ``pid`` recorded) in the same transaction, so two callers never get the same job.
        """
        where, params = ["j.status = 'queued'"], []
        if kind is not None:
            where.append("list_contains(?, j.kind)")
            params.append(_as_list(kind))
        sql = f"""
            SELECT j.* FROM job j LEFT JOIN (
                SELECT owner, count(*) AS n FROM job WHERE status = 'running' GROUP BY owner
            ) busy ON busy.owner IS NOT DISTINCT FROM j.owner
            WHERE {' AND '.join(where)}
            ORDER BY coalesce(busy.n, 0), j.created_at, j.job_id LIMIT 1"""
        if not claim:
            rows = self._dicts(sql, params)
            return decode_row(rows[0]) if rows else None
        with self._tx():
            rows = self._dicts(sql, params)
            if not rows:
                return None
            self.update_job(rows[0]["job_id"], status="running", pid=pid)
            return self.get_job(rows[0]["job_id"])

    def cancel_job(self, job_id: str) -> bool:
        """Mark a queued or running job ``cancelled``; returns False if it had already finished.

        A running job's executor sees the status and stops its worker.
        """
        with self._tx():
            status = self.get_job(job_id)["status"]
            if status in _TERMINAL_JOB:
                return False
            self.update_job(job_id, status="cancelled", message="cancelled")
            return True

    # -- probes ---------------------------------------------------------------

    def put_probe(self, key: str, kind: str, *, params: Any = None, inputs: Any = None,
                  artifact_sha: str | None = None, result: Any = None, code_version: str | None = None,
                  owner: str | None = None, probe_id: str | None = None) -> str:
        """Store a probe result under its cache ``key`` (see :func:`probe_key`); returns its ``probe_id``.

        Putting a key again replaces the result but keeps the first ``probe_id``.
        """
        row = {"probe_id": probe_id or new_id(), "key": key, "kind": kind, "params": params, "inputs": inputs,
               "artifact_sha": artifact_sha, "result": result, "code_version": code_version,
               "owner": owner, "created_at": utcnow()}
        with self._tx():
            self._insert("probe", [row], on_conflict="update")
            return self._scalar("SELECT probe_id FROM probe WHERE key = ?", [key])

    def get_probe(self, key: str) -> dict[str, Any] | None:
        """The probe stored under ``key`` (``params``, ``inputs``, ``result`` parsed), or None."""
        rows = self._dicts("SELECT * FROM probe WHERE key = ?", [key])
        return decode_row(rows[0]) if rows else None

    def list_probes(self, kind: str | None = None) -> "pd.DataFrame":
        """Probe rows (JSON as text), newest first, optionally of one kind."""
        if kind is None:
            return self._df("SELECT * FROM probe ORDER BY created_at DESC, probe_id")
        return self._df("SELECT * FROM probe WHERE kind = ? ORDER BY created_at DESC, probe_id", [kind])

    def delete_probe(self, key: str) -> bool:
        """Forget a probe result (its artifact stays for :meth:`gc_artifacts`); True if it existed."""
        with self._tx() as con:
            return con.execute("DELETE FROM probe WHERE key = ?", [key]).fetchone()[0] > 0

    # -- reports --------------------------------------------------------------

    def add_report(self, title: str, body: Mapping[str, Any], *, author: str | None = None,
                   report_id: str | None = None) -> str:
        """Record a report (its JSON-able ``body``); returns its ``report_id``."""
        report_id = report_id or new_id()
        self._insert("report", [{"report_id": report_id, "title": title, "author": author,
                                 "created_at": utcnow(), "body": dict(body)}])
        return report_id

    def get_report(self, report_id: str) -> dict[str, Any]:
        """One report as a dict (``body`` parsed)."""
        return self._get("report", "report_id", report_id)

    def list_reports(self) -> "pd.DataFrame":
        """Reports without their bodies, newest first."""
        return self._df("SELECT report_id, title, author, created_at FROM report ORDER BY created_at DESC")
