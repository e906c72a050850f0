"""A population of models evaluated together: per-model scores, and explanation clouds across
groups of same-shaped models.

A zoo's models may not all share one architecture; each group of same-shaped models is one
stacked, vectorized pass (:func:`~engine.probes.rashomon.importance.variable_importance_cloud`),
and the groups' rows are put back in the population's order.

References
----------
.. [1] J. Dong, C. Rudin, "Exploring the cloud of variable importance for the set of all good
   models", Nature Machine Intelligence, 2020.
.. [2] S. Li, R. Wang, Q. Deng, A. Barnard, "Exploring the cloud of feature interaction scores
   in a Rashomon set", ICLR, 2024.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from .importance import ImportanceCloud, InteractionCloud, feature_interaction_cloud, variable_importance_cloud

__all__ = ["ModelGroup", "ModelScores", "explanation_clouds", "model_scores"]


@dataclass(frozen=True)
class ModelScores:
    """Loss, error and class probabilities of M models on N samples.

    Attributes
    ----------
    loss : np.ndarray
        Mean cross-entropy (classification) or mean squared error (regression), shape (M,), float64.
    error : np.ndarray or None
        1 − accuracy, shape (M,); None for regression.
    probs : np.ndarray or None
        Softmax probabilities, shape (M, N, C), float32; None for regression.
    """

    loss: np.ndarray
    error: np.ndarray | None
    probs: np.ndarray | None


def model_scores(outputs: Tensor, y: Tensor) -> ModelScores:
    """Per-model loss, error and probabilities from the models' outputs, computed in float64.

    Parameters
    ----------
    outputs : Tensor
        Logits (M, N, C), or predictions (M, N, ...) when ``y`` is a float regression target.
    y : Tensor
        int64 labels (N,), or float targets (N, ...).

    Returns
    -------
    ModelScores
    """
    out = outputs.double()
    if y.is_floating_point():
        loss = (out - y.reshape(y.shape[0], -1).double()).pow(2).flatten(1).mean(-1)  # (M,)
        return ModelScores(loss=loss.cpu().numpy(), error=None, probs=None)
    logp = torch.log_softmax(out, -1)  # (M, N, C)
    loss = -logp.gather(-1, y.expand(out.shape[0], -1)[..., None]).squeeze(-1).mean(-1)  # (M,)
    error = (out.argmax(-1) != y).double().mean(-1)  # (M,)
    return ModelScores(loss=loss.cpu().numpy(), error=error.cpu().numpy(), probs=logp.exp().float().cpu().numpy())


class ModelGroup(NamedTuple):
    """Models of one architecture and shapes: ``stacked_params`` name -> (G, ...), ``indices`` (G,) among all."""

    model: nn.Module
    stacked_params: Mapping[str, Tensor]
    indices: np.ndarray


def explanation_clouds(groups: Sequence[ModelGroup], data: tuple[Tensor, Tensor], *, n_models: int,
                       feature_names: Sequence[str], n_repeats: int = 3, fis_features: int = 6, seed: int = 0,
                       on_progress: Callable[[float, str], None] | None = None,
                       ) -> tuple[ImportanceCloud, InteractionCloud]:
    """Permutation-importance and feature-interaction clouds of every model of a population.

    Importance is the rise in loss when a feature is permuted (``metric="loss"``). Interaction
    scores FIS(i, j) are computed for all pairs of the ``fis_features`` features with the largest
    mean importance over the population, with the same permutations.

    Parameters
    ----------
    groups : sequence of ModelGroup
        The population split into same-shaped groups; their ``indices`` together cover
        ``range(n_models)``.
    data : (x, y)
        Tabular inputs x (N, D) and labels y (N,) (or float regression targets).
    n_models : int
        Size M of the population.
    feature_names : sequence of str
        D names.
    n_repeats : int, default 3
        Permutations per feature (importance) and per pair (FIS).
    fis_features : int, default 6
        FIS for all pairs of this many most important features (fewer when D is smaller).
    seed : int, default 0
        The permutations (scikit-learn's for ``random_state=seed``).
    on_progress : callable (fraction, message), optional
        Called before each group's pass, fraction in [0, 1).

    Returns
    -------
    (ImportanceCloud, InteractionCloud)
        Rows in the population's order: importances (M, D, R), FIS (M, P) with P pairs
        (P = 0 when D < 2).
    """
    report = on_progress or (lambda fraction, message: None)
    d = data[0].shape[1]
    imp, base = np.zeros((n_models, d, n_repeats)), np.zeros(n_models)
    for g, (model, stacked, idx) in enumerate(groups):
        report(0.5 * g / len(groups), f"importance cloud, group {g + 1}/{len(groups)}")
        cloud = variable_importance_cloud(model, stacked, data, n_repeats=n_repeats, seed=seed, metric="loss",
                                          feature_names=feature_names)
        imp[idx], base[idx] = cloud.importances, cloud.baseline
    mean = imp.mean(-1)  # (M, D)
    vic = ImportanceCloud(importances=imp, mean=mean, baseline=base, mcr_min=mean.min(0), mcr_max=mean.max(0),
                          feature_names=tuple(feature_names), metric="loss")
    top = np.sort(np.argsort(-mean.mean(0), kind="stable")[: min(fis_features, d)])
    pairs = np.array(list(combinations(top.tolist(), 2)), dtype=np.int64).reshape(-1, 2)  # (P, 2)
    fis, joint, single = np.zeros((n_models, len(pairs))), np.zeros((n_models, len(pairs))), np.zeros((n_models, d))
    for g, (model, stacked, idx) in enumerate(groups if len(pairs) else ()):
        report(0.5 + 0.5 * g / len(groups), f"interaction cloud, group {g + 1}/{len(groups)}")
        inter = feature_interaction_cloud(model, stacked, data, pairs=pairs, n_repeats=n_repeats, seed=seed,
                                          metric="loss", feature_names=feature_names)
        fis[idx], joint[idx], single[idx] = inter.fis, inter.joint, inter.single
    return vic, InteractionCloud(pairs=pairs, fis=fis, joint=joint, single=single,
                                 feature_names=tuple(feature_names), metric="loss")
