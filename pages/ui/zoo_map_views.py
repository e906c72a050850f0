"""The Zoo map page's views: the map of every model against every other, its clusters, and paths through training.

Distances are ``zoo.distance`` probes (one per pair per distance), computed by one ``zoo.pairs``
job per request and read back as one matrix; the embedding, clusters and figures are built
once per process under keys naming everything they depend on (``shared_view``), so a page
whose pairs are stored redraws without recomputing anything.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import streamlit as st

from engine.figures import zoo_map as zmfig
from engine.jobs import ProbeService
from engine.jobs.zoo import ZooModel, request_zoo_map, zoo_distances, zoo_models
from engine.probes.zoo import WEIGHT_SPACE, ZOO_METRICS, ZooDistances, cluster_models, embed_models, metric_label

from .pickers import probe_result
from .reads import zoo_checkpoints
from .services import RUNS_TABLES, Services, cached_runs, current_user, may
from .state import query_list, set_query, synced_multiselect, synced_selectbox
from .text import literal
from .view_cache import catalog_key, frame_key, shared_view

__all__ = ["map_tab", "training_tab"]

_NAMES = {"weight": "Weight distance (aligned)", "barrier": "Loss barrier (aligned)", "cka": "1 − CKA",
          "procrustes": "Procrustes shape distance", "disagreement": "Prediction disagreement"}
_MAP_METRICS = tuple(ZOO_METRICS)  # the map computes every distance at once, so switching is instant
_MAX_PATH_RUNS = 8


@st.cache_data(show_spinner=False, max_entries=64)
def _models(_svc: Services, zoo_id: str, step: int | None, run_ids: tuple[str, ...] | None, every: bool,
            version: tuple) -> list[ZooModel]:
    return zoo_models(ProbeService(_svc.dispatcher), zoo_id, step=step, run_ids=run_ids, every_checkpoint=every)


def models_of(svc: Services, zoo_id: str, *, step: int | None = None, run_ids: tuple[str, ...] | None = None,
              every: bool = False) -> list[ZooModel]:
    return _models(svc, zoo_id, step, run_ids, every, svc.version(*RUNS_TABLES))


def _settings(align: str) -> dict:
    return {"align": align}


def _distances(svc: Services, models: list[ZooModel], metric: str, align: str) -> ZooDistances:
    ids = tuple(m.checkpoint_id for m in models)
    key = ("zoo_map.distances", catalog_key(svc.dispatcher), ids, metric, align)
    return shared_view(key, lambda: zoo_distances(ProbeService(svc.dispatcher), models, metric, _settings(align)))


def group_label(group: str) -> str:
    """An architecture group (canonical JSON) as a short label: ``mlp width=32 depth=2 · mnist1d``."""
    g = json.loads(group)
    arch = g.get("arch") or {}
    parts = [str(arch.get("name", "?"))] + [f"{k}={v}" for k, v in arch.items()
                                             if k in ("width", "depth", "channels", "blocks") and v is not None]
    return " ".join(parts) + f" · {(g.get('dataset') or {}).get('name', '?')}"


def _compute_panel(svc: Services, models: list[ZooModel], metrics: tuple[str, ...], align: str, key: str) -> bool:
    """Where the pairs stand; a button that queues the missing ones and a live progress line. True when complete."""
    service = ProbeService(svc.dispatcher)
    status = shared_view(("zoo_map.status", catalog_key(svc.dispatcher), tuple(m.checkpoint_id for m in models),
                          metrics, align),
                         lambda: request_zoo_map(service, models, metrics, _settings(align), submit=False))
    for error in status.errors[:3]:
        st.warning(f"Not computed: {literal(error, limit=300)}")
    if status.complete:
        return True
    missing = status.pairs - status.done - status.pending
    st.caption(f"{status.done} of {status.pairs} distances stored; {status.pending} being computed.")
    if missing and may("launch"):
        if st.button(f"Compute the {missing} missing distances", key=f"{key}_go", type="primary"):
            request_zoo_map(service, models, metrics, _settings(align), owner=current_user())
            st.rerun()
    elif missing:
        st.info("Not computed yet. Anyone with the editor role can compute it; the result is then shared.")
    if status.pending:
        _progress(svc, models, metrics, align)
    return False


@st.fragment(run_every=1.5)
def _progress(svc: Services, models: list[ZooModel], metrics: tuple[str, ...], align: str) -> None:
    status = request_zoo_map(ProbeService(svc.dispatcher), models, metrics, _settings(align), submit=False)
    if status.pending == 0:
        st.rerun(scope="app")
    st.progress(status.done / max(status.pairs, 1),
                text=f"{status.done}/{status.pairs} distances — computed in a background worker; this updates by "
                     "itself")


def _default_cut(d: ZooDistances, method: str) -> float:
    """The middle of the widest gap between merge heights (a cut a person would make by eye)."""
    c = cluster_models(d, threshold=0.0, method=method)
    heights = np.sort(c.linkage[:, 2]) if len(c.linkage) else np.zeros(1)
    if len(heights) < 2:
        return float(heights[-1]) / 2 if len(heights) else 0.0
    gaps = np.diff(np.concatenate([[0.0], heights]))
    i = int(np.argmax(gaps))
    return float(heights[i] - gaps[i] / 2)


def _points(models: list[ZooModel], runs: pd.DataFrame, clusters) -> pd.DataFrame:
    base = pd.DataFrame({"label": [m.label for m in models], "run_id": [m.run_id for m in models],
                         "step": [m.step for m in models]})
    cols = ["run_id", *[c for c in runs.columns if c.startswith(("hp_", "final_"))]]
    out = base.merge(runs[cols], on="run_id", how="left")
    if clusters is not None:
        out["cluster"] = [f"cluster {c}" for c in clusters.clusters]
    return out


def _link(page: str, **query) -> str:
    return f"./{page}?{urlencode(query, safe=',')}"


def _controls(svc: Services, zoo_id: str) -> tuple[str, int | None, str, str]:
    c1, c2, c3, c4 = st.columns(4)
    metric = synced_selectbox("Distance", list(ZOO_METRICS), key="zm_metric", format_func=_NAMES.get, container=c1)
    steps = sorted(zoo_checkpoints(svc, zoo_id)["step"].unique().tolist())
    step = synced_selectbox("Checkpoint", ["final", *map(str, steps)], key="zm_step",
                            format_func=lambda s: "final (each run's last)" if s == "final" else f"step {s}",
                            container=c2)
    align = "weight"
    if metric in WEIGHT_SPACE:
        align = synced_selectbox("Alignment", ["weight", "none"], key="zm_align", container=c3,
                                 format_func=lambda a: "weight matching" if a == "weight" else "none (naive)")
    method = synced_selectbox("Embedding", ["mds", "umap"], key="zm_embed", container=c4,
                              format_func=lambda m: "classical MDS" if m == "mds" else "UMAP (a job)")
    return metric, None if step == "final" else int(step), align, method


def _group(d: ZooDistances, models: list[ZooModel], metric: str) -> tuple[ZooDistances, list[ZooModel]]:
    groups = list(dict.fromkeys(m.group for m in models))
    if metric not in WEIGHT_SPACE or len(groups) == 1:
        return d, models
    st.caption("Weight and barrier distances compare models of one architecture: pick one.")
    group = synced_selectbox("Architecture", groups, key="zm_group", format_func=group_label)
    mine = [m for m in models if m.group == group]
    return d.subset([m.label for m in mine]), mine


def _embedding(svc: Services, d: ZooDistances, models: list[ZooModel], method: str):
    key = ("zoo_map.embed", d.metric, d.labels, d.matrix.tobytes(), method)
    if method == "mds":
        return shared_view(key, lambda: embed_models(d, "mds"))
    status = probe_result(svc, "zoo.umap", {"distances": np.round(d.matrix, 12).tolist(), "metric": d.metric},
                          [m.checkpoint_id for m in models], key="zm_umap", label="Compute the UMAP map")
    if status is None:
        return None
    e = status.typed().embedding
    return type(e)(d.labels, e.coords, "umap", e.explained, d.metric)


def map_tab(svc: Services, zoo_id: str) -> None:
    """All-pairs distances at one checkpoint: the map, its clusters and merge tree, and selection of runs."""
    metric, step, align, method = _controls(svc, zoo_id)
    models = models_of(svc, zoo_id, step=step)
    if len(models) < 2:
        st.info("The map needs at least two finished runs with a checkpoint at this step.")
        return
    if not _compute_panel(svc, models, _MAP_METRICS, align, key="zm_map"):
        return
    d, models = _group(_distances(svc, models, metric, align), models, metric)
    if len(models) < 2 or d.missing:
        st.info(f"{d.missing} pairs of these models have no {metric} distance (see the warnings above).")
        return
    emb = _embedding(svc, d, models, method)
    if emb is None:
        return
    linkage_default = "single" if metric == "barrier" else "average"
    c1, c2 = st.columns(2)
    link = synced_selectbox("Linkage", ["single", "average"], key="zm_link", default=linkage_default, container=c1)
    top = float(np.nanmax(np.clip(d.matrix, 0, None))) or 1.0
    cut = c2.slider(f"Cut at ({'barrier' if metric == 'barrier' else metric})", 0.0, top,
                    value=min(top, max(0.0, _default_cut(d, link))), step=top / 200, key=f"zm_cut_{metric}_{link}",
                    help="Models whose merge height is at most this share a cluster. For the barrier with single "
                         "linkage, a cluster is a basin: models joined by paths whose barrier stays under the cut.")
    clusters = cluster_models(d, threshold=cut, method=link)
    runs = cached_runs(svc, zoo_id)
    points = _points(models, runs, clusters)
    colour_options = ["cluster", *[c for c in points.columns if c.startswith(("hp_", "final_"))]]
    color_by = synced_selectbox("Colour by", colour_options, key="zm_color",
                                format_func=lambda c: c.removeprefix("hp_").replace("final_", "final "))
    st.caption(f"**{literal(metric_label(metric, align))}** · {len(models)} models · {clusters.n_clusters} "
               f"clusters at {cut:.3g}" + (f" · MDS keeps {emb.explained:.0%} of the variance"
                                            if method == "mds" else ""))
    left, right = st.columns([3, 2])
    hover = [c for c in colour_options if c != "cluster"]
    fig = shared_view(("zoo_map.fig", key_of(d), method, color_by, cut, link, frame_key(points)),
                      lambda: zmfig.zoo_map_figure(emb, points, color_by=color_by, hover=["cluster", *hover]))
    with left:
        event = st.plotly_chart(fig, key="zm_chart", on_select="rerun", selection_mode=("points", "box", "lasso"))
    with right:
        st.plotly_chart(shared_view(("zoo_map.tree", key_of(d), cut, link),
                                    lambda: zmfig.dendrogram_figure(clusters, label=metric)), key="zm_tree")
    _selection(zoo_id, points, clusters, event)
    with st.expander("Distance matrix"):
        st.plotly_chart(shared_view(("zoo_map.heat", key_of(d), cut, link),
                                    lambda: zmfig.distance_heatmap(d, clusters.order)), key="zm_heat")


def key_of(d: ZooDistances) -> tuple:
    return d.metric, d.labels, d.matrix.tobytes()


def _selection(zoo_id: str, points: pd.DataFrame, clusters, event) -> None:
    """Points or a cluster selected on the map become the runs selection of every page (``?runs=``)."""
    picked = []
    for p in (event.selection.points if event and event.selection else []):
        run = (p.get("customdata") or [None])[0]
        if run and run not in picked:
            picked.append(run)
    c1, c2 = st.columns([2, 1])
    names = {c: ", ".join(clusters.members(c)) for c in sorted(set(clusters.clusters))}
    cluster = c1.selectbox("Cluster", list(names), key="zm_cluster",
                           format_func=lambda c: f"cluster {c}: {names[c]}"[:120])
    if c2.button("Select its runs", key="zm_pick_cluster"):
        picked = points.loc[clusters.clusters == cluster, "run_id"].drop_duplicates().tolist()
        st.session_state["zm_picked"] = picked
    if picked:
        st.session_state["zm_picked"] = picked
        set_query(runs=picked)
    chosen = [r for r in st.session_state.get("zm_picked") or query_list("runs") if r in set(points["run_id"])]
    if not chosen:
        st.caption("Select points on the map (click, box or lasso), or a cluster, to select their runs for the "
                   "other pages.")
        return
    label = dict(zip(points["run_id"], points["label"]))
    st.markdown(f"**Selected {len(chosen)} runs:** " + ", ".join(literal(label[r]) for r in chosen[:12]))
    links = [f"[Selected runs on the Zoo page]({_link('', zoo=zoo_id, runs=','.join(chosen))})"]
    if len(chosen) >= 2:
        pair = chosen[:2]
        links.append(f"[Open the pair {literal(label[pair[0]])} – {literal(label[pair[1]])} on Connectivity]"
                     f"({_link('connectivity', zoo=zoo_id, runs=','.join(pair))})")
        links.append(f"[… on Representations]({_link('representations', zoo=zoo_id, runs=','.join(pair))})")
    st.markdown(" · ".join(links))


def training_tab(svc: Services, zoo_id: str) -> None:
    """Every checkpoint of the chosen runs on one map: each run a path from its start to its end."""
    runs = cached_runs(svc, zoo_id)
    finished = runs[runs["status"].isin(["done", "diverged"]) & runs["last_checkpoint_id"].notna()]
    if finished.empty:
        st.info("No finished runs yet.")
        return
    options = finished["run_id"].tolist()
    names = dict(zip(finished["run_id"], finished["name"].fillna(finished["run_id"])))
    default = [r for r in query_list("runs") if r in options][:_MAX_PATH_RUNS] or options[:4]
    chosen = synced_multiselect("Runs (each a path)", options, key="zm_path_runs", param="path_runs",
                                default=default, format_func=lambda r: names.get(r, r), max_selections=_MAX_PATH_RUNS)
    c1, c2 = st.columns(2)
    metric = synced_selectbox("Distance", list(ZOO_METRICS), key="zm_path_metric", default="cka",
                              format_func=_NAMES.get, container=c1)
    align = "weight"
    if metric in WEIGHT_SPACE:
        align = synced_selectbox("Alignment", ["weight", "none"], key="zm_path_align", container=c2)
    models = models_of(svc, zoo_id, run_ids=tuple(sorted(chosen)), every=True)
    if len(chosen) < 1 or len(models) < 3:
        st.info("Pick runs with at least three checkpoints between them.")
        return
    if metric in WEIGHT_SPACE and len({m.group for m in models}) > 1:
        st.info("Weight and barrier distances compare one architecture: pick runs of one architecture, or a "
                "representational or functional distance.")
        return
    st.caption(f"{len(models)} checkpoints: {len(models) * (len(models) - 1) // 2} pairs for this distance.")
    if not _compute_panel(svc, models, (metric,), align, key="zm_path"):
        return
    d = _distances(svc, models, metric, align)
    emb = shared_view(("zoo_map.path_embed", key_of(d)), lambda: embed_models(d, "mds"))
    points = pd.DataFrame({"label": [m.label for m in models], "run_id": [m.run_id for m in models],
                           "run_name": [names.get(m.run_id, m.run_id) for m in models],
                           "step": [m.step for m in models]})
    st.caption(f"**{literal(metric_label(metric, align))}** · one classical-MDS map of every checkpoint "
               f"(keeps {emb.explained:.0%} of the variance); open circles mark the first checkpoint.")
    st.plotly_chart(shared_view(("zoo_map.paths", key_of(d)), lambda: zmfig.trajectory_map_figure(emb, points)),
                    key="zm_paths")
