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

Writes bench/results/pruning.txt and the README figure assets/pruning.png.

    .venv/bin/python bench/pruning.py [--store DIR] [--reuse] [--fine-tune STEPS]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import pandas as pd

import store
from engine.config import load_sweep
from engine.jobs import Dispatcher, probe_phase_cells
from engine.probes.phases import classify_regimes, pruned_cell_table, pruned_rows, temperature_effect

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "pruning.toml"
DENSITIES = [0.03, 0.06, 0.12, 0.25, 0.5, 1.0]
METRICS = ["density_achieved", "train_error", "test_error", "hessian_top", "barrier_naive", "barrier_aligned",
           "cka_mean", "cka_output"]
# lighter than the page's defaults: 30 cells x 3 seeds on 2 cores
PROBE = {"densities": DENSITIES, "scope": "global", "n_samples": 500, "hessian_max_iter": 30, "trace_probes": 4,
         "alphas": 11, "align": "weight", "cka_samples": 500}


class Clock:
    """Wall and CPU seconds (this process plus its reaped workers) of a block, with the load average."""

    def __enter__(self):
        self.wall, self.cpu, self.load0 = time.perf_counter(), _cpu(), os.getloadavg()[0]
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, _cpu() - self.cpu
        self.load1 = os.getloadavg()[0]

    def line(self, what: str) -> str:
        return (f"{what:<22} wall {self.wall:7.1f} s   CPU {self.cpu:7.1f} s   "
                f"load average {self.load0:.1f} -> {self.load1:.1f}")


def _cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def train(disp: Dispatcher, sweep) -> str:
    zoo_id, job_id = disp.submit_sweep(sweep, owner="bench")
    (job,) = disp.run_until_done([job_id], poll_s=1.0)
    if job["status"] != "done":
        raise SystemExit(f"training failed: {job.get('error')}")
    return zoo_id


def probe(disp: Dispatcher, zoo_id: str, params: dict) -> list:
    requests = probe_phase_cells(disp, zoo_id, "prune.cell", params, owner="bench")
    jobs = [r.status.job["job_id"] for r in requests if r.status.state in ("queued", "running")]
    finished = disp.run_until_done(jobs, poll_s=1.0) if jobs else []
    failed = [j for j in finished if j["status"] != "done"]
    if failed:
        raise SystemExit(f"{len(failed)} probe jobs failed: {failed[0].get('error')}")
    return probe_phase_cells(disp, zoo_id, "prune.cell", params, owner="bench")


def pruned_runs(st, zoo_id: str, requests) -> pd.DataFrame:
    rows = pd.concat([pruned_rows(r.status.result.summary["run_ids"], r.status.result.summary["densities"],
                                  r.status.result.summary["values"]) for r in requests], ignore_index=True)
    runs = st.runs_table(zoo_id)
    runs = runs[[c for c in runs.columns if not c.startswith("probe_")]].merge(rows, on="run_id")
    return runs


def _pivot(cells: pd.DataFrame, metric: str) -> str:
    t = cells.pivot(index="load", columns="temperature", values=metric).sort_index(ascending=False)
    t.index = [f"density {v:g}" for v in t.index]
    t.columns = [f"lr/bs {v:.3g}" for v in t.columns]
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


def figure(cells: pd.DataFrame, classified: pd.DataFrame, out: Path, ft: int) -> None:
    from engine.figures.export import write_image
    from engine.figures.phases import pruning_overview

    fig = pruning_overview(cells, classified, temperature="lr / batch size (dense training)",
                           title=f"MNIST-1D MLPs (configs/pruning.toml), global magnitude pruning + {ft} fine-tuning "
                                 "steps: mean over 3 seeds")
    write_image(fig, out, scale=1.3)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(CONFIG))
    ap.add_argument("--store", default=None, help="store folder (default: a fresh temporary one)")
    ap.add_argument("--reuse", action="store_true", help="probe the newest 'pruning' zoo of --store, no training")
    ap.add_argument("--fine-tune", type=int, default=300, help="fine-tuning steps after pruning (0: none)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "pruning.txt"))
    ap.add_argument("--png", default=str(ROOT / "assets" / "pruning.png"))
    args = ap.parse_args()
    path = Path(args.store or tempfile.mkdtemp(prefix="zooscope-pruning-")) / ("" if args.store else "store")
    sweep = load_sweep(args.config)
    params = {**PROBE, "fine_tune_steps": args.fine_tune}
    st = store.open_store(path)
    disp = Dispatcher(st)
    lines = [f"configs/pruning.toml: {sweep.n_runs} runs ({', '.join(f'{k} {v}' for k, v in sweep.grid.items())}), "
             f"width {sweep.base.arch.width}, {sweep.base.steps} steps, batch {sweep.base.batch_size}, "
             f"{sweep.base.optim.name}; {os.cpu_count()} CPU cores, shared with other work",
             f"prune.cell: densities {DENSITIES}, global magnitude pruning, {args.fine_tune} fine-tuning steps with "
             f"each run's optimiser; {PROBE}"]
    try:
        with Clock() as c_train:
            zoo_id = st.get_zoo("pruning")["zoo_id"] if args.reuse else train(disp, sweep)
        with Clock() as c_probe:
            requests = probe(disp, zoo_id, params)
        runs = pruned_runs(st, zoo_id, requests)
    finally:
        disp.stop(kill_workers=True)
        st.close()
    lines += [c_train.line("training" + (" (reused)" if args.reuse else "")), c_probe.line("prune + probe"),
              f"{'total':<22} wall {c_train.wall + c_probe.wall:7.1f} s   CPU {c_train.cpu + c_probe.cpu:7.1f} s"]
    cells = pruned_cell_table(runs, "lr/batch_size", METRICS, {"batch_size": sweep.base.batch_size})
    for m in METRICS:
        lines += ["", f"{m} (mean over seeds):", _pivot(cells, m)]
    classified = classify_regimes(cells[cells["load"] < 1.0].reset_index(drop=True))
    lines += ["", "regime:", _pivot(classified, "regime"), "", *findings(cells, classified)]
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text + "\n")
    figure(cells, classified, Path(args.png), args.fine_tune)
    print(f"wrote {args.out} and {args.png}")


if __name__ == "__main__":
    main()
