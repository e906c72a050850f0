"""Reproduction: the three-regime model of pruning (Zhou et al. 2023) on MNIST-1D MLPs, trained and probed, timed.

Trains the zoo of ``configs/pruning.toml`` (5 learning rates x 3 seeds of a width-128 two-layer
MLP; the temperature is lr / batch size) through the dispatcher and a worker, exactly as the
dashboard does, then runs the ``prune.cell`` probe over every cell: each run's final checkpoint
is globally magnitude-pruned to every density, fine-tuned with the run's own optimiser
(``--fine-tune`` steps, pruned weights held at zero), and measured as ``sweep.cell`` measures
dense networks (test error, top Hessian eigenvalue, barriers between the pruned seeds, CKA).

It then checks the paper's sharp transition on the cells (mean over seeds): at each density, the
sign of the least-squares slope of the pruned networks' test error against log temperature.
Zhou et al. find that a hotter dense training helps at low density (Regime I, poorly connected)
and hurts at high density (Regime II, well connected); the script says whether that happens here.

``--config configs/pruning_converged.toml --fine-tune 3000 --fine-tune-batch 64 --no-curvature
--densities 0.03 0.06 0.12 0.25 0.5`` is the converged design: the temperature is the batch size at
one learning rate and one step count long enough that every run fits its training set (the
paper's batch-size protocol), and every pruned network is fine-tuned alike (same steps, learning
rate and batch size), so neither the dense nor the fine-tuning training length follows the
temperature. The dense networks' own errors (before pruning) are listed too.

Writes bench/results/pruning.txt and the README figure assets/pruning.png (or --out / --png).

    .venv/bin/python bench/pruning.py [--config TOML] [--store DIR] [--reuse] [--fine-tune STEPS]
        [--fine-tune-batch N] [--densities D ...] [--no-curvature]
"""

from __future__ import annotations

import argparse
import os

# one BLAS/OpenMP thread in this process and the workers it starts: on a shared 2-core machine torch's
# default threads spin against each other on these tiny MLPs (a population of 3 took 30x the wall time)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
import tempfile
from pathlib import Path

import pandas as pd
from phases_common import Clock, probe, train

import store
from engine.config import load_sweep
from engine.jobs import Dispatcher
from engine.probes.phases import classify_regimes, pruned_cell_table, pruned_rows, temperature_effect

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "pruning.toml"
DENSITIES = [0.03, 0.06, 0.12, 0.25, 0.5, 1.0]
METRICS = ["density_achieved", "train_error", "test_error", "hessian_top", "barrier_naive", "barrier_aligned",
           "cka_mean", "cka_output"]
# lighter than the page's defaults: 30 cells x 3 seeds on 2 cores
PROBE = {"densities": DENSITIES, "scope": "global", "n_samples": 500, "hessian_max_iter": 30, "trace_probes": 4,
         "alphas": 11, "align": "weight", "cka_samples": 500}


def pruned_runs(st, zoo_id: str, requests) -> pd.DataFrame:
    rows = pd.concat([pruned_rows(r.status.result.summary["run_ids"], r.status.result.summary["densities"],
                                  r.status.result.summary["values"]) for r in requests], ignore_index=True)
    runs = st.runs_table(zoo_id)
    runs = runs[[c for c in runs.columns if not c.startswith("probe_")]].merge(rows, on="run_id")
    return runs


def _pivot(cells: pd.DataFrame, metric: str) -> str:
    t = cells.pivot(index="load", columns="temperature", values=metric).sort_index(ascending=False)
    t.index = [f"density {v:g}" for v in t.index]
    t.columns = [f"T {v:.3g}" for v in t.columns]
    return t.to_string(float_format=lambda v: f"{v:.4g}")


def _dense(runs: pd.DataFrame, temperature: str, constants: dict) -> str:
    """Train and test error of the dense networks per temperature (mean over seeds), from their last checkpoint."""
    from engine.probes.phases import axis_values

    t = pd.DataFrame({"temperature": axis_values(runs, temperature, constants).to_numpy(),
                      "train_error": 1.0 - runs["final_train_acc"].to_numpy(float),
                      "test_error": 1.0 - runs["final_test_acc"].to_numpy(float)})
    t = t.groupby("temperature").mean().T
    t.columns = [f"{temperature} {v:.3g}" for v in t.columns]
    return t.to_string(float_format=lambda v: f"{v:.4g}")


def findings(cells: pd.DataFrame, classified: pd.DataFrame) -> list[str]:
    eff = temperature_effect(cells, "test_error")
    lines = ["Effect of a hotter dense training on the pruned networks' test error, per density "
             "(slope against log10 temperature; Spearman rho; hottest minus coldest):"]
    for r in eff.itertuples():
        lines.append(f"  density {r.load:<5g} slope {r.slope:+.4f}  rho {r.rho:+.2f}  hot-cold {r.hot_minus_cold:+.4f}"
                     f"  -> {r.effect}")
    pruned = eff[eff["load"] < 1.0]
    low, high = pruned.iloc[: len(pruned) // 2], pruned.iloc[len(pruned) // 2:]
    helps_low = (low["slope"] < 0).all()
    hurts_high = (high["slope"] > 0).all()
    flips = [f"{a:g} -> {b:g}" for (a, sa), (b, sb) in zip(pruned[["load", "slope"]].values[:-1],
                                                            pruned[["load", "slope"]].values[1:]) if sa * sb < 0]
    lines.append(f"Paper's transition (hotter helps at the lower half of the pruned densities, hurts at the upper "
                 f"half): helps at low density {'yes' if helps_low else 'NO'}, hurts at high density "
                 f"{'yes' if hurts_high else 'NO'}; sign changes between densities: {', '.join(flips) or 'none'}")
    cuts = classified.attrs
    counts = classified["regime"].value_counts().to_dict()
    lines.append(f"Regimes (Regime I: barrier_aligned > {cuts['barrier_cut']:.4g}, the median; else II-B if "
                 f"cka_output >= {cuts['similarity_cut']:.4g}, the median of the well-connected cells, else II-A): "
                 f"{counts}")
    return lines


def figure(cells: pd.DataFrame, classified: pd.DataFrame, out: Path, ft: int, config, temperature: str,
           ft_batch: int | None) -> None:
    from engine.figures.export import write_image
    from engine.figures.phases import pruning_overview

    batch = f" at batch {ft_batch}" if ft_batch else ""
    fig = pruning_overview(cells, classified, temperature=f"{temperature} (dense training)",
                           title=f"MNIST-1D MLPs ({config}), global magnitude pruning + {ft} fine-tuning "
                                 f"steps{batch}: mean over seeds")
    write_image(fig, out, scale=1.3)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(CONFIG))
    ap.add_argument("--store", default=None, help="store folder (default: a fresh temporary one)")
    ap.add_argument("--reuse", action="store_true", help="probe the newest 'pruning' zoo of --store, no training")
    ap.add_argument("--fine-tune", type=int, default=300, help="fine-tuning steps after pruning (0: none)")
    ap.add_argument("--fine-tune-batch", type=int, default=None,
                    help="one fine-tuning batch size for every run (default: each run's own)")
    ap.add_argument("--densities", type=float, nargs="+", default=DENSITIES)
    ap.add_argument("--no-curvature", action="store_true",
                    help="skip the Hessian metrics (test error decides the transition; barriers and CKA "
                         "still label the regimes)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "pruning.txt"))
    ap.add_argument("--png", default=str(ROOT / "assets" / "pruning.png"))
    args = ap.parse_args()
    path = Path(args.store or tempfile.mkdtemp(prefix="zooscope-pruning-")) / ("" if args.store else "store")
    sweep = load_sweep(args.config)
    params = {**PROBE, "densities": sorted(args.densities), "fine_tune_steps": args.fine_tune,
              "fine_tune_batch_size": args.fine_tune_batch}
    if args.no_curvature:
        params["metrics"] = ["evaluation", "connectivity", "similarity"]
    metrics = [m for m in METRICS if not (args.no_curvature and m == "hessian_top")]
    temperature = sweep.phases.temperature if sweep.phases else "lr/batch_size"
    constants = {"lr": sweep.base.optim.lr, "batch_size": sweep.base.batch_size}
    cfg = Path(args.config).resolve()
    name = cfg.relative_to(ROOT) if cfg.is_relative_to(ROOT) else cfg
    st = store.open_store(path)
    disp = Dispatcher(st)
    lines = [f"{name}: {sweep.n_runs} runs ({', '.join(f'{k} {v}' for k, v in sweep.grid.items())}), "
             f"width {sweep.base.arch.width}, {sweep.base.steps} steps, batch {sweep.base.batch_size}, "
             f"{sweep.base.optim.name} lr {sweep.base.optim.lr} (swept axes replace these); temperature "
             f"{temperature}; {os.cpu_count()} CPU cores, shared with other work",
             f"prune.cell: densities {params['densities']}, global magnitude pruning, {args.fine_tune} fine-tuning "
             f"steps with each run's optimiser at batch size "
             f"{args.fine_tune_batch or 'of the run'}; {params}"]
    try:
        with Clock() as c_train:
            zoo_id = st.get_zoo(sweep.name)["zoo_id"] if args.reuse else train(disp, sweep)
        with Clock() as c_probe:
            requests = probe(disp, zoo_id, "prune.cell", params)
        runs = pruned_runs(st, zoo_id, requests)
        dense_runs = st.runs_table(zoo_id)
    finally:
        disp.stop(kill_workers=True)
        st.close()
    lines += [c_train.line("training" + (" (reused)" if args.reuse else "")), c_probe.line("prune + probe"),
              f"{'total':<22} wall {c_train.wall + c_probe.wall:7.1f} s   CPU {c_train.cpu + c_probe.cpu:7.1f} s"]
    lines += ["", "dense networks before pruning (last checkpoint, at most eval_size samples per split; "
                  "mean over seeds):", _dense(dense_runs, temperature, constants)]
    cells = pruned_cell_table(runs, temperature, metrics, constants)
    for m in metrics:
        lines += ["", f"{m} (mean over seeds):", _pivot(cells, m)]
    classified = classify_regimes(cells[cells["load"] < 1.0].reset_index(drop=True))
    lines += ["", "regime:", _pivot(classified, "regime"), "", *findings(cells, classified)]
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text + "\n")
    figure(cells, classified, Path(args.png), args.fine_tune, name, temperature, args.fine_tune_batch)
    print(f"wrote {args.out} and {args.png}")


if __name__ == "__main__":
    main()
