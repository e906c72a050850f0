"""Synthetic datasets generated from ``spec.seed``: moons, spirals, Gaussian mixtures,
teacher–student regression, modular arithmetic, Chen's process (RID's ground truth) and
next-token sequences of a Markov chain (for tiny language models).

Each generator draws from its own ``np.random.Generator``; nothing touches the
global RNG. Inputs are not standardised (their scale is part of the problem).
"""

from __future__ import annotations

import numpy as np

from engine.config import DatasetSpec
from engine.data.dataset import SourceData, check_option

__all__ = ["gaussians", "markov", "modular", "moons", "rid_chen", "spirals", "teacher"]


def _rng(seed: int, stream: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, 1000 + stream]))


def _class_sizes(n_samples: int, n_classes: int) -> np.ndarray:
    """``n_samples`` split as evenly as possible over the classes (first classes get the remainder)."""
    return np.full(n_classes, n_samples // n_classes) + (np.arange(n_classes) < n_samples % n_classes)


def _check_size(name: str, n_samples: int, n_classes: int = 1) -> None:
    check_option(2 * n_classes <= n_samples <= 1_000_000, name, "n_samples", n_samples,
                 f"between {2 * n_classes} (two per class) and 1000000")


def moons(spec: DatasetSpec, *, n_samples: int = 1000, noise: float = 0.1) -> SourceData:
    """Two interleaving half circles (scikit-learn's ``make_moons``); ``noise`` is the Gaussian std."""
    from sklearn.datasets import make_moons

    _check_size("moons", n_samples, 2)
    check_option(noise >= 0, "moons", "noise", noise, ">= 0")
    x, y = make_moons(n_samples=n_samples, noise=noise, random_state=int(_rng(spec.seed).integers(2**31)))
    return SourceData(x=x, y=y.astype(np.int64), task="classification", feature_names=["x0", "x1"])


def spirals(
    spec: DatasetSpec, *, n_samples: int = 1000, n_classes: int = 3, noise: float = 0.05, turns: float = 1.0
) -> SourceData:
    """``n_classes`` interleaved spiral arms in the plane.

    Arm ``k`` is ``r (cos θ, sin θ)`` with ``r ~ U(0, 1)``, ``θ = 2π (turns·r + k/K)``,
    plus isotropic Gaussian noise of std ``noise``.
    """
    _check_size("spirals", n_samples, n_classes)
    check_option(2 <= n_classes <= 100, "spirals", "n_classes", n_classes, "between 2 and 100")
    check_option(noise >= 0, "spirals", "noise", noise, ">= 0")
    check_option(0 < turns <= 20, "spirals", "turns", turns, "in (0, 20]")
    rng = _rng(spec.seed)
    y = np.repeat(np.arange(n_classes), _class_sizes(n_samples, n_classes))  # (N,)
    r = rng.uniform(0.0, 1.0, size=n_samples)
    theta = 2 * np.pi * (turns * r + y / n_classes)
    x = r[:, None] * np.stack([np.cos(theta), np.sin(theta)], axis=1)  # (N, 2)
    x += noise * rng.standard_normal(x.shape)
    perm = rng.permutation(n_samples)
    return SourceData(x=x[perm], y=y[perm], task="classification", feature_names=["x0", "x1"])


def gaussians(
    spec: DatasetSpec,
    *,
    n_samples: int = 1000,
    n_classes: int = 3,
    n_features: int = 2,
    cluster_std: float = 1.0,
    separation: float = 3.0,
) -> SourceData:
    """A mixture of ``n_classes`` isotropic Gaussians, one per class, equal weights.

    Centres are drawn from ``N(0, separation² I)``; points are centre + ``N(0, cluster_std² I)``.
    """
    _check_size("gaussians", n_samples, n_classes)
    check_option(2 <= n_classes <= 1000, "gaussians", "n_classes", n_classes, "between 2 and 1000")
    check_option(1 <= n_features <= 10_000, "gaussians", "n_features", n_features, "between 1 and 10000")
    check_option(cluster_std > 0, "gaussians", "cluster_std", cluster_std, "> 0")
    check_option(separation >= 0, "gaussians", "separation", separation, ">= 0")
    rng = _rng(spec.seed)
    centres = separation * rng.standard_normal((n_classes, n_features))  # (K, D)
    y = np.repeat(np.arange(n_classes), _class_sizes(n_samples, n_classes))  # (N,)
    x = centres[y] + cluster_std * rng.standard_normal((n_samples, n_features))  # (N, D)
    perm = rng.permutation(n_samples)
    return SourceData(
        x=x[perm], y=y[perm], task="classification", feature_names=[f"x{i}" for i in range(n_features)]
    )


def teacher(
    spec: DatasetSpec,
    *,
    n_samples: int = 1000,
    n_features: int = 10,
    n_targets: int = 1,
    teacher: str = "linear",
    hidden: int = 32,
    noise: float = 0.1,
) -> SourceData:
    """Teacher–student regression: ``x ~ N(0, I)``, ``y = f(x) + noise·ε``.

    ``teacher="linear"``: ``f(x) = W x / √D``; ``teacher="mlp"``: a random one-hidden-layer
    tanh network, ``f(x) = V tanh(W x / √D) / √hidden``. Both give targets of roughly
    unit variance, so ``noise`` is a noise-to-signal ratio. The teacher's weights depend
    on the seed only (not on ``n_samples``). Targets have shape ``(N, n_targets)``.
    """
    _check_size("teacher", n_samples)
    check_option(1 <= n_features <= 10_000, "teacher", "n_features", n_features, "between 1 and 10000")
    check_option(1 <= n_targets <= 1000, "teacher", "n_targets", n_targets, "between 1 and 1000")
    check_option(teacher in ("linear", "mlp"), "teacher", "teacher", teacher, "'linear' or 'mlp'")
    check_option(1 <= hidden <= 10_000, "teacher", "hidden", hidden, "between 1 and 10000")
    check_option(noise >= 0, "teacher", "noise", noise, ">= 0")
    weights, inputs, eps = _rng(spec.seed, 0), _rng(spec.seed, 1), _rng(spec.seed, 2)
    x = inputs.standard_normal((n_samples, n_features))  # (N, D)
    if teacher == "linear":
        w = weights.standard_normal((n_features, n_targets))
        f = x @ w / np.sqrt(n_features)  # (N, T)
    else:
        w = weights.standard_normal((n_features, hidden))
        v = weights.standard_normal((hidden, n_targets))
        f = np.tanh(x @ w / np.sqrt(n_features)) @ v / np.sqrt(hidden)  # (N, T)
    y = f + noise * eps.standard_normal(f.shape)
    return SourceData(
        x=x, y=y.astype(np.float32), task="regression", feature_names=[f"x{i}" for i in range(n_features)]
    )


def modular(spec: DatasetSpec, *, p: int = 97) -> SourceData:
    """Modular addition ``(a + b) mod p`` over all ``p²`` pairs (Power et al. 2022, grokking).

    Inputs are the token pairs ``(a, b)`` (int64, shape ``(2,)``, ``vocab_size = p``);
    the label is ``(a + b) mod p`` (``p`` classes). The pairs are split by
    ``spec.test_size``: grokking experiments train on a minority of the pairs, e.g.
    ``test_size=0.7`` (30% train) — set it explicitly, the default (0.25) is the
    generic one. References: Power et al., "Grokking: Generalization Beyond
    Overfitting on Small Algorithmic Datasets", 2022.
    """
    check_option(2 <= p <= 1000, "modular", "p", p, "between 2 and 1000 (p² pairs are generated)")
    a, b = np.divmod(np.arange(p * p), p)
    x = np.stack([a, b], axis=1).astype(np.int64)  # (p², 2)
    return SourceData(
        x=x,
        y=(a + b) % p,
        task="classification",
        feature_names=["a", "b"],
        class_names=[str(c) for c in range(p)],
        vocab_size=p,
    )


def rid_chen(spec: DatasetSpec, *, n_samples: int = 1000, n_features: int = 10) -> SourceData:
    """Chen's data-generating process, a ground-truth check of variable importance in RID.

    ``X_1 … X_D ~ U(−2.5, 2.5)`` independently and
    ``Y = 1[−2 sin(X_1) + max(X_2, 0) + X_3 + exp(−X_4) ≥ 2.048]``: only the first four
    features matter, the other ``D − 4`` are noise (as recalled from Donnelly et al.,
    "The Rashomon Importance Distribution", NeurIPS 2023, §5, with D = 10).
    """
    _check_size("rid_chen", n_samples, 2)
    check_option(4 <= n_features <= 1000, "rid_chen", "n_features", n_features, "between 4 and 1000")
    x = _rng(spec.seed).uniform(-2.5, 2.5, size=(n_samples, n_features))  # (N, D)
    score = -2 * np.sin(x[:, 0]) + np.maximum(x[:, 1], 0) + x[:, 2] + np.exp(-x[:, 3])
    return SourceData(x=x, y=(score >= 2.048).astype(np.int64), task="classification",
                      feature_names=[f"X{i + 1}" for i in range(n_features)])


def markov(spec: DatasetSpec, *, n_samples: int = 1000, length: int = 16, vocab: int = 16,
           concentration: float = 0.2) -> SourceData:
    """Next-token prediction on sequences of a random first-order Markov chain.

    A transition matrix with rows drawn from ``Dirichlet(concentration)`` over ``vocab``
    tokens (small concentrations make a few successors likely: a learnable chain) generates
    ``n_samples`` sequences of ``length + 1`` tokens from a uniform start. Inputs are the
    first ``length`` tokens ``(N, T)``, targets the next token at every position ``(N, T)``:
    a causal language model's logits ``(N, T, vocab)`` against them give the token-level
    cross-entropy (``TrainSpec.loss = "token_cross_entropy"``, or ``"auto"``), whose floor is
    the chain's entropy rate.
    """
    _check_size("markov", n_samples)
    check_option(2 <= length <= 1024, "markov", "length", length, "between 2 and 1024")
    check_option(2 <= vocab <= 4096, "markov", "vocab", vocab, "between 2 and 4096")
    check_option(0 < concentration <= 100, "markov", "concentration", concentration, "in (0, 100]")
    check_option(n_samples * (length + 1) <= 20_000_000, "markov", "n_samples", n_samples,
                 f"at most {20_000_000 // (length + 1)} for length {length} (20M tokens)")
    rng = _rng(spec.seed)
    transition = rng.dirichlet(np.full(vocab, concentration), size=vocab)  # (V, V), rows sum to 1
    cumulative = np.cumsum(transition, axis=1)
    cumulative[:, -1] = 1.0  # no token past the end from rounding
    tokens = np.empty((n_samples, length + 1), dtype=np.int64)
    tokens[:, 0] = rng.integers(0, vocab, size=n_samples)
    u = rng.random((n_samples, length))
    for t in range(length):  # (N,) per step: inverse-CDF sampling of each row's successor
        tokens[:, t + 1] = (u[:, t, None] > cumulative[tokens[:, t]]).sum(axis=1)
    return SourceData(x=tokens[:, :-1], y=tokens[:, 1:], task="sequence", vocab_size=vocab,
                      feature_names=[f"t{i}" for i in range(length)])
