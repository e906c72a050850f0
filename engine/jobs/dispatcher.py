"""The owner's loop: take requests, ingest result bundles, track workers, start queued jobs.

Exactly one process owns the store (the dashboard server, or the CLI when no
dashboard runs); it alone calls :meth:`Dispatcher.tick`. Workers only write files.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from engine.auth import AccessPolicy
from engine.config import SweepSpec, load_sweep
from engine.train import check_registered
from store import StoreFilesChangedError

from .context import job_dir, read_progress, request_cancel
from .executors import Executor, Finished, make_executor
from .kinds import get_kind
from .orphans import record_worker, stop_orphan

__all__ = ["Dispatcher", "TickReport"]

log = logging.getLogger("zooscope.jobs")


def _now() -> datetime:
    """Naive UTC, as the catalog stores times."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class TickReport:
    ingested: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    finished: dict[str, str] = field(default_factory=dict)  # job id -> final status
    refused: dict[str, str] = field(default_factory=dict)  # bundle id -> why (its job had ended)


class Dispatcher:
    """Runs jobs for the store's owner.

    Parameters
    ----------
    store : store.Store
        The store, opened as owner.
    executor : engine.jobs.executors.Executor, optional
        Where workers run; the one ``[jobs] executor`` names by default (a local
        process pool unless set). Its ``free_slots`` is the global cap on jobs running at once.
    access : engine.auth.AccessPolicy, optional
        Who may submit and cancel; None means sign-in is off (everyone may).
        Refusals raise :class:`engine.auth.PermissionDenied` before anything is written.
    per_user : int, optional
        Jobs one owner may have running at once (0: no cap); ``[jobs] per_user`` by default.
    settings : engine.settings.Settings, optional
        Already loaded settings (read from the store folder otherwise). Their ``[plugins]``
        are put in force for this process and every worker it starts.
    """

    def __init__(self, store, executor: Executor | None = None, access: AccessPolicy | None = None,
                 per_user: int | None = None, settings=None):
        self.store = store
        from engine.settings import apply_plugins, load_settings

        if settings is None and (executor is None or per_user is None):
            settings = load_settings(store.path)
        if settings is not None:
            apply_plugins(settings)  # before the executor starts: workers inherit [plugins] through the environment
        if executor is None or per_user is None:
            executor = executor or make_executor(store.path, settings)
            per_user = settings.jobs.per_user if per_user is None else per_user
        self.executor = executor
        self.access = access
        self.per_user = per_user
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.generation = 0  # bumped on every catalog change: readers key their caches on it
        self.job_generation = 0  # bumped when a job is queued, starts, ends or is cancelled
        self.fault: str | None = None  # why the background loop stopped for good (a catalog file vanished)
        self._use_registered_datasets()
        self._recover_orphans()

    # -- submission -------------------------------------------------------------------
    def submit(self, kind: str, spec: dict[str, Any], *, owner: str = "local", zoo_id: str | None = None,
               context: dict[str, Any] | None = None) -> str:
        """Validate ``spec`` for ``kind`` and queue it for ``owner``.

        Bad specs, and owners whose role may not launch jobs, raise before anything is written.
        ``context`` is handed to the kind's validator (a pydantic ``model_validate``) when given.
        """
        self.authorize(owner, "launch")
        job_kind = get_kind(kind)
        if job_kind.validate is not None and context is not None:
            job_kind.validate(spec, context=context)
        elif job_kind.validate is not None:
            job_kind.validate(spec)
        with self._lock:
            job_id = self.store.submit_job(kind, spec, owner=owner, zoo_id=zoo_id)
            # bumped after the row is written: a reader that sees the new generation finds the job
            self.generation += 1
            self.job_generation += 1
            return job_id

    def submit_sweep(self, sweep: SweepSpec | dict | str, *, owner: str = "local",
                     population: bool = True) -> tuple[str, str]:
        """Create a zoo with its runs (status ``queued``) and queue the job that trains them.

        The zoo, its runs and the job are written in one transaction: a sweep that fails
        (validation, or any insert) leaves nothing behind. Returns ``(zoo_id, job_id)``. A sweep
        naming a dataset or architecture this process has not registered raises
        :class:`~engine.config.ConfigError` first.
        """
        self.authorize(owner, "launch")
        sweep = sweep if isinstance(sweep, SweepSpec) else load_sweep(sweep)
        check_registered(sweep)
        runs = sweep.expand()
        if any(run.dataset.path is not None for run in runs):
            # a path is file access on this machine: admins only when sign-in is on; everyone else
            # trains on data sets an admin registered by name (`zooscope datasets add`)
            self.authorize(owner, "register_dataset")
        with self._lock, self.store.transaction():
            zoo_id = self.store.create_zoo(sweep.name, sweep.model_dump(mode="json"), owner=owner)
            rows = [{
                "run_id": uuid4().hex, "zoo_id": zoo_id, "config": run.model_dump(mode="json"),
                "hparams": sweep.hyperparameters(run), "seed": run.seed, "status": "queued", "owner": owner,
                "name": " ".join(f"{k}={v}" for k, v in sweep.hyperparameters(run).items()) or sweep.name,
            } for run in runs]
            self.store.add_runs(rows)
            spec = {"sweep": sweep.model_dump(mode="json"), "zoo_id": zoo_id,
                    "run_ids": [r["run_id"] for r in rows], "population": population}
            # checked above, outside the transaction (a factory's check is a child process of up to a minute)
            job_id = self.submit("train", spec, owner=owner, zoo_id=zoo_id, context={"names_checked": True})
        return zoo_id, job_id

    def cancel(self, job_id: str, *, user: str | None = None) -> None:
        """Ask a job to stop: queued jobs are cancelled at once, running ones at their next check.

        With sign-in on, ``user`` must own the job (and be an editor) or be an admin.
        """
        with self._lock:
            job = self.store.get_job(job_id)
            self.authorize(user, "cancel" if user is not None and user == job.get("owner") else "cancel_any")
            self.generation += 1
            self.job_generation += 1
            if job["status"] == "queued":
                self.store.update_job(job_id, status="cancelled", finished_at=_now(), message="cancelled before it ran")
                self._settle_runs(job, "cancelled")
            elif job["status"] == "running":
                request_cancel(self.store.path, job_id)

    def authorize(self, user: str | None, action: str) -> None:
        """Raise :class:`engine.auth.PermissionDenied` unless ``user`` may do ``action`` (always may: sign-in off)."""
        if self.access is not None:
            self.access.require(user, action)

    def can(self, user: str | None, action: str) -> bool:
        return self.access is None or self.access.can(user, action)

    def queue_position(self, job_id: str) -> int | None:
        """The job's 1-based place among queued jobs in the order they would start; None if not queued."""
        return self.store.queue_position(job_id)

    # -- the loop ---------------------------------------------------------------------
    def tick(self) -> TickReport:
        """One round of owner work; cheap when there is nothing to do."""
        with self._lock:
            report = TickReport()
            self.store.check_files()  # a catalog file deleted under us: stop here, say why
            self._take_requests()
            ing = self.store.ingest_bundles()
            report.ingested, report.incomplete = list(ing.ingested), list(ing.incomplete)
            report.refused = dict(ing.refused)
            self._note_refused(ing.refused)
            for job_id in self.executor.running():
                prog = read_progress(self.store.path, job_id)
                if prog:
                    self.store.update_job(job_id, progress=prog["progress"], message=prog["message"])
            for fin in self.executor.poll():
                report.finished[fin.job_id] = self._finish(fin)
            while self.executor.free_slots > 0:
                job = self.store.next_queued_job(per_user_cap=self.per_user)
                if job is None:
                    break
                self._start(job)
                report.started.append(job["job_id"])
            if report.ingested or report.started or report.finished or report.refused or ing.stopped:
                self.generation += 1  # ing.stopped: logged runs whose script died (store.logged_runs)
            if report.started or report.finished:
                self.job_generation += 1
            # Everything this tick (and the pages since the last one) committed goes from the
            # WAL into store.duckdb: a no-op when nothing changed, ~10 ms when something did.
            self.store.checkpoint()
            return report

    def run_until_done(self, job_ids: list[str], *, poll_s: float = 0.2,
                       on_tick: Callable[[list[dict]], None] | None = None) -> list[dict]:
        """Tick until every job in ``job_ids`` has finished; returns their final rows."""
        while True:
            self.tick()
            jobs = [self.store.get_job(j) for j in job_ids]
            if on_tick is not None:
                on_tick(jobs)
            if all(j["status"] in ("done", "failed", "cancelled") for j in jobs):
                return jobs
            time.sleep(poll_s)

    def start_background(self, interval_s: float = 0.5) -> None:
        """Tick in a daemon thread (for the dashboard server); no Streamlit calls happen there."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.tick()
                except StoreFilesChangedError as exc:  # every later write would fail the same way
                    self.fault = str(exc)
                    log.critical("dispatcher stopped: %s", exc)
                    return
                except Exception:  # keep the loop alive; the error is in the server log
                    log.exception("dispatcher tick failed")
                self._stop.wait(interval_s)

        self._thread = threading.Thread(target=loop, name="zooscope-dispatcher", daemon=True)
        self._thread.start()

    def stop(self, *, kill_workers: bool = False) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if kill_workers:
            self.executor.shutdown()

    # -- internals --------------------------------------------------------------------
    def _use_registered_datasets(self) -> None:
        """Mirror the ``dataset`` table for workers, and resolve its names in this process too."""
        from engine.data import use_registered_folder

        folder = self.store.sync_dataset_mirror() if self.store.is_owner else self.store.layout.datasets
        use_registered_folder(folder)

    def _take_requests(self) -> None:
        """Queue requests dropped in ``requests/`` by CLI commands, each once.

        A request names its owner, and whoever can write the store folder can write a
        request: the folder's file permissions are the trust boundary. With sign-in on
        the named owner's role is still checked, as for any submission.
        """
        for claim in self.store.claim_requests():
            if claim.begin():
                self._apply_request(claim.request)
                claim.done()  # a refused request is done too: the server log says why

    def _apply_request(self, req: dict) -> None:
        try:
            if req["kind"] == "train_sweep":
                self.submit_sweep(req["payload"]["sweep"], owner=req["payload"].get("owner", "local"))
            elif req["kind"] == "import_run":  # `zooscope import`: checked weights, already in artifacts/
                from engine.importer import record_import_request

                record_import_request(self.store, req["payload"], access=self.access)
                self.generation += 1
            elif req["kind"] == "import_trajectory":  # `zooscope import-run` / `import-zoo`: artifacts written
                from engine.importer import record_runs_request

                record_runs_request(self.store, req["payload"], access=self.access)
                self.generation += 1
            elif req["kind"] == "register_dataset":  # `zooscope datasets add`: loaded and checked again here
                from engine.datasets import record_dataset_request

                record_dataset_request(self.store, req["payload"], access=self.access)
                self.generation += 1
            else:
                self.submit(req["kind"], req["payload"]["spec"], owner=req["payload"].get("owner", "local"))
        except Exception as exc:  # PermissionDenied included: the server log says who and why
            log.warning("request %s refused: %s", req.get("request_id"), exc)

    def _start(self, job: dict) -> None:
        d = job_dir(self.store.path, job["job_id"])
        d.mkdir(parents=True, exist_ok=True)
        (d / "spec.json").write_text(json.dumps({"kind": job["kind"], "spec": job["spec"], "owner": job["owner"]}))
        pid = self.executor.start(job["job_id"])
        if isinstance(pid, int):
            record_worker(self.store.path, job["job_id"], pid)
        self.store.update_job(job["job_id"], status="running", started_at=_now(), pid=pid, progress=0.0,
                              message="starting")

    def _note_refused(self, refused: dict[str, str]) -> None:
        """Bundles for jobs that had ended (a worker outlived its job): logged and noted on the job."""
        for bundle_id, why in refused.items():
            log.warning("result bundle %s refused: %s", bundle_id, why)
            job_id = bundle_id.rsplit("/", 1)[0]
            error = self.store.get_job(job_id).get("error") or ""
            self.store.update_job(job_id, error=f"{error} (result bundle {bundle_id} arrived after the job ended "
                                                f"and was refused)".strip())

    def _finish(self, fin: Finished) -> str:
        ing = self.store.ingest_bundles()  # the worker's last bundles, before the verdict
        self._note_refused(ing.refused)
        d = job_dir(self.store.path, fin.job_id)
        outcome = _read_json(d / "result.json") or _read_json(d / "error.json") or {}
        status = outcome.get("status") or "failed"
        error = outcome.get("error") if status != "done" else None
        if status == "done" and fin.returncode != 0:
            status = "failed"
        if status == "failed" and not error:
            error = f"{fin.reason}; last output: {fin.log_tail[-500:]}" if fin.log_tail else fin.reason
        if ing.incomplete:
            error = (error or "") + f" (incomplete result bundles left in inbox: {', '.join(ing.incomplete)})"
        message = json.dumps(outcome.get("result")) if status == "done" else status
        self.store.update_job(fin.job_id, status=status, finished_at=_now(), error=error, message=message,
                              progress=1.0 if status == "done" else None)
        if status != "done":
            self._settle_runs(self.store.get_job(fin.job_id), "failed" if status == "failed" else "cancelled")
        return status

    def _settle_runs(self, job: dict, status: str) -> None:
        """Runs of a train job that never finished take the job's fate; finished runs keep theirs."""
        if job["kind"] != "train" or not job.get("zoo_id"):
            return
        for run_id in job["spec"].get("run_ids", []):
            run = self.store.get_run(run_id)
            if run is not None and run["status"] in ("queued", "running"):
                self.store.update_run(run_id, status=status, finished_at=_now())

    def _recover_orphans(self) -> None:
        """Jobs left 'running' by a previous owner that died.

        A worker of theirs that still runs (a local one lives in its own session) is
        stopped first; then what it finished is ingested, and the job and its unfinished
        runs fail. Whatever such a worker would write later is refused by the store.
        """
        orphans = self.store.list_jobs(status="running").to_dict("records")
        stopped = {job["job_id"]: stop_orphan(self.store.path, job["job_id"]) for job in orphans}
        if orphans:
            self._note_refused(self.store.ingest_bundles().refused)
        for job in orphans:
            job_id = job["job_id"]
            self.store.discard_bundles(job_id)  # half-written by a worker that was stopped
            worker = f"; {stopped[job_id]}" if stopped[job_id] else ""
            self.store.update_job(job_id, status="failed", finished_at=_now(),
                                  error=f"the store's previous owner stopped while this job ran{worker}; resubmit it")
            self._settle_runs(self.store.get_job(job_id), "failed")


def _read_json(path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
