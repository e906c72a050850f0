"""Real model sizes: a ResNet-18 (11.2 M parameters) on 2,000 CIFAR-shaped images, on 2 cores or a GPU.

Run: .venv/bin/python bench/real_models.py [--threads 2,1] [--repeats 1] [--device cpu|cuda]
                                            [--targets surface,hessian,cka,match] [--stem imagenet|cifar]

Each target runs in a **fresh child process** (``--target NAME`` re-invokes this file), so
its peak resident memory is its own: the child reports ``ru_maxrss`` of itself (the whole
process: Python, torch, the two models, the data and the probe) and, separately, the RSS
it had before the probe started (``base``), so ``peak - base`` is the probe's own share.
On CUDA it also reports ``torch.cuda.max_memory_allocated``. Times are wall-clock seconds of
the engine call the dashboard's probe job makes (the same function, with the job's
progress callback counting calls), medians over ``--repeats`` children.

The targets (issue 16 section 6):

- ``surface``: an 11x11 loss surface (``loss_surface_2d``, filter-normalised directions)
  on all 2,000 images: the ``landscape.surface`` job's call.
- ``hessian``: the top Hessian eigenvalue (``hessian_top_eigs``, ``tol=1e-2``) on all
  2,000 images, products accumulated over data chunks (``hvp_rows``).
- ``cka``: a layer x layer linear-CKA grid between two such models on all 2,000 images,
  features flattened (not pooled): centred Gram matrices accumulated per group of
  layers whose activations fit a budget (``linear_cka_grid_streamed``).
- ``match``: weight matching with the architecture's permutation spec (hand-written here
  for this ResNet-18; the integrator re-runs with the spec ``infer_perm_spec`` infers),
  then the 25-point interpolation A -> aligned B with BatchNorm statistics reset at
  every point.

The network is torchvision's ``resnet18`` layout written out (BasicBlock, [2, 2, 2, 2],
64-128-256-512, downsampling shortcuts; torchvision itself cannot be imported against the
CPU torch here). ``--stem imagenet`` (default) keeps torchvision's 7x7/2 conv and max-pool,
as ``torchvision.models.resnet18(num_classes=10)`` or transformers' ResNet-18 config give on
32x32 inputs (about 37 MFLOP an image); ``--stem cifar`` uses the 3x3/1 stem without pool
of CIFAR papers (about 0.56 GFLOP an image, 15x the work): 11,181,642 and 11,173,962 parameters.
The two models are trained for a few steps from different seeds on images whose class
sets their mean, so that the loss is not that of an initialisation.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.nets.layers import norm_axes, weight_axes  # noqa: E402
from engine.nets.permutation import PermutationSpec  # noqa: E402

N_IMAGES, N_CLASSES = 2000, 10
TARGETS = ("surface", "hessian", "cka", "match")
RESOLUTION = 11  # surface grid points per axis (--resolution)


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: two 3x3 convs with BN, identity or 1x1-conv shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        h = self.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return self.relu(h + (x if self.downsample is None else self.downsample(x)))


class ResNet18(nn.Module):
    """torchvision's ``resnet18`` layout (state keys match it), with a choice of stem."""

    def __init__(self, n_classes: int = N_CLASSES, stem: str = "imagenet"):
        super().__init__()
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        c_in = 64
        for i, width in enumerate((64, 128, 256, 512)):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(c_in, width, stride), BasicBlock(width, width, 1)))
            c_in = width
        self.fc = nn.Linear(512, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, H', W')
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 512, h, w)
        return self.fc(x.mean((2, 3)))  # (B, n_classes)


def resnet18_permutation_spec(model: ResNet18) -> PermutationSpec:
    """Hand-written spec: one perm per stage's residual stream (``stage{i}``: identity shortcuts
    add channels index by index; a downsampling shortcut maps stage i-1 to stage i), one per
    block's inner channels."""
    axes = weight_axes("conv1", model.conv1, "stage1", None) | norm_axes("bn1", model.bn1, "stage1")
    previous = "stage1"
    for i in range(1, 5):
        stream = f"stage{i}"
        for b, block in enumerate(getattr(model, f"layer{i}")):
            prefix = f"layer{i}.{b}"
            inner = f"{prefix}.inner"
            source = previous if b == 0 else stream
            axes |= weight_axes(f"{prefix}.conv1", block.conv1, inner, source)
            axes |= norm_axes(f"{prefix}.bn1", block.bn1, inner)
            axes |= weight_axes(f"{prefix}.conv2", block.conv2, stream, inner)
            axes |= norm_axes(f"{prefix}.bn2", block.bn2, stream)
            if block.downsample is not None:
                axes |= weight_axes(f"{prefix}.downsample.0", block.downsample[0], stream, source)
                axes |= norm_axes(f"{prefix}.downsample.1", block.downsample[1], stream)
        previous = stream
    axes |= weight_axes("fc", model.fc, None, "stage4")
    return PermutationSpec.from_axes(axes)


def images(n: int = N_IMAGES, seed: int = 0) -> tuple[Tensor, Tensor]:
    """CIFAR-shaped images (3x32x32): a per-class smooth mean pattern plus noise."""
    gen = torch.Generator().manual_seed(seed)
    means = torch.nn.functional.interpolate(torch.randn(N_CLASSES, 3, 4, 4, generator=gen), size=32, mode="bilinear")
    y = torch.randint(0, N_CLASSES, (n,), generator=gen)
    x = means[y] + 0.8 * torch.randn(n, 3, 32, 32, generator=gen)
    return x, y


def trained(seed: int, stem: str, x: Tensor, y: Tensor, steps: int) -> dict[str, Tensor]:
    """A state dict after ``steps`` SGD steps (batch 128) from seed ``seed``."""
    torch.manual_seed(seed)
    model = ResNet18(stem=stem)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (128,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def rss_mb() -> float:
    """Current resident set size of this process (Linux), in MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ---------------------------------------------------------------------------------------------- targets


class Calls:
    """The job's progress callback, counting calls and keeping the last message; with ``log``,
    also appends a timestamped line there at most every 5 s (to follow a long target)."""

    def __init__(self, log: Path | None = None):
        self.n, self.last, self.log, self.logged = 0, "", log, 0.0

    def __call__(self, *args) -> None:
        self.n += 1
        self.last = str(args[-1]) if args else ""
        if self.log is not None and time.monotonic() - self.logged >= 5:
            self.logged = time.monotonic()
            with open(self.log, "a") as f:
                f.write(f"{time.strftime('%H:%M:%S')} {self.last}\n")


def run_surface(model, state_a, state_b, x, y, calls, resolution: int = RESOLUTION):
    from engine.jobs.builtin_probes.landscape import points_progress
    from engine.probes.landscape import loss_surface_2d, random_direction

    params = {k: v for k, v in state_a.items() if k in dict(model.named_parameters())}
    d1, d2 = random_direction(params, seed=0), random_direction(params, seed=1)
    r = resolution
    surface = loss_surface_2d(model, state_a, (x, y), d1, d2, resolution=r,
                              progress=points_progress(calls, f"{r}×{r} grid", start=0.2, end=0.99))
    return {"grid": f"{r}x{r}", "center_loss": surface.center_loss, "loss_min": float(surface.loss.min()),
            "strategy": surface.strategy}


def run_hessian(model, state_a, state_b, x, y, calls):
    from engine.probes.landscape import hessian_top_eigs, hvp_rows  # noqa: F401 - rows reported below

    eigs = hessian_top_eigs(model, state_a, (x, y), k=1, tol=1e-2, progress=calls)
    return {"lambda_max": float(eigs.eigenvalues[0]), "products": eigs.n_products, "converged": eigs.converged,
            "residual": float(eigs.residuals[0])}


def run_cka(model, state_a, state_b, x, y, calls):
    from engine.probes.representations import linear_cka_grid_streamed

    grid = linear_cka_grid_streamed(model, state_a, model, state_b, x, progress=calls)
    diag = [float(grid.values[i, i]) for i in range(min(grid.values.shape))]
    return {"layers": len(grid.rows), "diag_mean": sum(diag) / len(diag), "last": diag[-1]}


def run_match(model, state_a, state_b, x, y, calls):
    from engine.probes.connectivity import apply_alignment, interpolate, weight_matching

    spec = resnet18_permutation_spec(model)
    t0 = time.perf_counter()
    alignment = weight_matching(state_a, state_b, spec)
    t_match = time.perf_counter() - t0
    aligned = apply_alignment(model, state_b, alignment, (x, y), spec=spec)
    naive = interpolate(model, state_a, state_b, (x, y), alphas=25, bn="reset")
    after = interpolate(model, state_a, aligned, (x, y), alphas=25, bn="reset")
    return {"matching_s": round(t_match, 2), "barrier_naive": naive.barrier().value,
            "barrier_matched": after.barrier().value}


RUNNERS = {"surface": run_surface, "hessian": run_hessian, "cka": run_cka, "match": run_match}


def child(args) -> None:
    """One target in this (fresh) process; prints one JSON line."""
    torch.set_num_threads(args.threads)
    blob = torch.load(args.state, weights_only=True)
    dev = torch.device(args.device)
    model = ResNet18(stem=args.stem).to(dev).eval()
    state_a = {k: v.to(dev) for k, v in blob["a"].items()}
    state_b = {k: v.to(dev) for k, v in blob["b"].items()}
    x, y = blob["x"].to(dev), blob["y"].to(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    base = rss_mb()
    calls = Calls(Path(f"{args.state}.{args.target}-t{args.threads}.log"))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = usage.ru_utime + usage.ru_stime
    start = time.perf_counter()
    extra = {"resolution": args.resolution} if args.target == "surface" else {}
    details = RUNNERS[args.target](model, state_a, state_b, x, y, calls, **extra)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - cpu0  # CPU seconds of the probe: on a shared machine, wall/cpu shows
    out = {"target": args.target, "threads": args.threads, "seconds": seconds, "cpu_s": cpu, "peak_mb": peak_mb(),
           "base_mb": base, "progress_calls": calls.n, "last_message": calls.last, **details}
    if dev.type == "cuda":
        out["gpu_peak_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    print("RESULT " + json.dumps(out, default=float), flush=True)


def parent(args) -> None:
    dev = args.device
    if dev == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here; running on the CPU")
        dev = "cpu"
    n_params = sum(p.numel() for p in ResNet18(stem=args.stem).parameters())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.models) if args.models else Path(tmp) / "state.pt"
        if not path.exists():
            x, y = images(args.n)
            torch.set_num_threads(max(int(t) for t in args.threads.split(",")))
            t0 = time.perf_counter()
            state_a = trained(0, args.stem, x, y, args.train_steps)
            state_b = trained(1, args.stem, x, y, args.train_steps)
            print(f"two models trained {args.train_steps} steps in {time.perf_counter() - t0:.1f} s", flush=True)
            torch.save({"a": state_a, "b": state_b, "x": x, "y": y}, path)
        n = len(torch.load(path, weights_only=True)["x"])
        print(f"ResNet-18 ({args.stem} stem): {n_params:,} parameters; {n} images 3x32x32, {N_CLASSES} classes; "
              f"device {dev}; {torch.__version__}", flush=True)
        rows = []
        for threads in [int(t) for t in args.threads.split(",")]:
            for target in args.targets.split(","):
                runs = []
                for _ in range(args.repeats):
                    cmd = [sys.executable, __file__, "--target", target, "--threads", str(threads), "--state",
                           str(path), "--device", dev, "--stem", args.stem, "--resolution", str(args.resolution)]
                    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
                    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
                    if proc.returncode != 0 or not line:
                        print(f"{target} at {threads} thread(s) failed:\n{proc.stderr[-3000:]}")
                        break
                    runs.append(json.loads(line[0][7:]))
                if runs:
                    row = dict(runs[-1])
                    row["seconds"] = statistics.median(r["seconds"] for r in runs)
                    row["peak_mb"] = max(r["peak_mb"] for r in runs)
                    row["repeats"] = len(runs)
                    rows.append(row)
                    print(json.dumps(row, default=float), flush=True)
    print()
    print("| target | threads | seconds | CPU seconds | peak RSS (MiB) | RSS before probe | details |")
    print("|---|---|---|---|---|---|---|")
    skip = {"target", "threads", "seconds", "peak_mb", "base_mb", "repeats", "last_message", "cpu_s"}
    for r in rows:
        details = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in r.items() if k not in skip)
        print(f"| {r['target']} | {r['threads']} | {r['seconds']:.1f} | {r['cpu_s']:.0f} | {r['peak_mb']:.0f} | "
              f"{r['base_mb']:.0f} | {details} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="2,1", help="thread counts (parent); one count (child)")
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--stem", default="imagenet", choices=("imagenet", "cifar"))
    ap.add_argument("--train-steps", type=int, default=30)
    ap.add_argument("--n", type=int, default=N_IMAGES, help="images (the issue's target: 2000)")
    ap.add_argument("--resolution", type=int, default=RESOLUTION, help="surface grid per axis (issue: 11)")
    ap.add_argument("--models", help="file keeping the two trained models and the images (made if missing)")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--target", choices=TARGETS, help=argparse.SUPPRESS)
    ap.add_argument("--state", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.target:
        args.threads = int(args.threads)
        child(args)
    else:
        parent(args)


if __name__ == "__main__":
    main()
