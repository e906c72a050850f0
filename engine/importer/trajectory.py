"""Checkpoint files and logged metrics of one training run, imported as one run with its whole trajectory.

Three phases, so that nothing is half-written:

1. :func:`check_trajectory` loads every file (safetensors or ``torch.load(weights_only=True)``),
   checks its keys, shapes and values against the architecture and collects every problem,
   naming the file; it raises before anything is written.
2. :func:`write_trajectory` loads each file again, evaluates it on the dataset (the
   checkpoint's headline ``train/test loss/acc``, as ``zooscope import`` does) and writes
   its tensors as a content-addressed artifact file. Files are not catalog rows: if a later
   step fails, ``Store.gc_artifacts`` collects them.
3. :func:`record_runs` writes the zoo, the runs, their artifact rows, checkpoints and
   metrics in one catalog transaction; or, while another process owns the store,
   :func:`hand_over_runs` leaves a request that process records the same way
   (:func:`record_runs_request`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from engine import data as zdata
from engine import nets
from engine.bounds import MAX_CHECKPOINTS, MAX_HPARAMS, MAX_IMPORT_METRIC_VALUES, MAX_STEPS, check_name, short_repr
from engine.config import ArchSpec, DatasetSpec, TrainSpec

from .folder import CheckpointFile
from .metrics_file import MetricTable, metric_key
from .provenance import arch_label, file_sha256, import_provenance
from .weights import check_weight_values, evaluate_state, load_weights, match_state_dict

__all__ = ["ImportedCheckpoint", "ImportedRun", "Trajectory", "build_for", "check_trajectory", "hand_over_runs",
           "record_runs", "record_runs_request", "write_trajectory"]

REQUEST_KIND = "import_trajectory"
HEADLINE = ("train_loss", "train_acc", "test_loss", "test_acc")
_MAX_PROBLEMS_SHOWN = 10


@dataclass
class Trajectory:
    """A checked run, nothing written yet: its files by step, logged metrics and what describes it."""

    name: str
    arch: ArchSpec
    dataset: DatasetSpec
    files: list[CheckpointFile]
    table: MetricTable | None
    source: Path
    files_sha256: dict[str, str]
    hparams: dict[str, Any] = field(default_factory=dict)
    seed: int = 0


@dataclass
class ImportedCheckpoint:
    step: int
    epoch: float | None
    sha: str  # the artifact file holding its tensors
    metrics: dict[str, float]  # Zooscope's evaluation on the run's dataset (HEADLINE keys)


@dataclass
class ImportedRun:
    """A run whose tensors are artifact files, ready to be recorded."""

    name: str
    config: TrainSpec
    hparams: dict[str, Any]
    seed: int
    built_by: dict[str, Any]
    checkpoints: list[ImportedCheckpoint]
    metrics: list[dict[str, Any]]  # rows {step, split, name, value}, without run_id

    def to_payload(self) -> dict[str, Any]:
        return {"name": self.name, "config": self.config.model_dump(mode="json"), "hparams": self.hparams,
                "seed": self.seed, "built_by": self.built_by, "metrics": self.metrics,
                "checkpoints": [{"step": c.step, "epoch": c.epoch, "sha": c.sha,
                                 "metrics": {k: _finite(v) for k, v in c.metrics.items()}}
                                for c in self.checkpoints]}

    @classmethod
    def from_payload(cls, p: dict[str, Any]) -> ImportedRun:
        """The run a request file describes, checked as the command checked it: the server reads files that
        whoever can write into ``requests/`` wrote."""
        _check_payload_run(p)
        return cls(p["name"], TrainSpec.model_validate(p["config"]), p["hparams"], int(p["seed"]), p["built_by"],
                   [ImportedCheckpoint(int(c["step"]), c["epoch"], c["sha"], c["metrics"]) for c in p["checkpoints"]],
                   p["metrics"])


def _check_payload_run(p: dict[str, Any]) -> None:

    hparams, rows = p.get("hparams"), p.get("metrics")
    if not isinstance(hparams, dict) or len(hparams) > MAX_HPARAMS:
        raise ValueError(f"import request: hparams must be an object of at most {MAX_HPARAMS} entries; "
                         f"got {short_repr(hparams)}")
    for key in hparams:
        check_name(key, f"import request: hyperparameter {short_repr(key)}")
    if not isinstance(rows, list) or len(rows) > MAX_IMPORT_METRIC_VALUES:
        raise ValueError(f"import request: metrics must be a list of at most {MAX_IMPORT_METRIC_VALUES:,} rows")
    if len(p.get("checkpoints") or ()) > MAX_CHECKPOINTS:
        raise ValueError(f"import request: a run may have at most {MAX_CHECKPOINTS} checkpoints")
    named: set[str] = set()
    for i, row in enumerate(rows):
        step = row.get("step") if isinstance(row, dict) else None
        if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= MAX_STEPS:
            raise ValueError(f"import request: metric row {i}: step must be an integer in [0, {MAX_STEPS}]; "
                             f"got {short_repr(step)}")
        if not isinstance(row.get("value"), int | float) or isinstance(row.get("value"), bool):
            raise ValueError(f"import request: metric row {i}: value must be a number; got {short_repr(row)}")
        for text in (row.get("split"), row.get("name")):
            if text not in named:
                check_name(text, f"import request: metric name {short_repr(text)}")
                named.add(text)


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def build_for(arch: ArchSpec, dataset: DatasetSpec):
    """``(dataset, model)``: the dataset loaded and a model of ``arch`` for its shapes."""
    ds = zdata.load(dataset)
    return ds, nets.build(arch, ds.input_shape, ds.n_outputs, vocab_size=ds.vocab_size)


def check_trajectory(name: str, files: list[CheckpointFile], arch: ArchSpec, dataset: DatasetSpec, *,
                     source: Path, table: MetricTable | None = None, hparams: dict | None = None, seed: int = 0,
                     model: torch.nn.Module | None = None) -> Trajectory:
    """Load and check every file against ``arch``; ``ValueError`` naming each file that does not fit.

    Also checks that the manifest's metrics agree with the metrics file's where both give one.
    """
    if model is None:
        model = build_for(arch, dataset)[1]
    label = arch_label(arch)
    problems, hashes = [], {}
    for f in files:
        try:
            state = load_weights(f.path)
            match_state_dict(model, state, label)
            check_weight_values(model, state)
        except ValueError as exc:
            problems.append(f"{f.name}: {_without_path(str(exc), f.path)}")
            continue
        hashes[_relative(f.path, source)] = file_sha256(f.path)
    if problems:
        shown = problems[:_MAX_PROBLEMS_SHOWN]
        more = len(problems) - len(shown)
        raise ValueError(f"{len(problems)} of {len(files)} checkpoint files in {source} cannot be imported as "
                         f"{label}; nothing was written:\n  - " + "\n  - ".join(shown)
                         + (f"\n  - … and {more} more" if more else ""))
    table = _with_manifest_metrics(table, files, source)
    return Trajectory(name, arch, dataset, files, table, source, hashes, dict(hparams or {}), seed)


def _relative(path: Path, source: Path) -> str:
    """``path`` relative to the imported folder (the key of its hash in ``built_by``)."""
    try:
        return path.resolve().relative_to(Path(source).resolve()).as_posix()
    except ValueError:
        return str(path)


def _without_path(message: str, path: Path) -> str:
    """``message`` without the file's path (the list of problems names each file already)."""
    return message.replace(f"{path} ", "", 1)


def _with_manifest_metrics(table: MetricTable | None, files: list[CheckpointFile], source: Path) -> MetricTable | None:
    if not any(f.metrics for f in files):
        return table
    table = table or MetricTable(str(source / "manifest.json"))
    for f in files:
        for column, value in f.metrics.items():
            known = table.values.get((f.step, column))
            if known is not None and known != value:
                raise ValueError(f"the manifest gives {column!r} = {value!r} at step {f.step} ({f.name}) but "
                                 f"{table.source} gives {known!r}; make them agree or drop one")
            if math.isfinite(value):
                table.values[(f.step, column)] = value
    return table


def write_trajectory(tr: Trajectory, store_path: str | Path, *, ds=None, model=None,
                     on_checkpoint=None) -> ImportedRun:
    """Evaluate each checkpoint on the dataset and write its tensors as an artifact file (no catalog row)."""
    import store

    if ds is None or model is None:
        ds, model = build_for(tr.arch, tr.dataset)
    checkpoints = []
    for f in tr.files:
        state = {k: v.contiguous() for k, v in load_weights(f.path).items()}
        metrics = evaluate_state(model, state, ds)
        epoch = f.epoch if f.epoch is not None else (tr.table.epochs.get(f.step) if tr.table else None)
        checkpoints.append(ImportedCheckpoint(f.step, epoch, store.put_tensors_at(store_path, state), metrics))
        if on_checkpoint is not None:
            on_checkpoint(f)
    steps = [c.step for c in checkpoints]
    config = TrainSpec(dataset=tr.dataset, arch=tr.arch, steps=max(1, *steps), checkpoints=steps)
    return ImportedRun(tr.name, config, tr.hparams, tr.seed,
                       import_provenance(tr.arch, tr.source, tr.files_sha256), checkpoints,
                       _metric_rows(tr.table, checkpoints))


def _metric_rows(table: MetricTable | None, checkpoints: list[ImportedCheckpoint]) -> list[dict[str, Any]]:
    """The logged metrics as written, plus Zooscope's evaluation at each checkpoint where the log has none."""
    rows = table.rows() if table is not None else []
    seen = {(r["step"], r["split"], r["name"]) for r in rows}
    for c in checkpoints:
        for column, value in c.metrics.items():
            split, name = metric_key(column)
            if math.isfinite(value) and (c.step, split, name) not in seen:
                rows.append({"step": c.step, "split": split, "name": name, "value": float(value)})
    return rows


# -- recording -------------------------------------------------------------------------------------


def record_runs(st, zoo: str, runs: list[ImportedRun], *, owner: str, access=None,
                new_zoo: bool = False) -> list[str]:
    """Record imported runs in zoo ``zoo`` in one transaction; returns their run ids.

    The zoo is created if it does not exist; with ``new_zoo`` an existing zoo of that
    name is refused instead. Each checkpoint's artifact is read back (its hash is
    verified) and recorded with its row. ``access`` (``engine.auth.AccessPolicy``) is
    checked for ``owner`` before anything is written.
    """
    import store

    if access is not None:
        access.require(owner, "import")
    zoo = check_name(zoo, "zoo name")
    for run in runs:
        check_name(run.name, "run name")
    finished = datetime.now(UTC).replace(tzinfo=None)
    run_ids = []
    with st.transaction():
        try:
            zoo_id = st.get_zoo(zoo)["zoo_id"]
            if new_zoo:
                raise ValueError(f"a zoo named {zoo!r} exists already in {st.path}; import into a new zoo with "
                                 "--zoo NAME")
        except store.NotFoundError:
            zoo_id = st.create_zoo(zoo, owner=owner)
        for run in runs:
            for c in run.checkpoints:
                if st.put_tensors(st.get_tensors(c.sha)) != c.sha:  # records the artifact row
                    raise ValueError(f"artifact {c.sha} of run {run.name!r} changed when it was read back")
            (run_id,) = st.add_runs([{
                "zoo_id": zoo_id, "config": run.config.model_dump(mode="json"), "name": run.name,
                "seed": run.seed, "hparams": run.hparams, "status": "done", "owner": owner,
                "finished_at": finished, "origin": "imported", "built_by": run.built_by}])
            for c in run.checkpoints:
                st.add_checkpoint(run_id, c.step, c.sha, epoch=c.epoch,
                                  **{k: _finite(c.metrics.get(k)) for k in HEADLINE})
            if run.metrics:
                st.add_metrics([{"run_id": run_id, **row} for row in run.metrics])
            run_ids.append(run_id)
    return run_ids


def hand_over_runs(store_path: str | Path, zoo: str, runs: list[ImportedRun], *, owner: str,
                   new_zoo: bool = False) -> Path:
    """Leave a request for the store's owner to record ``runs`` (their artifacts are written already)."""
    import store

    return store.drop_request(store_path, REQUEST_KIND, {
        "zoo": zoo, "owner": owner, "new_zoo": new_zoo, "runs": [r.to_payload() for r in runs]})


def record_runs_request(st, payload: dict[str, Any], *, access=None) -> list[str]:
    """Record runs handed over by :func:`hand_over_runs` (a ``requests/`` entry of kind ``import_trajectory``)."""
    runs = [ImportedRun.from_payload(r) for r in payload["runs"]]
    return record_runs(st, payload["zoo"], runs, owner=payload.get("owner", "local"), access=access,
                       new_zoo=bool(payload.get("new_zoo")))
