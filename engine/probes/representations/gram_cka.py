"""Layer x layer linear CKA of two big models with bounded memory, from Gram matrices.

For a ResNet-18 on 2,000 CIFAR-sized images one flattened block output is 2,000 x 65,536
floats (0.5 GB), and all its layers together several GB: the activations of two such
models cannot be held at once, as :func:`~engine.probes.representations.similarity_grid`
needs. Linear CKA only needs each layer's centred Gram matrix ``K = X_c X_c^T``
(``n x n``: 32 MB at ``n = 2000`` in float64, whatever the layer's width), since

    CKA(X, Y) = <K_X, K_Y>_F / (||K_X||_F ||K_Y||_F)    (Kornblith et al. 2019, eq. 4 with HSIC).

So the layers go in **groups** whose activations on all ``n`` rows fit ``memory`` bytes:
one forward pass (in batches of rows) per group records only that group's layers, their
Gram matrices are formed (centred features in float32, in blocks of columns, summed in
float64) and the activations are freed before the next group. Peak memory is about one
group's activations plus the Gram matrices; the cost is one forward pass per group.
Values equal ``similarity_grid(..., "linear_cka")`` on the flattened features to float32
rounding of the features (tested).

References
----------
S. Kornblith, M. Norouzi, H. Lee and G. Hinton, "Similarity of neural network
representations revisited", ICML 2019.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from engine.probes.representations.activations import OUTPUT, capture_activations, default_layers
from engine.probes.representations.similarity_grid import METRICS, SimilarityGrid

__all__ = ["GRAM_MEMORY_BYTES", "layer_grams", "linear_cka_grid_streamed"]

#: Activations of one group of layers on all rows (float32), on top of the Gram matrices.
GRAM_MEMORY_BYTES = 768 * 2**20
_COLUMNS = 4096  # features per block of the Gram product (bounds the float32 temporaries)


def _widths(model: nn.Module, state: Mapping[str, Tensor], x: Tensor, layers: Sequence[str]) -> dict[str, int]:
    """Flattened feature count of every recorded layer (``name``, ``name#1``, ..., ``output``)."""
    one = capture_activations(model, state, x[:2], layers, pool="flatten")
    return {name: int(t.shape[1]) for name, t in one.items()}


def _groups(widths: dict[str, int], n: int, memory: int) -> list[list[str]]:
    """Consecutive layers whose activations (``n x width`` float32) fit ``memory`` together;
    a layer wider than that is a group of its own."""
    groups, current, used = [], [], 0
    for name, width in widths.items():
        size = 4 * n * width
        if current and used + size > memory:
            groups.append(current)
            current, used = [], 0
        current.append(name)
        used += size
    return groups + ([current] if current else [])


def _gram(features: Tensor) -> Tensor:
    """Centred Gram matrix ``(X - mean) (X - mean)^T`` in float64, from column blocks."""
    n = features.shape[0]
    out = torch.zeros(n, n, dtype=torch.float64, device=features.device)
    for lo in range(0, features.shape[1], _COLUMNS):
        block = features[:, lo : lo + _COLUMNS].float()
        block = block - block.mean(0, keepdim=True)  # (n, c) centred in float32
        out += (block @ block.T).double()
    return out


def layer_grams(
    model: nn.Module,
    state: Mapping[str, Tensor],
    x: Tensor,
    layers: Sequence[str] | None = None,
    *,
    memory: int = GRAM_MEMORY_BYTES,
    batch_size: int = 256,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Tensor]:
    """Centred Gram matrix of every layer's flattened output on ``x``, with bounded memory.

    Parameters
    ----------
    model : nn.Module
        The architecture, evaluated in eval mode (see
        :func:`~engine.probes.representations.activations.capture_activations`).
    state : dict
        Parameters (and buffers) of the model.
    x : Tensor, shape (n, ...)
        Inputs.
    layers : sequence of str, optional
        Submodule names; :func:`~engine.probes.representations.activations.default_layers`
        by default. The model's output is added as ``"output"``.
    memory : int
        Bytes of activations one forward pass may record (a group of layers).
    batch_size : int
        Rows per forward pass.
    progress : callable, optional
        ``progress(done, total, message)`` after each group of layers.

    Returns
    -------
    dict
        ``layer -> (n, n)`` float64 centred Gram matrix, in forward order.
    """
    names = list(layers) if layers is not None else default_layers(model)
    widths = _widths(model, state, x, names)
    groups = _groups(widths, len(x), memory)
    grams: dict[str, Tensor] = {}
    for i, group in enumerate(groups):
        modules = list(dict.fromkeys(name.split("#")[0] for name in group if name != OUTPUT))
        acts = capture_activations(model, state, x, modules, pool="flatten", batch_size=batch_size,
                                   include_output=OUTPUT in group)
        for name in group:
            grams[name] = _gram(acts[name].to(x.device))  # on the GPU when the data are (activations come on the CPU)
        del acts
        if progress is not None:
            progress(i + 1, len(groups), f"layers {group[0]}…{group[-1]}")
    return {name: grams[name] for name in widths}


def linear_cka_grid_streamed(
    model_a: nn.Module,
    state_a: Mapping[str, Tensor],
    model_b: nn.Module,
    state_b: Mapping[str, Tensor],
    x: Tensor,
    *,
    layers_a: Sequence[str] | None = None,
    layers_b: Sequence[str] | None = None,
    memory: int = GRAM_MEMORY_BYTES,
    batch_size: int = 256,
    progress: Callable[[float, str], None] | None = None,
) -> SimilarityGrid:
    """Linear CKA of every layer of model A with every layer of model B, flattened features.

    The same values as ``similarity_grid(capture_activations(..., pool="flatten"), ...,
    "linear_cka")`` without ever holding more than one group of layers' activations
    (:func:`layer_grams`): for models whose activations do not fit in memory.

    Parameters
    ----------
    model_a, state_a, model_b, state_b
        The two models (architectures and states); they may differ in architecture.
    x : Tensor, shape (n, ...)
        The inputs both are evaluated on.
    layers_a, layers_b : sequence of str, optional
        Layers of each; default blocks and the output.
    memory, batch_size
        As in :func:`layer_grams`.
    progress : callable, optional
        ``progress(fraction, message)`` after each group of layers, with an ETA.

    Returns
    -------
    SimilarityGrid
        ``values[i, j]`` = linear CKA of A's layer ``i`` and B's layer ``j``.
    """
    began = time.perf_counter()

    def side(label: str, lo: float, hi: float):
        if progress is None:
            return None

        def report(done: int, total: int, message: str) -> None:
            frac = lo + (hi - lo) * done / total
            elapsed = time.perf_counter() - began
            progress(frac, f"model {label}: {message} ({done}/{total} groups); {elapsed:.0f} s, "
                           f"about {elapsed / frac * (1 - frac):.0f} s left")

        return report

    grams_a = layer_grams(model_a, state_a, x, layers_a, memory=memory, batch_size=batch_size,
                          progress=side("A", 0.0, 0.5))
    grams_b = layer_grams(model_b, state_b, x, layers_b, memory=memory, batch_size=batch_size,
                          progress=side("B", 0.5, 1.0))
    ka, kb = list(grams_a.values()), list(grams_b.values())  # pairwise: no stacked copy of the Gram matrices
    cross = torch.tensor([[float(torch.vdot(a.flatten(), b.flatten())) for b in kb] for a in ka], dtype=torch.float64)
    den = torch.tensor([float(a.norm()) for a in ka])[:, None] * torch.tensor([float(b.norm()) for b in kb])[None, :]
    values = torch.where(den > 0, cross / den, torch.full_like(cross, float("nan"))).numpy()
    return SimilarityGrid(values=values, rows=tuple(grams_a), cols=tuple(grams_b), metric="linear_cka",
                          larger_is_similar=METRICS["linear_cka"])
