"""Rashomon importance distribution probes: the RID of every feature for the three sources of
Rashomon sets the Rashomon page knows, and the Monte-Carlo Rashomon ratio beside it.

- ``rashomon.rid_sample``: a logistic regression or small tanh MLP on a tabular data set; on
  each bootstrap resample of the train split the optimum is refitted and its Rashomon set
  sampled in the Hessian ellipsoid (:class:`~engine.probes.rashomon.SampledSets`). The
  Monte-Carlo Rashomon ratio of the class (:func:`~engine.probes.rashomon.rashomon_ratio`,
  uniform samples of a parameter box) is measured on the whole train split.
- ``rashomon.rid_trees``: sparse decision trees (TreeFARMS) on each resample
  (:class:`~engine.probes.rashomon.TreeSets`); continuous features are split at quantiles.
- ``rashomon.rid_population``: the given checkpoints (a zoo's); the set on a resample of the
  evaluation split is the models within ε of the best there
  (:class:`~engine.probes.rashomon.PopulationSets`); the models are not retrained.

Results: the :class:`~engine.probes.rashomon.ImportanceDistribution` under ``rid.`` and,
for neural sources, the :class:`~engine.probes.rashomon.RashomonRatio` under ``ratio.``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, Field

from engine import data as zdata
from engine.bounds import MAX_EVAL_SIZE
from engine.config import SPEC_CONFIG, Seed
from engine.data import DatasetName
from engine.probes.core import functional_module, resolve_data
from engine.probes.rashomon import (
    ImportanceDistribution,
    PopulationSets,
    RashomonRatio,
    SampledSets,
    TreeSets,
    fit_optimum,
    model_class,
    quantile_thresholds,
    rashomon_importance_distribution,
    rashomon_ratio,
)

from ..probe_kinds import ProbeResult, register_probe
from .convert import pack, unpack
from .rashomon import tabular_dataset

__all__ = ["RidPopulationParams", "RidResult", "RidSampleParams", "RidTreesParams"]


class _Rid(BaseModel):
    model_config = SPEC_CONFIG

    n_bootstraps: int = Field(10, ge=1, le=200)  # B resamples with replacement
    n_repeats: int = Field(3, ge=1, le=50)  # permutations per feature (model reliance)
    importance_threshold: float = 0.0  # P(importance > this) is reported per feature
    seed: Seed = 0  # resamples, and per resample: sampling, permutations


class RidSampleParams(_Rid):
    """RID of a model class on a tabular data set (its train split), sets sampled per resample."""

    dataset: DatasetName = "breast_cancer"  # a registered tabular classification data set
    model: Literal["logistic", "mlp"] = "logistic"  # logistic regression, or one tanh hidden layer
    width: int = Field(8, ge=1, le=64)  # hidden units of the MLP
    l2: float = Field(1e-3, ge=0.0, le=10.0)  # objective = cross-entropy + l2·‖θ‖²
    epsilon: float = Field(0.05, gt=0.0, le=10.0)  # Rashomon ε on every resample
    mode: Literal["relative", "absolute"] = "relative"
    n_samples: int = Field(300, ge=10, le=20_000)  # ellipsoid candidates per resample
    fit_steps: int = Field(200, ge=1, le=20_000)  # L-BFGS iterations per resample (from the full-data optimum)
    ratio_samples: int = Field(10_000, ge=0, le=1_000_000)  # Monte-Carlo Rashomon ratio samples (0: skip)
    ratio_half_width: float | None = Field(None, gt=0.0)  # box [−w, w]^P; None: 2 × the largest |θ*|


class RidTreesParams(_Rid):
    """RID of sparse decision trees (TreeFARMS) on a data set's train split."""

    dataset: DatasetName = "monk1"  # 0/1 features are used as they are; others are split at quantiles
    regularization: float = Field(0.02, gt=0.0, lt=1.0)  # objective = error + regularization × leaves
    rashomon_multiplier: float = Field(0.05, ge=0.0, le=10.0)  # members: objective ≤ (1 + this) × optimum
    depth_budget: int | None = Field(3, ge=1, le=16)  # GOSDT's convention: 2 is a stump; None: no limit
    n_thresholds: int = Field(3, ge=1, le=20)  # binary columns x ≤ t per continuous feature (quantiles)
    time_limit: float = Field(120.0, gt=0.0, le=3600.0)  # seconds per resample's search
    max_trees: int = Field(100_000, ge=1, le=2_000_000)


class RidPopulationParams(_Rid):
    """RID over the input checkpoints (e.g. a zoo's final ones), on resamples of one split."""

    split: Literal["train", "test"] = "test"
    n_samples: int | None = Field(1000, ge=1, le=MAX_EVAL_SIZE)  # random subset of the split (None: all of it)
    epsilon: float = Field(0.05, gt=0.0, le=10.0)  # Rashomon ε on each resample's loss
    mode: Literal["relative", "absolute"] = "relative"
    ratio_samples: int = Field(10_000, ge=0, le=1_000_000)  # Monte-Carlo ratio of the best model's class
    ratio_half_width: float | None = Field(None, gt=0.0)
    # skip the ratio for larger models (uniform samples of a box that size are ~never in the set)
    ratio_max_params: int = Field(5_000, ge=1, le=100_000)


@dataclass(frozen=True)
class RidResult:
    """``rashomon.rid_*``: the importance distribution, the Monte-Carlo Rashomon ratio of the model
    class when it was measured (not for trees, nor for models with buffers or too many parameters),
    and the notes of the run.

    Stored with the distribution flattened under ``rid.``, the ratio under ``ratio.`` (with
    ``ratio.half_width``, the box it sampled), and ``split``, ``n_rows``, ``warnings`` by name.
    """

    rid: ImportanceDistribution
    split: str
    n_rows: int
    warnings: tuple[str, ...] = ()
    ratio: RashomonRatio | None = None
    ratio_half_width: float | None = None  # the box [-h, h]^P the ratio sampled

    @classmethod
    def from_stored(cls, result: ProbeResult) -> RidResult:
        s, a = result.summary, result.arrays
        ratio = unpack(RashomonRatio, s, a, "ratio.") if "ratio.ratio" in s else None
        return cls(rid=unpack(ImportanceDistribution, s, a, "rid."), split=str(s.get("split", "")),
                   n_rows=int(s.get("n_rows", 0)), warnings=tuple(s.get("warnings", ())), ratio=ratio,
                   ratio_half_width=s.get("ratio.half_width"))


def _store(summary: dict, arrays: dict, obj, prefix: str) -> None:
    s, a = pack(obj, prefix)
    summary.update(s)
    arrays.update(a)


def _rid(data, finder, p: _Rid, names, progress, start: float, warn: list[str]):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rid = rashomon_importance_distribution(data, finder, n_bootstraps=p.n_bootstraps, seed=p.seed,
                                               importance_threshold=p.importance_threshold, feature_names=names,
                                               progress=lambda f, m: progress(start + (1 - start) * f, m))
    warn.extend(sorted({str(w.message) for w in caught}))
    return rid


def _ratio(model, params, data, p, epsilon, mode, optimum_loss, l2=0.0):
    half = p.ratio_half_width or 2.0 * max(float(torch.cat([v.abs().reshape(-1) for v in params.values()]).max()), 1e-3)
    return rashomon_ratio(model, params, data, epsilon=epsilon, half_width=half, optimum_loss=optimum_loss,
                          mode=mode, n_samples=p.ratio_samples, seed=p.seed, l2=l2), half


def run_rid_sample(inputs, p: RidSampleParams, progress) -> ProbeResult:
    ds = tabular_dataset(p.dataset, "RID")
    x, y = ds.x_train.double(), ds.y_train
    model = model_class(p.model, x.shape[1], ds.n_outputs, width=p.width, seed=p.seed).double()
    progress(0.01, "fitting the optimum on the whole train split")
    start = fit_optimum(model, (x, y), l2=p.l2, steps=max(p.fit_steps, 500))
    summary = {"source": "sample", "dataset": ds.name, "split": "train", "model": p.model, "n_rows": int(len(x)),
               "feature_names": list(ds.feature_names), "warnings": []}
    arrays: dict[str, np.ndarray] = {}
    if p.ratio_samples:
        progress(0.03, f"Monte-Carlo Rashomon ratio ({p.ratio_samples:,} uniform samples of the box)")
        with torch.no_grad():
            best = float(torch.nn.functional.cross_entropy(torch.func.functional_call(model, start, (x,)), y)
                         + p.l2 * sum(v.pow(2).sum() for v in start.values()))
        ratio, half = _ratio(model, start, (x, y), p, p.epsilon, p.mode, best, p.l2)
        _store(summary, arrays, ratio, "ratio.")
        summary["ratio.half_width"] = half
    finder = SampledSets(model, start, epsilon=p.epsilon, mode=p.mode, n_samples=p.n_samples, l2=p.l2,
                         fit_steps=p.fit_steps, n_repeats=p.n_repeats)
    rid = _rid((x, y), finder, p, ds.feature_names, progress, 0.1, summary["warnings"])
    _store(summary, arrays, rid, "rid.")
    return ProbeResult(summary, arrays)


def run_rid_trees(inputs, p: RidTreesParams, progress) -> ProbeResult:
    ds = zdata.load(p.dataset)
    x, y = ds.x_train.double(), ds.y_train
    if x.ndim != 2 or ds.task != "classification":
        raise ValueError(f"sparse trees need a tabular classification data set; {p.dataset!r} is a {ds.task} set "
                         f"with inputs {tuple(ds.input_shape)}")
    binary = bool(torch.isin(x, torch.tensor([0.0, 1.0], dtype=x.dtype)).all())
    thresholds = None if binary else quantile_thresholds(x.numpy(), p.n_thresholds)
    finder = TreeSets(regularization=p.regularization, rashomon_multiplier=p.rashomon_multiplier,
                      depth_budget=p.depth_budget, max_trees=p.max_trees, time_limit=p.time_limit,
                      thresholds=thresholds, n_repeats=p.n_repeats)
    summary = {"source": "trees", "dataset": ds.name, "split": "train", "n_rows": int(len(x)),
               "feature_names": list(ds.feature_names), "binarized": not binary, "warnings": []}
    if not binary:
        summary["warnings"].append(f"continuous features were split at {p.n_thresholds} quantiles each (x ≤ t); "
                                   "a feature's importance permutes all of its binary columns together")
    arrays: dict[str, np.ndarray] = {}
    rid = _rid((x, y), finder, p, ds.feature_names, progress, 0.0, summary["warnings"])
    _store(summary, arrays, rid, "rid.")
    return ProbeResult(summary, arrays)


def run_rid_population(inputs, p: RidPopulationParams, progress) -> ProbeResult:
    first = inputs.load(0)
    x, y = resolve_data(first.dataset, p.split, n_samples=p.n_samples, seed=p.seed)
    x, y = x.to(inputs.device), y.to(inputs.device)
    if x.ndim != 2 or not x.is_floating_point():
        raise ValueError(f"RID permutes features of tabular inputs (N, D); {first.dataset.name!r} has inputs "
                         f"{tuple(first.dataset.input_shape)}: pick a zoo trained on tabular data")
    groups: dict = {}
    for i in range(len(inputs)):
        ck = first if i == 0 else inputs.load(i)
        if ck.dataset.name != first.dataset.name:
            raise ValueError(f"checkpoint {ck.ref.checkpoint_id} was trained on {ck.dataset.name!r}, the first one "
                             f"on {first.dataset.name!r}: pick checkpoints of one data set")
        sig = (ck.config.arch.to_json(), tuple((k, tuple(v.shape)) for k, v in ck.state.items()))
        groups.setdefault(sig, []).append(ck)
        progress(0.2 * (i + 1) / len(inputs), f"loaded {i + 1}/{len(inputs)} checkpoints")
    stacks = [(functional_module(cks[0].model, "running"), {k: torch.stack([ck.state[k] for ck in cks])
                                                            for k in cks[0].state}) for cks in groups.values()]
    finder = PopulationSets(stacks, epsilon=p.epsilon, mode=p.mode, n_repeats=p.n_repeats)
    summary = {"source": "population", "dataset": first.dataset.name, "split": p.split, "n_rows": int(len(x)),
               "n_models": len(inputs), "feature_names": list(first.dataset.feature_names), "warnings": [
                   "the models are fixed (not retrained per resample): this is RID over the stored population"]}
    arrays: dict[str, np.ndarray] = {}
    losses = finder.losses(x, y)
    best = int(np.nanargmin(losses))
    module, stacked = _member(stacks, best)
    stacked = {k: v for k, v in stacked.items() if k not in first.buffers}
    n_params = sum(v.numel() for v in stacked.values())
    if p.ratio_samples and first.buffers:
        summary["warnings"].append("no Monte-Carlo Rashomon ratio: the models have buffers (e.g. BatchNorm "
                                   "statistics), which a box of parameters does not describe")
    elif p.ratio_samples and n_params <= p.ratio_max_params:
        progress(0.22, f"Monte-Carlo Rashomon ratio of the best model's class ({n_params:,} parameters)")
        ratio, half = _ratio(module, stacked, (x, y), p, p.epsilon, p.mode, float(losses[best]))
        _store(summary, arrays, ratio, "ratio.")
        summary["ratio.half_width"] = half
    elif p.ratio_samples:
        summary["warnings"].append(f"no Monte-Carlo Rashomon ratio: the models have {n_params:,} parameters, more "
                                   f"than ratio_max_params={p.ratio_max_params:,}; uniform samples of a box that "
                                   "large are almost never in the set")
    rid = _rid((x, y), finder, p, first.dataset.feature_names, progress, 0.3, summary["warnings"])
    _store(summary, arrays, rid, "rid.")
    return ProbeResult(summary, arrays)


def _member(stacks, index: int):
    """The module and (unstacked) parameters of model ``index`` across the groups."""
    for module, stacked in stacks:
        g = int(next(iter(stacked.values())).shape[0])
        if index < g:
            return module, {k: v[index] for k, v in stacked.items()}
        index -= g
    raise IndexError(index)


register_probe("rashomon.rid_sample", run_rid_sample, RidSampleParams, n_checkpoints=(0, 0), result=RidResult,
               description="Rashomon importance distribution of a sampled tabular model class, and its MC ratio")
register_probe("rashomon.rid_trees", run_rid_trees, RidTreesParams, n_checkpoints=(0, 0), result=RidResult,
               description="Rashomon importance distribution of sparse decision trees (TreeFARMS per resample)")
register_probe("rashomon.rid_population", run_rid_population, RidPopulationParams, n_checkpoints=(2, None),
               result=RidResult,
               description="Rashomon importance distribution over stored models, on resamples of one split")
