"""Naive versus aligned paths between two models: the comparison the Connectivity page shows.

:func:`align_models` dispatches to one alignment method; :func:`compare_paths` aligns
``theta_b`` to ``theta_a`` by each requested method, confirms that every permuted
``theta_b`` computes the same outputs as the original (:func:`apply_alignment` raises
otherwise, so no barrier of a broken permutation is ever reported), and interpolates
each pair for every BatchNorm mode and split asked for.

References
----------
Ainsworth et al., "Git Re-Basin", ICLR 2023; Entezari et al., ICLR 2022;
Jordan et al., "REPAIR", ICLR 2023.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from engine.nets import PermutationSpec, permutation_spec
from engine.probes.connectivity.align import Alignment, apply_alignment_checked, weight_matching
from engine.probes.connectivity.align_features import activation_matching
from engine.probes.connectivity.align_ste import ste_matching
from engine.probes.connectivity.interpolation import InterpolationCurve, interpolate

__all__ = ["ALIGN_METHODS", "PathComparison", "align_models", "compare_paths"]

#: Alignment methods by short name -> label shown in figures.
ALIGN_METHODS = {
    "none": "naive",
    "weight": "weight matching",
    "activation": "activation matching",
    "ste": "straight-through estimator",
}


def align_models(
    model: nn.Module,
    theta_a: Mapping[str, Tensor],
    theta_b: Mapping[str, Tensor],
    data=None,
    *,
    method: str = "weight",
    spec: PermutationSpec | None = None,
    seed: int = 0,
    **options,
) -> Alignment:
    """Permutations aligning ``theta_b`` to ``theta_a`` by ``method``.

    Parameters
    ----------
    method : {"none", "weight", "activation", "ste"}
        Identity, :func:`weight_matching`, :func:`activation_matching` or
        :func:`ste_matching`; the last two need ``data``.
    options
        Passed to the method (e.g. ``max_iter``, ``n_samples``, ``steps``, ``budget_s``).
    """
    if method not in ALIGN_METHODS:
        raise ValueError(f"method must be one of {', '.join(ALIGN_METHODS)}; got {method!r}")
    spec = spec if spec is not None else permutation_spec(model)
    state_a = {**dict(model.named_buffers()), **dict(theta_a)}
    state_b = {**dict(model.named_buffers()), **dict(theta_b)}
    if method == "none":
        return Alignment.identity(spec, state_b)
    if method == "weight":
        return weight_matching(state_a, state_b, spec, seed=seed, **options)
    if data is None:
        raise ValueError(f"{ALIGN_METHODS[method]} needs data; pass data=(inputs, targets) or a Dataset")
    fn = activation_matching if method == "activation" else ste_matching
    return fn(model, state_a, state_b, data, spec, seed=seed, **options)


@dataclass(frozen=True)
class PathComparison:
    """Curves between A and B for several alignments, BN modes and splits.

    Attributes
    ----------
    curves : dict[tuple[str, str, str], InterpolationCurve]
        ``(method, bn, split) -> curve``; ``method`` as in :data:`ALIGN_METHODS`.
    alignments : dict[str, Alignment]
        The alignment of each method.
    check_max_diff : dict[str, float]
        Largest output change of B under each method's permutation (the self-check).
    """

    curves: dict[tuple[str, str, str], InterpolationCurve]
    alignments: dict[str, Alignment]
    check_max_diff: dict[str, float]
    seconds: float = 0.0


def compare_paths(
    model: nn.Module,
    theta_a: Mapping[str, Tensor],
    theta_b: Mapping[str, Tensor],
    data,
    *,
    methods: Sequence[str] = ("none", "weight"),
    bn: Sequence[str] = ("running",),
    splits: Sequence[str] = ("train", "test"),
    alphas=25,
    seed: int = 0,
    align_options: Mapping[str, dict] | None = None,
    **interpolate_options,
) -> PathComparison:
    """Interpolation curves of the naive and the aligned pairs, checked before they are computed.

    Parameters
    ----------
    model, theta_a, theta_b : as in :func:`engine.probes.connectivity.interpolation.interpolate`
    data : Dataset-like (both splits) or a pair (used for every "split", labelled "given")
        Alignment methods that need data use the train split.
    methods : sequence of {"none", "weight", "activation", "ste"}
    bn : sequence of {"running", "reset"}
    splits : sequence of {"train", "test"}
    alphas : int or array-like
    seed : int
    align_options : dict, optional
        Method -> keyword options for :func:`align_models`.
    interpolate_options
        Passed to :func:`interpolate` (``bn_batches``, ``loss_fn``, ...).

    Returns
    -------
    PathComparison
    """
    t0 = time.perf_counter()
    spec = permutation_spec(model)
    pair_given = not hasattr(data, "x_train")
    splits = ("train",) if pair_given else tuple(splits)
    curves, alignments, diffs = {}, {}, {}
    for method in methods:
        opts = dict((align_options or {}).get(method, {}))
        al = align_models(model, theta_a, theta_b, data, method=method, spec=spec, seed=seed, **opts)
        permuted, diffs[method] = apply_alignment_checked(model, theta_b, al, data, spec=spec)  # raises if changed
        alignments[method] = al
        for mode in bn:
            for split in splits:
                curves[(method, mode, split if not pair_given else "given")] = interpolate(
                    model, theta_a, permuted, data, alphas=alphas, split=split, bn=mode, seed=seed,
                    label=ALIGN_METHODS[method], **interpolate_options)
    return PathComparison(curves, alignments, diffs, time.perf_counter() - t0)
