"""Shared cases: one small configuration per architecture variant (BN on/off, 1D/2D, tokens)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch

# Plugin folders written by the tests (my_models.py, a torchvision stand-in), as fixtures of this folder.
from plugin_fixtures import clean_plugins, plugin_dir  # noqa: E402,F401,I001

from engine.config import ArchSpec
from engine.nets import build


@dataclass(frozen=True)
class Case:
    name: str
    input_shape: tuple[int, ...]
    vocab_size: int | None = None
    options: dict = field(default_factory=dict)
    n_outputs: int = 3

    @property
    def has_bn(self) -> bool:
        return self.options.get("batchnorm", self.name == "resnet")

    def spec(self, **overrides) -> ArchSpec:
        return ArchSpec(name=self.name, width=8, depth=2, options=self.options, **overrides)

    def build(self, seed: int = 0, **overrides) -> torch.nn.Module:
        return build(self.spec(**overrides), self.input_shape, self.n_outputs, vocab_size=self.vocab_size, seed=seed)

    def inputs(self, batch: int = 6, seed: int = 0) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        if self.vocab_size is not None:
            return torch.randint(0, self.vocab_size, (batch, *self.input_shape), generator=g)
        return torch.randn((batch, *self.input_shape), generator=g)


CASES = [
    Case("mlp", (1, 12)),
    Case("mlp", (5,), options={"batchnorm": True, "activation": "tanh"}),
    Case("mlp", (2,), vocab_size=7, options={"activation": "gelu"}),
    Case("cnn1d", (2, 16)),
    Case("cnn1d", (1, 16), options={"batchnorm": True, "kernel_size": 5}),
    Case("cnn2d", (1, 8, 8)),
    Case("cnn2d", (3, 8, 8), options={"batchnorm": True, "pool": False}),
    Case("resnet", (1, 8, 8)),
    Case("resnet", (2, 12), options={"batchnorm": False}),
    Case("transformer", (3,), vocab_size=7, options={"heads": 2}),
]


def _case_id(case: Case) -> str:
    opts = ",".join(f"{k}={v}" for k, v in case.options.items())
    tokens = f"V{case.vocab_size}" if case.vocab_size else ""
    return f"{case.name}{case.input_shape}{tokens}{'[' + opts + ']' if opts else ''}".replace(" ", "")


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """These models are tiny: one intra-op thread (tests/conftest.py)."""
    yield


@pytest.fixture(params=CASES, ids=_case_id)
def case(request) -> Case:
    return request.param


@pytest.fixture(params=[c for c in CASES if c.has_bn], ids=_case_id)
def bn_case(request) -> Case:
    return request.param


@pytest.fixture
def tested_names() -> set[str]:
    return {c.name for c in CASES}
