"""Shared helpers of the landscape and Hessian benchmarks: data, timing, FLOP/s, tables."""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def mnist1d(n: int, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` MNIST-1D training samples, generated locally (no download)."""
    from engine.data import load

    ds = load("mnist1d")
    return ds.x_train[:n].to(dev), ds.y_train[:n].to(dev)


def load_average() -> str:
    """The 1-minute load average, for the record (wall times on a shared machine depend on it)."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "n/a"


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, dev: torch.device, repeats: int = 3) -> tuple[float, object]:
    """Median wall time of ``repeats`` calls, and the last result."""
    times, out = [], None
    for _ in range(repeats):
        sync(dev)
        start = time.perf_counter()
        out = fn()
        sync(dev)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def rounds(fns: dict, dev: torch.device, repeats: int, skip_after_first=()) -> tuple[dict, dict, dict]:
    """Interleaved timing: each round runs every function once, so all see the same load.

    Returns the median wall seconds, the median process CPU seconds (less sensitive to
    other processes on a shared machine, but it counts every thread's time) and the last
    result of each function; a function that raises gets its exception as result.
    Functions in ``skip_after_first`` (slow references) run in the first round only.
    """
    wall = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    results = {}
    for r in range(repeats):
        for name, fn in fns.items():
            if r > 0 and (name in skip_after_first or isinstance(results.get(name), Exception)):
                continue
            sync(dev)
            start, start_cpu = time.perf_counter(), time.process_time()
            try:
                results[name] = fn()
            except Exception as err:  # noqa: BLE001 - a reference that cannot run is reported
                results[name] = err
            sync(dev)
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    med = statistics.median
    return {k: med(v) for k, v in wall.items()}, {k: med(v) for k, v in cpu.items()}, results


def matmul_flops(dev: torch.device, n: int = 2048, repeats: int = 7) -> tuple[float, float]:
    """Measured dense float32 n x n matmul rate: (FLOP per wall second, FLOP per CPU second).

    The second is per core when torch runs one thread, and is what to compare with on a
    machine shared with other work (process CPU time does not count time taken away).
    """
    a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
    a @ b
    wall, cpu = [], []
    for _ in range(repeats):
        sync(dev)
        start, start_cpu = time.perf_counter(), time.process_time()
        a @ b
        sync(dev)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return 2 * n**3 / statistics.median(wall), 2 * n**3 / statistics.median(cpu)


def forward_flops(model, x) -> int:
    """FLOPs of one forward pass of ``model`` on ``x`` (matmuls and convolutions)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops()


class Report:
    """Lines printed as they come and saved to bench/results/<name>.txt at the end."""

    def __init__(self, name: str):
        self.name, self.lines = name, []

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)

    def save(self) -> Path:
        path = ROOT / "bench" / "results" / f"{self.name}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(self.lines) + "\n")
        return path
