"""Permutation alignment by weight matching, and the check that it kept the function.

Two networks trained from different seeds compute similar features in a different
order. Weight matching finds, for every permutation symmetry of the architecture (its
:class:`~engine.nets.PermutationSpec`), the reordering of ``theta_b``'s units that
maximises ``sum_k <W_k^A, P W_k^B>`` over all weights at once: coordinate descent that
solves one linear assignment problem per perm, holding the others fixed, in a random
order each pass, until a full pass improves nothing (Ainsworth et al. 2023, Alg. 1).

What makes it fast, without changing the result of the algorithm:

- a perm whose neighbours (the perms on the other axes of its tensors) have not
  changed since it was last solved would get the same assignment problem and the
  same answer, so it is skipped -- in particular the whole final "no progress" pass;
- each tensor's contribution to the assignment matrix is cached, and so is their sum;
  when a neighbouring perm moved only a few units (after the first passes, typically a
  few percent), both are updated with the changed slices alone instead of recomputed;
- each perm's assignment problem is solved exactly by Jonker-Volgenant starting from the
  optimal duals of that perm's previous solve (:class:`engine.probes.connectivity.lap.WarmAssignments`):
  after the first pass most solves take 1-2 ms instead of scipy's 6-18 ms (512 units);
- weights are scored in float64, where a product of float32 numbers is exact: cached scores,
  their increments and the objective history do not depend on the CPU's BLAS kernels, and the
  objective never falls between passes (each accepted assignment raises it by its score gain).

References
----------
S. Ainsworth, J. Hayase and S. Srinivasa, "Git Re-Basin: Merging Models modulo
Permutation Symmetries", ICLR 2023.
R. Entezari, H. Sedghi, O. Saukh and B. Neyshabur, "The Role of Permutation Invariance
in Linear Mode Connectivity of Neural Networks", ICLR 2022.
R. Jonker and A. Volgenant, "A shortest augmenting path algorithm for dense and sparse linear
assignment problems", Computing 38 (1987).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from engine.nets import PermutationSpec, apply_permutation, permutation_spec
from engine.nets.permutation import BlockPerm, axis_index, axis_parts
from engine.probes.connectivity.lap import WarmAssignments, solve_assignment
from engine.probes.core import functional_module, resolve_data

__all__ = [
    "Alignment",
    "FunctionNotPreservedError",
    "apply_alignment",
    "apply_alignment_checked",
    "check_function_preserved",
    "solve_assignment",
    "weight_matching",
]

#: Buffers left out of the weight-matching objective (they are permuted, not matched).
_STAT_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")
#: Update a cached score term in place when at most this share of a neighbour's units moved.
_INCREMENTAL = 0.25


@dataclass(frozen=True)
class Alignment:
    """Permutations that reorder ``theta_b``'s units to line up with ``theta_a``'s.

    Attributes
    ----------
    perms : dict[str, np.ndarray]
        Perm name -> int64 array ``p`` of shape ``(n,)``: new unit ``i`` of B is old unit
        ``p[i]`` (the convention of :func:`engine.nets.apply_permutation`).
    method : str
        "weight_matching", "activation_matching", "ste_matching" or "identity".
    iterations : int
        Coordinate-descent passes (weight matching) or optimisation steps (STE).
    objective : float
        Final value of what the method maximises (weight matching: ``sum_k <W_A, P W_B>``;
        activation matching: mean matched correlation) or minimises (STE: midpoint loss).
    history : np.ndarray
        The objective after each pass / step.
    seed : int or None
    seconds : float
    notes : tuple of str
        Anything the caller should know (e.g. perms solved by a fallback).
    """

    perms: dict[str, np.ndarray]
    method: str
    iterations: int = 0
    objective: float = float("nan")
    history: np.ndarray = field(default_factory=lambda: np.zeros(0))
    seed: int | None = None
    seconds: float = 0.0
    notes: tuple[str, ...] = ()

    def as_tensors(self) -> dict[str, Tensor]:
        return {name: torch.as_tensor(p, dtype=torch.long) for name, p in self.perms.items()}

    def apply(self, spec: PermutationSpec, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``state`` with every perm applied (parameters and BN buffers alike); no check."""
        return apply_permutation(spec, self.as_tensors(), state)

    @classmethod
    def identity(cls, spec: PermutationSpec, state: Mapping[str, Tensor]) -> Alignment:
        return cls({p: np.arange(n) for p, n in spec.perm_sizes(state).items()}, "identity")


class FunctionNotPreservedError(ValueError):
    """The permuted network does not compute what the original computed."""


class _Problem:
    """The weight-matching problem: A-side matrices per perm and B's tensors, permuted lazily.

    An entry of perm ``p`` is one ``(key, axis, part)``: the slice of that axis the part
    covers, viewed as ``(units, block * rest)`` -- a block perm's unit is its whole block
    of rows, so heads, flattened channels and the parts of a concatenation are matched
    as wholes.
    """

    def __init__(self, a: Mapping[str, Tensor], b: Mapping[str, Tensor], spec: PermutationSpec):
        keys = [k for k in spec.axes_to_perm if k in a and k in b and not k.endswith(_STAT_SUFFIXES)
                and a[k].is_floating_point() and any(p is not None for p in spec.axes_to_perm[k])]
        for k in keys:
            if a[k].shape != b[k].shape:
                raise ValueError(f"{k!r} has shape {tuple(a[k].shape)} in theta_a but {tuple(b[k].shape)} "
                                 "in theta_b; are they the same architecture?")
        # Scored in float64: a product of two float32 (or half) numbers is exact there, so a score
        # is rounded only by float64 summation (relative ~1e-16 per term) whatever BLAS kernel or
        # summation order the CPU uses. Scored in float32 (products cast to float64 afterwards),
        # the CPU-dependent rounding (~1e-7 relative) could accept a "gain" that lowers the
        # objective: the history then fell between passes (-6e-8 relative on an Intel Xeon).
        # Costs ~25% more time than float32 on a 3x512 MLP (bench/alignment_weight_matching.py).
        self.spec = spec
        self.a = {k: a[k].detach().to(torch.float64) for k in keys}
        self.b = {k: b[k].detach().to(self.a[k]) for k in keys}
        self.entries = {p: [(k, ax, part) for k, ax in axes if k in self.a for part in spec.parts(k, ax, p)]
                        for p, axes in spec.perm_to_axes.items()}
        self.entries = {p: e for p, e in self.entries.items() if e}
        self.spans = {(k, ax, part): part.span(self.a[k].shape[ax]) for e in self.entries.values()
                      for k, ax, part in e}
        self.sizes = {p: self.spans[e[0]][0] for p, e in self.entries.items()}
        self.neighbours = {p: sorted({q for k, ax, _ in e for j, entry in enumerate(spec.axes_to_perm[k])
                                      if j != ax for q in _perms_of(entry)}) for p, e in self.entries.items()}
        self.wa = {p: [self._rows(self.a[k], k, ax, part).reshape(self.sizes[p], -1) for k, ax, part in e]
                   for p, e in self.entries.items()}
        self.cache: dict[tuple[str, int], tuple[Tensor, dict[str, Tensor]]] = {}
        self.totals: dict[str, Tensor] = {}

    def _rows(self, w: Tensor, k: str, ax: int, part: BlockPerm) -> Tensor:
        """``w`` with axis ``ax`` first, cut to the rows ``part`` covers."""
        return torch.movedim(w, ax, 0)[part.offset:self.spans[(k, ax, part)][1]]

    def score(self, p: str, perms: Mapping[str, Tensor]) -> np.ndarray:
        """``A[i, j] = sum_k <unit i of W_k^A, unit j of W_k^B with the other axes permuted>``, float64.

        A view of the running total, valid until the next call for ``p``.
        """
        total = self.totals.get(p)
        if total is None:
            total = self.totals[p] = torch.zeros(self.sizes[p], self.sizes[p], dtype=torch.float64,
                                                 device=self.wa[p][0].device)
        for e, (k, ax, part) in enumerate(self.entries[p]):
            self._update(total, p, e, k, ax, part, perms)
        return total.cpu().numpy()

    def _update(self, total: Tensor, p: str, e: int, k: str, ax: int, part: BlockPerm,
                perms: Mapping[str, Tensor]) -> None:
        """Bring tensor ``k``'s contribution to ``total`` up to date with ``perms``: nothing when the
        other perms on its axes are as last time, the changed slices alone when one of them
        moved a few units, else recomputed."""
        others = [(j, entry) for j, entry in enumerate(self.spec.axes_to_perm[k]) if j != ax and entry is not None]
        names = sorted({q for _, entry in others for q in _perms_of(entry)})
        cached = self.cache.get((p, e))
        if cached is not None:
            term, seen = cached
            if all(torch.equal(seen[q], perms[q]) for q in names):
                return
            if len(others) == 1:
                j, entry = others[0]
                length = self.b[k].shape[j]
                old, new = axis_index(entry, seen, length), axis_index(entry, perms, length)
                rows = torch.nonzero(old != new).reshape(-1)
                if len(rows) <= _INCREMENTAL * length:
                    delta = self._delta(k, ax, part, j, rows, old, new)
                    term += delta
                    total += delta
                    self.cache[(p, e)] = (term, {q: perms[q].clone() for q in names})
                    return
            total -= term
        wb = self.b[k]
        for j, entry in others:
            wb = wb.index_select(j, axis_index(entry, perms, wb.shape[j]).to(wb.device))
        n = self.sizes[p]
        term = self.wa[p][e] @ self._rows(wb, k, ax, part).reshape(n, -1).T  # (n, n), float64
        total += term
        self.cache[(p, e)] = (term, {q: perms[q].clone() for q in names})

    def _delta(self, k: str, ax: int, part: BlockPerm, j: int, rows: Tensor, old: Tensor, new: Tensor) -> Tensor:
        """Change of ``W_A W_B'^T`` when axis ``j`` of ``W_B`` is re-indexed at positions ``rows``
        (``old`` -> ``new``): only those slices of the sum differ, so this costs ``len(rows) / n``
        of a full product."""
        n = self.sizes[part.perm]
        jj = j + 1 if j < ax else j  # axis j after moving axis ``ax`` to the front
        wa = self._rows(self.a[k], k, ax, part).index_select(jj, rows.to(self.a[k].device))
        wb = self._rows(self.b[k], k, ax, part)
        diff = wb.index_select(jj, new[rows].to(wb.device)) - wb.index_select(jj, old[rows].to(wb.device))
        return wa.reshape(n, -1) @ diff.reshape(n, -1).T  # float64, as every score: no drift

    def objective(self, perms: Mapping[str, Tensor]) -> float:
        permuted = apply_permutation(self.spec, {p: perms[p] for p in self.entries}, self.b)
        return float(sum(torch.vdot(self.a[k].reshape(-1), permuted[k].reshape(-1)) for k in self.a))


def _perms_of(entry) -> list[str]:
    return list(dict.fromkeys(part.perm for part in axis_parts(entry)))


def _initial_perms(problem: _Problem, init) -> dict[str, Tensor]:
    perms = {p: torch.arange(n) for p, n in problem.sizes.items()}
    if init is None:
        return perms
    given = init.perms if isinstance(init, Alignment) else init
    for name, p in given.items():
        if name in perms:
            p = torch.as_tensor(np.asarray(p), dtype=torch.long)
            if p.shape != perms[name].shape or not torch.equal(torch.sort(p).values, perms[name]):
                raise ValueError(f"init perm {name!r} is not a permutation of range({problem.sizes[name]})")
            perms[name] = p
    return perms


def weight_matching(
    theta_a: Mapping[str, Tensor],
    theta_b: Mapping[str, Tensor],
    spec: PermutationSpec,
    *,
    max_iter: int = 100,
    seed: int = 0,
    init: Alignment | Mapping[str, Tensor | np.ndarray] | None = None,
    fixed: Iterable[str] = (),
) -> Alignment:
    """Permutations of ``theta_b`` that maximise its inner product with ``theta_a``.

    Parameters
    ----------
    theta_a, theta_b : dict[str, Tensor]
        State or parameter dicts of the same architecture. Every float tensor the spec
        permutes enters the objective except BatchNorm running statistics.
    spec : PermutationSpec
        From :func:`engine.nets.permutation_spec`.
    max_iter : int, default 100
        Most coordinate-descent passes.
    seed : int, default 0
        Seeds the random perm order of each pass; same seed -> same result.
    init : Alignment or dict, optional
        Starting permutations (identity by default), e.g. the previous solution when
        ``theta_a`` moved a little (as in :func:`ste_matching`).
    fixed : iterable of str
        Perms held at their initial value.

    Returns
    -------
    Alignment
        ``perms`` to apply to ``theta_b``; ``history`` is the objective after each pass.

    References
    ----------
    Ainsworth et al., "Git Re-Basin", ICLR 2023, Algorithm 1.
    """
    if max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer; got {max_iter}")
    t0 = time.perf_counter()
    problem = _Problem(theta_a, theta_b, spec)
    perms = _initial_perms(problem, init)
    names = sorted(p for p in problem.entries if p not in set(fixed))
    version = {p: 0 for p in problem.entries}
    solved_at: dict[str, tuple[int, ...]] = {}
    solver = WarmAssignments()
    gen = torch.Generator().manual_seed(seed)
    history, passes, start, gain = [], 0, problem.objective(perms), 0.0
    for _ in range(max_iter):
        passes += 1
        progress = False
        for i in torch.randperm(len(names), generator=gen).tolist():
            p = names[i]
            stamp = tuple(version[q] for q in problem.neighbours[p]) + (version[p],)
            if solved_at.get(p) == stamp:
                continue  # same neighbours as last time: same problem, same answer
            score = problem.score(p, perms)
            new = solver.maximize(p, score)
            old = perms[p].numpy()
            rows = np.arange(len(new))
            old_total, new_total = score[rows, old].sum(), score[rows, new].sum()
            if new_total > old_total + 1e-12 * max(1.0, abs(old_total)):
                perms[p] = torch.from_numpy(new)
                version[p] += 1
                progress = True
                gain += new_total - old_total  # the objective changes by exactly this much
            solved_at[p] = tuple(version[q] for q in problem.neighbours[p]) + (version[p],)
        history.append(start + gain)
        if not progress:
            break
    history[-1] = problem.objective(perms)  # recomputed from scratch at the end
    return Alignment(perms={p: t.numpy().copy() for p, t in perms.items()}, method="weight_matching",
                     iterations=passes, objective=history[-1], history=np.asarray(history), seed=seed,
                     seconds=time.perf_counter() - t0)


# ---------------------------------------------------------------- self-check


@torch.no_grad()
def check_function_preserved(
    model: nn.Module,
    original: Mapping[str, Tensor],
    permuted: Mapping[str, Tensor],
    inputs: Tensor,
    *,
    rtol: float = 1e-4,
    atol: float = 1e-5,
) -> float:
    """Largest output difference between two states of ``model``; raises if too large.

    Both run in eval mode (BatchNorm with the running statistics each state carries),
    so a permutation that forgot a BN buffer is caught.

    Returns
    -------
    float
        ``max |f_original(x) - f_permuted(x)|`` over ``inputs``.

    Raises
    ------
    FunctionNotPreservedError
        If the difference exceeds ``atol + rtol * max |f_original(x)|``.
    """
    module = functional_module(model, "running")
    buffers = dict(model.named_buffers())
    tied = _tied_aliases(model)  # functional_call takes one name per shared tensor (GPT-2's lm_head is wte)
    out_a = functional_call(module, {k: v for k, v in {**buffers, **original}.items() if k not in tied}, (inputs,))
    out_b = functional_call(module, {k: v for k, v in {**buffers, **permuted}.items() if k not in tied}, (inputs,))
    diff = float((out_a - out_b).abs().max())
    limit = atol + rtol * float(out_a.abs().max())
    if not diff <= limit:
        raise FunctionNotPreservedError(
            f"the permuted network's outputs differ from the original's by up to {diff:.3g} "
            f"(allowed {limit:.3g}); the permutation spec does not describe this architecture's "
            "symmetries (a tensor or BatchNorm buffer is missing from it, or an axis is wrong)"
        )
    return diff


def _tied_aliases(model: nn.Module) -> set[str]:
    """State keys naming a tensor that an earlier key already names (tied weights)."""
    seen, aliases = set(), set()
    for key, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            aliases.add(key)
        seen.add(id(tensor))
    return aliases


def apply_alignment(
    model: nn.Module,
    theta_b: Mapping[str, Tensor],
    alignment: Alignment,
    data=None,
    *,
    spec: PermutationSpec | None = None,
    n_check: int = 256,
    rtol: float = 1e-4,
    atol: float = 1e-5,
) -> dict[str, Tensor]:
    """``theta_b`` permuted by ``alignment`` (parameters and BN buffers), checked on data.

    Parameters
    ----------
    model : nn.Module
        The architecture (made by :func:`engine.nets.build` unless ``spec`` is given).
    theta_b : dict[str, Tensor]
        State dict of B; buffers missing from it are taken from ``model``.
    alignment : Alignment
    data : pair, loader, Dataset-like or Tensor, optional
        Inputs for the self-check (the first ``n_check`` samples, train split); without
        data the check is skipped -- callers that report a barrier always pass it.
    spec : PermutationSpec, optional
        ``permutation_spec(model)`` by default.

    Returns
    -------
    dict[str, Tensor]
        The permuted state, including every buffer.

    Raises
    ------
    FunctionNotPreservedError
        If the permuted network computes something else (see :func:`check_function_preserved`).
    """
    return apply_alignment_checked(model, theta_b, alignment, data, spec=spec, n_check=n_check,
                                   rtol=rtol, atol=atol)[0]


def apply_alignment_checked(model, theta_b, alignment, data=None, *, spec=None, n_check=256, rtol=1e-4,
                            atol=1e-5) -> tuple[dict[str, Tensor], float]:
    """:func:`apply_alignment`, also returning the largest output change (NaN when unchecked)."""
    spec = spec if spec is not None else permutation_spec(model)
    full = {**{k: v.detach() for k, v in model.named_buffers()}, **dict(theta_b)}
    permuted = alignment.apply(spec, full)
    if data is None:
        return permuted, float("nan")
    x = data if isinstance(data, Tensor) else resolve_data(data, "train")[0]
    device = x.device
    diff = check_function_preserved(model, {k: v.to(device) for k, v in full.items()},
                                    {k: v.to(device) for k, v in permuted.items()}, x[:n_check],
                                    rtol=rtol, atol=atol)
    return permuted, diff
