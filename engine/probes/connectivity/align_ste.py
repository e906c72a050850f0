"""Permutation alignment with the straight-through estimator: learn what the midpoint needs.

Weight and activation matching pick permutations by a proxy (similar weights, similar
features). The straight-through estimator (STE) optimises the thing of interest, the
loss at the midpoint of the aligned path, over permutations (Ainsworth et al. 2023,
Alg. 3): a free copy ``theta_tilde`` starts at ``theta_a``; each step projects it onto
the permutations of ``theta_b`` by weight matching (warm-started from the previous
step's perms, so the projection is cheap), evaluates the loss at
``(theta_a + proj) / 2`` on a mini-batch, and passes the gradient straight through
the projection to ``theta_tilde``. The final perms are the projection of the last
``theta_tilde``.

BatchNorm uses batch statistics at the midpoint while training (its running
statistics are those of neither network).

References
----------
S. Ainsworth, J. Hayase and S. Srinivasa, "Git Re-Basin", ICLR 2023, Sec. 3.3.
Y. Bengio, N. Léonard and A. Courville, "Estimating or propagating gradients through
stochastic neurons for conditional computation", 2013 (straight-through estimator).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from engine.nets import PermutationSpec, apply_permutation, permutation_spec
from engine.probes.connectivity.align import Alignment, weight_matching
from engine.probes.core import LossFn, default_loss, functional_module, resolve_data, split_state
from engine.train import init_optim_state, optim_step

__all__ = ["ste_matching"]


def _batches(n: int, batch_size: int, seed: int):
    """Endless seeded epochs of random batches (indices)."""
    gen = torch.Generator().manual_seed(seed)
    size = min(batch_size, n)
    while True:
        order = torch.randperm(n, generator=gen)
        for lo in range(0, n - size + 1, size):
            yield order[lo : lo + size]


def ste_matching(
    model: nn.Module,
    theta_a: Mapping[str, Tensor],
    theta_b: Mapping[str, Tensor],
    data,
    spec: PermutationSpec | None = None,
    *,
    steps: int = 100,
    lr: float = 1e-3,
    batch_size: int = 256,
    budget_s: float | None = None,
    split: str = "train",
    seed: int = 0,
    wm_max_iter: int = 20,
    loss_fn: LossFn | None = None,
) -> Alignment:
    """Permutations of ``theta_b`` chosen to minimise the loss at the path's midpoint.

    Parameters
    ----------
    model : nn.Module
        The architecture.
    theta_a, theta_b : dict[str, Tensor]
        State or parameter dicts.
    data : pair, loader or Dataset-like
        Training data; mini-batches are drawn from it with ``seed``.
    spec : PermutationSpec, optional
        ``permutation_spec(model)`` by default.
    steps : int, default 100
        Most Adam steps on ``theta_tilde``.
    lr : float, default 1e-3
        Adam learning rate.
    batch_size : int, default 256
    budget_s : float, optional
        Stop after this many seconds even if ``steps`` are not done (the result says
        how many were).
    split : {"train", "test"}
    seed : int
        Batch order and weight-matching order.
    wm_max_iter : int, default 20
        Passes of each warm-started projection.
    loss_fn : callable, optional

    Returns
    -------
    Alignment
        ``history`` holds the mini-batch midpoint loss of every step; ``objective`` the
        mean of the last 10.

    References
    ----------
    Ainsworth et al., "Git Re-Basin", ICLR 2023, Algorithm 3.
    """
    if steps < 1:
        raise ValueError(f"steps must be a positive integer; got {steps}")
    if budget_s is not None and budget_s <= 0:
        raise ValueError(f"budget_s must be positive seconds or None; got {budget_s}")
    t0 = time.perf_counter()
    spec = spec if spec is not None else permutation_spec(model)
    loss_fn = loss_fn or default_loss
    x, y = resolve_data(data, split)
    pa, buffers = split_state(model, theta_a)
    pb, _ = split_state(model, theta_b)
    pa = {k: v.to(x.device) for k, v in pa.items()}
    pb = {k: v.to(x.device) for k, v in pb.items()}
    buffers = {k: v.to(x.device) for k, v in buffers.items()}
    module = functional_module(model, "batch")
    tilde = {k: v.clone() for k, v in pa.items()}
    opt_state = init_optim_state(tilde, "adamw")
    hp = dict(lr=lr, weight_decay=0.0, beta1=0.9, beta2=0.999, eps=1e-8)
    perms = weight_matching(pa, pb, spec, seed=seed, max_iter=100)
    history, done = [], 0
    for done, idx in enumerate(_batches(len(x), batch_size, seed), start=1):
        proj = apply_permutation(spec, perms.as_tensors(), pb)
        leaves = {k: v.requires_grad_(True) for k, v in tilde.items()}
        mid = {k: 0.5 * (pa[k] + proj[k] + (leaves[k] - leaves[k].detach())) for k in pa}  # straight through
        loss = loss_fn(functional_call(module, {**mid, **buffers}, (x[idx],)), y[idx])
        grads = dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()))))
        tilde = {k: v.detach() for k, v in leaves.items()}
        optim_step("adamw", tilde, grads, opt_state, hp)  # Adam (no weight decay), as in the paper
        history.append(float(loss.detach()))
        perms = weight_matching(tilde, pb, spec, init=perms, seed=seed + done, max_iter=wm_max_iter)
        if done >= steps or (budget_s is not None and time.perf_counter() - t0 > budget_s):
            break
    return Alignment(perms=perms.perms, method="ste_matching", iterations=done,
                     objective=float(np.mean(history[-10:])), history=np.asarray(history), seed=seed,
                     seconds=time.perf_counter() - t0)
