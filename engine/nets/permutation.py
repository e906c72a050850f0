"""Permutation symmetry: which axes of which state tensors permute together.

Reordering the hidden units of a layer — the rows of its weight and bias, the
matching BatchNorm entries and the columns of the next layer's weight — leaves the
function a network computes unchanged. A :class:`PermutationSpec` names every such
symmetry once ("perm" ``layers.0`` acts on axis 0 of ``layers.0.linear.weight``, axis 1
of ``layers.1.linear.weight``, ...), so alignment methods (weight matching,
activation matching) work on any architecture without per-model code.

Convention: applying permutation ``p`` to axis ``a`` of tensor ``w`` gives
``w.index_select(a, p)``, i.e. new unit ``i`` is old unit ``p[i]`` (as in Git Re-Basin).

References
----------
Ainsworth, Hayase & Srinivasa, "Git Re-Basin: Merging Models modulo Permutation
Symmetries", ICLR 2023.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["PermutationSpec", "apply_permutation", "random_permutation"]


@dataclass(frozen=True)
class PermutationSpec:
    """The permutation symmetries of one architecture, keyed by ``state_dict`` names.

    Attributes
    ----------
    perm_to_axes : dict[str, tuple[tuple[str, int], ...]]
        Perm name -> every ``(state_dict key, axis)`` it acts on. All those axes have
        the same length, the number of units the perm reorders.
    axes_to_perm : dict[str, tuple[str | None, ...]]
        ``state_dict`` key -> the perm acting on each axis of that tensor (``None``:
        the axis is not permuted). The built-in architectures list every key of
        ``model.state_dict()``, parameters and buffers; scalars such as
        ``num_batches_tracked`` map to ``()``.
    """

    perm_to_axes: dict[str, tuple[tuple[str, int], ...]]
    axes_to_perm: dict[str, tuple[str | None, ...]]

    @classmethod
    def from_axes(cls, axes_to_perm: Mapping[str, tuple[str | None, ...]]) -> PermutationSpec:
        """Build a spec from ``axes_to_perm`` alone; ``perm_to_axes`` is derived from it."""
        perm_to_axes: dict[str, list[tuple[str, int]]] = {}
        for key, axes in axes_to_perm.items():
            for axis, perm in enumerate(axes):
                if perm is not None:
                    perm_to_axes.setdefault(perm, []).append((key, axis))
        return cls(
            perm_to_axes={perm: tuple(axes) for perm, axes in perm_to_axes.items()},
            axes_to_perm={key: tuple(axes) for key, axes in axes_to_perm.items()},
        )

    def perm_sizes(self, state: Mapping[str, Tensor]) -> dict[str, int]:
        """Length of every perm, read from the tensors of ``state`` it acts on.

        Raises
        ------
        ValueError
            If a perm acts on axes of different lengths, or on no tensor of ``state``.
        """
        sizes = {}
        for perm, axes in self.perm_to_axes.items():
            seen = {f"{key} axis {axis}": state[key].shape[axis] for key, axis in axes if key in state}
            if not seen:
                raise ValueError(
                    f"perm {perm!r} acts on none of the given tensors; expected one of "
                    f"{sorted({key for key, _ in axes})}"
                )
            if len(set(seen.values())) > 1:
                shown = ", ".join(f"{where} has {n}" for where, n in seen.items())
                raise ValueError(f"perm {perm!r} acts on axes of different lengths: {shown}")
            sizes[perm] = next(iter(seen.values()))
        return sizes


def apply_permutation(
    pspec: PermutationSpec, perms: Mapping[str, Tensor], state: Mapping[str, Tensor]
) -> dict[str, Tensor]:
    """Permute the tensors of ``state`` (a state dict or a parameter dict).

    Parameters
    ----------
    pspec : PermutationSpec
        The architecture's symmetries, from :func:`engine.nets.permutation_spec`.
    perms : dict[str, Tensor]
        Perm name -> 1-D integer tensor holding a permutation of ``range(n)``. Perms
        of the spec that are missing here are left as the identity.
    state : dict[str, Tensor]
        Tensors keyed by ``state_dict`` names; keys the spec does not list, and
        tensors with no permuted axis, are passed through unchanged (not copied).

    Returns
    -------
    dict[str, Tensor]
        A new dict; ``state`` is not modified. For every permuted axis ``a`` of a
        tensor ``w``: ``out[key] = w.index_select(a, perms[perm])``.
    """
    unknown = sorted(set(perms) - set(pspec.perm_to_axes))
    if unknown:
        raise ValueError(f"unknown perm(s) {unknown}; the spec has {sorted(pspec.perm_to_axes)}")
    for key, tensor in state.items():
        axes = pspec.axes_to_perm.get(key)
        if axes is not None and len(axes) != tensor.ndim:
            raise ValueError(
                f"tensor {key!r} has shape {tuple(tensor.shape)} but the permutation spec "
                f"lists {len(axes)} axes for it; was the spec made for another architecture?"
            )
    sizes = pspec.perm_sizes(state)
    checked = {name: _check_perm(name, perm, sizes[name]) for name, perm in perms.items()}
    out = {}
    for key, tensor in state.items():
        for axis, name in enumerate(pspec.axes_to_perm.get(key, ())):
            if name in checked:
                tensor = tensor.index_select(axis, checked[name].to(tensor.device))
        out[key] = tensor
    return out


def random_permutation(pspec: PermutationSpec, state: Mapping[str, Tensor], seed: int) -> dict[str, Tensor]:
    """A uniformly random permutation for every perm of ``pspec``.

    Parameters
    ----------
    pspec : PermutationSpec
    state : dict[str, Tensor]
        Tensors keyed by ``state_dict`` names; only their shapes are read.
    seed : int
        Same seed -> same permutations; the global RNG is not touched.

    Returns
    -------
    dict[str, Tensor]
        Perm name -> int64 tensor of shape ``(n,)``.
    """
    generator = torch.Generator().manual_seed(seed)
    sizes = pspec.perm_sizes(state)
    return {name: torch.randperm(sizes[name], generator=generator) for name in sorted(sizes)}


def _check_perm(name: str, perm: Tensor, size: int) -> Tensor:
    perm = torch.as_tensor(perm)
    if perm.ndim != 1 or perm.dtype.is_floating_point or perm.dtype == torch.bool:
        raise ValueError(
            f"perm {name!r} must be a 1-D integer tensor; got dtype {perm.dtype} and shape {tuple(perm.shape)}"
        )
    if perm.numel() != size:
        raise ValueError(f"perm {name!r} has length {perm.numel()} but the axes it acts on have {size} units")
    perm = perm.long()
    if not torch.equal(torch.sort(perm).values.cpu(), torch.arange(size)):
        raise ValueError(f"perm {name!r} is not a permutation of range({size}): it repeats or skips an index")
    return perm
