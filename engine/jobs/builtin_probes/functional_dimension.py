"""The functional-dimension probe: Jacobian rank at each input checkpoint, on one set of inputs.

``landscape.functional_dimension`` takes one or more checkpoints of one architecture (a
run's trajectory: initialisation through training) and returns a
:class:`~engine.probes.landscape.FunctionalDimensionCurve`. The rank and its bound also land
as ``metric`` rows (split ``"probe"``: ``functional_dimension``,
``functional_dimension_bound``) at each checkpoint's step, so a zoo's runs table carries them
as ``probe_functional_dimension`` columns beside the hyperparameters.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import BaseModel, Field

from engine.config import SPEC_CONFIG, Seed
from engine.probes.core import resolve_data
from engine.probes.landscape import FunctionalDimensionCurve, functional_dimension_over_training, scaling_symmetries

from ..probe_kinds import ProbeResult, register_probe
from .convert import Packed, pack

__all__ = ["FunctionalDimensionParams", "MAX_JACOBIAN_ENTRIES", "FUNCTIONAL_DIMENSION_RESULT"]

# rows x parameters of the float64 Jacobian one probe may form (4e7 entries: 320 MB)
MAX_JACOBIAN_ENTRIES = 40_000_000


class FunctionalDimensionParams(BaseModel):
    """Rank of the parameter-to-output Jacobian at every input checkpoint (Grigsby, Lindsey & Rolnick 2023)."""

    model_config = SPEC_CONFIG

    inputs: Literal["gaussian", "data"] = "gaussian"  # standard normal points (the paper's choice) or the run's data
    split: Literal["train", "test"] = "train"  # which split, for inputs="data"
    oversample: float = Field(2.0, ge=0.1, le=64.0)  # inputs = ceil(oversample * parameters / outputs)
    seed: Seed = 0


def _inputs(ck, p: FunctionalDimensionParams, n: int) -> torch.Tensor:
    ds = ck.dataset
    if p.inputs == "data":
        x, _ = resolve_data(ds, p.split, n_samples=n, seed=p.seed)
        return x
    if ds.vocab_size is not None:
        raise ValueError(f"dataset {ds.name!r} has token inputs, where Gaussian points mean nothing; "
                         "use inputs='data'")
    gen = torch.Generator().manual_seed(p.seed)
    return torch.randn(n, *ds.input_shape, generator=gen)  # (n, *input_shape)


def run_functional_dimension(inputs, p: FunctionalDimensionParams, progress) -> ProbeResult:
    first = inputs.load(0)
    archs = {inputs.refs[i].config.get("arch") == inputs.refs[0].config.get("arch") for i in range(len(inputs))}
    if archs != {True}:
        raise ValueError("landscape.functional_dimension compares checkpoints of one architecture; "
                         "the inputs hold several (ask once per run)")
    hidden = scaling_symmetries(first.model)  # refuses architectures whose scaling count is not known
    n_params = sum(t.numel() for t in first.params.values())
    n_out = first.dataset.n_outputs
    n = math.ceil(p.oversample * n_params / n_out)
    if n * n_out * n_params > MAX_JACOBIAN_ENTRIES:
        raise ValueError(f"{n} inputs x {n_out} outputs x {n_params} parameters is a {n * n_out * n_params:,}-entry "
                         f"Jacobian (limit {MAX_JACOBIAN_ENTRIES:,}); lower oversample or probe a smaller model")
    x = _inputs(first, p, n).to(inputs.device)
    progress(0.05, f"{len(x)} {p.inputs} inputs, {n_params} parameters")
    states = [first.state] + [inputs.load(i).state for i in range(1, len(inputs))]
    curve = functional_dimension_over_training(
        first.model, states, x, steps=[r.step for r in inputs.refs], source=p.inputs, n_hidden_neurons=hidden,
        progress=lambda f, msg: progress(0.05 + 0.95 * f, msg))
    summary, arrays = pack(curve)
    metrics = [{"run_id": ref.run_id, "step": int(ref.step), "split": "probe", "name": name, "value": float(value)}
               for ref, rank in zip(inputs.refs, curve.ranks)
               for name, value in (("functional_dimension", rank), ("functional_dimension_bound", curve.bound))]
    return ProbeResult(summary, arrays, metrics=metrics)


FUNCTIONAL_DIMENSION_RESULT = Packed(FunctionalDimensionCurve)  # the typed result: the engine's dataclass


register_probe("landscape.functional_dimension", run_functional_dimension, FunctionalDimensionParams,
               n_checkpoints=(1, None), description="functional dimension (Jacobian rank) and hidden symmetries",
               result=FUNCTIONAL_DIMENSION_RESULT)
