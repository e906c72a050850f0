"""UMAP cold start: first fit in a fresh process vs warm vs numba's on-disk cache; PCA; probe cache.

Each scenario runs in a fresh Python process (compilation state is per process) on
the same 10,000 x 64 matrix. Wall-clock and CPU seconds are both printed: this machine
is shared, and CPU time is the steadier measure of how much compiling was saved.

Scenarios
---------
cold            empty NUMBA_CACHE_DIR: import umap, first fit, second fit (warm)
cached          fresh process, NUMBA_CACHE_DIR filled by `cold` (umap-learn marks only
                some functions cache=True, mostly pynndescent's)
cache_all       as cold/cached, but every numba function umap/pynndescent define at
                import is compiled with cache=True (numba.njit patched during the import;
                measured here because it did not help enough to ship in the engine)
warm_then_fit   fresh process with a filled cache: warm_umap() at "server start", then
                the user's fit

Run: .venv/bin/python bench/umap_cold_start.py [--n 10000] [--d 64]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHILD = r"""
import json, os, sys, time, warnings
warnings.filterwarnings("ignore")
sys.path.insert(0, {root!r})
mode, n, d = {mode!r}, {n}, {d}
import numpy as np
x = np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)
out = {{}}
def clock():
    return time.perf_counter(), time.process_time()
def since(t):
    return [time.perf_counter() - t[0], time.process_time() - t[1]]
t = clock()
if mode.startswith("all"):
    import numba
    original = numba.njit
    numba.njit = lambda *a, **k: original(*a, **{{"cache": True, **k}})
    import umap
    numba.njit = original
else:
    import umap
out["import"] = since(t)
if mode.endswith("warm"):
    from engine.probes.representations import warm_umap
    t = clock(); warm_umap(); out["warm_umap"] = since(t)
t = clock(); umap.UMAP(random_state=0).fit_transform(x); out["fit1"] = since(t)
if mode.endswith("twice"):
    t = clock(); umap.UMAP(random_state=0).fit_transform(x); out["fit2"] = since(t)
print("RESULT" + json.dumps(out))
"""


def child(mode: str, cache: str, n: int, d: int) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache}
    code = CHILD.format(root=str(ROOT), mode=mode, n=n, d=d)
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("RESULT"))
    out = json.loads(line[len("RESULT"):])
    out["process"] = [time.perf_counter() - t0, float("nan")]
    return out


def fmt(name: str, key: str, r: dict) -> str:
    wall, cpu = r[key]
    return f"{name:<44} {key:<10} {wall:9.2f} {cpu:9.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--d", type=int, default=64)
    args = ap.parse_args()
    lines = [f"UMAP cold start, {args.n} x {args.d} float32, umap.UMAP(random_state=0); seconds (wall, CPU)",
             f"{'scenario':<44} {'step':<10} {'wall':>9} {'cpu':>9}"]
    with tempfile.TemporaryDirectory() as plain, tempfile.TemporaryDirectory() as every:
        runs = [
            ("cold: empty cache, fit twice", child("plain_twice", plain, args.n, args.d)),
            ("cached: umap-learn's own cache=True", child("plain", plain, args.n, args.d)),
            ("cache_all: empty cache (fills it)", child("all", every, args.n, args.d)),
            ("cache_all: filled cache", child("all", every, args.n, args.d)),
            ("warm_umap() at start, filled cache_all", child("all_warm", every, args.n, args.d)),
        ]
    for name, r in runs:
        lines += [fmt(name, k, r) for k in ("import", "warm_umap", "fit1", "fit2") if k in r]
    lines += _pca_and_probe_cache(args.n, args.d)
    cold, cached, every = runs[0][1], runs[1][1], runs[3][1]
    def first(r: dict, i: int) -> float:
        return r["import"][i] + r["fit1"][i]

    for i, unit in ((0, "wall"), (1, "CPU")):
        lines += [
            f"{unit:>4}: cold first fit / warm fit                 {cold['fit1'][i] / cold['fit2'][i]:5.1f}x",
            f"{unit:>4}: cold import+fit / cached import+fit       {first(cold, i) / first(cached, i):5.1f}x",
            f"{unit:>4}: cold import+fit / cache_all import+fit    {first(cold, i) / first(every, i):5.1f}x",
            f"{unit:>4}: fit after warm_umap() / warm fit          {runs[4][1]['fit1'][i] / cold['fit2'][i]:5.1f}x",
        ]
    _emit("umap_cold_start", lines)


def _pca_and_probe_cache(n: int, d: int) -> list[str]:
    sys.path.insert(0, str(ROOT))
    from engine.probes.representations import project

    x = np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)
    pca = []
    for _ in range(5):
        t = time.perf_counter()
        proj = project(x, "pca", max_points=None)
        pca.append(time.perf_counter() - t)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "probe.npz"
        np.savez(path, coords=proj.coords, indices=proj.indices)
        hits = []
        for _ in range(20):
            t = time.perf_counter()
            with np.load(path) as z:
                coords = z["coords"]
            hits.append(time.perf_counter() - t)
    assert coords.shape == (n, 2)
    return [f"PCA projection {n} x {d} (median of 5)              {np.median(pca) * 1e3:9.1f} ms",
            f"probe-cache hit: np.load of the stored projection   {np.median(hits) * 1e3:9.2f} ms (median of 20)"]


def _emit(name: str, lines: list[str]) -> None:
    text = "\n".join(lines)
    print(text)
    out = ROOT / "bench" / "results" / f"{name}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")


if __name__ == "__main__":
    main()
