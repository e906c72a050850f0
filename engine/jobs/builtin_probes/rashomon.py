"""Rashomon-set probes: a population of stored models, a sampled model class, sparse trees.

Each probe stores what the Rashomon page needs to answer an ε slider without another
job: one loss per model (the slider filters these), the models' predictions on
held-out samples (predictive multiplicity), and, for tabular inputs, every model's
permutation importances and feature interaction scores (the clouds). Membership
itself is not stored; it is a fast query on the stored losses.

- ``rashomon.population``: the given checkpoints (e.g. a zoo's final ones), evaluated
  on one held-out split.
- ``rashomon.sample``: logistic regression or a small tanh MLP fitted on a tabular
  data set, its Rashomon set sampled in the Hessian ellipsoid and filtered by the true
  training objective (:func:`engine.probes.rashomon.sampling.sample_rashomon_set`).
- ``rashomon.trees``: the sparse-tree Rashomon set of a binarized data set
  (:func:`engine.probes.rashomon.trees.rashomon_trees`), recounted against the bound.

The last two take no checkpoints: their key is the probe kind, the data set and the
parameters.
"""

from __future__ import annotations

import dataclasses
import warnings
from itertools import combinations
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field
from torch import nn
from torch.func import functional_call

from engine import data as zdata
from engine.bounds import MAX_EVAL_SIZE
from engine.config import SPEC_CONFIG, Seed
from engine.data import DatasetName
from engine.probes.core import functional_module, resolve_data
from engine.probes.rashomon import (
    ImportanceCloud,
    InteractionCloud,
    feature_interaction_cloud,
    predict_trees,
    rashomon_trees,
    sample_rashomon_set,
    stacked_forward,
    variable_importance_cloud,
)

from ..probe_job import ProbeResult, register_probe
from .convert import pack

__all__ = ["PopulationParams", "SampleParams", "TreesParams", "model_class"]


class _Params(BaseModel):
    model_config = SPEC_CONFIG


class _Explain(_Params):
    n_repeats: int = Field(3, ge=1, le=50)  # permutations per feature (importance) and per pair (FIS)
    fis_features: int = Field(6, ge=2, le=30)  # FIS for all pairs of this many most important features
    seed: Seed = 0  # permutations (and subsample / sampling, where a probe has one)


# -- shared: losses, predictions and explanation clouds ---------------------------------------------------

def _scores(out: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Per-model loss, error and class probabilities from outputs (M, N, C) (or (M, N, D) for regression)."""
    out = out.double()
    if y.is_floating_point():
        loss = (out - y.reshape(y.shape[0], -1).double()).pow(2).flatten(1).mean(-1)  # (M,)
        return loss.cpu().numpy(), None, None
    logp = torch.log_softmax(out, -1)  # (M, N, C)
    loss = -logp.gather(-1, y.expand(out.shape[0], -1)[..., None]).squeeze(-1).mean(-1)
    error = (out.argmax(-1) != y).double().mean(-1)
    return loss.cpu().numpy(), error.cpu().numpy(), logp.exp().float().cpu().numpy()


def _explain(groups, data, n_models: int, feature_names, p: _Explain, progress, start: float
             ) -> tuple[ImportanceCloud, InteractionCloud]:
    """Importance and FIS clouds of all models, one vectorized pass per group of same-shaped models.

    ``groups`` holds (module, stacked parameters name -> (G, ...), model indices (G,)).
    FIS pairs are all pairs of the ``p.fis_features`` features with the largest mean importance.
    """
    x, y = data
    d = x.shape[1]
    imp = np.zeros((n_models, d, p.n_repeats))
    base = np.zeros(n_models)
    for g, (module, stacked, idx) in enumerate(groups):
        progress(start + (1 - start) * 0.5 * g / len(groups), f"importance cloud, group {g + 1}/{len(groups)}")
        cloud = variable_importance_cloud(module, stacked, data, n_repeats=p.n_repeats, seed=p.seed,
                                          metric="loss", feature_names=feature_names)
        imp[idx], base[idx] = cloud.importances, cloud.baseline
    mean = imp.mean(-1)
    vic = ImportanceCloud(importances=imp, mean=mean, baseline=base, mcr_min=mean.min(0), mcr_max=mean.max(0),
                          feature_names=tuple(feature_names), metric="loss")
    top = np.sort(np.argsort(-mean.mean(0), kind="stable")[: min(p.fis_features, d)])
    pairs = np.array(list(combinations(top.tolist(), 2)), dtype=np.int64).reshape(-1, 2)
    fis, joint, single = (np.zeros((n_models, len(pairs))), np.zeros((n_models, len(pairs))),
                          np.zeros((n_models, d)))
    for g, (module, stacked, idx) in enumerate(groups):
        if not len(pairs):
            break
        progress(start + (1 - start) * (0.5 + 0.5 * g / len(groups)), f"interaction cloud, group {g + 1}/{len(groups)}")
        inter = feature_interaction_cloud(module, stacked, data, pairs=pairs, n_repeats=p.n_repeats, seed=p.seed,
                                          metric="loss", feature_names=feature_names)
        fis[idx], joint[idx], single[idx] = inter.fis, inter.joint, inter.single
    return vic, InteractionCloud(pairs=pairs, fis=fis, joint=joint, single=single,
                                 feature_names=tuple(feature_names), metric="loss")


def _pack_into(summary: dict, arrays: dict, obj, prefix: str) -> None:
    s, a = pack(obj, prefix)
    summary.update(s)
    arrays.update(a)


# -- rashomon.population ----------------------------------------------------------------------------------

class PopulationParams(_Explain):
    """Losses and held-out predictions of the input checkpoints (e.g. a zoo's final ones)."""

    split: Literal["train", "test"] = "test"  # the split the set is defined on (held-out by default)
    n_samples: int | None = Field(1000, ge=1, le=MAX_EVAL_SIZE)  # random subset of the split (None: all of it)
    importance: bool = True  # importance/FIS clouds (tabular inputs only)


def _outputs(ck, x: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    module = functional_module(ck.model, "running")
    state = ck.state
    with torch.no_grad():
        return torch.cat([functional_call(module, state, (x[s:s + chunk],)) for s in range(0, len(x), chunk)])


def _same_data(first, ck) -> None:
    a, b = first.dataset, ck.dataset
    if a.name != b.name or tuple(a.input_shape) != tuple(b.input_shape) or a.n_outputs != b.n_outputs:
        raise ValueError(f"checkpoint {ck.ref.checkpoint_id} was trained on {b.name!r} {tuple(b.input_shape)}, "
                         f"the first one on {a.name!r} {tuple(a.input_shape)}; a Rashomon set compares models "
                         "on one data set: pick checkpoints of one data set")


def run_population(inputs, p: PopulationParams, progress) -> ProbeResult:
    first = inputs.load(0)
    x, y = resolve_data(first.dataset, p.split, n_samples=p.n_samples, seed=p.seed)
    x, y = x.to(inputs.device), y.to(inputs.device)
    tabular = x.ndim == 2 and x.is_floating_point()
    outs, groups, specs = [], {}, set()
    for i in range(len(inputs)):
        ck = first if i == 0 else inputs.load(i)
        _same_data(first, ck)
        specs.add(ck.config.dataset.model_copy(update={"label_noise": 0.0, "train_fraction": 1.0}).to_json())
        outs.append(_outputs(ck, x))
        if tabular and p.importance:  # same architecture and shapes -> one stacked group
            sig = (ck.config.arch.to_json(), tuple((k, tuple(v.shape)) for k, v in ck.state.items()))
            groups.setdefault(sig, []).append((i, ck))
        progress(0.6 * (i + 1) / len(inputs), f"evaluated {i + 1}/{len(inputs)} checkpoints")
    loss, error, probs = _scores(torch.stack(outs), y)
    refs = inputs.refs
    summary = {"source": "population", "task": first.dataset.task, "dataset": first.dataset.name,
               "split": p.split, "n_models": len(inputs), "n_eval": int(len(x)),
               "labels": [r.name or r.run_id[:8] for r in refs], "run_ids": [r.run_id for r in refs],
               "steps": [r.step for r in refs], "feature_names": list(first.dataset.feature_names),
               "class_names": list(first.dataset.class_names), "warnings": []}
    if len(specs) > 1:
        summary["warnings"].append(
            f"the runs use {len(specs)} different data specs (e.g. split seeds); every model was evaluated on "
            f"the {p.split} split of the first run's data, which some models may have trained on")
    arrays = {"loss": loss, "x": x.reshape(len(x), -1).float().cpu().numpy(), "y": y.cpu().numpy()}
    if error is not None:
        arrays.update(error=error, probs=probs)
    if tabular and p.importance:
        stacks = [(functional_module(cks[0][1].model, "running"),
                   {k: torch.stack([ck.state[k] for _, ck in cks]) for k in cks[0][1].state},
                   np.array([i for i, _ in cks])) for cks in groups.values()]
        vic, inter = _explain(stacks, (x, y), len(inputs), first.dataset.feature_names, p, progress, 0.6)
        _pack_into(summary, arrays, vic, "vic.")
        _pack_into(summary, arrays, inter, "fis.")
    elif p.importance:
        summary["warnings"].append(f"no importance clouds: they need tabular inputs (N, D); "
                                   f"{first.dataset.name!r} has inputs {tuple(first.dataset.input_shape)}")
    return ProbeResult(summary, arrays)


# -- rashomon.sample ------------------------------------------------------------------------------------------

class SampleParams(_Explain):
    """A model class on a tabular data set: fit the optimum, sample its Rashomon set, explain the members."""

    dataset: DatasetName = "breast_cancer"  # a registered tabular classification data set
    model: Literal["logistic", "mlp"] = "logistic"  # logistic regression, or one tanh hidden layer
    width: int = Field(8, ge=1, le=64)  # hidden units of the MLP
    l2: float = Field(1e-3, ge=0.0, le=10.0)  # objective = cross-entropy + l2·‖θ‖² (train split)
    epsilon: float = Field(0.05, gt=0.0, le=10.0)  # the set is sampled up to this ε (the slider's maximum)
    mode: Literal["relative", "absolute"] = "relative"
    n_samples: int = Field(2000, ge=10, le=20_000)  # candidates drawn in the ellipsoid
    fit_steps: int = Field(500, ge=1, le=20_000)  # L-BFGS iterations to the optimum


def model_class(kind: str, d: int, n_classes: int, *, width: int = 8, seed: int = 0) -> nn.Module:
    """Logistic regression (``Linear(d, C)``) or a ``d-width-C`` tanh MLP, initialised from ``seed``.

    Tanh, not ReLU: the ellipsoid needs curvature, and a ReLU network's Hessian is zero
    along many directions.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "logistic":
            return nn.Linear(d, n_classes)
        if kind == "mlp":
            return nn.Sequential(nn.Linear(d, width), nn.Tanh(), nn.Linear(width, n_classes))
    raise ValueError(f"model must be 'logistic' or 'mlp'; got {kind!r}")


def _fit_optimum(model: nn.Module, data, *, l2: float, steps: int) -> dict[str, torch.Tensor]:
    """θ* minimising cross-entropy + l2·‖θ‖² by full-batch L-BFGS in float64 (the module is not mutated)."""
    x, y = data
    params = {k: v.detach().double().clone().requires_grad_(True) for k, v in model.named_parameters()}
    opt = torch.optim.LBFGS(list(params.values()), lr=1.0, max_iter=steps, history_size=50,
                            tolerance_grad=1e-12, tolerance_change=1e-15, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(functional_call(model, params, (x,)), y)
        loss = loss + l2 * sum(v.pow(2).sum() for v in params.values())
        loss.backward()
        return loss

    opt.step(closure)
    return {k: v.detach() for k, v in params.items()}


def _tabular(name: str) -> zdata.Dataset:
    ds = zdata.load(name)
    if ds.task != "classification" or ds.x_train.ndim != 2 or not ds.x_train.is_floating_point():
        raise ValueError(f"sampling needs a tabular classification data set (inputs (N, D)); {name!r} is a "
                         f"{ds.task} set with inputs {tuple(ds.input_shape)}: pick breast_cancer, wine, compas, ...")
    return ds


def run_sample(inputs, p: SampleParams, progress) -> ProbeResult:
    ds = _tabular(p.dataset)
    train = (ds.x_train.double(), ds.y_train)
    test = (ds.x_test.double(), ds.y_test)
    model = model_class(p.model, ds.x_train.shape[1], ds.n_outputs, width=p.width, seed=p.seed)
    progress(0.02, f"fitting the optimum ({p.model}, L-BFGS)")
    optimum = _fit_optimum(model, train, l2=p.l2, steps=p.fit_steps)
    progress(0.2, f"sampling {p.n_samples} candidates in the Hessian ellipsoid")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sample = sample_rashomon_set(model, optimum, train, epsilon=p.epsilon, mode=p.mode,
                                     n_samples=p.n_samples, seed=p.seed, l2=p.l2)
    theta0 = torch.cat([optimum[n].reshape(-1) for n in sample.names]).numpy()
    members = dataclasses.replace(sample, thetas=np.concatenate([theta0[None], sample.thetas]))  # optimum first
    stacked = members.stacked_params(torch.float64)
    progress(0.4, f"predictions of {len(members.thetas)} members")
    with torch.no_grad():
        loss, error, probs = _scores(stacked_forward(model, stacked, test[0]), test[1])  # probs (K, N, C)
    summary = {"source": "sample", "task": ds.task, "dataset": ds.name, "split": "test", "model": p.model,
               "n_models": int(len(members.thetas)), "n_eval": int(len(test[0])),
               "feature_names": list(ds.feature_names), "class_names": list(ds.class_names),
               "warnings": [str(w.message) for w in caught]}
    arrays = {"objective": np.concatenate([[sample.optimum_loss], sample.losses]), "loss": loss, "error": error,
              "probs": probs, "x": test[0].float().numpy(), "y": test[1].numpy()}
    _pack_into(summary, arrays, sample, "sample.")
    vic, inter = _explain([(model, stacked, np.arange(len(members.thetas)))], test, len(members.thetas),
                          ds.feature_names, p, progress, 0.5)
    _pack_into(summary, arrays, vic, "vic.")
    _pack_into(summary, arrays, inter, "fis.")
    return ProbeResult(summary, arrays)


# -- rashomon.trees -------------------------------------------------------------------------------------------

class TreesParams(_Params):
    """The sparse-decision-tree Rashomon set of a binarized data set (TreeFARMS), recounted."""

    dataset: DatasetName = "monk1"  # a data set with 0/1 features (compas, monk1-3, car_evaluation, bar7)
    regularization: float = Field(0.03, gt=0.0, lt=1.0)  # objective = error + regularization × leaves
    rashomon_multiplier: float = Field(0.1, ge=0.0, le=10.0)  # members: objective ≤ (1 + this) × optimum
    depth_budget: int | None = Field(None, ge=1, le=16)  # GOSDT's convention: 2 is a stump; None: no limit
    fit_on: Literal["train", "all"] = "train"  # "all": train + test rows, as in Xin et al.
    time_limit: float = Field(300.0, gt=0.0, le=3600.0)  # seconds for the search
    max_trees: int = Field(100_000, ge=1, le=2_000_000)  # refuse larger sets
    # store predictions of at most this many (tree, row) pairs
    max_predictions: int = Field(20_000_000, ge=1, le=1_000_000_000)


def run_trees(inputs, p: TreesParams, progress) -> ProbeResult:
    ds = zdata.load(p.dataset)
    x_fit, y_fit = ds.x_train.numpy(), ds.y_train.numpy()
    if p.fit_on == "all":
        x_fit = np.concatenate([x_fit, ds.x_test.numpy()])
        y_fit = np.concatenate([y_fit, ds.y_test.numpy()])
    if x_fit.ndim != 2 or not np.isin(x_fit, (0, 1)).all():
        raise ValueError(f"sparse trees need 0/1 features; {p.dataset!r} has others: pick compas, monk1-3, "
                         "car_evaluation or bar7 (or binarize your table)")
    x_eval, y_eval = (ds.x_test.numpy(), ds.y_test.numpy()) if p.fit_on == "train" else (x_fit, y_fit)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trees = rashomon_trees(x_fit, y_fit, regularization=p.regularization,
                               rashomon_multiplier=p.rashomon_multiplier, depth_budget=p.depth_budget,
                               feature_names=ds.feature_names, max_trees=p.max_trees, time_limit=p.time_limit,
                               progress=lambda f, m: progress(0.9 * f, m))
    n_pred = int(min(trees.size, max(1, p.max_predictions // max(len(x_eval), 1))))
    progress(0.92, f"predictions of {n_pred:,} trees on {len(x_eval):,} rows")
    pred = predict_trees(trees, x_eval, indices=np.arange(n_pred))  # trees are sorted by objective
    summary = {"source": "trees", "task": "classification", "dataset": ds.name,
               "split": "test" if p.fit_on == "train" else "all", "n_models": trees.size, "n_eval": int(len(x_eval)),
               "n_predicted": n_pred, "feature_names": list(ds.feature_names), "class_names": list(ds.class_names),
               "warnings": [str(w.message) for w in caught]}
    arrays = {"pred": pred.astype(np.int16), "eval_accuracy": (pred == y_eval[None]).mean(1),
              "x": x_eval.astype(np.float32), "y": y_eval}
    _pack_into(summary, arrays, trees, "trees.")
    return ProbeResult(summary, arrays)


register_probe("rashomon.population", run_population, PopulationParams, n_checkpoints=(2, None),
               description="losses, held-out predictions and importance clouds of stored models")
register_probe("rashomon.sample", run_sample, SampleParams, n_checkpoints=(0, 0),
               description="Hessian-ellipsoid sample of a tabular model class's Rashomon set")
register_probe("rashomon.trees", run_trees, TreesParams, n_checkpoints=(0, 0),
               description="sparse decision tree Rashomon set (TreeFARMS), recounted against its bound")
