"""``start_run``: a run of the user's own training loop, written as bundles the store's owner ingests.

The script never opens the catalog (the dashboard may own it). It writes weights as
content-addressed artifacts and rows as result bundles to ``inbox/track-<run_id>/``
(see :mod:`store.logged_runs`); the owner ingests them on its next tick (every 0.5 s
in the dashboard), or, when nobody owns the store, the next process that opens it as
owner does. Metrics are buffered and written every ``flush_every_s`` seconds, at
every checkpoint and when the run ends, so a ``kill -9`` loses at most the rows since
the last bundle; the owner then marks the run ``stopped``.
"""

from __future__ import annotations

import atexit
import math
import operator
import os
import threading
import time
import warnings
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import store
from engine.bounds import check_name, short_repr
from engine.config import ArchSpec, DatasetSpec

from .spec import built_by, check_config, logged_arch, logged_dataset, logged_train_spec, metric_key
from .writer import BundleWriter, Snapshot

__all__ = ["NoOpRun", "Run", "ingest_pending", "start_run"]

_CHECKPOINT_COLUMNS = ("train_loss", "train_acc", "test_loss", "test_acc")
_MAX_MESSAGE = 4000  # characters of an error kept on the run


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _step(step: Any) -> int:
    try:
        value = operator.index(step)
    except TypeError:
        raise ValueError(f"step must be an integer >= 0; got {type(step).__name__} {short_repr(step)}") from None
    if value < 0:
        raise ValueError(f"step must be an integer >= 0; got {value}")
    return value


class Run:
    """An open logged run; get one from :func:`start_run`.

    Attributes
    ----------
    run_id : str
        The run's id in the store.
    store_path : Path
        The store folder.
    """

    def __init__(self, store_path: Path, run_id: str, *, zoo: str, name: str, owner: str, arch: ArchSpec,
                 dataset: DatasetSpec, hparams: dict[str, Any], flush_every_s: float, heartbeat_s: float,
                 max_buffered: int = 50_000):
        self.run_id = run_id
        self.store_path = store_path
        self.name, self.zoo, self.owner = name, zoo, owner
        self._arch, self._dataset, self._seed = arch, dataset, hparams.get("seed")
        self._job_id = store.logged_run_job_id(self.run_id)
        # The zoo's id if the owner has to create it; it places the run in an existing zoo of this name
        # and owner otherwise (store.logged_runs), rewriting zoo_id in every run row.
        self._zoo_id = uuid4().hex
        self._manifest = {"kind": "tracking", "tracking": {"zoo_name": zoo, "zoo_owner": owner,
                                                           "zoo_id": self._zoo_id, "run_id": self.run_id}}
        self._flush_every_s, self._max_buffered = float(flush_every_s), int(max_buffered)
        self._due = time.monotonic() + self._flush_every_s
        self._keys: dict[str, tuple[str, str]] = {}
        self._rows: list[tuple[int, tuple[str, str], float]] = []  # (step, (split, name), value)
        self._runs: list[dict[str, Any]] = []  # run rows (status changes) for the next bundle
        self._snapshots: list[Snapshot] = []  # checkpoints for the next bundle
        self._checkpoint_steps: list[int] = []  # in order; a second checkpoint at a step is refused
        self._max_step = 0
        self._t0 = time.perf_counter()
        self._device: str | None = None
        self.status: str = "running"
        store.record_logged_writer(store_path, self.run_id, heartbeat_s=heartbeat_s)
        self._writer = BundleWriter(store_path, self._job_id, self._manifest)
        self._runs.append({
            "run_id": self.run_id, "zoo_id": self._zoo_id, "config": self._config(), "hparams": hparams,
            "seed": self._seed_column(), "status": "running", "started_at": _now(), "owner": owner, "name": name,
            "origin": "logged", "built_by": built_by(arch)})
        self.flush()
        self._stop_beat = threading.Event()
        self._beat = threading.Thread(target=_heartbeat, args=(store_path, self.run_id, heartbeat_s, self._stop_beat),
                                      name=f"zooscope-heartbeat-{self.run_id[:8]}", daemon=True)
        self._beat.start()
        _OPEN[self.run_id] = self

    # -- logging ------------------------------------------------------------------------
    def log(self, step: int, **metrics: Any) -> None:
        """Record metrics at ``step``: ``run.log(step, train_loss=..., test_acc=..., lr=...)``.

        ``<split>_<name>`` with split train/test/val/batch is stored as that split and name
        (``train_loss`` is the ``loss`` curve of split ``train``); a bare ``loss``/``acc``
        is the training batch's; other names are split ``log``. Values are numbers (a
        one-element tensor is read with ``float``); NaN/inf are skipped with a warning.
        Rows are buffered and written every ``flush_every_s`` seconds.
        """
        # Called every step: a few microseconds, so the checks take the fast path for plain ints and floats.
        if self.status != "running":
            raise RuntimeError(f"run {self.name!r} is {self.status}; log before it ends")
        if type(step) is not int or step < 0:
            step = _step(step)
        if step > self._max_step:
            self._max_step = step
        keys, rows, isfinite = self._keys, self._rows, math.isfinite
        for key, value in metrics.items():
            split_name = keys.get(key) or self._new_key(key)
            if type(value) is not float:
                value = _number(key, value)
            if not isfinite(value):
                self._non_finite(key, step, value)
                continue
            rows.append((step, split_name, value))
        if len(rows) >= self._max_buffered or time.monotonic() >= self._due:
            self.flush()

    def _new_key(self, key: str) -> tuple[str, str]:
        self._keys[key] = metric_key(key)
        return self._keys[key]

    def _non_finite(self, key: str, step: int, value: float) -> None:
        warnings.warn(f"run {self.name!r}: metric {key!r} is {value} at step {step}; not recorded",
                      RuntimeWarning, stacklevel=3)

    # -- checkpoints --------------------------------------------------------------------
    def checkpoint(self, model: Any, step: int, *, epoch: float | None = None, **metrics: Any) -> str | None:
        """Store the weights at ``step`` (a module or a state_dict) with headline metrics; returns the checkpoint id.

        A second checkpoint at a step already checkpointed is not stored (a warning says so; None).

        The weights go to the store as a safetensors artifact; every floating-point tensor must
        be finite. ``train_loss``, ``train_acc``, ``test_loss`` and ``test_acc`` fill the
        checkpoint's columns (the runs table's final metrics); every metric is also logged at
        ``step``. The loop pays for the check and a copy of the weights; the background writer
        hashes and writes the artifact and the bundle (at once, before later rows).
        """
        from .weights import state_of

        if self.status != "running":
            raise RuntimeError(f"run {self.name!r} is {self.status}; checkpoint before it ends")
        step = _step(step)
        if step in self._checkpoint_steps:
            warnings.warn(f"run {self.name!r}: a checkpoint at step {step} is already recorded; this one is not "
                          "stored (one checkpoint per step)", RuntimeWarning, stacklevel=2)
            return None
        state = state_of(model)
        if metrics:
            self.log(step, **metrics)
        self._max_step = max(self._max_step, step)
        self._device = self._device or str(next(iter(state.values())).device)
        snapshot = {k: v.detach().to("cpu", copy=True) for k, v in state.items()}  # the loop goes on training
        checkpoint_id = uuid4().hex
        row = {"checkpoint_id": checkpoint_id, "run_id": self.run_id, "step": step,
               "epoch": None if epoch is None else float(epoch), "created_at": _now()}
        for column in _CHECKPOINT_COLUMNS:
            value = metrics.get(column)
            row[column] = float(value) if value is not None and math.isfinite(float(value)) else None
        self._snapshots.append(Snapshot(row, snapshot))
        self._checkpoint_steps.append(step)
        # the TrainSpec-shaped config follows the run (steps so far, checkpoint steps) for pages and probes
        self._runs.append({"run_id": self.run_id, "zoo_id": self._zoo_id, "config": self._config()})
        self.flush()
        return checkpoint_id

    # -- bundles ------------------------------------------------------------------------
    def flush(self, *, wait: bool = False) -> None:
        """Hand what is buffered to the writer as one bundle (also done on a timer, at checkpoints and at the end).

        ``wait=True`` returns only once every bundle handed over so far is in the inbox.
        """
        self._due = time.monotonic() + self._flush_every_s
        if self._rows or self._runs or self._snapshots:
            tables: dict[str, Any] = {"run": self._runs}
            if self._rows:
                tables["metric"] = _metric_rows(self.run_id, self._rows)
            self._writer.submit(tables, self._snapshots)
            self._runs, self._snapshots, self._rows = [], [], []
        if wait:
            self._writer.drain()

    # -- the end ------------------------------------------------------------------------
    def finish(self, status: str = "done", message: str | None = None) -> None:
        """Close the run: write its last bundle with ``status`` ('done', 'failed', 'cancelled' or 'stopped')."""
        if self.status != "running":
            return
        if status not in ("done", "failed", "cancelled", "stopped"):
            raise ValueError(f"status must be 'done', 'failed', 'cancelled' or 'stopped'; got {status!r}")
        self.status = status
        self._stop_beat.set()
        self._runs.append({
            "run_id": self.run_id, "zoo_id": self._zoo_id, "config": self._config(), "status": status,
            "finished_at": _now(), "wall_s": time.perf_counter() - self._t0, "device": self._device,
            "message": None if message is None else message[:_MAX_MESSAGE]})
        try:
            self.flush()
            self._writer.close()
        finally:  # without a writer record the owner marks a run it never saw closed 'stopped'
            store.release_logged_writer(self.store_path, self.run_id)
            _OPEN.pop(self.run_id, None)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            self.finish("done")
        elif isinstance(exc, KeyboardInterrupt):
            self._finish_quietly("cancelled", "interrupted (KeyboardInterrupt)")
        elif isinstance(exc, SystemExit) and exc.code in (None, 0):
            self._finish_quietly("done", None)
        else:
            self._finish_quietly("failed", f"{type(exc).__name__}: {exc}")
        return False

    def _finish_quietly(self, status: str, message: str | None) -> None:
        """Finish while an exception is on its way out: a second error must not hide the first."""
        try:
            self.finish(status, message)
        except Exception as inner:  # noqa: BLE001 - reported, and the user's exception propagates
            warnings.warn(f"run {self.name!r} could not record that it {status}: {inner}", RuntimeWarning,
                          stacklevel=3)

    def _config(self) -> dict[str, Any]:
        spec = logged_train_spec(self._arch, self._dataset, steps=self._max_step, seed=self._seed_column(),
                                 checkpoints=self._checkpoint_steps)
        return spec.model_dump(mode="json")

    def _seed_column(self) -> int | None:
        seed = self._seed
        return seed if isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**63 else None

    def __repr__(self) -> str:
        return f"Run({self.name!r}, zoo={self.zoo!r}, run_id={self.run_id!r}, {self.status})"


def _number(key: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"run.log: metric {key!r} must be a number; got {type(value).__name__} "
                         f"{short_repr(value)}") from None


def _metric_rows(run_id: str, rows: list[tuple[int, tuple[str, str], float]]):
    """A callable making the metric table (built by the writer thread, off the training loop)."""

    def build():
        import pyarrow as pa

        return pa.table({
            "run_id": pa.array([run_id] * len(rows), pa.string()),
            "step": pa.array([r[0] for r in rows], pa.int64()),
            "split": pa.array([r[1][0] for r in rows], pa.string()),
            "name": pa.array([r[1][1] for r in rows], pa.string()),
            "value": pa.array([r[2] for r in rows], pa.float64()),
        })

    return build


class NoOpRun:
    """What ranks other than 0 get under ``torch.distributed``: the same methods, writing nothing."""

    run_id = None
    status = "running"

    def __init__(self, name: str, zoo: str):
        self.name, self.zoo = name, zoo

    def log(self, step: int, **metrics: Any) -> None:
        pass

    def checkpoint(self, model: Any, step: int, *, epoch: float | None = None, **metrics: Any) -> None:
        return None

    def flush(self, *, wait: bool = False) -> None:
        pass

    def finish(self, status: str = "done", message: str | None = None) -> None:
        self.status = status

    def __enter__(self) -> NoOpRun:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        return False


def _heartbeat(store_path: Path, run_id: str, period_s: float, stop: threading.Event) -> None:
    while not stop.wait(period_s):
        store.touch_logged_writer(store_path, run_id)


# Runs still open at interpreter exit (no `with`, no finish()) end as 'stopped', saying why. Held
# strongly: a run whose object the script dropped is still open until then.
_OPEN: dict[str, Run] = {}


@atexit.register
def _close_open_runs() -> None:
    for run in list(_OPEN.values()):
        run._finish_quietly("stopped", "the script exited without closing the run; use `with start_run(...) as "
                                       "run:` or call run.finish()")


def _is_writer_rank() -> bool:
    """Rank 0 of an initialised ``torch.distributed`` group, else ``$RANK`` (set by torchrun) 0 or unset."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank() == 0
    except ImportError:
        pass
    return os.environ.get("RANK", "0").strip() in ("", "0")


def start_run(store: str | os.PathLike[str] | None = None, zoo: str = "logged", name: str | None = None,
              config: Mapping[str, Any] | None = None, *, arch: str | ArchSpec,
              arch_kwargs: Mapping[str, Any] | None = None, arch_output: str | None = None,
              dataset: str | DatasetSpec, owner: str | None = None, flush_every_s: float = 2.0,
              heartbeat_s: float = 30.0) -> Run | NoOpRun:
    """Open a run of your own training loop in a Zooscope store.

    Parameters
    ----------
    store : str or path-like, optional
        The store folder (created if missing); default ``$ZOOSCOPE_STORE`` or ``./zoo-store``.
    zoo : str
        The zoo the run joins: the newest zoo of that name and ``owner``, created if missing.
    name : str, optional
        The run's name in the runs table (default ``run-<first 8 characters of its id>``).
    config : dict, optional
        Your hyperparameters (JSON values, at most 64 KiB); shown as the runs table's
        ``hp_*`` columns. An integer ``seed`` key also fills the run's seed.
    arch : str or ArchSpec
        What builds the model, so probes can rebuild it: a factory ``"module:callable"``
        (called as ``callable(**arch_kwargs)``), or a built-in name such as ``"mlp"``.
    arch_kwargs : dict, optional
        The factory's keyword arguments (JSON values), or a built-in's width/depth/options.
    arch_output : str, optional
        Where forward's logits are: ``"logits"`` (attribute/key) or ``"0"`` (tuple index).
    dataset : str or DatasetSpec
        The dataset by name: built in (``"mnist1d"``) or registered in the store.
    owner : str, optional
        Who the run belongs to; default ``$USER`` (as the CLI) or ``"local"``.
    flush_every_s : float
        Metrics are written at least this often (and at checkpoints and the end).
    heartbeat_s : float
        How often the writer record is touched, so an owner on another host can tell a dead script.

    Returns
    -------
    Run, or NoOpRun on ranks other than 0 of ``torch.distributed``.

    Raises
    ------
    ValueError
        For a bad name, config, arch or dataset; nothing is written then.
    """
    zoo = check_name(zoo, "zoo name")
    owner = check_name(owner if owner is not None else os.environ.get("USER") or "local", "owner")
    hparams = check_config(config)
    arch_spec = logged_arch(arch, arch_kwargs, output=arch_output)
    dataset_spec = logged_dataset(dataset)
    if name is not None:
        name = check_name(name, "run name")
    if not flush_every_s > 0 or not heartbeat_s > 0:
        raise ValueError(f"flush_every_s and heartbeat_s must be > 0 seconds; got {flush_every_s!r}, {heartbeat_s!r}")
    if not _is_writer_rank():
        return NoOpRun(name or "run", zoo)
    run_id = uuid4().hex
    return Run(_store_folder(store), run_id, zoo=zoo, name=name or f"run-{run_id[:8]}", owner=owner, arch=arch_spec,
               dataset=dataset_spec, hparams=hparams, flush_every_s=flush_every_s, heartbeat_s=heartbeat_s)


def _store_folder(path: str | os.PathLike[str] | None) -> Path:
    from store.paths import StoreLayout

    layout = StoreLayout(store.resolve_store_path(path))
    layout.create()  # folders only: the catalog is created by its first owner
    return layout.root


def ingest_pending(store_path: str | os.PathLike[str] | None = None) -> store.IngestReport:
    """Take in the bundles of logged runs now, when no dashboard owns the store (it does so by itself).

    Opens the store as its owner for a moment: ingests every complete bundle waiting in
    ``inbox/`` and marks ``stopped`` the logged runs whose script is gone. Raises
    :class:`store.StoreBusyError` naming the owner when another process holds the store.
    """
    with store.open_store(store.resolve_store_path(store_path)) as st:
        return st.ingest_bundles()
