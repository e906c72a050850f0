"""The Rashomon page's view model: one :class:`RashomonView` whatever the source of the models, the
rule that leaves out diverged models, and the ε range the slider spans. No widgets here."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from engine.probes.rashomon import ImportanceCloud, InteractionCloud, TreeRashomonSet

__all__ = ["MODES", "PATTERN_LIMIT", "RashomonView", "eps_range", "finite_models", "population_ids", "view_of"]

MODES = {"relative": "relative ε: loss ≤ (1 + ε) × best", "absolute": "absolute ε: loss ≤ best + ε"}
PATTERN_LIMIT = 5_000_000  # model × sample predictions above which the pattern count is skipped


@dataclass(frozen=True)
class RashomonView:
    """What the panels need, whatever the source: one loss per model per metric, predictions, clouds."""

    source: str
    metrics: dict[str, np.ndarray]  # label (says the split) -> loss per model (M,)
    labels: list[str] | None = None  # hover name per model
    preds: np.ndarray | None = None  # hard labels (M', N) of the first M' models (M' = M except for trees)
    probs: np.ndarray | None = None  # probabilities (M, N, C) when known
    x: np.ndarray | None = None  # the N samples' features (N, D)
    feature_names: list[str] = field(default_factory=list)
    importance: ImportanceCloud | None = None
    interactions: InteractionCloud | None = None
    trees: TreeRashomonSet | None = None
    eval_accuracy: np.ndarray | None = None  # trees: accuracy on the evaluation rows
    cap: float | None = None  # largest loss the stored set reaches (a sampled set, a tree set)
    notes: list[str] = field(default_factory=list)
    request: tuple | None = None  # (probe kind, params, checkpoint ids) the view was built from (the RID tab)


def view_of(result, metrics: dict[str, np.ndarray], **kw) -> RashomonView:
    """The view of a stored Rashomon probe result (``PopulationResult``, ``SampleResult``, ``TreesResult``)
    with the given losses per model."""
    return RashomonView(result.source if result.source != "population" else "zoo", metrics, probs=result.probs,
                        preds=result.preds, x=result.x, feature_names=list(result.feature_names),
                        importance=result.importance, interactions=result.interactions, notes=list(result.warnings),
                        **kw)


def finite_models(view: RashomonView) -> RashomonView:
    """Leave out models with a non-finite loss (diverged runs), saying how many."""
    ok = np.logical_and.reduce([np.isfinite(v) for v in view.metrics.values()])
    if ok.all():
        return view
    keep = np.flatnonzero(ok)
    sub = lambda v: None if v is None else v[keep]  # noqa: E731
    vic, fis = view.importance, view.interactions
    if vic is not None:
        mean = vic.mean[keep]
        vic = replace(vic, importances=vic.importances[keep], mean=mean, baseline=vic.baseline[keep],
                      mcr_min=mean.min(0), mcr_max=mean.max(0))
    if fis is not None:
        fis = replace(fis, fis=fis.fis[keep], joint=fis.joint[keep], single=fis.single[keep])
    return replace(view, metrics={k: v[keep] for k, v in view.metrics.items()},
                   labels=[view.labels[i] for i in keep] if view.labels else None, preds=sub(view.preds),
                   probs=sub(view.probs), importance=vic, interactions=fis,
                   notes=view.notes + [f"{int((~ok).sum())} models with a non-finite loss (diverged) are left out"])


def population_ids(checkpoints: pd.DataFrame, which: str) -> pd.DataFrame:
    """The checkpoints a zoo's Rashomon set is built from: each run's last one, or all of them."""
    if which == "final":
        return checkpoints.groupby("run_id", sort=False).tail(1).reset_index(drop=True)
    return checkpoints


def eps_range(losses: np.ndarray, mode: str, cap: float | None) -> tuple[float, float]:
    """(slider maximum, step): relative up to top/best − 1, absolute up to top − best.

    ``top`` is the worst model (rounded up to a step, so the range ends with every model in) or,
    for a sampled or enumerated set, the bound it was built with (rounded down: past it the
    stored models would under-count the set).
    """
    best, top = float(losses.min()), float(cap if cap is not None else losses.max())
    hi = max((top / best - 1.0) if mode == "relative" and best > 0 else (top - best), 1e-3)
    step = 10.0 ** math.floor(math.log10(hi / 200))
    steps = math.floor(hi / step + 1e-6) if cap is not None else math.ceil(hi / step - 1e-6)
    return max(step, steps * step), step
