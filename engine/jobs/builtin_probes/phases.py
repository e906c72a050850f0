"""``sweep.cell`` (phases domain): the scalars a phase diagram needs, for the checkpoints of one cell.

The kind string keeps its historical name: stored results are keyed by it.

The inputs are the checkpoints of one cell of a zoo -- the runs that differ only in their
seed -- usually each run's final checkpoint (:func:`engine.jobs.phases.probe_phase_cells`
makes one request per cell). Every checkpoint gets one value per metric:

* ``evaluation``: ``train_loss``, ``train_error``, ``test_loss``, ``test_error`` on the whole
  splits, and ``gap`` = train accuracy - test accuracy (as the runs table's ``final_gap``);
* ``curvature``: ``hessian_top`` (largest Hessian eigenvalue, Lanczos) and ``hessian_trace``
  (Hutchinson) of the training loss on a fixed seeded subset of ``n_samples`` training points;
* ``connectivity``: ``barrier_naive`` and ``barrier_aligned`` -- the ``max_minus_linear`` loss
  barrier (max over alpha of L(alpha) - [(1-alpha) L(0) + alpha L(1)], ``alphas`` points) on
  the same training subset, between this checkpoint and each other seed's checkpoint of the same
  step, as trained and after weight matching; the checkpoint's value is the mean over its pairs;
* ``similarity``: ``cka_mean`` -- linear CKA between this checkpoint and each other seed's, per
  hidden layer on the same ``cka_samples`` test points, averaged over layers, then over pairs;
* ``dimension`` (off by default): ``effective_rank`` of the features (mean over hidden layers)
  and ``twonn``, the TwoNN intrinsic dimension of the last hidden layer.

The values come back in the summary and as ``metric`` rows (split ``"probe"``, the
checkpoint's step), so ``store.runs_table`` shows them as ``probe_<name>`` columns. Metric rows
are first-write-wins in the catalog: a later request with other parameters keeps its values in
its own probe result, while the ``probe_*`` columns keep the first ones computed.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field, field_validator

from engine.bounds import MAX_BATCH_SIZE, MAX_EVAL_SIZE, short_repr
from engine.config import SPEC_CONFIG, Seed
from engine.probes.connectivity import barrier_matrix
from engine.probes.core import evaluate_points, flatten_params, resolve_data
from engine.probes.landscape import hessian_top_eigs, hessian_trace
from engine.probes.phases import fine_tune, prune
from engine.probes.representations import OUTPUT, capture_activations, effective_rank, linear_cka, twonn_dimension

from ..probe_kinds import ProbeResult, register_probe

__all__ = ["PhaseCellParams", "PhaseCellResult", "PruneCellParams", "PruneCellResult", "WeightNormParams",
           "WeightNorms", "run_phase_cell", "run_prune_cell", "run_weight_norm"]

MetricGroup = Literal["evaluation", "curvature", "connectivity", "similarity", "dimension"]
BARRIER_KIND = "max_minus_linear"


class PhaseCellParams(BaseModel):
    """What to measure on each checkpoint of a cell, and on how much data."""

    model_config = SPEC_CONFIG

    metrics: tuple[MetricGroup, ...] = ("evaluation", "curvature", "connectivity", "similarity")
    n_samples: int = Field(1000, ge=16, le=MAX_EVAL_SIZE)  # training points for the Hessian and the barriers
    hessian_max_iter: int = Field(100, ge=4, le=500)  # Lanczos steps at most (tol 1e-3)
    trace_probes: int = Field(20, ge=2, le=2000)  # Hutchinson probes
    alphas: int = Field(25, ge=3, le=201)  # points on each straight path
    align: Literal["weight", "none"] = "weight"
    cka_samples: int = Field(1000, ge=16, le=20_000)  # test points for CKA and dimensions
    seed: Seed = 0  # data subsets, Lanczos start, Hutchinson probes


def _evaluation(ck) -> dict[str, float]:
    theta, layout = flatten_params(ck.params)
    out = {}
    for split in ("train", "test"):
        xy = resolve_data(ck.dataset, split)
        loss, acc = evaluate_points(ck.model, theta[None], xy, buffers=ck.buffers, layout=layout,
                                    loss_fn=ck.loss_fn)
        out[f"{split}_loss"], out[f"{split}_error"] = float(loss[0]), 1.0 - float(acc[0])
    out["gap"] = out["test_error"] - out["train_error"]  # = train acc - test acc
    return out


def _curvature(ck, p: PhaseCellParams) -> dict[str, float]:
    data = resolve_data(ck.dataset, "train", n_samples=p.n_samples, seed=p.seed)
    top = hessian_top_eigs(ck.model, ck.params, data, k=1, max_iter=p.hessian_max_iter, seed=p.seed,
                           buffers=ck.buffers, loss_fn=ck.loss_fn)
    trace = hessian_trace(ck.model, ck.params, data, n_probes=p.trace_probes, seed=p.seed, buffers=ck.buffers,
                          loss_fn=ck.loss_fn)
    return {"hessian_top": float(top.eigenvalues[0]), "hessian_trace": float(trace.trace)}


def _same_step_groups(cks) -> list[list[int]]:
    """Indices of checkpoints of the same step: the seeds that pairwise metrics compare."""
    groups = defaultdict(list)
    for i, ck in enumerate(cks):
        groups[ck.ref.step].append(i)
    return [g for g in groups.values() if len(g) > 1]


def _connectivity(cks, p: PhaseCellParams, values: dict[str, list[float]], progress) -> None:
    for group in _same_step_groups(cks):
        first = cks[group[0]]
        data = resolve_data(first.dataset, "train", n_samples=p.n_samples, seed=p.seed)
        m = barrier_matrix(first.model, [cks[i].state for i in group], data, align=p.align, kind=BARRIER_KIND,
                           alphas=p.alphas, seed=p.seed, loss_fn=first.loss_fn,
                           on_progress=lambda i, n: progress(0.5 + 0.3 * i / max(n, 1), f"barrier pair {i}/{n}"))
        off = ~np.eye(len(group), dtype=bool)
        for row, i in enumerate(group):
            values["barrier_naive"][i] = float(m.naive[row][off[row]].mean())
            if m.aligned is not None:
                values["barrier_aligned"][i] = float(m.aligned[row][off[row]].mean())


def _features(cks, p: PhaseCellParams) -> list[dict[str, np.ndarray]]:
    feats = []
    for ck in cks:
        x, y = resolve_data(ck.dataset, "test")
        acts = capture_activations(ck.model, ck.state, (x, y), max_samples=p.cka_samples, seed=p.seed)
        feats.append({name: t for name, t in acts.items() if name != OUTPUT})
    return feats


def _similarity(cks, feats, values, layer_values) -> None:
    for group in _same_step_groups(cks):
        for i in group:
            per_layer = defaultdict(list)
            for j in group:
                if j != i:
                    for layer, fi in feats[i].items():
                        per_layer[layer].append(linear_cka(fi, feats[j][layer]))
            for layer, v in per_layer.items():
                layer_values[layer][i] = float(np.mean(v))
            values["cka_mean"][i] = float(np.mean([np.mean(v) for v in per_layer.values()]))


def _dimension(feats, values) -> None:
    for i, f in enumerate(feats):
        layers = list(f.values())
        values["effective_rank"][i] = float(np.mean([effective_rank(t) for t in layers]))
        values["twonn"][i] = float(twonn_dimension(layers[-1]))


def run_phase_cell(inputs, p: PhaseCellParams, progress) -> ProbeResult:
    cks = inputs.all
    n = len(cks)
    values: dict[str, list[float]] = defaultdict(lambda: [math.nan] * n)
    layer_values: dict[str, list[float]] = defaultdict(lambda: [math.nan] * n)
    for i, ck in enumerate(cks):
        if "evaluation" in p.metrics:
            for k, v in _evaluation(ck).items():
                values[k][i] = v
        if "curvature" in p.metrics:
            for k, v in _curvature(ck, p).items():
                values[k][i] = v
        progress(0.5 * (i + 1) / n, f"checkpoint {i + 1}/{n}: evaluation and curvature")
    if "connectivity" in p.metrics:
        for k in ("barrier_naive", "barrier_aligned"):
            values[k]  # noqa: B018 - the column exists (NaN) even for a one-seed cell
        _connectivity(cks, p, values, progress)
    if {"similarity", "dimension"} & set(p.metrics):
        progress(0.85, "features for CKA / dimensions")
        feats = _features(cks, p)
        if "similarity" in p.metrics:
            values["cka_mean"]  # noqa: B018
            _similarity(cks, feats, values, layer_values)
        if "dimension" in p.metrics:
            _dimension(feats, values)
    return _result(cks, p, dict(values), dict(layer_values))


def _json(values: list[float]) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in values]


def _result(cks, p: PhaseCellParams, values, layer_values) -> ProbeResult:
    refs = [ck.ref for ck in cks]
    return PhaseCellResult(checkpoint_ids=tuple(r.checkpoint_id for r in refs), run_ids=tuple(r.run_id for r in refs),
                           steps=tuple(int(r.step) for r in refs), values=values, cka_layers=layer_values,
                           barrier_kind=BARRIER_KIND, align=p.align).to_stored()


@dataclass(frozen=True)
class PhaseCellResult:
    """``sweep.cell``: one value per metric per input checkpoint (NaN where not measured).

    Stored as a summary (``values`` and ``cka_layers`` with None for NaN), one float64 array per
    metric, and ``metric`` rows (split ``"probe"``) for the finite values.
    """

    checkpoint_ids: tuple[str, ...]
    run_ids: tuple[str, ...]
    steps: tuple[int, ...]
    values: dict[str, list[float]]  # metric -> value per checkpoint
    cka_layers: dict[str, list[float]]  # hidden layer -> mean CKA with the other seeds, per checkpoint
    barrier_kind: str
    align: str

    def to_stored(self) -> ProbeResult:
        summary = {"checkpoint_ids": list(self.checkpoint_ids), "run_ids": list(self.run_ids),
                   "steps": list(self.steps), "values": {k: _json(v) for k, v in self.values.items()},
                   "cka_layers": {k: _json(v) for k, v in self.cka_layers.items()},
                   "barrier_kind": self.barrier_kind, "align": self.align}
        arrays = {k: np.asarray(v, dtype=np.float64) for k, v in self.values.items()}
        metrics = [{"run_id": run_id, "step": step, "split": "probe", "name": k, "value": float(v[i])}
                   for k, v in self.values.items() for i, (run_id, step) in enumerate(zip(self.run_ids, self.steps))
                   if math.isfinite(v[i])]
        return ProbeResult(summary, arrays, metrics=metrics)

    @classmethod
    def from_stored(cls, result: ProbeResult) -> PhaseCellResult:
        s = result.summary
        nan = lambda vs: [math.nan if v is None else float(v) for v in vs]  # noqa: E731
        return cls(checkpoint_ids=tuple(s["checkpoint_ids"]), run_ids=tuple(s["run_ids"]), steps=tuple(s["steps"]),
                   values={k: nan(v) for k, v in s["values"].items()},
                   cka_layers={k: nan(v) for k, v in s.get("cka_layers", {}).items()},
                   barrier_kind=s.get("barrier_kind", BARRIER_KIND), align=s.get("align", "weight"))


class WeightNormParams(BaseModel):
    """No settings: the L2 norm of all parameters of every input checkpoint."""

    model_config = SPEC_CONFIG


def run_weight_norm(inputs, p: WeightNormParams, progress) -> ProbeResult:
    norms = []
    for i in range(len(inputs)):
        ck = inputs.load(i)
        norms.append(float(flatten_params(ck.params)[0].norm()))
        progress((i + 1) / len(inputs), f"checkpoint {i + 1}/{len(inputs)}")
    return WeightNorms(steps=tuple(r.step for r in inputs.refs), norm=tuple(norms)).to_stored()


@dataclass(frozen=True)
class WeightNorms:
    """``weights.norm``: the L2 norm of all parameters at each input checkpoint."""

    steps: tuple[int, ...]
    norm: tuple[float, ...]

    def to_stored(self) -> ProbeResult:
        return ProbeResult({"steps": list(self.steps), "norm": list(self.norm)},
                           {"steps": np.asarray(self.steps), "norm": np.asarray(self.norm)})

    @classmethod
    def from_stored(cls, result: ProbeResult) -> WeightNorms:
        return cls(steps=tuple(result.summary["steps"]), norm=tuple(result.summary["norm"]))


register_probe("weights.norm", run_weight_norm, WeightNormParams, n_checkpoints=(1, None),
               description="L2 norm of the parameters at each checkpoint", result=WeightNorms)
# code_version "2" (sweep.cell, prune.cell): sharpness and trace draw their Lanczos start and Hutchinson probes
# over the parameters, which checkpoints now load in the model's order, not the file's (another at each read).
register_probe("sweep.cell", run_phase_cell, PhaseCellParams, n_checkpoints=(1, 256), code_version="2",
               description="phase-diagram scalars for the seeds of one hyperparameter cell", result=PhaseCellResult)


# --- prune.cell: the three-regime model of pruning (Zhou et al. 2023) --------------------------------------------
# Each checkpoint of a cell is magnitude-pruned to every density (optionally fine-tuned with its run's optimiser),
# and the pruned seeds are measured exactly as ``sweep.cell`` measures dense ones: run_phase_cell on them.


MAX_DENSITIES = 16  # densities one prune.cell job measures


class PruneCellParams(BaseModel):
    """Densities to prune the cell's checkpoints to, how, and what to measure on the pruned networks."""

    model_config = SPEC_CONFIG

    densities: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.5)  # fractions of Linear/Conv weights kept
    scope: Literal["global", "layerwise"] = "global"
    fine_tune_steps: int = Field(0, ge=0, le=100_000)  # steps of the run's own optimiser after pruning (0: none)
    # batch size of the fine-tuning: None is each run's own; a number retrains every temperature alike
    # (Zhou et al. retrain every pruned model with one batch size when the dense batch size is the temperature)
    fine_tune_batch_size: int | None = Field(None, ge=1, le=MAX_BATCH_SIZE)
    metrics: tuple[Literal["evaluation", "curvature", "connectivity", "similarity"], ...] = (
        "evaluation", "curvature", "connectivity", "similarity")
    n_samples: int = Field(1000, ge=16, le=MAX_EVAL_SIZE)  # as PhaseCellParams
    hessian_max_iter: int = Field(100, ge=4, le=500)
    trace_probes: int = Field(20, ge=2, le=2000)
    alphas: int = Field(25, ge=3, le=201)
    align: Literal["weight", "none"] = "weight"
    cka_samples: int = Field(1000, ge=16, le=20_000)
    seed: Seed = 0

    @field_validator("densities")
    @classmethod
    def _densities(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v or any(not 0.0 < d <= 1.0 for d in v):
            raise ValueError("densities must be fractions in (0, 1] (0.1 keeps 10% of the weights); "
                             f"got {short_repr(list(v))}")
        if len(set(v)) > MAX_DENSITIES:
            raise ValueError(f"at most {MAX_DENSITIES} densities (each is a full phase-cell measurement); "
                             f"got {len(set(v))}")
        return tuple(sorted(set(v)))

    def cell_params(self) -> PhaseCellParams:
        return PhaseCellParams(**self.model_dump(include=set(PhaseCellParams.model_fields) - {"metrics"}),
                               metrics=self.metrics)


class _PrunedInputs:
    """What run_phase_cell reads: ``all``, the pruned checkpoints."""

    def __init__(self, cks):
        self.all = cks


def _pruned_checkpoints(cks, density: float, p: PruneCellParams) -> tuple[list, list[float]]:
    out, achieved = [], []
    for ck in cks:
        pr = prune(ck.model, ck.params, 1.0 - density, scope=p.scope)
        buffers = ck.buffers
        if p.fine_tune_steps:
            pr, buffers = fine_tune(ck.model, pr, _train_data(ck), ck.config.optim, steps=p.fine_tune_steps,
                                    batch_size=p.fine_tune_batch_size or ck.config.batch_size, buffers=ck.buffers,
                                    seed=ck.config.seed, loss_fn=ck.loss_fn)
        out.append(dataclasses.replace(ck, params=pr.params, buffers=buffers))
        achieved.append(pr.density)
    return out, achieved


def _train_data(ck):
    device = next(iter(ck.params.values())).device
    return ck.dataset.x_train.to(device), ck.dataset.y_train.to(device)


def _output_cka(cks, p: PruneCellParams) -> list[float]:
    """Mean linear CKA of each checkpoint's outputs (logits) with the other seeds' of the same step."""
    outs = []
    for ck in cks:
        x, y = resolve_data(ck.dataset, "test")
        outs.append(capture_activations(ck.model, ck.state, (x, y), max_samples=p.cka_samples, seed=p.seed)[OUTPUT])
    values = [math.nan] * len(cks)
    for group in _same_step_groups(cks):
        for i in group:
            values[i] = float(np.mean([linear_cka(outs[i], outs[j]) for j in group if j != i]))
    return values


def run_prune_cell(inputs, p: PruneCellParams, progress) -> ProbeResult:
    cks = inputs.all
    n, d = len(cks), len(p.densities)
    table: dict[str, np.ndarray] = defaultdict(lambda: np.full((n, d), np.nan))
    for j, density in enumerate(p.densities):
        pruned, achieved = _pruned_checkpoints(cks, density, p)
        table["density_achieved"][:, j] = achieved
        r = run_phase_cell(_PrunedInputs(pruned), p.cell_params(),
                           lambda f, m, j=j, at=density: progress((j + 0.95 * f) / d, f"density {at:g}: {m}"))
        for k, v in r.summary["values"].items():
            table[k][:, j] = [math.nan if x is None else x for x in v]
        if "similarity" in p.metrics:
            table["cka_output"][:, j] = _output_cka(pruned, p)
    refs = [ck.ref for ck in cks]
    return PruneCellResult(checkpoint_ids=tuple(r.checkpoint_id for r in refs), run_ids=tuple(r.run_id for r in refs),
                           steps=tuple(r.step for r in refs), densities=tuple(p.densities), scope=p.scope,
                           fine_tune_steps=p.fine_tune_steps, barrier_kind=BARRIER_KIND, align=p.align,
                           values={k: v.astype(np.float64) for k, v in table.items()}).to_stored()


@dataclass(frozen=True)
class PruneCellResult:
    """``prune.cell``: one value per metric per (input checkpoint, density), NaN where not measured.

    Stored as a summary (``values`` as nested lists with None for NaN, the densities, scope and
    fine-tuning steps) and one float64 array (checkpoints, densities) per metric.
    """

    checkpoint_ids: tuple[str, ...]
    run_ids: tuple[str, ...]
    steps: tuple[int, ...]
    densities: tuple[float, ...]
    scope: str
    fine_tune_steps: int
    barrier_kind: str
    align: str
    values: dict[str, np.ndarray]  # metric -> (checkpoints, densities)

    def to_stored(self) -> ProbeResult:
        summary = {"checkpoint_ids": list(self.checkpoint_ids), "run_ids": list(self.run_ids),
                   "steps": list(self.steps), "densities": list(self.densities), "scope": self.scope,
                   "fine_tune_steps": self.fine_tune_steps, "barrier_kind": self.barrier_kind, "align": self.align,
                   "values": {k: [_json(list(row)) for row in v] for k, v in self.values.items()}}
        return ProbeResult(summary, {k: np.asarray(v, dtype=np.float64) for k, v in self.values.items()})

    @classmethod
    def from_stored(cls, result: ProbeResult) -> PruneCellResult:
        s = result.summary
        values = {k: np.array([[np.nan if x is None else x for x in row] for row in v], dtype=np.float64)
                  for k, v in s["values"].items()}
        return cls(checkpoint_ids=tuple(s["checkpoint_ids"]), run_ids=tuple(s["run_ids"]), steps=tuple(s["steps"]),
                   densities=tuple(float(d) for d in s["densities"]), scope=s["scope"],
                   fine_tune_steps=int(s["fine_tune_steps"]), barrier_kind=s["barrier_kind"], align=s["align"],
                   values=values)


register_probe("prune.cell", run_prune_cell, PruneCellParams, n_checkpoints=(1, 256), result=PruneCellResult,
               code_version="2",
               description="magnitude-prune the seeds of one cell to several densities and measure the pruned "
                           "networks as sweep.cell does (Zhou et al. 2023)")
