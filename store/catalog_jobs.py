"""Jobs, probe results and reports: the analysis side of the catalog."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from store.catalog_runs import as_list, check_status
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
                  owner: str | None = None, zoo_id: str | None = None, limit: int | None = None) -> pd.DataFrame:
        """Jobs, newest first, filtered by status (one or several), kind, owner, zoo."""
        where, params = ["TRUE"], []
        if status is not None:
            where.append("list_contains(?, status)")
            params.append(as_list(status))
        for column, value in (("kind", kind), ("owner", owner), ("zoo_id", zoo_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = f"SELECT * FROM job WHERE {' AND '.join(where)} ORDER BY created_at DESC, job_id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self._df(sql, params)

    def job_overview(self, recent: int = 3) -> pd.DataFrame:
        """Running and queued jobs plus the ``recent`` newest others, newest first, without their specs.

        What a live job list shows, read on every refresh of every open page: its cost does not
        grow with the number of jobs ever run, nor with the size of their specs.
        """
        columns = "job_id, kind, status, progress, message, owner, error, created_at, started_at, finished_at, zoo_id"
        return self._df(
            f"SELECT {columns} FROM job WHERE status IN ('running', 'queued') UNION ALL "
            f"(SELECT {columns} FROM job WHERE status NOT IN ('running', 'queued') "
            "ORDER BY created_at DESC, job_id LIMIT ?) ORDER BY created_at DESC, job_id", [int(recent)])

    def get_jobs(self, job_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Several jobs as raw rows (JSON columns as text), newest first; unknown ids are skipped."""
        if not job_ids:
            return []
        return self._dicts("SELECT * FROM job WHERE list_contains(?, job_id) ORDER BY created_at DESC, job_id",
                           [list(job_ids)])

    def job_ids_by_spec_field(self, kind: str, field: str) -> dict[str, list[str]]:
        """``spec[field]`` -> ids of the ``kind`` jobs whose spec holds that value, newest first.

        The catalog extracts the field itself, so no spec is decoded in Python (a probe job's
        spec carries its input checkpoints' configs). Jobs without the field are left out.
        """
        if not isinstance(field, str) or not field.isidentifier():
            raise ValueError(f"spec field must be a plain identifier; got {field!r:.80}")
        rows = self._dicts(
            f"SELECT job_id, json_extract_string(spec_json, '$.{field}') AS value FROM job "
            "WHERE kind = ? ORDER BY created_at DESC, job_id", [kind])
        out: dict[str, list[str]] = {}
        for row in rows:
            if row["value"] is not None:
                out.setdefault(row["value"], []).append(row["job_id"])
        return out

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

    def queue_order(self, kind: str | Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Queued jobs in the order they would start (``job_id``, ``owner``, ``created_at``, ``kind``).

        Fair across owners, first-in first-out within one: an owner's k-th queued job
        (k = 0, 1, ...) counts as if its owner had ``running + k`` jobs, and jobs go
        by that load, then by age. So one owner's ten jobs interleave with another's
        one instead of going first. Per-owner caps only delay jobs; they never reorder them.
        """
        where, params = ["status = 'queued'"], []
        if kind is not None:
            where.append("list_contains(?, kind)")
            params.append(as_list(kind))
        queued = self._dicts(f"SELECT job_id, owner, kind, created_at FROM job WHERE {' AND '.join(where)} "
                             "ORDER BY created_at, job_id", params)
        running = self._running_per_owner()
        seen: dict[Any, int] = {}
        for job in queued:
            k = seen.get(job["owner"], 0)
            seen[job["owner"]] = k + 1
            job["load"] = running.get(job["owner"], 0) + k
            job["first_of_owner"] = k == 0
        return sorted(queued, key=lambda j: (j["load"], j["created_at"], j["job_id"]))

    def _running_per_owner(self) -> dict[Any, int]:
        rows = self._dicts("SELECT owner, count(*) AS n FROM job WHERE status = 'running' GROUP BY owner")
        return {r["owner"]: int(r["n"]) for r in rows}

    def next_queued_job(self, kind: str | Sequence[str] | None = None, *, claim: bool = False,
                        pid: int | None = None, per_user_cap: int | None = None) -> dict[str, Any] | None:
        """The job to run next, or None when nothing may start.

        The first job of :meth:`queue_order` whose owner is below ``per_user_cap``
        running jobs (``None`` or 0: no cap); each owner's oldest job only, so an
        owner's jobs start in the order they were queued. With ``claim=True`` the
        job is marked running (and ``pid`` recorded) in the same transaction, so
        two callers never get the same job.
        """
        if per_user_cap is not None and per_user_cap < 0:
            raise ValueError(f"per_user_cap must be >= 0 (0: no cap); got {per_user_cap!r}")
        if not claim:
            chosen = self._next_allowed(kind, per_user_cap)
            return None if chosen is None else self.get_job(chosen)
        with self._tx():
            chosen = self._next_allowed(kind, per_user_cap)
            if chosen is None:
                return None
            self.update_job(chosen, status="running", pid=pid)
            return self.get_job(chosen)

    def _next_allowed(self, kind, per_user_cap: int | None) -> str | None:
        running = self._running_per_owner()
        for job in self.queue_order(kind):
            if job["first_of_owner"] and (not per_user_cap or running.get(job["owner"], 0) < per_user_cap):
                return job["job_id"]
        return None

    def queue_position(self, job_id: str) -> int | None:
        """The job's 1-based place in :meth:`queue_order`; None when it is not queued."""
        return self.queue_positions().get(job_id)

    def queue_positions(self) -> dict[str, int]:
        """Every queued job's 1-based place in :meth:`queue_order` (one query, for the sidebar)."""
        return {job["job_id"]: i + 1 for i, job in enumerate(self.queue_order())}

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

    def probe_version(self, key: str) -> tuple[str, str | None, Any] | None:
        """``(probe_id, artifact_sha, created_at)`` of the probe stored under ``key``, or None.

        A cheap look-up (no JSON decoded) that changes whenever the stored result does, for
        callers that keep decoded results in memory.
        """
        rows = self._dicts("SELECT probe_id, artifact_sha, created_at FROM probe WHERE key = ?", [key])
        return (rows[0]["probe_id"], rows[0]["artifact_sha"], rows[0]["created_at"]) if rows else None

    def list_probes(self, kind: str | None = None) -> pd.DataFrame:
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

    def list_reports(self) -> pd.DataFrame:
        """Reports without their bodies, newest first."""
        return self._df("SELECT report_id, title, author, created_at FROM report ORDER BY created_at DESC")
