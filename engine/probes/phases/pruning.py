"""Magnitude pruning, a masked fine-tune, and the three regimes of pruning (Zhou, Yang, Chang & Mahoney 2023).

:func:`prune` zeroes the smallest-magnitude weights of a network, over all its prunable tensors
at once (``scope="global"``) or tensor by tensor (``"layerwise"``), and returns the pruned
parameters with their masks. What is prunable: the ``weight`` of every ``nn.Linear`` and
``nn.Conv1d/2d/3d`` module (the weight matrices and kernels, as Han et al. 2015 prune them).
Biases, normalisation parameters (BatchNorm / LayerNorm scales and shifts), embeddings and
BatchNorm buffers are kept dense unless ``names`` lists them. :func:`fine_tune` trains the
pruned network with a run's own optimiser for a few steps, with masked gradients and masked
parameters, so pruned weights stay exactly zero.

Zhou et al. put the *dense* network's training on a temperature axis (anything that scales
the gradient noise: learning rate, batch size, training epochs) and the *pruned* network's
density on a load axis, and find a sharp transition: at some densities a hotter dense training
prunes better, at others worse. They explain it with three regimes of the pruned network's loss
landscape (:func:`pruning_regime`):

* **Regime I** -- poorly connected: a loss barrier between pruned networks pruned from
  different seeds. Raising the temperature helps (it moves the network toward Regime II-A).
* **Regime II-A** -- well connected, dissimilar outputs (low CKA between seeds). Lowering the
  temperature helps (toward II-B).
* **Regime II-B** -- well connected and similar outputs: the best place to be.

Their Figure 1 puts Regime I at low load (low density), so the transition reads: at low density a
hotter dense training helps pruning, at high density it hurts.

References
----------
Y. Zhou, Y. Yang, A. Chang and M. W. Mahoney, "A three-regime model of network pruning",
ICML 2023.
S. Han, J. Pool, J. Tran and W. J. Dally, "Learning both weights and connections for efficient
neural networks", NeurIPS 2015.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.func import functional_call

from engine.config import OptimSpec
from engine.train import BatchOrder, LossFn, init_optim_state, optim_step, task_loss

from .diagram import cell_table

__all__ = ["PRUNING_REGIMES", "Pruning", "classify_regimes", "fine_tune", "prunable_names", "prune",
           "pruned_cell_table", "pruned_rows", "pruning_regime", "temperature_effect"]

Scope = Literal["global", "layerwise"]

#: Regime -> what it is and which way the dense training's temperature should move (Zhou et al. 2023).
PRUNING_REGIMES = {
    "I": "poorly connected: raise the temperature",
    "II-A": "well connected, dissimilar: lower the temperature",
    "II-B": "well connected, similar: best",
}

_PRUNABLE_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class Pruning:
    """A pruned network: every parameter (pruned ones zeroed) and the masks of the pruned tensors.

    Attributes
    ----------
    params : dict of str -> Tensor
        All parameters of the network; each pruned tensor equals the original times its mask.
    masks : dict of str -> Tensor (bool)
        One mask per prunable tensor, same shape, True where the weight is kept.
    sparsity : float
        The requested fraction of prunable weights removed.
    scope : {"global", "layerwise"}
    """

    params: dict[str, Tensor]
    masks: dict[str, Tensor]
    sparsity: float
    scope: str

    @property
    def n_prunable(self) -> int:
        return sum(m.numel() for m in self.masks.values())

    @property
    def n_kept(self) -> int:
        return sum(int(m.sum()) for m in self.masks.values())

    @property
    def density(self) -> float:
        """Fraction of prunable weights kept (the load of Zhou et al.)."""
        return self.n_kept / max(self.n_prunable, 1)

    def layer_density(self) -> dict[str, float]:
        """Fraction kept in each pruned tensor."""
        return {k: float(m.float().mean()) for k, m in self.masks.items()}


def prunable_names(model: nn.Module) -> list[str]:
    """Parameter names of the ``weight`` of every Linear / Conv module of ``model``, in parameter order."""
    found = {f"{name}.weight" if name else "weight" for name, mod in model.named_modules()
             if isinstance(mod, _PRUNABLE_MODULES)}
    return [k for k, _ in model.named_parameters() if k in found]


def _n_pruned(sparsity: float, n: int) -> int:
    """Weights to remove out of ``n``: ``sparsity * n`` rounded half up (exact up to 1/(2n))."""
    return min(n, int(math.floor(sparsity * n + 0.5 + 1e-9)))


def _lowest(magnitudes: Tensor, k: int) -> Tensor:
    """Bool mask of the ``k`` smallest entries of a flat tensor; ties go to the earlier position."""
    drop = torch.zeros(magnitudes.numel(), dtype=torch.bool, device=magnitudes.device)
    if k > 0:
        order = torch.sort(magnitudes, stable=True).indices  # stable: equal magnitudes keep their order
        drop[order[:k]] = True
    return drop


def _check(params: Mapping[str, Tensor], names: Sequence[str], sparsity: float, scope: str) -> None:
    if not (isinstance(sparsity, (int, float)) and 0.0 <= float(sparsity) <= 1.0):
        raise ValueError(f"sparsity must be a fraction in [0, 1] (0.9 removes 90% of the weights); got {sparsity!r}")
    if scope not in ("global", "layerwise"):
        raise ValueError(f"scope must be 'global' or 'layerwise'; got {scope!r}")
    if not names:
        raise ValueError("nothing to prune: the model has no Linear or Conv weights; "
                         "pass names=[...] to choose tensors")
    missing = [k for k in names if k not in params]
    if missing:
        raise ValueError(f"names {missing[:5]} are not parameters of this model; parameters: {list(params)[:8]}")
    bad = [k for k in names if not torch.isfinite(params[k]).all()]
    if bad:
        raise ValueError(f"tensors {bad[:5]} hold NaN/inf weights; magnitude pruning needs finite weights")


def prune(model: nn.Module, params: Mapping[str, Tensor], sparsity: float, *, scope: Scope = "global",
          names: Sequence[str] | None = None) -> Pruning:
    """Magnitude pruning: zero the ``sparsity`` fraction of prunable weights with the smallest ``|w|``.

    Parameters
    ----------
    model : nn.Module
        The architecture (its modules say which tensors are weight matrices); never modified.
    params : mapping of str -> Tensor
        The network's parameters (a checkpoint's, or ``dict(model.named_parameters())``).
    sparsity : float in [0, 1]
        Fraction of prunable weights removed; density = 1 - sparsity.
    scope : {"global", "layerwise"}, default "global"
        ``"global"``: one threshold over all prunable tensors together, so layers end up with
        different densities; ``"layerwise"``: every tensor loses the same fraction.
    names : sequence of str, optional
        The tensors to prune; by default :func:`prunable_names` (Linear and Conv weights -- biases,
        normalisation parameters and embeddings are not pruned).

    Returns
    -------
    Pruning
        The pruned parameters (new tensors; ``params`` is untouched) and the masks.

    Notes
    -----
    Exactly ``k = floor(sparsity * n + 1/2)`` weights are removed out of the ``n`` in scope (per
    tensor for ``"layerwise"``). Among equal magnitudes the one that comes first -- by tensor in
    parameter order, then row-major position -- is removed first, so the result is deterministic.
    """
    names = list(prunable_names(model) if names is None else names)
    _check(params, names, sparsity, scope)
    if scope == "global":
        flat = torch.cat([params[k].detach().abs().reshape(-1) for k in names])  # (n,)
        drop = _lowest(flat, _n_pruned(float(sparsity), flat.numel())).split([params[k].numel() for k in names])
    else:
        drop = [_lowest(params[k].detach().abs().reshape(-1), _n_pruned(float(sparsity), params[k].numel()))
                for k in names]
    masks = {k: ~d.view(params[k].shape) for k, d in zip(names, drop)}
    pruned = {k: (v.detach() * masks[k] if k in masks else v.detach()).clone() for k, v in params.items()}
    return Pruning(pruned, masks, float(sparsity), scope)


def fine_tune(model: nn.Module, pruning: Pruning, data: tuple[Tensor, Tensor], optim: OptimSpec, *, steps: int,
              batch_size: int, buffers: Mapping[str, Tensor] | None = None, seed: int = 0,
              loss_fn: LossFn | None = None) -> tuple[Pruning, dict[str, Tensor]]:
    """Train a pruned network for ``steps`` more steps with ``optim``; pruned weights stay exactly zero.

    The update is :func:`engine.train.optim_step` (the arithmetic of the run's own training) from a
    fresh optimiser state, on :class:`engine.train.BatchOrder` batches, with each pruned tensor's
    gradient multiplied by its mask before the step and the tensor by its mask after it.

    Parameters
    ----------
    model : nn.Module
    pruning : Pruning
        From :func:`prune`.
    data : (inputs, targets)
        Training data.
    optim : OptimSpec
        The run's optimiser (name, learning rate, momentum, weight decay, betas).
    steps : int
        Optimiser steps (0 returns the pruning unchanged).
    batch_size : int
    buffers : mapping, optional
        BatchNorm running statistics; updated copies are returned.
    seed : int
        Data order.
    loss_fn : callable, optional
        The run's loss (:func:`engine.train.loss_fn`); the one the targets imply by default.

    Returns
    -------
    (Pruning, dict)
        The fine-tuned parameters with the same masks, and the buffers.

    Raises
    ------
    ValueError
        Negative ``steps``; FloatingPointError when the loss becomes NaN/inf.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0; got {steps}")
    x, y = data
    params = {k: v.detach().clone() for k, v in pruning.params.items()}
    bufs = {k: v.detach().clone() for k, v in (buffers or {}).items()}
    order = BatchOrder(len(x), batch_size, seed)
    state = init_optim_state(params, optim.name)
    hp = optim.model_dump()
    hp.update(beta1=optim.betas[0], beta2=optim.betas[1])
    model.train()
    for step in range(steps):
        idx = order.next().to(x.device)
        for p in params.values():
            p.requires_grad_(True)
        loss = (loss_fn or task_loss)(functional_call(model, (params, bufs), (x[idx],)), y[idx])
        grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
        for p in params.values():
            p.requires_grad_(False)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"fine-tuning diverged at step {step + 1} (loss {float(loss)}); "
                                     "lower the learning rate or the steps")
        for k, m in pruning.masks.items():
            grads[k] = grads[k] * m
        optim_step(optim.name, params, grads, state, hp)
        with torch.no_grad():
            for k, m in pruning.masks.items():
                params[k].mul_(m)
    model.eval()
    return Pruning(params, dict(pruning.masks), pruning.sparsity, pruning.scope), bufs


def pruning_regime(poorly_connected: bool, similar: bool) -> str:
    """Zhou et al.'s regime of a pruned network: "I" (poorly connected), else "II-B" if similar, else "II-A"."""
    if poorly_connected:
        return "I"
    return "II-B" if similar else "II-A"


def classify_regimes(cells: pd.DataFrame, *, barrier_cut: float | None = None, similarity_cut: float | None = None,
                     barrier_metric: str = "barrier_aligned", similarity_metric: str = "cka_output") -> pd.DataFrame:
    """Label every (temperature, density) cell of pruned networks with Zhou et al.'s regime.

    The rule: a cell is *poorly connected* when ``barrier_metric > barrier_cut`` (Regime I);
    otherwise it is *similar* when ``similarity_metric >= similarity_cut`` (Regime II-B), else
    Regime II-A. A cell with a NaN metric gets no regime (None).

    Parameters
    ----------
    cells : DataFrame
        From :func:`engine.probes.phases.cell_table` over the pruned networks (load = density).
    barrier_cut : float, optional
        Default: the median barrier over the cells.
    similarity_cut : float, optional
        Default: the median similarity over the well-connected cells.
    barrier_metric, similarity_metric : str
        Cell columns; the paper's similarity is between the seeds' outputs (``cka_output``).

    Returns
    -------
    DataFrame
        ``cells`` with ``poorly_connected``, ``similar`` (bool, NaN where unknown) and ``regime``;
        ``attrs["barrier_cut"]`` and ``attrs["similarity_cut"]`` hold the cuts used.
    """
    for m in (barrier_metric, similarity_metric):
        if m not in cells.columns:
            raise ValueError(f"cells have no column {m!r}; columns: {sorted(cells.columns)}")
    out = cells.copy()
    b = pd.to_numeric(out[barrier_metric], errors="coerce")
    c = pd.to_numeric(out[similarity_metric], errors="coerce")
    if barrier_cut is None:
        barrier_cut = float(b.median()) if b.notna().any() else math.nan
    if similarity_cut is None:
        well = c[b <= barrier_cut]
        similarity_cut = float(well.median()) if well.notna().any() else math.nan
    out.attrs.update(barrier_cut=barrier_cut, similarity_cut=similarity_cut)
    out["poorly_connected"] = (b > barrier_cut).where(b.notna())
    out["similar"] = (c >= similarity_cut).where(c.notna())
    out["regime"] = [None if pd.isna(bv) or (bv <= barrier_cut and pd.isna(cv))
                     else pruning_regime(bool(bv > barrier_cut), bool(cv >= similarity_cut))
                     for bv, cv in zip(b, c)]
    return out


def temperature_effect(cells: pd.DataFrame, metric: str = "test_error") -> pd.DataFrame:
    """At each load (density), does a hotter dense training raise or lower ``metric`` of the pruned network?

    Parameters
    ----------
    cells : DataFrame
        ``temperature``, ``load`` and ``metric`` columns (one row per cell).
    metric : str, default "test_error"
        Lower is better.

    Returns
    -------
    DataFrame
        One row per load: ``n`` (temperatures), ``rho`` (Spearman correlation of ``metric`` with
        temperature), ``slope`` (least-squares slope of ``metric`` against log10 temperature),
        ``hot_minus_cold`` (``metric`` at the hottest minus at the coldest temperature) and
        ``effect``: "hotter helps" (slope < 0), "hotter hurts" (slope > 0) or "flat"/"?".
    """
    if metric not in cells.columns:
        raise ValueError(f"cells have no column {metric!r}; columns: {sorted(cells.columns)}")
    rows = []
    for load, g in cells.dropna(subset=[metric]).sort_values("temperature").groupby("load", sort=True):
        t, v = np.log10(g["temperature"].to_numpy(float)), g[metric].to_numpy(float)
        ok = len(g) >= 2 and np.ptp(t) > 0
        slope = float(np.polyfit(t, v, 1)[0]) if ok else math.nan
        rho = float(pd.Series(t).corr(pd.Series(v), method="spearman")) if ok and np.ptp(v) > 0 else math.nan
        effect = "?" if not ok else "hotter helps" if slope < 0 else "hotter hurts" if slope > 0 else "flat"
        rows.append({"load": load, "n": len(g), "rho": rho, "slope": slope,
                     "hot_minus_cold": float(v[-1] - v[0]) if len(v) else math.nan, "effect": effect})
    return pd.DataFrame(rows, columns=["load", "n", "rho", "slope", "hot_minus_cold", "effect"])


def pruned_rows(run_ids: Sequence[str], densities: Sequence[float],
                values: Mapping[str, Sequence[Sequence[float | None]]]) -> pd.DataFrame:
    """One row per (run, density) from a ``prune.cell`` result: ``run_id``, ``density`` and a column per metric.

    Parameters
    ----------
    run_ids : sequence of str, shape (n,)
    densities : sequence of float, shape (d,)
    values : mapping of metric -> nested sequence, shape (n, d)
        None (a metric that could not be computed) becomes NaN.

    Raises
    ------
    ValueError
        A metric whose shape is not (n, d).
    """
    n, d = len(run_ids), len(densities)
    out = pd.DataFrame({"run_id": np.repeat(list(run_ids), d), "density": np.tile(np.asarray(densities, float), n)})
    for name, v in values.items():
        a = np.array([[np.nan if x is None else x for x in row] for row in v], dtype=float)
        if a.shape != (n, d):
            raise ValueError(f"values[{name!r}] has shape {a.shape}; expected (runs, densities) = ({n}, {d})")
        out[name] = a.reshape(-1)
    return out


def pruned_cell_table(runs: pd.DataFrame, temperature: str, metrics: Sequence[str],
                      constants: Mapping[str, float] | None = None) -> pd.DataFrame:
    """:func:`~engine.probes.phases.cell_table` of pruned networks: cells over temperature x density.

    Parameters
    ----------
    runs : DataFrame
        One row per (run, density): ``run_id``, ``hp_*`` columns, ``density`` and the metrics
        (the runs table merged with :func:`pruned_rows`).
    temperature : str
        Axis expression of the dense training (see :func:`~engine.probes.phases.axis_values`).
    metrics, constants
        As for ``cell_table``.

    Returns
    -------
    DataFrame
        ``cell_table``'s columns with ``load`` = the density, sorted by density then temperature.
    """
    if "density" not in runs.columns:
        raise ValueError(f"runs have no 'density' column (one row per run and density, from pruned_rows); "
                         f"columns: {sorted(runs.columns)[:12]}")
    parts = []
    for density, group in runs.groupby("density", sort=True):
        # the density is not a sweep axis: summarise each density's runs over temperature alone
        cells = cell_table(group, temperature, temperature, metrics, constants)
        parts.append(cells.assign(load=float(density)))
    columns = ["temperature", "load", "n_runs", "run_ids"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
