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
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, Field
from torch.func import functional_call

from engine import data as zdata
from engine.bounds import MAX_EVAL_SIZE
from engine.config import SPEC_CONFIG, Seed
from engine.data import DatasetName
from engine.probes.core import functional_module, resolve_data
from engine.probes.rashomon import (
    ImportanceCloud,
    InteractionCloud,
    ModelGroup,
    RashomonSample,
    TreeRashomonSet,
    explanation_clouds,
    fit_optimum,
    model_class,
    model_scores,
    predict_trees,
    rashomon_trees,
    sample_rashomon_set,
    stacked_forward,
)

from ..probe_kinds import ProbeResult, register_probe
from .convert import pack, unpack

__all__ = ["PopulationParams", "PopulationResult", "SampleParams", "SampleResult", "TreesParams", "TreesResult"]


class _Params(BaseModel):
    model_config = SPEC_CONFIG


class _Explain(_Params):
    n_repeats: int = Field(3, ge=1, le=50)  # permutations per feature (importance) and per pair (FIS)
    fis_features: int = Field(6, ge=2, le=30)  # FIS for all pairs of this many most important features
    seed: Seed = 0  # permutations (and subsample / sampling, where a probe has one)


# -- shared: the explanation clouds and the stored form -------------------------------------------------------

def _explain(groups, data, n_models: int, feature_names, p: _Explain, progress, start: float
             ) -> tuple[ImportanceCloud, InteractionCloud]:
    """Importance and FIS clouds of all models, reported as progress from ``start`` to 1."""
    return explanation_clouds(groups, data, n_models=n_models, feature_names=feature_names, n_repeats=p.n_repeats,
                              fis_features=p.fis_features, seed=p.seed,
                              on_progress=lambda f, m: progress(start + (1 - start) * f, m))


def _pack_into(summary: dict, arrays: dict, obj, prefix: str) -> None:
    s, a = pack(obj, prefix)
    summary.update(s)
    arrays.update(a)


_COMMON = ("task", "dataset", "split", "n_models", "n_eval", "feature_names", "class_names", "warnings")


@dataclass(frozen=True)
class _RashomonRows:
    """What every Rashomon result holds: the data set, the set's size and the evaluation rows."""

    task: str
    dataset: str
    split: str
    n_models: int
    n_eval: int
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]
    warnings: tuple[str, ...]
    x: np.ndarray  # the N evaluation samples' features (N, D)
    y: np.ndarray  # their labels (N,) or targets

    source = ""  # the result kind's own name, stored as summary["source"]

    def _summary(self) -> dict:
        """``source`` and the common summary fields (tuples become lists)."""
        return {"source": self.source, **{k: _json(getattr(self, k)) for k in _COMMON}}


def _common(result: ProbeResult) -> dict:
    """The summary fields every Rashomon result has (lists become tuples)."""
    s = result.summary
    return {k: tuple(s[k]) if isinstance(s[k], list) else s[k] for k in _COMMON} | {
        "x": result.arrays["x"], "y": result.arrays["y"]}


def _clouds(result: ProbeResult) -> dict:
    """``importance``/``interactions`` (``vic.``/``fis.``): None when not computed, or with no pairs."""
    s, a = result.summary, result.arrays
    if "vic.mean" not in a:
        return {"importance": None, "interactions": None}
    fis = unpack(InteractionCloud, s, a, "fis.") if len(a.get("fis.pairs", ())) else None
    return {"importance": unpack(ImportanceCloud, s, a, "vic."), "interactions": fis}


def _json(value):
    return list(value) if isinstance(value, tuple) else value


def _pack_clouds(summary: dict, arrays: dict, vic: ImportanceCloud | None, inter: InteractionCloud | None) -> None:
    if vic is not None:
        _pack_into(summary, arrays, vic, "vic.")
    if inter is not None:
        _pack_into(summary, arrays, inter, "fis.")


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
    scores = model_scores(torch.stack(outs), y)
    notes = []
    if len(specs) > 1:
        notes.append(f"the runs use {len(specs)} different data specs (e.g. split seeds); every model was evaluated "
                     f"on the {p.split} split of the first run's data, which some models may have trained on")
    vic = inter = None
    if tabular and p.importance:
        stacks = [ModelGroup(functional_module(cks[0][1].model, "running"),
                             {k: torch.stack([ck.state[k] for _, ck in cks]) for k in cks[0][1].state},
                             np.array([i for i, _ in cks])) for cks in groups.values()]
        vic, inter = _explain(stacks, (x, y), len(inputs), first.dataset.feature_names, p, progress, 0.6)
    elif p.importance:
        notes.append(f"no importance clouds: they need tabular inputs (N, D); "
                     f"{first.dataset.name!r} has inputs {tuple(first.dataset.input_shape)}")
    refs, ds = inputs.refs, first.dataset
    return PopulationResult(
        task=ds.task, dataset=ds.name, split=p.split, n_models=len(inputs), n_eval=int(len(x)),
        feature_names=tuple(ds.feature_names), class_names=tuple(ds.class_names), warnings=tuple(notes),
        x=x.reshape(len(x), -1).float().cpu().numpy(), y=y.cpu().numpy(),
        labels=tuple(r.name or r.run_id[:8] for r in refs), run_ids=tuple(r.run_id for r in refs),
        steps=tuple(r.step for r in refs), loss=scores.loss, error=scores.error, probs=scores.probs,
        importance=vic, interactions=inter).to_stored()


@dataclass(frozen=True)
class PopulationResult(_RashomonRows):
    """``rashomon.population``: the input checkpoints' held-out losses, predictions and explanation clouds.

    Stored with the summary fields by name, arrays ``loss``, ``x``, ``y`` (and for classification
    ``error``, ``probs``), and the clouds flattened under ``vic.`` and ``fis.``.
    """

    labels: tuple[str, ...]  # run name (or id) of each model
    run_ids: tuple[str, ...]
    steps: tuple[int, ...]
    loss: np.ndarray  # (M,) held-out loss per model
    error: np.ndarray | None = None  # (M,) 1 - accuracy; None for regression
    probs: np.ndarray | None = None  # (M, N, C)
    importance: ImportanceCloud | None = None
    interactions: InteractionCloud | None = None  # None also when there is no pair of features

    source = "population"

    @property
    def preds(self) -> np.ndarray | None:
        """Hard labels (M, N), or None for regression."""
        return None if self.probs is None else self.probs.argmax(-1)

    def to_stored(self) -> ProbeResult:
        summary = {**self._summary(), "labels": list(self.labels), "run_ids": list(self.run_ids),
                   "steps": list(self.steps)}
        arrays = {"loss": self.loss, "x": self.x, "y": self.y}
        if self.error is not None:
            arrays.update(error=self.error, probs=self.probs)
        _pack_clouds(summary, arrays, self.importance, self.interactions)
        return ProbeResult(summary, arrays)

    @classmethod
    def from_stored(cls, result: ProbeResult) -> PopulationResult:
        s, a = result.summary, result.arrays
        return cls(**_common(result), **_clouds(result), labels=tuple(s["labels"]), run_ids=tuple(s["run_ids"]),
                   steps=tuple(s["steps"]), loss=a["loss"], error=a.get("error"), probs=a.get("probs"))


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


def tabular_dataset(name: str, purpose: str = "sampling") -> zdata.Dataset:
    """The registered data set ``name``, refused unless it is tabular classification (inputs (N, D))."""
    ds = zdata.load(name)
    if ds.task != "classification" or ds.x_train.ndim != 2 or not ds.x_train.is_floating_point():
        raise ValueError(f"{purpose} needs a tabular classification data set (inputs (N, D)); {name!r} is a "
                         f"{ds.task} set with inputs {tuple(ds.input_shape)}: pick breast_cancer, wine, compas, "
                         "rid_chen, ...")
    return ds


def run_sample(inputs, p: SampleParams, progress) -> ProbeResult:
    ds = tabular_dataset(p.dataset)
    train = (ds.x_train.double(), ds.y_train)
    test = (ds.x_test.double(), ds.y_test)
    model = model_class(p.model, ds.x_train.shape[1], ds.n_outputs, width=p.width, seed=p.seed)
    progress(0.02, f"fitting the optimum ({p.model}, L-BFGS)")
    optimum = fit_optimum(model, train, l2=p.l2, steps=p.fit_steps)
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
        scores = model_scores(stacked_forward(model, stacked, test[0]), test[1])  # probs (K, N, C)
    vic, inter = _explain([ModelGroup(model, stacked, np.arange(len(members.thetas)))], test, len(members.thetas),
                          ds.feature_names, p, progress, 0.5)
    return SampleResult(
        task=ds.task, dataset=ds.name, split="test", n_models=int(len(members.thetas)), n_eval=int(len(test[0])),
        feature_names=tuple(ds.feature_names), class_names=tuple(ds.class_names),
        warnings=tuple(str(w.message) for w in caught), x=test[0].float().numpy(), y=test[1].numpy(),
        model=p.model, objective=np.concatenate([[sample.optimum_loss], sample.losses]), loss=scores.loss,
        error=scores.error, probs=scores.probs, sample=sample, importance=vic, interactions=inter).to_stored()


@dataclass(frozen=True)
class SampleResult(_RashomonRows):
    """``rashomon.sample``: the optimum (model 0) and the sampled members, on the test split.

    Stored with the summary fields by name, arrays ``objective``, ``loss``, ``error``, ``probs``,
    ``x``, ``y``, the sample flattened under ``sample.`` and the clouds under ``vic.``/``fis.``.
    """

    model: str  # "logistic" or "mlp"
    objective: np.ndarray  # (M,) training objective (CE + L2), the optimum first
    loss: np.ndarray  # (M,) test cross-entropy
    error: np.ndarray
    probs: np.ndarray  # (M, N, C)
    sample: RashomonSample  # the members drawn (without the optimum)
    importance: ImportanceCloud | None = None
    interactions: InteractionCloud | None = None

    source = "sample"

    @property
    def preds(self) -> np.ndarray:
        return self.probs.argmax(-1)

    def to_stored(self) -> ProbeResult:
        summary = {**self._summary(), "model": self.model}
        arrays = {"objective": self.objective, "loss": self.loss, "error": self.error, "probs": self.probs,
                  "x": self.x, "y": self.y}
        _pack_into(summary, arrays, self.sample, "sample.")
        _pack_clouds(summary, arrays, self.importance, self.interactions)
        return ProbeResult(summary, arrays)

    @classmethod
    def from_stored(cls, result: ProbeResult) -> SampleResult:
        s, a = result.summary, result.arrays
        return cls(**_common(result), **_clouds(result), model=s["model"], objective=a["objective"], loss=a["loss"],
                   error=a["error"], probs=a["probs"], sample=unpack(RashomonSample, s, a, "sample."))


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
    return TreesResult(
        task="classification", dataset=ds.name, split="test" if p.fit_on == "train" else "all", n_models=trees.size,
        n_eval=int(len(x_eval)), feature_names=tuple(ds.feature_names), class_names=tuple(ds.class_names),
        warnings=tuple(str(w.message) for w in caught), x=x_eval.astype(np.float32), y=y_eval, n_predicted=n_pred,
        pred=pred.astype(np.int16), eval_accuracy=(pred == y_eval[None]).mean(1), trees=trees).to_stored()


@dataclass(frozen=True)
class TreesResult(_RashomonRows):
    """``rashomon.trees``: the tree Rashomon set and the best trees' predictions on the evaluation rows.

    Stored with the summary fields by name, arrays ``pred``, ``eval_accuracy``, ``x``, ``y``, and
    the set flattened under ``trees.``.
    """

    n_predicted: int  # predictions are stored for the first (best) n_predicted trees
    pred: np.ndarray  # (n_predicted, N) int16
    eval_accuracy: np.ndarray  # (n_predicted,)
    trees: TreeRashomonSet

    source = "trees"
    probs = None  # trees give hard labels only
    importance = None
    interactions = None

    @property
    def preds(self) -> np.ndarray:
        return self.pred

    def to_stored(self) -> ProbeResult:
        summary = {**self._summary(), "n_predicted": self.n_predicted}
        arrays = {"pred": self.pred, "eval_accuracy": self.eval_accuracy, "x": self.x, "y": self.y}
        _pack_into(summary, arrays, self.trees, "trees.")
        return ProbeResult(summary, arrays)

    @classmethod
    def from_stored(cls, result: ProbeResult) -> TreesResult:
        s, a = result.summary, result.arrays
        return cls(**_common(result), n_predicted=int(s["n_predicted"]), pred=a["pred"],
                   eval_accuracy=a["eval_accuracy"], trees=unpack(TreeRashomonSet, s, a, "trees."))


register_probe("rashomon.population", run_population, PopulationParams, n_checkpoints=(2, None),
               description="losses, held-out predictions and importance clouds of stored models",
               result=PopulationResult)
register_probe("rashomon.sample", run_sample, SampleParams, n_checkpoints=(0, 0),
               description="Hessian-ellipsoid sample of a tabular model class's Rashomon set", result=SampleResult)
register_probe("rashomon.trees", run_trees, TreesParams, n_checkpoints=(0, 0),
               description="sparse decision tree Rashomon set (TreeFARMS), recounted against its bound",
               result=TreesResult)
