"""Rashomon page, RID tab: the Rashomon importance distribution of the models the page shows,
beside the variable importance cloud, with the Monte-Carlo Rashomon ratio of the model class.

The RID probe is asked with the source's own parameters (the request the view was built
from), so a link to the tab names the same data set, model class and ε.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from engine.figures import rashomon as rashfig

from .pickers import probe_result
from .services import get_services
from .state import synced_selectbox
from .text import literal

__all__ = ["rid_panel", "rid_request"]

_SAMPLE_KEYS = ("dataset", "model", "epsilon", "l2")
_TREE_KEYS = ("dataset", "regularization", "rashomon_multiplier", "depth_budget")


def rid_request(request: tuple[str, dict, tuple[str, ...]] | None, *, n_bootstraps: int,
                epsilon: float) -> tuple[str, dict, list[str]] | None:
    """The RID probe for the probe a view was built from (kind, params, checkpoint ids), or None.

    ``epsilon`` is used where the source has no ε of its own (a zoo: the slider's ε moves
    freely, a RID is a job).
    """
    if request is None:
        return None
    kind, params, ids = request
    if kind == "rashomon.sample":
        return ("rashomon.rid_sample", {k: params[k] for k in _SAMPLE_KEYS if k in params}
                | {"n_bootstraps": n_bootstraps, "n_samples": min(int(params.get("n_samples", 300)), 300)}, [])
    if kind == "rashomon.trees":
        return ("rashomon.rid_trees", {k: params[k] for k in _TREE_KEYS if k in params}
                | {"n_bootstraps": n_bootstraps}, [])
    if kind == "rashomon.population":
        return ("rashomon.rid_population", {"split": params.get("split", "test"), "epsilon": epsilon,
                                            "n_bootstraps": n_bootstraps}, list(ids))
    return None


def _ratio_metric(res, container) -> None:
    r = res.ratio
    if r is None:
        container.metric("Monte-Carlo Rashomon ratio", "—",
                         help="Not measured for this source: trees are a discrete class (the pattern count above "
                              "is their ratio), and large networks are never sampled inside the set.")
        return
    value = (f"< {3 / r.n_samples:.1e}" if r.n_members == 0 else f"{r.ratio:.2e} ± {r.standard_error:.1e}")
    h = res.ratio_half_width
    container.metric("Monte-Carlo Rashomon ratio", value,
                     help=f"{r.n_members:,} of {r.n_samples:,} parameter vectors drawn uniformly in the box "
                          f"[−{h:.3g}, {h:.3g}]^P are in the "
                          f"set at {r.mode} ε = {r.epsilon:g} (Semenova, Rudin & Parr 2022); with none inside, "
                          "the bound is the rule of three (95%).")


def rid_panel(view) -> None:
    """RID of the view's source beside its importance cloud; queues the probe when missing."""
    c = st.columns(4)
    n_boot = synced_selectbox("Bootstrap resamples", [5, 10, 20, 50], key="rs_rid_b", default=10, container=c[0])
    eps = synced_selectbox("RID ε (a zoo's set on each resample)", [0.01, 0.02, 0.05, 0.1, 0.2], key="rs_rid_eps",
                           default=0.05, container=c[1])
    kind = synced_selectbox("Draw as", ["box", "cdf"], key="rs_rid_kind", container=c[2],
                            format_func={"box": "boxes (5–25–50–75–95 %)", "cdf": "CDFs"}.get)
    order = synced_selectbox("Order features by", ["mean", "input"], key="rs_rid_order", container=c[3],
                             format_func={"mean": "expected importance", "input": "input order"}.get)
    request = rid_request(getattr(view, "request", None), n_bootstraps=n_boot, epsilon=eps)
    if request is None:
        st.info("RID needs the probe this view was built from; pick a zoo, a sampled model class or sparse trees.")
        return
    probe, params, ids = request
    status = probe_result(get_services(), probe, params, ids, key="rs_rid",
                          label=f"Compute RID over {n_boot} bootstrap resamples (a background job)")
    if status is None:
        return
    res = status.typed()  # RidResult
    rid = res.rid
    m = st.columns(4)
    _ratio_metric(res, m[0])
    m[1].metric("Bootstrap resamples", f"{rid.n_bootstraps}", help=f"of the {res.split} split ({res.n_rows} rows)")
    m[2].metric("Set size per resample", f"{np.median(rid.set_sizes):.0f}",
                help=f"median; from {rid.set_sizes.min()} to {rid.set_sizes.max()}")
    m[3].metric("Features with P(importance > 0) ≥ 0.95", f"{int((rid.prob_above >= 0.95).sum())}")
    for note in res.warnings:
        st.caption(literal(note))
    cloud = view.importance if view.importance is not None and (
        len(view.importance.feature_names) == len(rid.feature_names)) else None
    st.plotly_chart(rashfig.rid_figure(rid, cloud=cloud, kind=kind, order=order), key="rs_rid_fig")
    q = rid.quantile([0.05, 0.5, 0.95])
    table = pd.DataFrame({"feature": rid.feature_names, f"P(> {rid.importance_threshold:g})": rid.prob_above,
                          "5 %": q[0], "median": q[1], "95 %": q[2], "mean": rid.mean})
    st.dataframe(table.sort_values("mean", ascending=False), hide_index=True, key="rs_rid_table")
    st.caption("The Rashomon importance distribution (Donnelly, Katta, Rudin & Browne 2023): on each bootstrap "
               "resample the Rashomon set is found again and every member's model reliance measured there; each "
               "resample weighs the same, and each model within its set. Boxes are RID's weighted quantiles; the "
               "grey boxes on the right are the importance cloud of the one set shown above (no resampling).")
