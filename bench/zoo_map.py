"""The zoo map: its speed on the demo zoo (and 64 models), and two reproduced findings.

``speed`` trains the demo zoo (configs/demo.toml: 18 MLPs on MNIST-1D, widths 32/64/128) into a
fresh store, then computes its full map -- every distance of every pair of final checkpoints
(weight and barrier within each width: 3 x 15 pairs; CKA, Procrustes, disagreement: 153 pairs)
-- through the same ``zoo.pairs`` job code path the page queues, in this process on ``--threads``
threads, and times each distance group (so the per-pair cost is known). ``--models 64`` adds a
64-seed zoo of width-64 demo MLPs (2016 pairs per distance). Then it times a warm run of the
Zoo map page (AppTest: the whole app script, sidebar included) once the pairs are stored.

``reproduce`` trains MLPs (depth 2, MNIST-1D, momentum SGD lr 0.05, batch 128) from several
seeds at several widths, computes the train-loss barrier (``max_minus_linear``, 11 points) of
every pair of seeds of one width, naive and after weight matching, and counts the basins:
single-linkage clusters cut at a fixed barrier ``tau`` (two models share a basin when a chain
of paths between them stays under ``tau``). Claims checked:

(a) seeds of one configuration fall into one basin only after alignment (naive: every seed its
    own basin) -- Entezari et al. 2022, Ainsworth et al. 2023;
(b) wider networks form fewer basins (after alignment, at the same ``tau``).

    .venv/bin/python bench/zoo_map.py speed [--models 64] [--threads 2] [--steps 1500]
    .venv/bin/python bench/zoo_map.py reproduce [--widths 16 64 256] [--seeds 4] [--tau 0.5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
class _Lines(list):
    """Result lines, printed as they come (a long run shows its progress)."""

    def append(self, line: str) -> None:
        print(line, flush=True)
        super().append(line)


METRIC_GROUPS = {"weight+barrier": ("weight", "barrier"), "cka+procrustes": ("cka", "procrustes"),
                 "disagreement": ("disagreement",)}


def _train(path: Path, sweep) -> str:
    import store
    from engine.jobs import Dispatcher

    with store.open_store(path) as st:
        disp = Dispatcher(st)
        zoo_id, job = disp.submit_sweep(sweep)
        (row,) = disp.run_until_done([job])
        disp.stop(kill_workers=True)
        assert row["status"] == "done", row
    return zoo_id


def _map(path: Path, zoo_id: str, label: str, lines: list[str]) -> float:
    import store
    from engine.jobs import Dispatcher, ProbeService
    from engine.jobs.zoo import pair_keys, request_zoo_map, zoo_models

    total = 0.0
    with store.open_store(path) as st:
        disp = Dispatcher(st)
        service = ProbeService(disp)
        models = zoo_models(st, zoo_id)
        for group, metrics in METRIC_GROUPS.items():
            pairs = len(pair_keys(models, metrics[0]))
            t0 = time.perf_counter()
            status = request_zoo_map(service, models, metrics, compute_here=True)
            dt = time.perf_counter() - t0
            assert status.complete and not status.errors, status
            total += dt
            lines.append(f"  {label:<22} {group:<16} {pairs:>5} pairs {dt:8.1f} s  {1000 * dt / pairs:7.1f} ms/pair")
        disp.stop(kill_workers=True)
    lines.append(f"  {label:<22} {'all five':<16} {'':>11} {total:8.1f} s")
    return total


def _page_seconds(path: Path) -> tuple[float, float]:
    """(first, warm) seconds of an AppTest run of the Zoo map page on ``path`` (pairs stored)."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    import store
    from pages.ui.services import close_services

    saved = {k: os.environ.get(k) for k in ("ZOOSCOPE_WORKERS", store.STORE_ENV_VAR)}
    os.environ["ZOOSCOPE_WORKERS"] = "0"  # the page only reads; nothing may start training
    os.environ[store.STORE_ENV_VAR] = str(path)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params["zm_metric"] = "barrier"
    at.run()
    t0 = time.perf_counter()
    at.switch_page("pages/zoo_map.py").run()
    first = time.perf_counter() - t0
    warm = []
    for _ in range(3):
        t0 = time.perf_counter()
        at.run()
        warm.append(time.perf_counter() - t0)
    assert not at.exception, at.exception
    close_services()
    st.cache_data.clear()
    for k, v in saved.items():  # a later zoo in this process trains with workers again
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    return first, min(warm)


def speed(args) -> None:
    from engine.config import load_sweep

    torch.set_num_threads(args.threads)
    lines = _Lines()
    lines.append(f"Zoo map speed: all pairs, five distances, computed in one process on {args.threads} threads "
             f"({os.cpu_count()} CPUs visible; the machine is shared, so these are preliminary)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "demo"
        t0 = time.perf_counter()
        if args.skip_demo:
            _many(args, Path(tmp), lines)
            _write(lines, args.out or RESULTS / "zoo_map_speed.txt")
            return
        demo = load_sweep(ROOT / "configs" / "demo.toml")
        if args.steps:  # the map's cost depends on the models' size, not on how long they trained
            demo = demo.model_copy(update={"base": demo.base.model_copy(update={"steps": args.steps})})
        zoo_id = _train(path, demo)
        lines.append(f"  training the 18-run demo zoo ({demo.base.steps} steps; not part of the map): "
                     f"{time.perf_counter() - t0:.0f} s")
        total = _map(path, zoo_id, "demo, 18 runs", lines)
        lines.append(f"  target: demo map <= 120 s: {'yes' if total <= 120 else 'NO'} ({total:.1f} s)")
        first, warm = _page_seconds(path)
        lines.append(f"  page, pairs stored: first run {first:.2f} s, warm run {warm:.3f} s "
                     f"(target <= 0.5 s: {'yes' if warm <= 0.5 else 'NO'})")
        if args.models:
            _many(args, Path(tmp), lines)
        shutil.rmtree(path, ignore_errors=True)
    _write(lines, args.out or RESULTS / "zoo_map_speed.txt")


def _many(args, tmp: Path, lines: list[str]) -> None:
    from engine.config import load_sweep

    sweep = load_sweep({"name": f"seeds{args.models}", "base": {
        "dataset": {"name": "mnist1d"}, "arch": {"name": "mlp", "width": 64, "depth": 2},
        "optim": {"name": "momentum", "momentum": 0.9, "lr": 0.05}, "batch_size": 100,
        "steps": args.steps or 1500, "checkpoints": "log:6"}, "grid": {"seed": list(range(args.models))}})
    path = tmp / "many"
    t0 = time.perf_counter()
    zoo = _train(path, sweep)
    lines.append(f"  training {args.models} width-64 runs: {time.perf_counter() - t0:.0f} s")
    total = _map(path, zoo, f"{args.models} runs, width 64", lines)
    if args.models == 64:
        lines.append(f"  target: 64-model map <= 900 s: {'yes' if total <= 900 else 'NO'} ({total:.1f} s)")


def _train_states(width: int, seeds: int, steps: int, ds) -> list[dict]:
    from engine.config import ArchSpec, OptimSpec, TrainSpec
    from engine.train import train_run

    states = []
    for seed in range(seeds):
        spec = TrainSpec(arch=ArchSpec(name="mlp", width=width, depth=2), optim=OptimSpec(name="momentum", lr=0.05),
                         batch_size=128, steps=steps, seed=seed, checkpoints=[steps], device="cpu")
        out: dict = {}
        train_run(spec, dataset=ds, on_checkpoint=lambda run, step, epoch, state, metrics, out=out: out.update(state))
        states.append(out)
    return states


def reproduce(args) -> None:
    from engine.data import load
    from engine.nets import build
    from engine.probes import cluster_models, pairwise_distances

    torch.set_num_threads(args.threads)
    ds = load("mnist1d")
    lines = [f"MNIST-1D, MLP depth 2, momentum SGD lr 0.05, batch 128, {args.steps} steps, seeds 0..{args.seeds - 1} "
             f"per width; train-loss barrier max_minus_linear (11 points) of every pair of seeds; basins = "
             f"single-linkage clusters cut at tau = {args.tau}",
             f"{'width':>5} {'align':<8} {'min barrier':>11} {'median':>8} {'max':>8} {'basins':>7}"]
    basins = {}
    for width in args.widths:
        t0 = time.perf_counter()
        states = _train_states(width, args.seeds, args.steps, ds)
        models = {}
        for seed, state in enumerate(states):
            net = build(_arch(width), ds.input_shape, ds.n_outputs)
            net.load_state_dict(state)
            models[f"seed {seed}"] = net
        for align in ("none", "weight"):
            d = pairwise_distances(models, ds, metric="barrier", align=align, split="train", alphas=11)
            off = d.matrix[np.triu_indices(args.seeds, 1)]
            n = cluster_models(d, threshold=args.tau, method="single").n_clusters
            basins[(width, align)] = n
            lines.append(f"{width:>5} {align:<8} {off.min():>11.4f} {np.median(off):>8.4f} {off.max():>8.4f} {n:>7}")
        lines.append(f"      (width {width}: {time.perf_counter() - t0:.0f} s incl. training)")
    a = all(basins[(w, "none")] == args.seeds for w in args.widths) and basins[(max(args.widths), "weight")] == 1
    aligned = [basins[(w, "weight")] for w in sorted(args.widths)]
    b = all(x >= y for x, y in zip(aligned, aligned[1:])) and aligned[0] > aligned[-1]
    lines.append(f"(a) naive: every seed its own basin at every width, and one basin after alignment at the widest: "
                 f"{'yes' if a else 'NO'} (naive {[basins[(w, 'none')] for w in sorted(args.widths)]}, aligned "
                 f"{aligned})")
    lines.append(f"(b) fewer basins as the width grows (aligned, tau {args.tau}): {'yes' if b else 'NO'} ({aligned})")
    _write(lines, args.out or RESULTS / "zoo_map_reproduce.txt")


def _arch(width: int):
    from engine.config import ArchSpec

    return ArchSpec(name="mlp", width=width, depth=2)


def _write(lines: list[str], out) -> None:
    text = "\n".join(lines) + "\n"
    if not isinstance(lines, _Lines):
        print(text, end="")
    Path(out).write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="what", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--models", type=int, default=0, help="also a zoo of this many width-64 seeds (e.g. 64)")
    s.add_argument("--skip-demo", action="store_true", help="only the --models zoo")
    s.add_argument("--steps", type=int, default=0, help="train the zoos for this many steps (default: 1500)")
    r = sub.add_parser("reproduce")
    r.add_argument("--widths", type=int, nargs="+", default=[16, 64, 256])
    r.add_argument("--seeds", type=int, default=4)
    r.add_argument("--steps", type=int, default=1500)
    r.add_argument("--tau", type=float, default=0.5)
    for p in (s, r):
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--out", default=None)
    args = ap.parse_args()
    speed(args) if args.what == "speed" else reproduce(args)


if __name__ == "__main__":
    main()
