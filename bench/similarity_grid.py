"""All-pairs layer similarity of two 8-layer models on 2,048 samples: Zooscope vs torch-cka.

Both sides get the same two trained MLPs and the same 2,048 MNIST-1D inputs, and both
run their forward passes (hooks) and the 8 x 8 grid. torch-cka (0.21) computes the
unbiased-HSIC ("minibatch") CKA of Nguyen et al.; with one batch of 2,048 that is
Zooscope's ``debiased_cka``, so the values are compared entry by entry. Zooscope's
``linear_cka`` grid is timed too. Finally torch-cka is run on the same models at random
initialisation, where its float32 estimator can fail (NaNs), and Zooscope's float64
values are compared with a float64 reference.

Run: .venv/bin/python bench/similarity_grid.py [--repeats 5] [--threads 1]
torch-cka is a bench-only dependency: .venv/bin/pip install --no-deps torch-cka
(it also imports matplotlib and tqdm).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.probes.representations import capture_activations, hsic_unbiased, similarity_grid  # noqa: E402

N_SAMPLES, DEPTH, WIDTH = 2048, 8, 256


def mlp(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    layers, d = [], 40
    for _ in range(DEPTH):
        layers += [nn.Linear(d, WIDTH), nn.ReLU()]
        d = WIDTH
    return nn.Sequential(*layers, nn.Linear(d, 10))


def train(model: nn.Module, x, y, seed: int, epochs: int = 5) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(128):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


def layer_names(model: nn.Module) -> list[str]:
    return [str(i) for i, m in enumerate(model) if isinstance(m, nn.ReLU)]  # 8 post-ReLU outputs


def run_torch_cka(m1, m2, x) -> tuple[float, np.ndarray | str]:
    from torch_cka import CKA

    a, b = copy.deepcopy(m1), copy.deepcopy(m2)  # torch-cka leaves its hooks on the models
    loader = DataLoader(TensorDataset(x), batch_size=N_SAMPLES)
    t = time.perf_counter()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        cka = CKA(a, b, "A", "B", model1_layers=layer_names(a), model2_layers=layer_names(b))
        try:
            cka.compare(loader)
        except AssertionError as err:
            return time.perf_counter() - t, f"failed: {err}"
    return time.perf_counter() - t, cka.export()["CKA"].double().numpy()


def run_zooscope(m1, m2, x, metric: str) -> tuple[float, float, np.ndarray]:
    t = time.perf_counter()
    acts = [capture_activations(m, dict(m.named_parameters()), x, layer_names(m), include_output=False)
            for m in (m1, m2)]
    t_grid = time.perf_counter()
    grid = similarity_grid(acts[0], acts[1], metric)
    end = time.perf_counter()
    return end - t, end - t_grid, grid.values


def median_of(fn, repeats: int):
    runs = [fn() for _ in range(repeats)]
    return float(np.median([r[0] for r in runs])), runs[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for both sides (default 1: on a shared machine, extra threads "
                         "spin-wait and make every timing noisier)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from mnist1d.data import get_dataset_args, make_dataset

    data = make_dataset(get_dataset_args())
    x_train, y_train = torch.tensor(data["x"], dtype=torch.float32), torch.tensor(data["y"]).long()
    x = x_train[:N_SAMPLES]
    trained = [train(mlp(s), x_train, y_train, s) for s in (0, 1)]
    lines = [f"All-pairs layer CKA, two {DEPTH}-layer MLPs (width {WIDTH}), {N_SAMPLES} MNIST-1D samples, "
             f"{torch.get_num_threads()} threads; medians of {args.repeats} runs (forward passes + 8 x 8 grid)"]

    t_ref, (_, ref) = median_of(lambda: run_torch_cka(*trained, x), args.repeats)
    t_deb, (_, t_deb_grid, deb) = median_of(lambda: run_zooscope(*trained, x, "debiased_cka"), args.repeats)
    t_lin, (_, t_lin_grid, _) = median_of(lambda: run_zooscope(*trained, x, "linear_cka"), args.repeats)
    lines += [
        f"{'torch-cka 0.21 (unbiased HSIC, float32)':<48} {t_ref * 1e3:10.1f} ms",
        f"{'Zooscope debiased_cka grid (float64)':<48} {t_deb * 1e3:10.1f} ms   (grid alone {t_deb_grid * 1e3:.1f} ms)",
        f"{'Zooscope linear_cka grid (float64)':<48} {t_lin * 1e3:10.1f} ms   (grid alone {t_lin_grid * 1e3:.1f} ms)",
        f"speed-up torch-cka / Zooscope debiased:  {t_ref / t_deb:.1f}x",
    ]
    if isinstance(ref, str):
        lines.append(f"torch-cka on trained models {ref}")
    else:
        diff = np.abs(ref - deb).max()
        lines.append(f"values: max |torch-cka - Zooscope debiased| = {diff:.2e} -> "
                     f"{'equal' if diff < 1e-3 else 'NOT equal'} (tolerance 1e-3, torch-cka is float32)")
    lines += _random_init(x)
    text = "\n".join(lines)
    print(text)
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "similarity_grid.txt").write_text(text + "\n")


def _ref_cka(a: torch.Tensor, b: torch.Tensor, centre: bool) -> float:
    """Independent Gram-form reference: unbiased HSIC on float64 Grams, optionally centred first."""
    a, b = a.double(), b.double()
    if centre:
        a, b = a - a.mean(0), b - b.mean(0)
    k, l_ = a @ a.T, b @ b.T
    return hsic_unbiased(k, l_) / np.sqrt(hsic_unbiased(k, k) * hsic_unbiased(l_, l_))


def _random_init(x) -> list[str]:
    models = [mlp(s) for s in (10, 11)]
    _, ref = run_torch_cka(*models, x)
    _, _, ours = run_zooscope(*models, x, "debiased_cka")
    acts = [capture_activations(m, dict(m.named_parameters()), x, layer_names(m), include_output=False)
            for m in models]
    exact, uncentred = (np.array([[_ref_cka(a, b, c) for b in acts[1].values()] for a in acts[0].values()])
                        for c in (True, False))
    out = ["random initialisation (same architecture, seeds 10/11):"]
    if isinstance(ref, str):
        out.append(f"  torch-cka {ref}")
    else:
        out.append(f"  torch-cka max |error| vs float64 reference: {np.abs(ref - exact).max():.2e}"
                   f" (nan entries: {int(np.isnan(ref).sum())})")
    out.append(f"  Zooscope grid max |error| vs centred float64 Gram-form reference: {np.abs(ours - exact).max():.2e}")
    out.append(f"  torch-cka's uncentred formula evaluated in float64 is off by {np.abs(uncentred - exact).max():.2e}")
    return out


if __name__ == "__main__":
    main()
