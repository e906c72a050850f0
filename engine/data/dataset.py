"""The two data types of ``engine.data``: what a loader returns and what ``load`` returns.

A loader produces a :class:`SourceData` (NumPy arrays, possibly without a test
split); :func:`engine.data.load` turns it into a :class:`Dataset` (torch tensors,
split, subsampled and corrupted as the :class:`~engine.config.DatasetSpec` asks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from engine.config import DatasetSpec

__all__ = ["Dataset", "DatasetError", "SourceData", "check_option"]

Task = Literal["classification", "regression", "sequence"]


class DatasetError(ValueError):
    """Data that cannot be loaded as asked, with a message that says what to change."""


@dataclass(frozen=True)
class SourceData:
    """Arrays as a loader produces them, before the generic transforms of ``load``.

    Parameters
    ----------
    x, y : np.ndarray
        Inputs ``(N, *input_shape)`` and targets: int class ids ``(N,)`` for
        classification, floats ``(N,)`` or ``(N, D)`` for regression, int token ids
        ``(N, T)`` in ``[0, vocab_size)`` for sequences (the next token at every position).
    task : {"classification", "regression", "sequence"}
    x_test, y_test : np.ndarray or None
        A test split the source defines itself; when absent, ``load`` holds out
        ``spec.test_size`` of the samples (stratified for classification).
    feature_names : list of str, optional
        One name per input feature (flattened); generated when omitted.
    class_names : list of str, optional
        One name per class; defaults to ``"0" .. str(max label)``.
    vocab_size : int, optional
        Set for token inputs: ``x`` is then int64 with values in ``[0, vocab_size)``.
    standardize : bool
        Centre and scale every feature with the statistics of the full training
        split (before ``train_fraction``), so every run of a sweep sees the same
        test inputs.
    channel_norm : bool
        Images ``(N, C, H, W)``: centre and scale every channel with its mean and
        standard deviation over the training split (before ``train_fraction``), or
        with ``channel_stats`` when given.
    channel_stats : tuple of two lists, optional
        Fixed per-channel ``(mean, std)`` (a registered data set's, from its info), so
        every worker and probe normalises identically whatever its split seed.
    """

    x: np.ndarray
    y: np.ndarray
    task: Task
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    feature_names: list[str] | None = None
    class_names: list[str] | None = None
    vocab_size: int | None = None
    standardize: bool = False
    channel_norm: bool = False
    channel_stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None


@dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded dataset: train/test tensors plus what a model needs to know about them.

    ``x_*`` are float32 ``(N, *input_shape)`` (int64 tokens when ``vocab_size`` is
    set); ``y_*`` are int64 ``(N,)`` for classification, float32 ``(N, D)`` for
    regression and int64 ``(N, T)`` for sequences (``n_outputs`` is then the vocabulary).
    ``spec`` is the spec it was loaded from, so it can be reloaded. ``normalization``
    is the per-channel ``{"mean": [...], "std": [...]}`` applied to image inputs, if any.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    input_shape: tuple[int, ...]
    task: Task
    n_outputs: int
    feature_names: list[str] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)
    vocab_size: int | None = None
    spec: DatasetSpec = field(default_factory=DatasetSpec)
    normalization: dict | None = None

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.x_test.shape[0])

    def describe(self) -> str:
        """One line for logs and the dashboard, e.g. ``mnist1d: classification, 10 classes, ...``."""
        if self.task == "classification":
            what = f"classification, {self.n_outputs} classes"
        elif self.task == "sequence":
            what = f"next-token sequences of length {self.y_train.shape[-1]}, {self.n_outputs} token classes"
        else:
            what = f"regression, {self.n_outputs} target{'s' if self.n_outputs > 1 else ''}"
        tokens = f", tokens of vocab {self.vocab_size}" if self.vocab_size is not None else ""
        corruption = []
        if self.spec.train_fraction < 1.0:
            corruption.append(f"train_fraction={self.spec.train_fraction:g}")
        if self.spec.label_noise > 0.0:
            corruption.append(f"label_noise={self.spec.label_noise:g}")
        extra = f" ({', '.join(corruption)})" if corruption else ""
        return (
            f"{self.name}: {what}, input {self.input_shape}{tokens}, "
            f"{self.n_train} train / {self.n_test} test{extra}"
        )


def check_option(ok: bool, dataset: str, option: str, value: object, requirement: str) -> None:
    """Raise a :class:`DatasetError` naming the option, its value and what it must be."""
    if not ok:
        raise DatasetError(f"option {option!r} of dataset {dataset!r} must be {requirement}; got {value!r}")
