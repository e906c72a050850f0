"""The generic, seeded transforms ``load`` applies to every dataset.

In order: check the loader's arrays → hold out a test split (when the source has
none; stratified for classification) → standardise with training statistics (when
the source asks) → keep ``train_fraction`` of the training split → replace
``label_noise`` of the training labels by another class.

Each stage draws from its own stream, ``SeedSequence([spec.seed, stage])``, so
changing one knob never reshuffles another: the split is the same for every
``train_fraction`` and ``label_noise``, and smaller training fractions are subsets
of larger ones.
"""

from __future__ import annotations

import numpy as np
import torch

from engine.config import DatasetSpec
from engine.data.dataset import Dataset, DatasetError, SourceData

__all__ = [
    "assemble",
    "flip_labels",
    "split_indices",
    "subsample_indices",
]

_STAGES = {"split": 1, "train_fraction": 2, "label_noise": 3}


def stage_rng(seed: int, stage: str) -> np.random.Generator:
    """The random stream of one transform stage for ``seed``."""
    return np.random.default_rng(np.random.SeedSequence([seed, _STAGES[stage]]))


def split_indices(
    n: int, test_size: float, rng: np.random.Generator, labels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled ``(train, test)`` index arrays; stratified when ``labels`` are given.

    The test split has ``round(test_size * n)`` samples (at least one, and at least
    one sample is left to train on). Stratification gives each class its share of
    the test split by largest remainder, so class proportions differ from the
    whole set's by less than one sample per class.
    """
    if n < 2:
        raise DatasetError(f"a train/test split needs at least 2 samples; the data has {n}")
    n_test = min(max(round(test_size * n), 1), n - 1)
    if labels is None:
        perm = rng.permutation(n)
        return perm[n_test:], perm[:n_test]
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * n_test / n
    per_class = np.floor(exact).astype(int)
    leftover = n_test - per_class.sum()
    per_class[np.argsort(-(exact - per_class), kind="stable")[:leftover]] += 1
    train, test = [], []
    for c, k in zip(classes, per_class):
        members = rng.permutation(np.flatnonzero(labels == c))
        test.append(members[:k])
        train.append(members[k:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def subsample_indices(n: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``max(1, round(fraction * n))`` of ``n`` samples, nested across fractions."""
    k = max(1, round(fraction * n))
    return np.sort(rng.permutation(n)[:k])


def flip_labels(
    y: np.ndarray, share: float, n_classes: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Replace ``round(share * len(y))`` labels by a uniformly random *other* class.

    Returns the new labels and the sorted indices that were changed.
    """
    if n_classes < 2:
        raise DatasetError(f"label_noise needs at least 2 classes; the data has {n_classes}")
    n_flip = round(share * len(y))
    flipped = np.sort(rng.choice(len(y), size=n_flip, replace=False))
    shift = rng.integers(1, n_classes, size=n_flip)  # never 0: the new class differs
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + shift) % n_classes
    return noisy, flipped


def assemble(name: str, spec: DatasetSpec, source: SourceData) -> Dataset:
    """Apply the generic transforms to a loader's arrays and return tensors."""
    x, y, x_test, y_test = _checked_arrays(name, source)
    n_classes = _n_classes(name, source, y, y_test)
    if x_test is None:
        strata = y if source.task == "classification" else None
        train, test = split_indices(len(y), spec.test_size, stage_rng(spec.seed, "split"), strata)
        x, y, x_test, y_test = x[train], y[train], x[test], y[test]
    if source.standardize:
        x, x_test = _standardize(x, x_test)
    normalization = None
    if source.channel_norm:
        x, x_test, normalization = _normalize_channels(name, x, x_test, source.channel_stats)
    if spec.train_fraction < 1.0:
        keep = subsample_indices(len(y), spec.train_fraction, stage_rng(spec.seed, "train_fraction"))
        x, y = x[keep], y[keep]
    if spec.label_noise > 0.0:
        if source.task != "classification":
            raise DatasetError(
                f"label_noise={spec.label_noise} needs a classification dataset; {name!r} is a {source.task} "
                "dataset. Set label_noise=0 (or add target noise with the dataset's own 'noise' option)."
            )
        y, _ = flip_labels(y, spec.label_noise, n_classes, stage_rng(spec.seed, "label_noise"))
    return _to_dataset(name, spec, source, n_classes, (x, y, x_test, y_test), normalization)


def _checked_arrays(name: str, source: SourceData):
    x, y = np.asarray(source.x), np.asarray(source.y)
    has_test = source.x_test is not None
    if has_test != (source.y_test is not None):
        raise DatasetError(f"loader of {name!r} returned only one of x_test / y_test; give both or neither")
    x_test = np.asarray(source.x_test) if has_test else None
    y_test = np.asarray(source.y_test) if has_test else None
    if source.task not in ("classification", "regression", "sequence"):
        raise DatasetError(f"loader of {name!r}: task must be 'classification', 'regression' or 'sequence'; "
                           f"got {source.task!r}")
    for part, (xs, ys) in {"train": (x, y), "test": (x_test, y_test)}.items():
        if xs is None:
            continue
        if len(xs) != len(ys):
            raise DatasetError(f"{name!r} {part} split: x has {len(xs)} rows but y has {len(ys)}")
        if source.task == "classification" and (ys.ndim != 1 or not np.issubdtype(ys.dtype, np.integer)):
            raise DatasetError(
                f"{name!r} {part} labels must be a 1-D integer array of class ids; got {ys.dtype} of shape {ys.shape}"
            )
        if source.task == "sequence" and (ys.ndim != 2 or not np.issubdtype(ys.dtype, np.integer)
                                          or source.vocab_size is None):
            raise DatasetError(f"{name!r} {part} targets of a sequence data set must be integer token ids (N, T) "
                               f"with vocab_size set; got {ys.dtype} of shape {ys.shape}, vocab_size "
                               f"{source.vocab_size}")
    for part, arr in {"x": x, "x_test": x_test}.items():
        if arr is not None and arr.dtype.kind not in "biuf":
            raise DatasetError(f"{name!r}: {part} must be numeric; got dtype {arr.dtype}")
        if arr is not None and arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise DatasetError(f"{name!r}: {part} has {(~np.isfinite(arr)).sum()} NaN/inf values")
    if source.task == "regression":
        for part, arr in {"y": y, "y_test": y_test}.items():
            if arr is None:
                continue
            if arr.ndim not in (1, 2) or arr.dtype.kind not in "biuf" or not np.isfinite(arr.astype(float)).all():
                raise DatasetError(
                    f"{name!r}: regression targets {part} must be finite numbers of shape (N,) or (N, D); "
                    f"got {arr.dtype} of shape {arr.shape}"
                )
    if x_test is not None and x_test.shape[1:] != x.shape[1:]:
        raise DatasetError(f"{name!r}: x_train samples have shape {x.shape[1:]} but x_test samples {x_test.shape[1:]}")
    return x, y, x_test, y_test


def _n_classes(name: str, source: SourceData, y: np.ndarray, y_test: np.ndarray | None) -> int:
    if source.task == "sequence":
        _check_tokens(name, source.vocab_size, (y,) if y_test is None else (y, y_test))
        return int(source.vocab_size)
    if source.task != "classification":
        return int(1 if y.ndim == 1 else y.shape[1])
    labels = y if y_test is None else np.concatenate([y, y_test])
    if labels.size and labels.min() < 0:
        raise DatasetError(f"{name!r}: class ids must be >= 0; found {labels.min()}")
    if source.class_names is not None:
        n = len(source.class_names)
        if labels.size and labels.max() >= n:
            raise DatasetError(f"{name!r}: label {labels.max()} is out of range for {n} class names")
        return n
    return int(labels.max()) + 1 if labels.size else 0


def _standardize(x: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0, keepdims=True)
    std = x.std(axis=0, keepdims=True)
    std = np.where(std > 0, std, 1.0)  # constant features stay constant (0) instead of NaN
    return (x - mean) / std, (x_test - mean) / std


def _normalize_channels(name, x, x_test, stats):
    """Per-channel ``(x - mean) / std`` over axis 1 of ``(N, C, ...)`` inputs, with the training
    split's statistics unless fixed ``stats`` are given; returns the arrays and the record."""
    if x.ndim < 3:
        raise DatasetError(f"{name!r}: per-channel normalisation needs images (N, C, H, W); got shape {x.shape}")
    axes = (0, *range(2, x.ndim))
    if stats is None:
        mean = x.mean(axis=axes, dtype=np.float64)
        std = x.std(axis=axes, dtype=np.float64)
    else:
        mean, std = np.asarray(stats[0], np.float64), np.asarray(stats[1], np.float64)
        if mean.shape != (x.shape[1],) or std.shape != (x.shape[1],):
            raise DatasetError(f"{name!r}: the recorded normalisation has {mean.size} channels but the images "
                               f"have {x.shape[1]}; register the data set again")
    std = np.where(std > 0, std, 1.0)  # a constant channel stays constant (0) instead of NaN
    shape = (1, -1) + (1,) * (x.ndim - 2)
    m, s = mean.reshape(shape).astype(np.float32), std.reshape(shape).astype(np.float32)
    record = {"mean": [float(v) for v in mean], "std": [float(v) for v in std], "axis": 1}
    return (x - m) / s, (x_test - m) / s, record


def _x_tensor(a: np.ndarray, tokens: bool) -> torch.Tensor:
    # torch.tensor copies: loaders may hand out views of cached arrays, which must stay intact
    return torch.tensor(a, dtype=torch.int64 if tokens else torch.float32)


def _y_tensor(a: np.ndarray, task: str) -> torch.Tensor:
    if task in ("classification", "sequence"):
        return torch.tensor(a, dtype=torch.int64)  # (N,) class ids or (N, T) token ids
    return torch.tensor(a.reshape(len(a), -1), dtype=torch.float32)  # (N, D)


def _check_tokens(name: str, vocab_size: int, parts: tuple[np.ndarray, ...]) -> None:
    for part in parts:
        if not np.issubdtype(part.dtype, np.integer):
            raise DatasetError(f"{name!r}: token inputs must be integers; got {part.dtype}")
        if part.size and (part.min() < 0 or part.max() >= vocab_size):
            raise DatasetError(f"{name!r}: tokens must lie in [0, {vocab_size}); got {part.min()}..{part.max()}")


def _to_dataset(name, spec, source, n_classes, arrays, normalization=None) -> Dataset:
    x, y, x_test, y_test = arrays
    tokens = source.vocab_size is not None
    if tokens:
        _check_tokens(name, source.vocab_size, (x, x_test))
    input_shape = tuple(int(s) for s in x.shape[1:])
    n_features = int(np.prod(input_shape))
    feature_names = (
        list(source.feature_names) if source.feature_names is not None else [f"x{i}" for i in range(n_features)]
    )
    if len(feature_names) != n_features:
        raise DatasetError(f"{name!r}: {len(feature_names)} feature names for {n_features} features")
    class_names = []
    if source.task == "classification":
        class_names = list(source.class_names) if source.class_names is not None else [str(c) for c in range(n_classes)]
    return Dataset(
        name=name,
        x_train=_x_tensor(x, tokens),
        y_train=_y_tensor(y, source.task),
        x_test=_x_tensor(x_test, tokens),
        y_test=_y_tensor(y_test, source.task),
        input_shape=input_shape,
        task=source.task,
        n_outputs=n_classes,
        feature_names=feature_names,
        class_names=class_names,
        vocab_size=source.vocab_size,
        spec=spec,
        normalization=normalization,
    )
