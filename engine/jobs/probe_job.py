"""Probes as jobs: computed once per distinct request, stored, and shared by everyone.

A probe request is (probe kind, validated parameters, input checkpoints). Its key is
a hash of those and of the probe's code version, so the same request from two people
(or twice from one) is computed once: :meth:`ProbeService.request` answers from the
catalog when the result exists, joins the job already computing it when there is
one, and only otherwise queues a new job.

A probe kind is a function ``run(inputs: ProbeInputs, params, progress) -> ProbeResult``
registered with :func:`register_probe`. It receives ready-to-use checkpoints (model,
parameters, buffers, data) and returns JSON-able numbers plus named arrays, which are
stored as one safetensors artifact.

Each kind also declares its typed result (``register_probe(..., result=SpectrumResult)``):
a class whose ``from_stored(ProbeResult)`` rebuilds the frozen dataclasses the probe
computed. Readers call :meth:`ProbeStatus.typed` and never see the stored keys; the
stored form is spelled once, by the result class (its ``to_stored``) and its loader.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any
from uuid import uuid4

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from torch.nn.attention import SDPBackend, sdpa_kernel

import store
from engine import data as zdata
from engine import nets
from engine.bounds import short_repr
from engine.config import TrainSpec

from .context import JobContext
from .probe_kinds import PROBE_KINDS, ProbeKind, ProbeResult, ResultLoader, register_probe

__all__ = [
    "LoadedCheckpoint",
    "ProbeInputs",
    "ProbeKind",
    "ProbeResult",
    "ProbeService",
    "ProbeStatus",
    "ResultLoader",
    "check_replayable",
    "clear_caches",
    "get_probe_kind",
    "load_probe_result",
    "probe_kinds",
    "register_probe",
    "run_probe",
]


def _load_builtin() -> None:
    from . import builtin_probes  # noqa: F401  (registers the built-in probes)


def get_probe_kind(name: str) -> ProbeKind:
    _load_builtin()
    return PROBE_KINDS.get(name)


def probe_kinds() -> list[str]:
    _load_builtin()
    return PROBE_KINDS.names()


class CheckpointRef(BaseModel):
    """A checkpoint as a worker needs it: where its weights are and how its run was configured."""

    model_config = ConfigDict(extra="ignore")

    checkpoint_id: str
    run_id: str
    step: int
    artifact_sha: str
    config: dict[str, Any]
    name: str | None = None
    origin: str = "trained"  # 'trained' (here), 'logged' (engine.tracking) or 'imported'


class ProbeJobSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    probe: str
    params: dict[str, Any]
    checkpoints: list[CheckpointRef]
    key: str


@dataclass
class LoadedCheckpoint:
    """A checkpoint ready for a probe: the architecture, its parameters and buffers, and the run's data."""

    ref: CheckpointRef
    config: TrainSpec
    model: torch.nn.Module
    params: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]
    dataset: zdata.Dataset

    @property
    def state(self) -> dict[str, torch.Tensor]:
        return {**self.params, **self.buffers}

    def require_finite(self) -> LoadedCheckpoint:
        """This checkpoint, or ValueError naming the tensors that hold NaN or inf values.

        Alignment, interpolation and merging of such weights fail later with a message about
        something else (the permutation self-check compares NaN outputs), so the probes that
        load endpoints check here first.
        """
        bad = []  # (name, n_nan, n_inf) per floating-point tensor that holds any
        for name, t in self.state.items():
            if t.is_floating_point() or t.is_complex():
                n_nan, n_inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
                if n_nan or n_inf:
                    bad.append((name, n_nan, n_inf))
        if not bad:
            return self
        name, n_nan, n_inf = bad[0]
        total_nan, total_inf = sum(b[1] for b in bad), sum(b[2] for b in bad)
        more = (f"; {total_nan:,} NaN, {total_inf:,} inf in all {len(bad)} tensors that hold any"
                if len(bad) > 1 else "")
        ref = self.ref
        run = f"run {ref.name!r} " if ref.name else ""
        raise ValueError(
            f"checkpoint {ref.checkpoint_id[:8]} ({run}step {ref.step}) holds non-finite weights ({n_nan:,} NaN, "
            f"{n_inf:,} inf in tensor {short_repr(name)}{more}): it cannot be aligned, interpolated or merged. "
            "The run probably diverged; pick an earlier checkpoint of it, or another run")

    @property
    def lr(self) -> float:
        return self.config.optim.lr

    @property
    def loss_fn(self):
        """The run's loss (``TrainSpec.loss`` on its data's task), as every probe of it uses it."""
        from engine.probes.core import run_loss

        return run_loss(self.config.loss, self.dataset.task)


class ProbeInputs:
    """The input checkpoints of one probe request, loaded lazily and sharing data sets."""

    def __init__(self, store_path, refs: list[CheckpointRef], device: torch.device | None = None):
        self.store_path = store_path
        self.refs = refs
        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self._datasets: dict[str, zdata.Dataset] = {}

    def __len__(self) -> int:
        return len(self.refs)

    def load(self, i: int) -> LoadedCheckpoint:
        ref = self.refs[i]
        config = TrainSpec.model_validate(ref.config)
        key = config.dataset.to_json()
        if key not in self._datasets:
            self._datasets[key] = zdata.load(config.dataset)
        ds = self._datasets[key]
        model = nets.build(config.arch, ds.input_shape, ds.n_outputs, vocab_size=ds.vocab_size, seed=config.seed)
        state = store.get_tensors_at(self.store_path, ref.artifact_sha)
        names = dict(model.named_parameters())  # a tied tensor once, under its first name
        aliases = set(model.state_dict()) - set(names) - {k for k, _ in model.named_buffers()}
        # In the model's own order, not the file's: safetensors reads into a hash map whose order changes from
        # read to read, and seeded draws over the parameters (random directions, probe vectors) follow the order.
        params = {k: state[k].to(self.device) for k in names if k in state}
        # GPT-2's lm_head.weight is transformer.wte.weight: functional_call refuses a value for both names
        buffer_names = [k for k, _ in model.named_buffers()]
        extra = sorted(set(state) - set(names) - aliases - set(buffer_names))
        buffers = {k: state[k].to(self.device) for k in [*buffer_names, *extra] if k in state}
        return LoadedCheckpoint(ref=ref, config=config, model=model.to(self.device), params=params, buffers=buffers,
                                dataset=ds)

    @cached_property
    def all(self) -> list[LoadedCheckpoint]:
        return [self.load(i) for i in range(len(self.refs))]


_PLACEHOLDER_RECIPE = {"logged": "was logged from a script (engine.tracking)",
                       "imported": "was imported (zooscope import-run / import-zoo)"}


def check_replayable(kind: ProbeKind, refs: list[CheckpointRef]) -> None:
    """Raise ValueError if ``kind`` re-trains (``replays_training``) and an input run was not trained here.

    A logged or imported run's stored optimiser settings (lr, schedule, batch size, data order)
    are placeholders that describe how to load its weights, not how it was trained, so children
    re-trained from its checkpoints with them would measure a made-up recipe.
    """
    if not kind.replays_training:
        return
    for ref in refs:
        if ref.origin in _PLACEHOLDER_RECIPE:
            run = f"{ref.name!r} ({ref.run_id[:8]})" if ref.name else repr(ref.run_id[:8])
            raise ValueError(
                f"probe {kind.name!r} re-trains run {run} from its checkpoint with the run's optimiser settings, "
                f"but the run {_PLACEHOLDER_RECIPE[ref.origin]} (origin {ref.origin!r}): its optimiser settings are "
                "placeholders, not the recipe it was trained with. Pick a run trained by Zooscope, or train one "
                "with the same architecture and data here (zooscope train)")


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def run_probe(spec: ProbeJobSpec | dict, ctx: JobContext) -> dict[str, Any]:
    """The ``probe`` job: compute, store the arrays as an artifact, emit the probe row."""
    spec = ProbeJobSpec.model_validate(spec)
    kind = get_probe_kind(spec.probe)
    params = kind.params.model_validate(spec.params)
    check_replayable(kind, spec.checkpoints)  # a spec queued before the check, or written by hand
    inputs = ProbeInputs(ctx.store_path, spec.checkpoints)

    def progress(fraction: float, message: str = "") -> None:
        ctx.check_cancelled()
        ctx.progress(fraction, f"{spec.probe}: {message}")

    # The math attention kernel: CPU flash attention has no double backward, so a transformer's
    # Hessian-vector products (curvature probes) would fail with the default kernel choice.
    with sdpa_kernel(SDPBackend.MATH):
        result = kind.run(inputs, params, progress)
    sha = None
    if result.arrays:
        tensors = {k: torch.as_tensor(np.ascontiguousarray(v)) for k, v in result.arrays.items()}
        sha = ctx.put_tensors(tensors, kind="probe")
    row = {"probe_id": uuid4().hex, "key": spec.key, "kind": spec.probe,
           "params_json": json.dumps(params.model_dump(mode="json"), sort_keys=True),
           "inputs_json": json.dumps([c.checkpoint_id for c in spec.checkpoints]), "artifact_sha": sha,
           "result_json": json.dumps(result.summary, default=_json_default), "code_version": kind.code_version,
           "owner": ctx.owner, "created_at": _now()}
    ctx.emit({"probe": [row], "metric": list(result.metrics)})
    ctx.progress(1.0, f"{spec.probe}: done", force=True)
    return {"probe": spec.probe, "key": spec.key}


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"probe summary holds a {type(value).__name__}, which is not JSON; put arrays in `arrays`")


def load_probe_result(st, probe: dict[str, Any]) -> ProbeResult:
    """A stored probe row back as a :class:`ProbeResult` (arrays as NumPy)."""
    summary = probe.get("result") or json.loads(probe.get("result_json") or "{}")
    arrays = {}
    if probe.get("artifact_sha"):
        arrays = {k: v.numpy() for k, v in st.get_tensors(probe["artifact_sha"]).items()}
    return ProbeResult(summary, arrays)


@dataclass(frozen=True)
class ProbeStatus:
    """Where a probe request stands: ``done`` (with ``result``), ``queued``/``running`` (with ``job``) or ``failed``."""

    state: str
    key: str
    job: dict[str, Any] | None = None
    result: ProbeResult | None = None
    probe: dict[str, Any] | None = None
    kind: str | None = None  # the probe kind asked for

    @property
    def progress(self) -> float:
        return float((self.job or {}).get("progress") or 0.0)

    def typed(self) -> Any:
        """The result as the probe kind's typed result (e.g. a ``Surface``, a ``SpectrumResult``).

        Decoded once per stored result and shared: treat it as read-only.
        """
        if self.result is None:
            raise ValueError(f"probe {self.kind!r} ({self.key[:12]}) is {self.state}, not done: it has no result "
                             "yet; check status.state == 'done' first")
        kind = self.kind or (self.probe or {}).get("kind")
        if kind is None:
            raise ValueError(f"probe result {self.key[:12]} does not say its kind; make the status with kind=")
        return self.result.decoded(get_probe_kind(kind).result)


# Stored probe results kept decoded in this process, per dispatcher: at most this many bytes of arrays.
RESULT_CACHE_BYTES = 512 * 2**20


def _frozen(result: ProbeResult) -> ProbeResult:
    """``result`` with read-only arrays: one decoded result is handed to every session of the process."""
    for array in result.arrays.values():
        array.setflags(write=False)
    return result


class _ProbeCache:
    """One owner's probe look-ups: probe jobs indexed by key, and stored results decoded once.

    ``ProbeService.status`` runs on every page run and every second from each waiting page.
    The job index maps a probe key to its jobs' ids; it is rebuilt (in the catalog, without
    decoding any spec) only when the dispatcher's catalog generation has moved, which every
    submission does after its row is written. Job rows themselves are read fresh by id, so
    progress is live. A stored result is immutable under its ``(probe_id, artifact_sha,
    created_at)``, so it is read and verified once and kept (least recently used first out,
    bounded by :data:`RESULT_CACHE_BYTES`).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._generation: int | None = None
        self._jobs_by_key: dict[str, list[str]] = {}
        self._results: OrderedDict[tuple, tuple[dict[str, Any], ProbeResult, int]] = OrderedDict()
        self._bytes = 0

    def job_ids(self, dispatcher, key: str) -> list[str]:
        generation = dispatcher.generation  # read before the query: a submission in between refreshes again
        with self._lock:
            if generation != self._generation:
                self._jobs_by_key = dispatcher.store.job_ids_by_spec_field("probe", "key")
                self._generation = generation
            return list(self._jobs_by_key.get(key, ()))

    def done(self, st, key: str) -> tuple[dict[str, Any], ProbeResult] | None:
        version = st.probe_version(key)
        if version is None:
            return None
        stamp = (key, *version)
        with self._lock:
            hit = self._results.get(stamp)
            if hit is not None:
                self._results.move_to_end(stamp)
                return dict(hit[0]), hit[1]
        row = st.get_probe(key)
        if row is None:  # deleted since the look-up
            return None
        result = _frozen(load_probe_result(st, row))
        size = sum(a.nbytes for a in result.arrays.values())
        with self._lock:
            if stamp not in self._results and size <= RESULT_CACHE_BYTES:
                self._results[stamp] = (row, result, size)
                self._bytes += size
                while self._bytes > RESULT_CACHE_BYTES:
                    _, (_, _, dropped) = self._results.popitem(last=False)
                    self._bytes -= dropped
        return dict(row), result


_CACHES: weakref.WeakKeyDictionary[Any, _ProbeCache] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def _cache_for(dispatcher) -> _ProbeCache:
    with _CACHES_LOCK:
        cache = _CACHES.get(dispatcher)
        if cache is None:
            cache = _CACHES[dispatcher] = _ProbeCache()
        return cache


def clear_caches() -> None:
    """Forget every probe index and decoded result in this process (benchmarks' cold runs)."""
    with _CACHES_LOCK:
        _CACHES.clear()


class ProbeService:
    """The owner's side of probes: look up, deduplicate, queue.

    Cheap to make (pages make one per call): look-ups go through a cache kept per dispatcher.
    """

    def __init__(self, dispatcher):
        self.dispatcher = dispatcher
        self.store = dispatcher.store
        self._cache = _cache_for(dispatcher)

    def key(self, probe: str, params: dict[str, Any], checkpoint_ids: list[str]) -> tuple[str, dict[str, Any]]:
        kind = get_probe_kind(probe)
        validated = kind.params.model_validate(params).model_dump(mode="json")
        lo, hi = kind.n_checkpoints
        if len(checkpoint_ids) < lo or (hi is not None and len(checkpoint_ids) > hi):
            want = f"{lo}" if lo == hi else f"{lo} to {hi if hi is not None else 'any number of'}"
            raise ValueError(f"probe {probe!r} takes {want} checkpoints; got {len(checkpoint_ids)}")
        return store.probe_key(probe, validated, list(checkpoint_ids), kind.code_version), validated

    def status(self, probe: str, params: dict[str, Any], checkpoint_ids: list[str]) -> ProbeStatus:
        """The stored result or the job computing it, without queuing anything."""
        key, _ = self.key(probe, params, checkpoint_ids)
        done = self._cache.done(self.store, key)
        if done is not None:
            row, result = done
            return ProbeStatus("done", key, result=result, probe=row, kind=probe)
        for job in self.store.get_jobs(self._cache.job_ids(self.dispatcher, key)):
            if job["status"] in ("queued", "running"):
                return ProbeStatus(job["status"], key, job=job, kind=probe)
            if job["status"] == "failed":
                return ProbeStatus("failed", key, job=job, kind=probe)
        return ProbeStatus("missing", key, kind=probe)

    def request(self, probe: str, params: dict[str, Any], checkpoint_ids: list[str], *,
                owner: str = "local") -> ProbeStatus:
        """Return the result if stored; else join the job computing it; else queue one."""
        current = self.status(probe, params, checkpoint_ids)
        if current.state in ("done", "queued", "running"):
            return current
        key, validated = self.key(probe, params, checkpoint_ids)
        refs = [self._ref(cid) for cid in checkpoint_ids]
        check_replayable(get_probe_kind(probe), [CheckpointRef.model_validate(r) for r in refs])
        spec = {"probe": probe, "params": validated, "checkpoints": refs, "key": key}
        job_id = self.dispatcher.submit("probe", spec, owner=owner, zoo_id=None)
        return ProbeStatus("queued", key, job=self.store.get_job(job_id), kind=probe)

    def compute_here(self, probe: str, params: dict[str, Any], checkpoint_ids: list[str], *,
                     owner: str = "local") -> ProbeStatus:
        """Run the probe in this process (a notebook, the CLI, tests) and store it as a worker would.

        Computing is launching work: a signed-in viewer is refused as by :meth:`request`.
        """
        self.dispatcher.authorize(owner, "launch")
        key, validated = self.key(probe, params, checkpoint_ids)
        refs = [self._ref(c) for c in checkpoint_ids]
        check_replayable(get_probe_kind(probe), [CheckpointRef.model_validate(r) for r in refs])
        spec = {"probe": probe, "params": validated, "checkpoints": refs, "key": key}
        job_id = f"here-{uuid4().hex[:12]}"
        run_probe(spec, JobContext(self.store.path, job_id, owner=owner))
        self.store.ingest_bundles()
        return self.status(probe, params, checkpoint_ids)

    def _ref(self, checkpoint_id: str) -> dict[str, Any]:
        ck = self.store.get_checkpoint(checkpoint_id)
        run = self.store.get_run(ck["run_id"])
        if not ck.get("artifact_sha"):
            raise ValueError(f"checkpoint {checkpoint_id} has no stored weights")
        return {"checkpoint_id": checkpoint_id, "run_id": ck["run_id"], "step": int(ck["step"]),
                "artifact_sha": ck["artifact_sha"], "config": run["config"], "name": run.get("name"),
                "origin": run.get("origin") or "trained"}
