"""Plugin folders written by the tests: the user's own modules, and a torchvision stand-in.

``torchvision`` does not import on the CPU machines the suite runs on, so ``visionzoo.models``
is a stand-in with torchvision's calling convention (``resnet18(*, weights=None, num_classes=1000)``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from engine.nets import plugins

MY_MODELS = '''
import torch
from torch import nn


class WideNet(nn.Module):
    """A two-layer MLP on flattened inputs."""

    def __init__(self, in_features=40, width=8, n_classes=3):
        super().__init__()
        self.fc1 = nn.Linear(in_features, width)
        self.fc2 = nn.Linear(width, n_classes)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


class TupleNet(WideNet):
    """Returns (logits, hidden), as many research models do."""

    def forward(self, x):
        h = torch.relu(self.fc1(x.flatten(1)))
        return self.fc2(h), h


class DictNet(WideNet):
    def forward(self, x):
        return {"logits": self.fc2(torch.relu(self.fc1(x.flatten(1))))}


def raises(width=8):
    raise RuntimeError("width must be even")


def not_a_module(width=8):
    return [width]


def ask_weights(weights=None):
    return WideNet()
'''

VISIONZOO_MODELS = '''
import torch
from torch import nn


class ResNet(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.fc(torch.relu(self.bn1(self.conv1(x))).mean((2, 3)))


def resnet18(*, weights=None, progress=True, num_classes=1000):
    """torchvision.models.resnet18's signature: weights=None builds it randomly initialised."""
    if weights is not None:
        raise RuntimeError("would download weights")
    return ResNet(num_classes=num_classes)
'''


def write_plugins(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "my_models.py").write_text(MY_MODELS)
    pkg = folder / "visionzoo"
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text(VISIONZOO_MODELS)
    (folder / "brokenvision.py").write_text(
        'raise RuntimeError("operator torchvision::nms does not exist")\n')
    return folder


@pytest.fixture
def clean_plugins(monkeypatch):
    """Plugin configuration, sys.path and the test modules restored after the test."""
    monkeypatch.setenv(plugins.PLUGIN_PATHS_ENV, "")
    monkeypatch.setenv(plugins.PLUGIN_PACKAGES_ENV, "")
    monkeypatch.delenv(plugins.PLUGIN_PATHS_ENV)
    monkeypatch.delenv(plugins.PLUGIN_PACKAGES_ENV)
    monkeypatch.setattr(plugins, "_configured", None)
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in ("my_models", "visionzoo", "visionzoo.models", "brokenvision"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield monkeypatch


@pytest.fixture
def plugin_dir(tmp_path, clean_plugins) -> Path:
    """A plugin folder with my_models.py and the visionzoo stand-in, in force for this test."""
    folder = write_plugins(tmp_path / "models")
    plugins.use_plugins([folder], [*plugins.DEFAULT_PACKAGES])
    return folder


def count_factory_checks(monkeypatch) -> list:
    """The child processes of factory checks started from now on (one entry each)."""
    import subprocess

    started, popen = [], subprocess.Popen

    def counting(args, *rest, **kwargs):
        if "engine.nets.factory_check import main" in " ".join(map(str, args)):
            started.append(args)
        return popen(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", counting)
    return started


