"""Permutation symmetry: which axes of which state tensors permute together.

Reordering the hidden units of a layer — the rows of its weight and bias, the
matching BatchNorm entries and the columns of the next layer's weight — leaves the
function a network computes unchanged. A :class:`PermutationSpec` names every such
symmetry once ("perm" ``layers.0`` acts on axis 0 of ``layers.0.linear.weight``, axis 1
of ``layers.1.linear.weight``, ...), so alignment methods (weight matching,
activation matching) work on any architecture without per-model code.

Convention: applying permutation ``p`` to axis ``a`` of tensor ``w`` gives
``w.index_select(a, p)``, i.e. new unit ``i`` is old unit ``p[i]`` (as in Git Re-Basin).

Block perms: some symmetries move whole slices of an axis rather than single entries --
attention heads (a head is ``head_dim`` consecutive features of the projection), a
flatten from conv to linear (a channel is ``H*W`` consecutive inputs of the linear
layer), a concatenation (each part of the axis has its own perm). An axis entry is then
a :class:`BlockPerm` -- perm ``p`` of ``n`` units acting on the slice
``[offset, offset + n*block)``, unit ``i`` being ``[offset + i*block, offset + (i+1)*block)``
-- or a tuple of them (a concatenation; positions no part covers stay fixed). A plain
string ``"p"`` is the same as ``BlockPerm("p")`` over the whole axis, so existing specs
and stored results are unchanged.

References
----------
Ainsworth, Hayase & Srinivasa, "Git Re-Basin: Merging Models modulo Permutation
Symmetries", ICLR 2023.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = [
    "AxisEntry", "BlockPerm", "PermutationSpec", "apply_permutation", "axis_index", "axis_parts", "random_permutation",
]


@dataclass(frozen=True)
class BlockPerm:
    """Perm ``perm`` acting on contiguous blocks of one tensor axis.

    Unit ``i`` of the perm is the slice ``[offset + i*block, offset + (i+1)*block)``;
    ``units`` is the number of units, ``None`` meaning "up to the end of the axis"
    (then ``(length - offset)`` must be a multiple of ``block``).
    """

    perm: str
    block: int = 1
    offset: int = 0
    units: int | None = None

    def __post_init__(self):
        if self.block < 1 or self.offset < 0 or (self.units is not None and self.units < 1):
            raise ValueError(f"a BlockPerm needs block >= 1, offset >= 0 and units >= 1 or None; got {self!r}")

    def span(self, length: int) -> tuple[int, int]:
        """``(units, end)`` of this part on an axis of ``length`` entries; raises if it does not fit."""
        rest = length - self.offset
        units = self.units if self.units is not None else rest // self.block
        end = self.offset + units * self.block
        if units < 1 or end > length or (self.units is None and rest % self.block):
            raise ValueError(f"{self!r} does not fit an axis of length {length}")
        return units, end


#: One axis of a tensor: not permuted, one perm (plain or block), or a concatenation of block perms.
AxisEntry = str | BlockPerm | tuple[BlockPerm, ...] | None


def axis_parts(entry: AxisEntry) -> tuple[BlockPerm, ...]:
    """The block perms of one axis entry (empty when the axis is not permuted)."""
    if entry is None:
        return ()
    if isinstance(entry, str):
        return (BlockPerm(entry),)
    if isinstance(entry, BlockPerm):
        return (entry,)
    return tuple(entry)


def _entry_perms(entry: AxisEntry) -> list[str]:
    return list(dict.fromkeys(part.perm for part in axis_parts(entry)))



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
    axes_to_perm: dict[str, tuple[AxisEntry, ...]]
    #: ``"key axis N"`` -> why that axis was kept fixed although it holds hidden units
    #: (inferred specs only: an operation the inference cannot permute through).
    fixed: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_axes(cls, axes_to_perm: Mapping[str, tuple[AxisEntry, ...]],
                  fixed: Mapping[str, str] | None = None) -> PermutationSpec:
        """Build a spec from ``axes_to_perm`` alone; ``perm_to_axes`` is derived from it."""
        perm_to_axes: dict[str, list[tuple[str, int]]] = {}
        for key, axes in axes_to_perm.items():
            for axis, entry in enumerate(axes):
                for perm in _entry_perms(entry):
                    perm_to_axes.setdefault(perm, []).append((key, axis))
        return cls(
            perm_to_axes={perm: tuple(axes) for perm, axes in perm_to_axes.items()},
            axes_to_perm={key: tuple(axes) for key, axes in axes_to_perm.items()},
            fixed=dict(fixed or {}),
        )

    def parts(self, key: str, axis: int, perm: str | None = None) -> tuple[BlockPerm, ...]:
        """The block perms on ``axis`` of tensor ``key`` (only those of ``perm`` when given)."""
        parts = axis_parts(self.axes_to_perm[key][axis])
        return parts if perm is None else tuple(p for p in parts if p.perm == perm)

    @property
    def has_blocks(self) -> bool:
        """Whether some axis holds a block perm or a concatenation (not a plain perm name)."""
        return any(e is not None and not isinstance(e, str) for axes in self.axes_to_perm.values() for e in axes)

    def perm_sizes(self, state: Mapping[str, Tensor]) -> dict[str, int]:
        """Length of every perm, read from the tensors of ``state`` it acts on.

        Raises
        ------
        ValueError
            If a perm acts on axes of different lengths, or on no tensor of ``state``.
        """
        sizes = {}
        for perm, axes in self.perm_to_axes.items():
            seen = {f"{key} axis {axis}" + (f" {part}" if part != BlockPerm(perm) else ""):
                    part.span(state[key].shape[axis])[0]
                    for key, axis in axes if key in state for part in self.parts(key, axis, perm)}
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
        tensor ``w``: ``out[key] = w.index_select(a, perms[perm])`` (block perms: the
        index of :func:`axis_index`, which moves whole blocks).
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
        for axis, entry in enumerate(pspec.axes_to_perm.get(key, ())):
            if isinstance(entry, str):
                if entry in checked:
                    tensor = tensor.index_select(axis, checked[entry].to(tensor.device))
            elif any(part.perm in checked for part in axis_parts(entry)):
                index = axis_index(entry, checked, tensor.shape[axis])
                tensor = tensor.index_select(axis, index.to(tensor.device))
        out[key] = tensor
    return out


def axis_index(entry: AxisEntry, perms: Mapping[str, Tensor], length: int) -> Tensor:
    """The index that applies ``perms`` to one axis of ``length`` entries: ``index_select`` with it.

    Perms missing from ``perms`` are the identity; positions no part covers stay put.
    A block part of perm ``p`` sends block ``i`` to where block ``p[i]`` was:
    ``index[offset + i*block + j] = offset + p[i]*block + j``.
    """
    index = torch.arange(length)
    for part in axis_parts(entry):
        if part.perm not in perms:
            continue
        units, end = part.span(length)
        perm = torch.as_tensor(perms[part.perm]).long().cpu()
        if len(perm) != units:
            raise ValueError(f"perm {part.perm!r} has length {len(perm)} but {part!r} spans {units} units")
        blocks = perm[:, None] * part.block + torch.arange(part.block)  # (units, block)
        index[part.offset:end] = part.offset + blocks.reshape(-1)
    return index


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
