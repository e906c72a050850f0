"""Permutation alignment by activation matching: pair up units whose features correlate.

For every perm of the architecture, run both networks on the same inputs, record the
features the perm reorders (post-activation outputs of a layer, or the residual stream
at every point it is read), and solve one linear assignment problem on the matrix of
Pearson correlations between A's units and B's units. Perms are independent given the
data, so no coordinate descent is needed (Ainsworth et al. 2023, Sec. 3.1; Li et al.
2015 "Convergent learning").

Where the features of each perm live is declared per architecture by
:func:`feature_sites`; a perm without features (e.g. attention heads) is solved by
weight matching with the activation-matched perms held fixed, and the result says so.

References
----------
S. Ainsworth, J. Hayase and S. Srinivasa, "Git Re-Basin", ICLR 2023.
Y. Li, J. Yosinski, J. Clune, H. Lipson and J. Hopcroft, "Convergent Learning: Do
different neural networks learn the same representations?", ICLR 2016.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from engine.nets import PermutationSpec, permutation_spec
from engine.nets.cnn import ConvNet
from engine.nets.mlp import MLP
from engine.nets.permutation import axis_parts
from engine.nets.resnet import ResNet
from engine.nets.transformer import Transformer
from engine.probes.connectivity.align import Alignment, solve_assignment, weight_matching
from engine.probes.core import functional_module, resolve_data, split_state

__all__ = ["FeatureSite", "activation_matching", "feature_sites"]


@dataclass(frozen=True)
class FeatureSite:
    """A tensor inside the forward pass whose channel axis a perm reorders.

    Attributes
    ----------
    module : str
        Module path (``model.named_modules()``).
    where : {"output", "input"}
        The module's output, or its first input.
    axis : int
        Channel axis of that tensor.
    relu : bool
        Apply ReLU first (a pre-activation tensor whose activation is not a module).
    """

    module: str
    where: Literal["output", "input"] = "output"
    axis: int = 1
    relu: bool = False


def feature_sites(model: nn.Module, spec: PermutationSpec) -> dict[str, list[FeatureSite]]:
    """Where the features of each perm are, for the built-in architectures.

    MLP / CNN: ``layers.{i}`` is the output of block ``layers.{i}`` (after the activation
    and pooling). ResNet: ``residual`` is the stream after the stem and after every
    block; ``blocks.{i}.inner`` is ``relu(norm1(conv1(x)))``. Transformer: ``residual`` is
    the stream entering the first block and leaving every block, ``blocks.{i}.mlp.hidden``
    the GELU output; attention perms have no site. Any other model: a perm named after
    a module is that module's output, channel axis 1. Perms missing from the result have
    no known features.
    """
    if isinstance(model, MLP):
        sites = {f"layers.{i}": [FeatureSite(f"layers.{i}", axis=-1)] for i in range(len(model.layers))}
    elif isinstance(model, ConvNet):
        sites = {f"layers.{i}": [FeatureSite(f"layers.{i}", axis=1)] for i in range(len(model.layers))}
    elif isinstance(model, ResNet):
        sites = {"residual": [FeatureSite("stem", axis=1)]
                 + [FeatureSite(f"blocks.{i}", axis=1) for i in range(len(model.blocks))]}
        sites |= {f"blocks.{i}.inner": [FeatureSite(f"blocks.{i}.norm1", axis=1, relu=True)]
                  for i in range(len(model.blocks))}
    elif isinstance(model, Transformer):
        sites = {"residual": [FeatureSite("blocks.0", "input", -1)]
                 + [FeatureSite(f"blocks.{i}", axis=-1) for i in range(len(model.blocks))]}
        sites |= {f"blocks.{i}.mlp.hidden": [FeatureSite(f"blocks.{i}.mlp.act", axis=-1)]
                  for i in range(len(model.blocks))}
    else:  # e.g. an inferred spec: perms are named after the layer whose outputs they reorder
        modules = dict(model.named_modules())
        sites = {p: [FeatureSite(p, axis=-1 if isinstance(modules[p], nn.Linear) else 1)]
                 for p in _plain_perms(spec) if p in modules}
    return {p: s for p, s in sites.items() if p in spec.perm_to_axes}


def _plain_perms(spec: PermutationSpec) -> list[str]:
    """Perms that act on whole axes one entry at a time: a block perm (heads, flattened channels,
    parts of a concatenation) has no single feature axis, so it is weight-matched instead."""
    block = {part.perm for axes in spec.axes_to_perm.values() for entry in axes
             if entry is not None and not isinstance(entry, str) for part in axis_parts(entry)}
    return [p for p in spec.perm_to_axes if p not in block]


class _Correlation:
    """Streaming Pearson correlation between the n channels of A and of B at one site."""

    def __init__(self, n: int, device):
        kw = dict(dtype=torch.float64, device=device)
        self.count = 0
        self.sa, self.sb, self.saa, self.sbb = (torch.zeros(n, **kw) for _ in range(4))
        self.sab = torch.zeros(n, n, **kw)

    def add(self, fa: Tensor, fb: Tensor) -> None:  # (R, n) each
        fa, fb = fa.double(), fb.double()
        self.count += len(fa)
        self.sa += fa.sum(0)
        self.sb += fb.sum(0)
        self.saa += (fa * fa).sum(0)
        self.sbb += (fb * fb).sum(0)
        self.sab += fa.T @ fb

    def matrix(self, eps: float = 1e-8) -> Tensor:
        ma, mb = self.sa / self.count, self.sb / self.count
        cov = self.sab / self.count - ma[:, None] * mb[None, :]
        sd_a = (self.saa / self.count - ma**2).clamp_min(0).sqrt()
        sd_b = (self.sbb / self.count - mb**2).clamp_min(0).sqrt()
        return cov / (sd_a[:, None] * sd_b[None, :] + eps)  # (n, n)


def _capture(module: nn.Module, state: Mapping[str, Tensor], x: Tensor, sites: list[FeatureSite]) -> list[Tensor]:
    """Features at every site, in order, as ``(rows, channels)`` matrices (one per call)."""
    modules = dict(module.named_modules())
    found: dict[int, list[Tensor]] = {i: [] for i in range(len(sites))}
    handles = []
    for i, site in enumerate(sites):
        if site.module not in modules:
            raise ValueError(f"feature site {site.module!r} is not a module of {type(module).__name__}")

        def hook(_m, args, out=None, i=i, site=site):
            t = out if site.where == "output" else args[0]
            t = torch.relu(t) if site.relu else t
            found[i].append(torch.movedim(t, site.axis, -1).reshape(-1, t.shape[site.axis]))

        m = modules[site.module]
        handles.append(m.register_forward_hook(hook) if site.where == "output" else m.register_forward_pre_hook(hook))
    try:
        functional_call(module, dict(state), (x,))
    finally:
        for h in handles:
            h.remove()
    return [torch.cat(found[i]) for i in range(len(sites))]


@torch.no_grad()
def activation_matching(
    model: nn.Module,
    theta_a: Mapping[str, Tensor],
    theta_b: Mapping[str, Tensor],
    data,
    spec: PermutationSpec | None = None,
    *,
    n_samples: int | None = 2048,
    batch_size: int = 512,
    split: str = "train",
    seed: int = 0,
    sites: Mapping[str, list[FeatureSite]] | None = None,
) -> Alignment:
    """Permutations of ``theta_b`` pairing each unit with the most correlated unit of ``theta_a``.

    Parameters
    ----------
    model : nn.Module
        The architecture (evaluated in eval mode: BatchNorm uses running statistics).
    theta_a, theta_b : dict[str, Tensor]
        State or parameter dicts.
    data : Tensor, pair, loader or Dataset-like
        Inputs the features are computed on (targets are not used).
    spec : PermutationSpec, optional
        ``permutation_spec(model)`` by default.
    n_samples : int or None, default 2048
        Random subset of the data (seeded); all of it when None.
    batch_size : int, default 512
        Samples per forward pass (memory).
    split : {"train", "test"}
    seed : int
    sites : dict, optional
        Perm -> feature sites, overriding :func:`feature_sites`.

    Returns
    -------
    Alignment
        ``objective`` is the mean correlation of matched units over all sites.
        Perms without features are weight-matched given the others (noted in ``notes``
        and warned about).

    References
    ----------
    Ainsworth et al., "Git Re-Basin", ICLR 2023 (activation matching).
    """
    t0 = time.perf_counter()
    spec = spec if spec is not None else permutation_spec(model)
    sites = dict(sites) if sites is not None else feature_sites(model, spec)
    if isinstance(data, Tensor):  # inputs alone are enough
        data = (data, torch.zeros(len(data), dtype=torch.long, device=data.device))
    x, _ = resolve_data(data, split, n_samples=n_samples, seed=seed)
    module = functional_module(model, "running")
    pa, ba = split_state(model, theta_a)
    pb, bb = split_state(model, theta_b)
    state_a = {k: v.to(x.device) for k, v in {**pa, **ba}.items()}
    state_b = {k: v.to(x.device) for k, v in {**pb, **bb}.items()}
    flat = [(p, s) for p, ss in sites.items() for s in ss]
    stats: list[_Correlation | None] = [None] * len(flat)
    for lo in range(0, len(x), batch_size):
        xb = x[lo : lo + batch_size]
        feats_a = _capture(module, state_a, xb, [s for _, s in flat])
        feats_b = _capture(module, state_b, xb, [s for _, s in flat])
        for i, (fa, fb) in enumerate(zip(feats_a, feats_b)):
            stats[i] = stats[i] or _Correlation(fa.shape[1], fa.device)
            stats[i].add(fa, fb)
    sizes = spec.perm_sizes(theta_a)
    for (p, site), st in zip(flat, stats):
        if st is not None and len(st.sa) != sizes[p]:
            raise ValueError(f"feature site {site} has {len(st.sa)} channels but perm {p!r} reorders {sizes[p]} "
                             "units; pass sites= with the module and axis that hold its features")
    return _solve(flat, stats, spec, theta_a, theta_b, seed, t0)


def _solve(flat, stats, spec, theta_a, theta_b, seed, t0) -> Alignment:
    perms, matched = {}, []
    for p in dict.fromkeys(name for name, _ in flat):
        corr = sum(stats[i].matrix() for i, (q, _) in enumerate(flat) if q == p)  # (n, n)
        n_sites = sum(1 for q, _ in flat if q == p)
        perms[p] = solve_assignment(corr.cpu().numpy())
        matched.append(float(corr[torch.arange(len(corr)), torch.as_tensor(perms[p])].mean()) / n_sites)
    missing = sorted(set(spec.perm_to_axes) - set(perms))
    notes = ()
    if missing:
        note = f"activation matching has no features for perms {missing}; they were weight-matched given the others"
        warnings.warn(note, stacklevel=3)
        wm = weight_matching(theta_a, theta_b, spec, init=perms, fixed=perms, seed=seed)
        perms = {**wm.perms, **perms}
        notes = (note,)
    return Alignment(perms=perms, method="activation_matching", iterations=1,
                     objective=float(np.mean(matched)) if matched else float("nan"),
                     history=np.asarray([np.mean(matched)]) if matched else np.zeros(0), seed=seed,
                     seconds=time.perf_counter() - t0, notes=notes)
