"""Does alignment line up the dominant directions of each layer? A singular-vector view.

For every weight matrix (conv kernels reshaped to ``(out, in * kernel)``), compare the
SVDs ``W_A = U_A S_A V_A^T`` and ``W_B = U_B S_B V_B^T``: ``|cos|`` between the ``i``-th
left (and right) singular vectors of A and B, before and after B is permuted, next to
the singular values. Ito et al. observe that weight matching mainly aligns the
singular vectors with large singular values -- which is what makes the interpolated
network work -- rather than reducing the L2 distance much; the L2 distance per layer
before and after is reported alongside.

References
----------
A. Ito, M. Yamada and A. Kumagai, "Analysis of Linear Mode Connectivity via Permutation-
Based Weight Matching: With Insights into Other Permutation Search Methods", ICLR 2025.
S. Ainsworth, J. Hayase and S. Srinivasa, "Git Re-Basin", ICLR 2023.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from engine.nets import PermutationSpec
from engine.probes.connectivity.align import Alignment

__all__ = ["SingularAlignment", "singular_vector_alignment"]


@dataclass(frozen=True)
class SingularAlignment:
    """Per-layer singular-vector agreement of two networks, before and after alignment.

    Attributes
    ----------
    layers : tuple of str
        Weight names (``state_dict`` keys), in order.
    singular_values_a, singular_values_b : tuple of np.ndarray, shape (k_l,)
        Top ``k_l`` singular values of each layer (descending); permutation leaves B's unchanged.
    cos_left_before, cos_left_after : tuple of np.ndarray, shape (k_l,)
        ``|<u_i^A, u_i^B>|`` with B as trained / permuted.
    cos_right_before, cos_right_after : tuple of np.ndarray, shape (k_l,)
        Same for the right singular vectors ``v_i``.
    distance_before, distance_after : np.ndarray, shape (L,)
        ``||W_A - W_B||_F`` per layer, before and after.
    """

    layers: tuple[str, ...]
    singular_values_a: tuple[np.ndarray, ...]
    singular_values_b: tuple[np.ndarray, ...]
    cos_left_before: tuple[np.ndarray, ...]
    cos_left_after: tuple[np.ndarray, ...]
    cos_right_before: tuple[np.ndarray, ...]
    cos_right_after: tuple[np.ndarray, ...]
    distance_before: np.ndarray
    distance_after: np.ndarray


def _svd(w: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    u, s, vh = torch.linalg.svd(w.double().reshape(w.shape[0], -1), full_matrices=False)
    return u[:, :k], s[:k], vh[:k]


def _weights(theta: Mapping[str, Tensor], layers: Sequence[str] | None) -> list[str]:
    if layers is None:
        return [k for k, v in theta.items() if v.ndim >= 2 and v.is_floating_point()]
    missing = [k for k in layers if k not in theta]
    if missing:
        raise ValueError(f"layers {missing} are not in the state; weights with 2+ axes are e.g. "
                         f"{[k for k, v in theta.items() if v.ndim >= 2][:4]}")
    return list(layers)


@torch.no_grad()
def singular_vector_alignment(
    theta_a: Mapping[str, Tensor],
    theta_b: Mapping[str, Tensor],
    alignment: Alignment,
    spec: PermutationSpec,
    *,
    layers: Sequence[str] | None = None,
    top_k: int | None = None,
) -> SingularAlignment:
    """Cosines between matching singular vectors of A and B, before and after ``alignment``.

    Parameters
    ----------
    theta_a, theta_b : dict[str, Tensor]
        State or parameter dicts.
    alignment : Alignment
        Permutations of B (e.g. from :func:`weight_matching`).
    spec : PermutationSpec
    layers : sequence of str, optional
        Weight names; every tensor with two or more axes by default.
    top_k : int, optional
        Keep the leading ``top_k`` singular directions per layer; all by default.

    Returns
    -------
    SingularAlignment

    References
    ----------
    Ito, Yamada & Kumagai, ICLR 2025.
    """
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be a positive integer or None; got {top_k}")
    names = _weights(theta_a, layers)
    permuted = alignment.apply(spec, {k: theta_b[k] for k in theta_b})
    out: dict[str, list] = {k: [] for k in ("sa", "sb", "lb", "la", "rb", "ra", "db", "da")}
    for name in names:
        wa, wb, wp = theta_a[name].cpu(), theta_b[name].cpu(), permuted[name].cpu()
        k = min(wa.shape[0], wa[0].numel()) if top_k is None else min(top_k, wa.shape[0], wa[0].numel())
        ua, sa, va = _svd(wa, k)
        ub, sb, vb = _svd(wb, k)
        up, _, vp = _svd(wp, k)
        out["sa"].append(sa.numpy())
        out["sb"].append(sb.numpy())
        out["lb"].append((ua * ub).sum(0).abs().numpy())
        out["la"].append((ua * up).sum(0).abs().numpy())
        out["rb"].append((va * vb).sum(1).abs().numpy())
        out["ra"].append((va * vp).sum(1).abs().numpy())
        out["db"].append(float((wa.double() - wb.double()).norm()))
        out["da"].append(float((wa.double() - wp.double()).norm()))
    return SingularAlignment(layers=tuple(names), singular_values_a=tuple(out["sa"]),
                             singular_values_b=tuple(out["sb"]), cos_left_before=tuple(out["lb"]),
                             cos_left_after=tuple(out["la"]), cos_right_before=tuple(out["rb"]),
                             cos_right_after=tuple(out["ra"]), distance_before=np.asarray(out["db"]),
                             distance_after=np.asarray(out["da"]))
