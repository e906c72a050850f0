"""The zoo map's requests: every pair of a zoo's models, one ``zoo.distance`` probe per pair per distance.

:func:`zoo_models` lists the models of a zoo at a checkpoint (each run's final one, the one
at a given step, or every checkpoint for paths through training), with the architecture
group that decides which pairs the weight-space distances are defined for.
:func:`request_zoo_map` queues one ``zoo.pairs`` job for the pairs not stored yet (nor
being computed by another job): it loads each model once, computes every missing distance
of every pair, and hands in one probe row per pair per distance, keyed exactly as a single
``zoo.distance`` request is keyed -- so a pair asked once, by anyone, is never computed
again, and adding models to a zoo computes only the pairs they bring.
:func:`zoo_distances` reads the stored pairs back as a labelled matrix in one catalog query.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import numpy as np
from pydantic import BaseModel, ConfigDict

import store
from engine.nets import permutation_spec
from engine.probes.zoo import WEIGHT_SPACE, ZooDistances, metric_label, pair_distances

from .builtin_probes.zoo import PairDistance, ZooDistanceParams, distance_views, pair_result
from .context import JobContext
from .probe_job import CheckpointRef, ProbeInputs, ProbeService, get_probe_kind

__all__ = ["KIND", "ZooMapStatus", "ZooModel", "ZooPairsSpec", "checkpoint_ref", "pair_keys", "request_zoo_map",
           "run_zoo_pairs", "zoo_distances", "zoo_models"]

KIND = "zoo.distance"
EMIT_EVERY_S = 2.0  # hand in finished pairs this often, so the map fills in while the job runs


@dataclass(frozen=True)
class ZooModel:
    """One model on the map: a run's checkpoint.

    Attributes
    ----------
    label : str
        The run's name (with ``@step`` for paths through training).
    run_id, checkpoint_id : str
    step : int
    group : str
        The architecture and data set (canonical JSON): weight and barrier distances compare
        models of one group only.
    """

    label: str
    run_id: str
    checkpoint_id: str
    step: int
    group: str


def _group(config_json: str) -> str:
    config = json.loads(config_json) if isinstance(config_json, str) else dict(config_json)
    return json.dumps({"arch": config.get("arch"), "dataset": config.get("dataset")}, sort_keys=True)


def _store_of(source) -> store.Store:
    """A store, from a store, a :class:`ProbeService` or a dispatcher."""
    return source.store if hasattr(source, "store") else source


def zoo_models(source, zoo_id: str, *, step: int | None = None, run_ids: Sequence[str] | None = None,
               every_checkpoint: bool = False) -> list[ZooModel]:
    """The zoo's finished runs as models on the map, in a stable order (by run name, then step).

    Parameters
    ----------
    source : store.Store, ProbeService or Dispatcher
    zoo_id : str
    step : int, optional
        Each run's checkpoint at this step (runs without one are left out); the final one by default.
    run_ids : sequence of str, optional
        Only these runs.
    every_checkpoint : bool
        Every checkpoint of every run (paths through training); ``step`` is then ignored.
    """
    st = _store_of(source)
    runs = st.list_runs(zoo_id, status=["done", "diverged"])
    if run_ids is not None:
        runs = runs[runs["run_id"].isin(list(run_ids))]
    if runs.empty:
        return []
    ckpts = st.list_checkpoints(runs["run_id"].tolist())
    ckpts = ckpts[ckpts["artifact_sha"].notna()]
    names = dict(zip(runs["run_id"], runs["name"].fillna(runs["run_id"].str[:8])))
    groups = {r: _group(c) for r, c in zip(runs["run_id"], runs["config_json"])}
    out = []
    for run_id in runs["run_id"]:
        mine = ckpts[ckpts["run_id"] == run_id].sort_values("step")
        if mine.empty:
            continue
        if every_checkpoint:
            chosen = mine
        elif step is None:
            chosen = mine.tail(1)
        else:
            chosen = mine[mine["step"] == step]
        for row in chosen.itertuples():
            label = f"{names[run_id]}@{int(row.step)}" if every_checkpoint else str(names[run_id])
            out.append(ZooModel(label, run_id, row.checkpoint_id, int(row.step), groups[run_id]))
    return out


def _params(metric: str, settings: dict[str, Any] | None) -> dict[str, Any]:
    return ZooDistanceParams.model_validate({**(settings or {}), "metric": metric}).model_dump(mode="json")


def _pairs(models: Sequence[ZooModel], metric: str) -> list[tuple[int, int]]:
    return [(i, j) for i in range(len(models)) for j in range(i + 1, len(models))
            if metric not in WEIGHT_SPACE or models[i].group == models[j].group]


def _ordered(a: str, b: str) -> list[str]:
    """A pair's checkpoints in one order, so (A, B) and (B, A) share a key."""
    return [a, b] if a <= b else [b, a]


def pair_keys(models: Sequence[ZooModel], metric: str, settings: dict[str, Any] | None = None
              ) -> dict[tuple[int, int], str]:
    """``(i, j) -> probe key`` of every pair the distance is defined for (``i < j``)."""
    params = _params(metric, settings)
    version = get_probe_kind(KIND).code_version
    return {(i, j): store.probe_key(KIND, params, _ordered(models[i].checkpoint_id, models[j].checkpoint_id),
                                    version)
            for i, j in _pairs(models, metric)}


def _stored_values(st: store.Store, keys: set[str]) -> dict[str, dict[str, Any]]:
    rows = st.list_probes(KIND)
    rows = rows[rows["key"].isin(keys)]
    return {k: json.loads(r) if isinstance(r, str) else dict(r or {}) for k, r in zip(rows["key"], rows["result_json"])}


def zoo_distances(source, models: Sequence[ZooModel], metric: str,
                  settings: dict[str, Any] | None = None) -> ZooDistances:
    """The stored distances between ``models`` as a labelled matrix (NaN where a pair is missing or undefined).

    ``source`` is a store, a :class:`ProbeService` or a dispatcher; one catalog query reads every pair.
    """
    keys = pair_keys(models, metric, settings)
    found = _stored_values(_store_of(source), set(keys.values()))
    k = len(models)
    matrix = np.full((k, k), np.nan)
    np.fill_diagonal(matrix, 0.0)
    for (i, j), key in keys.items():
        value = (found.get(key) or {}).get("value")
        if value is not None:
            matrix[i, j] = matrix[j, i] = float(value)
    align = _params(metric, settings)["align"]
    return ZooDistances(tuple(m.label for m in models), matrix, metric, metric_label(metric, align))


@dataclass(frozen=True)
class ZooMapStatus:
    """Where the pairs of a map stand.

    Attributes
    ----------
    pairs : int
        Pairs (per distance, summed over the distances asked) the map needs.
    done : int
        Stored.
    pending : int
        Being computed by a ``zoo.pairs`` job (this request's or an earlier one).
    job_id : str or None
        The job queued by this request (None when nothing was missing).
    errors : tuple of str
        Stored pairs whose distance could not be computed, with why.
    """

    pairs: int
    done: int
    pending: int
    job_id: str | None = None
    errors: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return self.done == self.pairs


class ZooPairsSpec(BaseModel):
    """A ``zoo.pairs`` job: pairs of checkpoints, and per pair the distances to compute and their keys."""

    model_config = ConfigDict(extra="forbid")

    checkpoints: list[CheckpointRef]  # every model the pairs use, once
    settings: dict[str, Any]  # ZooDistanceParams fields but the metric
    tasks: list[tuple[int, int, str, str]]  # (index of A, index of B, metric, probe key)


def checkpoint_ref(st: store.Store, checkpoint_id: str) -> dict[str, Any]:
    """A checkpoint as a worker needs it (the fields of :class:`~engine.jobs.probe_job.CheckpointRef`)."""
    ck = st.get_checkpoint(checkpoint_id)
    run = st.get_run(ck["run_id"])
    if not ck.get("artifact_sha"):
        raise ValueError(f"checkpoint {checkpoint_id} has no stored weights; the map needs trained weights")
    return {"checkpoint_id": checkpoint_id, "run_id": ck["run_id"], "step": int(ck["step"]),
            "artifact_sha": ck["artifact_sha"], "config": run["config"], "name": run.get("name")}


def _pending_keys(st: store.Store) -> set[str]:
    active = st.list_jobs(["queued", "running"], kind="zoo.pairs")
    keys: set[str] = set()
    for spec in active.get("spec_json", []):
        keys.update(t[3] for t in json.loads(spec).get("tasks", []))
    return keys


def request_zoo_map(service: ProbeService, models: Sequence[ZooModel], metrics: Sequence[str],
                    settings: dict[str, Any] | None = None, *, owner: str = "local", submit: bool = True,
                    compute_here: bool = False) -> ZooMapStatus:
    """Queue (or compute here) every missing pair of ``models`` for each of ``metrics``.

    Parameters
    ----------
    service : ProbeService
    models : sequence of ZooModel
        From :func:`zoo_models`.
    metrics : sequence of str
        Distances from :data:`engine.probes.zoo.ZOO_METRICS`.
    settings : dict, optional
        :class:`ZooDistanceParams` fields other than ``metric`` (align, split, alphas, ...).
    owner : str
    submit : bool
        False only reports where the pairs stand.
    compute_here : bool
        Run the job in this process and ingest it (notebooks, the CLI, tests, benchmarks).
    """
    st = service.store
    by_metric = {m: pair_keys(models, m, settings) for m in metrics}
    all_keys = {k for keys in by_metric.values() for k in keys.values()}
    found = _stored_values(st, all_keys)
    pending = _pending_keys(st) & all_keys
    errors = tuple(f"{models[i].label} – {models[j].label} ({m}): {found[k]['error']}"
                   for m, keys in by_metric.items() for (i, j), k in keys.items()
                   if k in found and found[k].get("error"))
    missing = [(i, j, m, k) for m, keys in by_metric.items() for (i, j), k in keys.items()
               if k not in found and k not in pending]
    if not missing or not submit:
        return ZooMapStatus(len(all_keys), len(found), len(pending), None, errors)
    used = sorted({i for i, _, _, _ in missing} | {j for _, j, _, _ in missing})
    index = {i: n for n, i in enumerate(used)}
    spec = {"checkpoints": [checkpoint_ref(st, models[i].checkpoint_id) for i in used],
            "settings": {k: v for k, v in (settings or {}).items() if k != "metric"},
            "tasks": [(index[i], index[j], m, k) for i, j, m, k in missing]}
    if compute_here:
        service.dispatcher.authorize(owner, "launch")
        job_id = f"here-{uuid4().hex[:12]}"
        run_zoo_pairs(spec, JobContext(st.path, job_id, owner=owner))
        st.ingest_bundles()
        return request_zoo_map(service, models, metrics, settings, owner=owner, submit=False)
    job_id = service.dispatcher.submit("zoo.pairs", spec, owner=owner, zoo_id=None)
    return ZooMapStatus(len(all_keys), len(found), len(pending) + len(missing), job_id, errors)


def _row(key: str, params: dict[str, Any], ids: list[str], result: PairDistance, owner: str) -> dict[str, Any]:
    return {"probe_id": uuid4().hex, "key": key, "kind": KIND, "params_json": json.dumps(params, sort_keys=True),
            "inputs_json": json.dumps(ids), "artifact_sha": None, "result_json": json.dumps(result.to_stored().summary),
            "code_version": get_probe_kind(KIND).code_version, "owner": owner,
            "created_at": datetime.now(UTC).replace(tzinfo=None)}


def run_zoo_pairs(spec: ZooPairsSpec | dict, ctx: JobContext) -> dict[str, Any]:
    """The ``zoo.pairs`` job: each model loaded and viewed once, each pair aligned once for all its distances."""
    spec = ZooPairsSpec.model_validate(spec)
    inputs = ProbeInputs(ctx.store_path, spec.checkpoints)
    loaded: dict[int, Any] = {}
    views: dict[tuple[int, bool], Any] = {}
    params = {m: _params(m, spec.settings) for m in {t[2] for t in spec.tasks}}
    by_pair: dict[tuple[int, int], list[tuple[str, str]]] = {}
    for i, j, metric, key in spec.tasks:
        by_pair.setdefault((i, j), []).append((metric, key))

    def view(i: int, acts: bool):
        if i not in loaded:
            loaded[i] = inputs.load(i)
        if (i, acts) not in views:
            p = ZooDistanceParams.model_validate({**spec.settings, "metric": "cka" if acts else "weight"})
            views[(i, acts)] = distance_views(loaded[i], p)
        return views[(i, acts)]

    path = ZooDistanceParams.model_validate({**spec.settings, "metric": "barrier"})  # align, alphas
    shape = ZooDistanceParams.model_validate({**spec.settings, "metric": "procrustes"})  # max_samples, shape_alpha
    rows, last, done, specs = [], time.monotonic(), 0, {}
    for (i, j), wanted in by_pair.items():
        ctx.check_cancelled()
        if spec.checkpoints[i].checkpoint_id > spec.checkpoints[j].checkpoint_id:
            i, j = j, i  # B is aligned to A: A is the pair's first checkpoint in the key's order, whoever asks
        acts = any(m in ("cka", "procrustes") for m, _ in wanted)
        va, vb = view(i, acts), view(j, acts)
        model = loaded[i].model
        group = json.dumps(loaded[i].config.arch.model_dump(mode="json"), sort_keys=True)
        if any(m in WEIGHT_SPACE for m, _ in wanted) and group not in specs:
            specs[group] = permutation_spec(model)
        try:
            values = pair_distances(model, va, vb, loaded[i].dataset, [m for m, _ in wanted], align=path.align,
                                    split=path.split, alphas=path.alphas, shape_alpha=shape.shape_alpha,
                                    seed=path.seed, spec=specs.get(group))
            results = {m: pair_result(m, path.align, values[m]) for m, _ in wanted}
        except ValueError as exc:  # e.g. a permutation that changed the function: recorded, not fatal to the map
            results = {m: pair_result(m, path.align, None, str(exc)[:500]) for m, _ in wanted}
        ids = _ordered(spec.checkpoints[i].checkpoint_id, spec.checkpoints[j].checkpoint_id)
        rows += [_row(key, params[m], ids, results[m], ctx.owner) for m, key in wanted]
        done += len(wanted)
        ctx.progress(done / len(spec.tasks), f"zoo map: {done}/{len(spec.tasks)} distances")
        if time.monotonic() - last > EMIT_EVERY_S:
            ctx.emit({"probe": rows})
            rows, last = [], time.monotonic()
    ctx.emit({"probe": rows})
    ctx.progress(1.0, f"zoo map: {done} distances", force=True)
    return {"distances": done}
