"""Phase diagrams of a model zoo: axes, per-cell summaries, phase labels, and the grokking step.

A *phase diagram* puts each hyperparameter cell of a zoo (its seeds) on a
temperature x load plane and colours it by a landscape metric averaged over seeds.
Yang et al. (2021) found that three metrics split such planes into phases:

* **local** curvature -- the top Hessian eigenvalue (or trace): *sharp* vs *flat*;
* **global** connectivity -- the loss barrier between seeds: *poorly* vs *well connected*;
* **representation** similarity -- CKA between seeds: *dissimilar* vs *similar*.

Their phases, reproduced by :func:`classify_phases`: I (poorly connected, sharp),
II (poorly connected, flat), III (well connected, sharp), IV-A (well connected, flat,
dissimilar representations) and IV-B (well connected, flat, similar) -- IV-B is where
the best-generalising models sit. Yang et al. measure connectivity along an optimised
Bezier curve; Zooscope uses the straight-line barrier (naive or after weight matching),
so their phases are followed in spirit, with the thresholds shown and set by the user.

Temperature is what scales the gradient noise (learning rate, batch size, or their
ratio); load is how much the data constrain the model (training-set size, width,
label noise). Everything here is pure: DataFrames / arrays in, DataFrames / labels out.

References
----------
Y. Yang, L. Hodgkinson, R. Theisen, J. Zou, J. E. Gonzalez, K. Ramchandran and M. W.
Mahoney, "Taxonomizing local versus global structure in neural network loss
landscapes", NeurIPS 2021.
A. Power, Y. Burda, H. Edwards, I. Babuschkin and V. Misra, "Grokking: Generalization
beyond overfitting on small algorithmic datasets", 2022.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from engine.config import parse_axis_expression

__all__ = [
    "PHASE_METRICS",
    "GrokkingSteps",
    "PhaseThresholds",
    "axis_values",
    "cell_table",
    "classify_phases",
    "default_thresholds",
    "grokking_steps",
    "yang_phase",
]

#: Metric name -> what it measures, as stored by the ``sweep.cell`` probe (``probe_<name>`` run columns).
PHASE_METRICS = {
    "train_loss": "training loss",
    "train_error": "training error",
    "test_loss": "test loss",
    "test_error": "test error",
    "gap": "generalization gap (train acc - test acc)",
    "hessian_top": "top Hessian eigenvalue (sharpness)",
    "hessian_trace": "Hessian trace (Hutchinson)",
    "barrier_naive": "loss barrier between seeds, naive",
    "barrier_aligned": "loss barrier between seeds, weight matching",
    "cka_mean": "mean linear CKA between seeds",
    "effective_rank": "effective rank of the features, mean over layers",
    "twonn": "intrinsic dimension (TwoNN) of the last hidden layer",
}


def axis_values(table: pd.DataFrame, expression: str, constants: Mapping[str, float] | None = None) -> pd.Series:
    """The values of a phase-diagram axis for every row of ``table``.

    Parameters
    ----------
    table : DataFrame
        One row per run (or cell) with ``hp_<axis>`` columns, as ``store.runs_table`` gives.
    expression : str
        A sweep axis (``"lr"``), or the ratio / product of two (``"lr/batch_size"``).
    constants : mapping, optional
        Values of axes that are not columns of ``table`` (fixed in the sweep's base run).

    Raises
    ------
    ValueError
        A malformed expression, or an axis that is neither a column nor a constant.
    """
    first, op, second = parse_axis_expression(expression)
    a = _axis_column(table, first, constants)
    if op is None:
        return a.rename(expression)
    b = _axis_column(table, second, constants)
    return (a / b if op == "/" else a * b).rename(expression)


def _axis_column(table: pd.DataFrame, name: str, constants: Mapping[str, float] | None) -> pd.Series:
    column = f"hp_{name}"
    if column in table.columns:
        return pd.to_numeric(table[column], errors="coerce").astype(float)
    if constants is not None and name in constants:
        return pd.Series(float(constants[name]), index=table.index)
    swept = sorted(c.removeprefix("hp_") for c in table.columns if c.startswith("hp_"))
    raise ValueError(f"axis {name!r} is neither swept (swept: {swept}) nor a known constant "
                     f"({sorted(constants or {})}); pick one of those")


def cell_table(runs: pd.DataFrame, temperature: str, load: str, metrics: Sequence[str],
               constants: Mapping[str, float] | None = None) -> pd.DataFrame:
    """One row per (temperature, load) cell: each metric's mean, s.d. and count over the cell's runs.

    Parameters
    ----------
    runs : DataFrame
        One row per run: ``run_id``, ``hp_*`` columns and a column per metric.
    temperature, load : str
        Axis expressions (see :func:`axis_values`).
    metrics : sequence of str
        Columns of ``runs`` to summarise; a missing column gives NaN.

    Returns
    -------
    DataFrame
        Columns ``temperature, load, n_runs, run_ids`` and ``<m>``, ``<m>_std``, ``<m>_n``
        per metric ``m``, sorted by load then temperature.
    """
    df = pd.DataFrame({"temperature": axis_values(runs, temperature, constants),
                       "load": axis_values(runs, load, constants), "run_id": runs["run_id"].values},
                      index=runs.index)
    for m in metrics:
        df[m] = pd.to_numeric(runs[m], errors="coerce") if m in runs.columns else np.nan
    df = df.dropna(subset=["temperature", "load"])
    g = df.groupby(["temperature", "load"], sort=True)
    out = g["run_id"].agg(list).rename("run_ids").to_frame()
    out.insert(0, "n_runs", out["run_ids"].map(len))
    for m in metrics:
        out[m] = g[m].mean()
        out[f"{m}_std"] = g[m].std()
        out[f"{m}_n"] = g[m].count()
    return out.reset_index().sort_values(["load", "temperature"], kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class PhaseThresholds:
    """Where each of Yang et al.'s three dimensions is cut.

    Attributes
    ----------
    sharpness : float
        Cells with ``sharpness_metric`` above it are *sharp*, else *flat*.
    barrier : float
        Cells with ``barrier_metric`` above it are *poorly connected*, else *well connected*.
    similarity : float
        Cells with ``similarity_metric`` at or above it are *similar*, else *dissimilar*.
    sharpness_metric, barrier_metric, similarity_metric : str
        Which cell columns are cut.
    """

    sharpness: float
    barrier: float
    similarity: float
    sharpness_metric: str = "hessian_top"
    barrier_metric: str = "barrier_aligned"
    similarity_metric: str = "cka_mean"


def default_thresholds(cells: pd.DataFrame, *, sharpness_metric: str = "hessian_top",
                       barrier_metric: str = "barrier_aligned", similarity_metric: str = "cka_mean") -> PhaseThresholds:
    """Median of each metric over the cells: half the plane falls on each side of each cut.

    Raises
    ------
    ValueError
        A metric missing from ``cells``.
    """
    values = []
    for m in (sharpness_metric, barrier_metric, similarity_metric):
        if m not in cells.columns:
            raise ValueError(f"cells have no column {m!r}; columns: {sorted(cells.columns)}")
        col = pd.to_numeric(cells[m], errors="coerce")
        values.append(float(col.median()) if col.notna().any() else float("nan"))
    return PhaseThresholds(*values, sharpness_metric, barrier_metric, similarity_metric)


def yang_phase(sharp: bool, poorly_connected: bool, similar: bool) -> str:
    """Yang et al.'s phase name: I, II, III, IV-A or IV-B (CKA splits only phase IV)."""
    if poorly_connected:
        return "I" if sharp else "II"
    if sharp:
        return "III"
    return "IV-B" if similar else "IV-A"


def classify_phases(cells: pd.DataFrame, thresholds: PhaseThresholds) -> pd.DataFrame:
    """Label every cell by (sharp/flat) x (poorly/well connected) x (dissimilar/similar).

    Parameters
    ----------
    cells : DataFrame
        From :func:`cell_table` (any frame with the three metric columns).
    thresholds : PhaseThresholds

    Returns
    -------
    DataFrame
        ``cells`` with boolean ``sharp``, ``poorly_connected``, ``similar``, the ``label``
        (e.g. ``"sharp · poorly connected · dissimilar"``) and Yang et al.'s ``phase``;
        a cell whose metric is NaN gets ``"?"`` in that part of its label and no phase.
    """
    t = thresholds
    out = cells.copy()
    parts = {}
    for flag, metric, cut, yes, no, above in (
            ("sharp", t.sharpness_metric, t.sharpness, "sharp", "flat", True),
            ("poorly_connected", t.barrier_metric, t.barrier, "poorly connected", "well connected", True),
            ("similar", t.similarity_metric, t.similarity, "similar", "dissimilar", False)):
        if metric not in out.columns:
            raise ValueError(f"cells have no column {metric!r} for the {flag} cut; columns: {sorted(out.columns)}")
        v = pd.to_numeric(out[metric], errors="coerce")
        hit = v > cut if above else v >= cut
        out[flag] = hit.where(v.notna())
        parts[flag] = np.where(v.isna(), "?", np.where(hit, yes, no))
    out["label"] = [" · ".join(p) for p in zip(parts["sharp"], parts["poorly_connected"], parts["similar"])]
    known = out[["sharp", "poorly_connected", "similar"]].notna().all(axis=1)
    out["phase"] = [yang_phase(bool(r.sharp), bool(r.poorly_connected), bool(r.similar)) if k else None
                    for r, k in zip(out.itertuples(), known)]
    return out


@dataclass(frozen=True)
class GrokkingSteps:
    """When a run memorised its training set and when it generalised.

    Attributes
    ----------
    memorized_step : int or None
        First step at which training accuracy reached ``threshold``.
    generalized_step : int or None
        First step, at or after ``memorized_step``, at which test accuracy reached ``threshold``.
    delay : int or None
        ``generalized_step - memorized_step``; grokking is a delay much longer than the time
        it took to memorise.
    threshold : float
    """

    memorized_step: int | None
    generalized_step: int | None
    delay: int | None
    threshold: float

    @property
    def grokked(self) -> bool:
        """Test accuracy jumped strictly after training accuracy had reached the threshold."""
        return self.delay is not None and self.delay > 0


def grokking_steps(steps: Sequence[int], train_acc: Sequence[float], test_acc: Sequence[float], *,
                   threshold: float = 0.9) -> GrokkingSteps:
    """The memorisation and generalisation steps of a run's accuracy curves (Power et al. 2022).

    Parameters
    ----------
    steps : sequence of int, shape (n,)
        Increasing training steps at which both accuracies were measured.
    train_acc, test_acc : sequence of float, shape (n,)
    threshold : float, default 0.9
        Accuracy that counts as "reached".

    Raises
    ------
    ValueError
        Curves of different lengths, steps not increasing, or a threshold outside (0, 1].
    """
    s, tr, te = (np.asarray(v, dtype=float).reshape(-1) for v in (steps, train_acc, test_acc))
    if not len(s) == len(tr) == len(te):
        raise ValueError(f"steps, train_acc and test_acc must have one value per step; got lengths "
                         f"{len(s)}, {len(tr)}, {len(te)}")
    if len(s) > 1 and np.any(np.diff(s) <= 0):
        raise ValueError("steps must be strictly increasing")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1]; got {threshold}")
    hit_train = np.flatnonzero(tr >= threshold)
    if hit_train.size == 0:
        return GrokkingSteps(None, None, None, threshold)
    first = int(hit_train[0])
    hit_test = np.flatnonzero(te[first:] >= threshold)
    if hit_test.size == 0:
        return GrokkingSteps(int(s[first]), None, None, threshold)
    second = first + int(hit_test[0])
    return GrokkingSteps(int(s[first]), int(s[second]), int(s[second] - s[first]), threshold)
