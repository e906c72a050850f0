"""A user's model code, as a factory named by import path (``importer_factories:tiny_mlp``)."""

from torch import nn


def tiny_mlp(hidden: int = 4) -> nn.Module:
    """Two inputs (moons), two classes."""
    return nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, 2))
