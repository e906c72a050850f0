"""Reproduction: a phase diagram of MNIST-1D MLPs (configs/phases.toml), trained and probed, timed.

Trains the zoo of ``configs/phases.toml`` (4 learning rates x 4 widths x 3 seeds) through the
dispatcher and a worker process, exactly as the dashboard does, then runs the zoo-wide
``sweep.cell`` probe (one background job per cell) and times both -- wall time and CPU time of
this process and its workers -- beside the machine's load average (the machine is shared).

It then checks two qualitative findings on the cells (mean over seeds):

(a) sharpness -- the top Hessian eigenvalue -- falls as the temperature lr / batch size grows
    (Jastrzebski et al. 2018/2020; Cohen et al. 2021; Yang et al. 2021);
(b) the loss barrier between seeds falls as the width grows (Entezari et al. 2022; Ainsworth
    et al. 2023), naive and after weight matching.

Writes bench/results/phases.txt and the README figure assets/phases.png.

    .venv/bin/python bench/phases.py [--store DIR] [--reuse]   # --reuse: probe an already-trained zoo
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from phases_common import Clock, probe, train
from scipy.stats import spearmanr

import store
from engine.config import load_sweep
from engine.jobs import Dispatcher
from engine.probes.phases import cell_table, classify_phases, default_thresholds

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "phases.toml"
METRICS = ["train_error", "test_error", "gap", "hessian_top", "hessian_trace", "barrier_naive", "barrier_aligned",
           "cka_mean"]


def run_values(st, zoo_id: str, requests) -> pd.DataFrame:
    rows = []
    for r in requests:
        s = r.status.result.summary
        for i, run_id in enumerate(s["run_ids"]):
            rows.append({"run_id": run_id, **{k: v[i] for k, v in s["values"].items()}})
    runs = st.runs_table(zoo_id)
    return runs[[c for c in runs.columns if not c.startswith("probe_")]].merge(pd.DataFrame(rows), on="run_id")


def _pivot(cells: pd.DataFrame, metric: str) -> str:
    t = cells.pivot(index="load", columns="temperature", values=metric)
    t.index = [f"width {int(v)}" for v in t.index]
    t.columns = [f"lr/bs {v:.3g}" for v in t.columns]
    return t.to_string(float_format=lambda v: f"{v:.4g}")


def _trend(cells: pd.DataFrame, metric: str, along: str, by: str) -> tuple[list[float], float, list[float]]:
    """Mean of ``metric`` over ``by`` at each value of ``along``, Spearman rho of that curve, rho per ``by``."""
    mean = cells.groupby(along)[metric].mean()
    rhos = [float(spearmanr(g[along], g[metric]).statistic) for _, g in cells.groupby(by)]
    return mean.tolist(), float(spearmanr(mean.index, mean.values).statistic), rhos


def findings(cells: pd.DataFrame) -> tuple[list[str], dict]:
    lines, verdict = [], {}
    for name, metric, along, by in (("(a) sharpness vs lr/bs", "hessian_top", "temperature", "load"),
                                    ("(b) naive barrier vs width", "barrier_naive", "load", "temperature"),
                                    ("(b) aligned barrier vs width", "barrier_aligned", "load", "temperature")):
        mean, rho, rhos = _trend(cells, metric, along, by)
        ok = rho < 0 and all(np.diff(mean) < 0)
        verdict[name] = ok
        lines.append(f"{name}: mean over the other axis {' > '.join(f'{v:.4g}' for v in mean)}; "
                     f"Spearman rho of "
                     f"that curve {rho:+.2f}; rho per line {', '.join(f'{r:+.2f}' for r in rhos)} -> "
                     f"{'reproduced (falls monotonically)' if ok else 'NOT reproduced as a monotone fall'}")
    return lines, verdict


def figure(cells: pd.DataFrame, out: Path) -> None:
    from engine.figures.export import write_image
    from engine.figures.phases import phase_overview

    classified = classify_phases(cells, default_thresholds(cells))
    fig = phase_overview(cells, classified, {"hessian_top": "top Hessian eigenvalue",
                                             "barrier_aligned": "barrier after weight matching",
                                             "cka_mean": "CKA between seeds"},
                         temperature="lr / batch size", load="width",
                         title="MNIST-1D MLPs (configs/phases.toml): mean over the seeds of each cell")
    write_image(fig, out, scale=1.5)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(CONFIG), help="sweep file (default: configs/phases.toml)")
    ap.add_argument("--store", default=None, help="store folder (default: a fresh temporary one)")
    ap.add_argument("--reuse", action="store_true", help="probe the newest 'phases' zoo of --store, no training")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "phases.txt"))
    ap.add_argument("--png", default=str(ROOT / "assets" / "phases.png"))
    args = ap.parse_args()
    path = Path(args.store or tempfile.mkdtemp(prefix="zooscope-phases-")) / ("" if args.store else "store")
    sweep = load_sweep(args.config)
    st = store.open_store(path)
    disp = Dispatcher(st)
    config = Path(args.config).resolve()
    name = config.relative_to(ROOT) if config.is_relative_to(ROOT) else config
    lines = [f"{name}: {sweep.n_runs} runs ({', '.join(f'{k} {v}' for k, v in sweep.grid.items())}), "
             f"{sweep.base.steps} steps, batch {sweep.base.batch_size}, {sweep.base.optim.name}; "
             f"{os.cpu_count()} CPU cores, shared with other work"]
    try:
        with Clock() as c_train:
            zoo_id = st.get_zoo("phases")["zoo_id"] if args.reuse else train(disp, sweep)
        with Clock() as c_probe:
            requests = probe(disp, zoo_id)
        runs = run_values(st, zoo_id, requests)
    finally:
        disp.stop(kill_workers=True)
        st.close()
    lines += [c_train.line("training" + (" (reused)" if args.reuse else "")), c_probe.line("probe sweep"),
              f"{'total':<22} wall {c_train.wall + c_probe.wall:7.1f} s   CPU {c_train.cpu + c_probe.cpu:7.1f} s",
              f"{len(requests)} cells probed (sweep.cell, default parameters: Hessian and barriers on 1000 training "
              "points, barrier = max_minus_linear loss barrier over 25 alphas, weight matching; "
              "CKA on 1000 test points)"]
    cells = cell_table(runs, "lr/batch_size", "width", METRICS, {"batch_size": sweep.base.batch_size})
    for m in METRICS:
        lines += ["", f"{m} (mean over seeds):", _pivot(cells, m)]
    found, _ = findings(cells)
    lines += ["", *found]
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text + "\n")
    figure(cells, Path(args.png))
    print(f"wrote {args.out} and {args.png}")


if __name__ == "__main__":
    main()
