"""The Rashomon page's three sources of models, each a row of pickers and one probe request: a zoo's
trained models, a sampled model class, and the sparse trees of TreeFARMS. Each returns a
:class:`~pages.ui.rashomon_model.RashomonView`, or None while its result is not stored."""

from __future__ import annotations

import streamlit as st

from .pickers import probe_result
from .rashomon_model import RashomonView, finite_models, population_ids, view_of
from .reads import zoo_checkpoints
from .services import Services
from .state import synced_selectbox

__all__ = ["SAMPLE_DATA", "SOURCES", "TREE_DATA", "population_source", "sample_source", "tree_source"]

SOURCES = {"zoo": "a zoo's trained models", "sample": "a model class, sampled (tabular data)",
           "trees": "sparse decision trees (TreeFARMS)"}
SAMPLE_DATA = ["breast_cancer", "wine", "rid_chen", "compas", "monk1", "monk2", "monk3", "car_evaluation", "bar7"]
TREE_DATA = ["monk1", "monk2", "monk3", "compas", "car_evaluation", "bar7"]


def population_source(svc: Services, zoo_id: str) -> RashomonView | None:
    ckpts = zoo_checkpoints(svc, zoo_id)
    datasets = sorted(ckpts["dataset"].unique())
    c = st.columns(3 if len(datasets) > 1 else 2)
    if len(datasets) > 1:
        ckpts = ckpts[ckpts["dataset"] == synced_selectbox("Data set", datasets, key="rs_zds", container=c[-3])]
    which = synced_selectbox("Checkpoints", ["final", "all"], key="rs_ck", container=c[-2],
                             format_func={"final": "each run's final one", "all": "every stored one"}.get)
    split = synced_selectbox("Held-out split", ["test", "train"], key="rs_split", container=c[-1])
    chosen = population_ids(ckpts, which)
    if len(chosen) < 2:
        st.info("A Rashomon set compares models: this zoo needs at least two finished runs with stored "
                "weights. Results appear here as runs finish; or pick sampled models or sparse trees above.")
        return None
    status = probe_result(svc, "rashomon.population", {"split": split}, chosen["checkpoint_id"].tolist(),
                          key="rs_pop", label=f"Evaluate {len(chosen)} models on the {split} split")
    if status is None:
        return None
    res = status.typed()  # PopulationResult
    metrics = {f"{split} loss": res.loss} | ({f"{split} error (1 − accuracy)": res.error} if res.error is not None
                                             else {})
    labels = [f"{n} · step {k}" for n, k in zip(res.labels, res.steps)] if which == "all" else list(res.labels)
    return finite_models(view_of(res, metrics, labels=labels,
                                 request=("rashomon.population", {"split": split}, tuple(chosen["checkpoint_id"]))))


def sample_source(svc: Services) -> RashomonView | None:
    c = st.columns(5)
    dataset = synced_selectbox("Data set", SAMPLE_DATA, key="rs_data", container=c[0])
    model = synced_selectbox("Model class", ["logistic", "mlp"], key="rs_model", container=c[1],
                             format_func={"logistic": "logistic regression", "mlp": "MLP, 8 tanh units"}.get)
    eps = synced_selectbox("Sample up to relative ε", [0.01, 0.02, 0.05, 0.1, 0.2], key="rs_eps_s",
                           default=0.05, container=c[2])
    n = synced_selectbox("Candidates", [500, 1000, 2000, 5000], key="rs_n", default=1000, container=c[3])
    l2 = synced_selectbox("L2 penalty", [1e-4, 1e-3, 1e-2], key="rs_l2", default=1e-3, container=c[4])
    params = {"dataset": dataset, "model": model, "epsilon": eps, "n_samples": n, "l2": l2}
    status = probe_result(svc, "rashomon.sample", params, [], key="rs_sample",
                          label=f"Sample {n} candidates around the optimum")
    if status is None:
        return None
    res = status.typed()  # SampleResult
    view = view_of(res, {"training objective (CE + L2)": res.objective},
                   labels=["optimum"] + [f"sample {i}" for i in range(1, len(res.objective))],
                   cap=res.sample.threshold, request=("rashomon.sample", params, ()))
    view.notes.append(f"{len(res.objective) - 1} of {n} candidates drawn uniformly in the Hessian ellipsoid were "
                      f"exact members (acceptance rate {res.sample.acceptance_rate:.1%}); the optimum is model 0. "
                      f"Multiplicity and importances are measured on the {res.n_eval} test samples. The objective "
                      "is cross-entropy + L2 penalty on the train split, the loss the set was sampled on; uniform "
                      "samples of a high-dimensional ellipsoid lie near its boundary, so the count rises steeply "
                      "near the largest ε.")
    return view


def tree_source(svc: Services) -> RashomonView | None:
    c = st.columns(5)
    dataset = synced_selectbox("Data set", TREE_DATA, key="rs_tdata", container=c[0])
    reg = synced_selectbox("Regularization λ", [0.005, 0.01, 0.02, 0.03, 0.05, 0.1], key="rs_reg", default=0.03,
                           container=c[1])
    mult = synced_selectbox("Rashomon multiplier (relative ε)", [0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2],
                            key="rs_mult", default=0.1, container=c[2])
    depth = synced_selectbox("Depth budget", ["none", 2, 3, 4, 5, 6], key="rs_depth", container=c[3],
                             format_func=lambda d: "no limit" if d == "none" else f"{d} (root = 1)")
    fit_on = synced_selectbox("Fit on", ["train", "all"], key="rs_fit", container=c[4],
                              format_func={"train": "train split", "all": "all rows (as the papers)"}.get)
    params = {"dataset": dataset, "regularization": reg, "rashomon_multiplier": mult, "fit_on": fit_on,
              "depth_budget": None if depth == "none" else depth}
    status = probe_result(svc, "rashomon.trees", params, [], key="rs_trees",
                          label=f"Enumerate the tree Rashomon set of {dataset} (TreeFARMS; can take minutes)")
    if status is None:
        return None
    res = status.typed()  # TreesResult
    trees = res.trees
    view = view_of(res, {"training objective (error + λ·leaves)": trees.objective},
                   labels=[f"tree {i}" for i in range(trees.size)], trees=trees, eval_accuracy=res.eval_accuracy,
                   cap=trees.bound, request=("rashomon.trees", params, ()))
    view.notes.append(f"{trees.size:,} trees within {trees.label}; treefarms reported {trees.n_reported:,}, "
                      f"{trees.n_dropped:,} dropped after recomputing their objective from their rules.")
    if res.n_predicted < trees.size:
        view.notes.append(f"Multiplicity uses the {res.n_predicted:,} best trees (predictions stored for those).")
    return view
