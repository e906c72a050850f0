"""Typed probe results: each built-in kind declares its loader, stored keys are unchanged, and a status
hands pages the frozen dataclasses (decoded once), never dicts."""

from dataclasses import dataclass

import numpy as np
import pytest

from engine.jobs.builtin_probes.convert import Packed
from engine.jobs.builtin_probes.landscape import SpectrumResult
from engine.jobs.builtin_probes.phases import PhaseCellResult, WeightNorms
from engine.jobs.probe_job import ProbeResult, ProbeStatus, get_probe_kind, probe_kinds, register_probe
from engine.probes.landscape import HessianEigs, SpectralDensity, TraceEstimate


def test_every_builtin_probe_kind_declares_a_typed_result():
    builtin = [n for n in probe_kinds() if get_probe_kind(n).run.__module__.startswith("engine.jobs.builtin_probes")]
    assert len(builtin) >= 17  # other tests may register kinds of their own in this process
    for name in builtin:
        if name == "evaluate":  # loss/accuracy lists read by tests and the CLI, not by a page
            continue
        loader = get_probe_kind(name).result
        assert hasattr(loader, "from_stored") and getattr(loader, "__name__", "") != "_Untyped", name


def _spectrum_as_stored_before() -> ProbeResult:
    """A ``curvature.spectrum`` result with the keys the probe has always written."""
    summary = {"top.n_products": 40, "top.converged": True, "top.n_samples": 100, "top.bn": "running",
               "top.seconds": 0.5, "trace.trace": 3.0, "trace.stderr": 0.1, "trace.n_probes": 8,
               "trace.method": "hutchinson", "trace.n_samples": 100, "trace.bn": "running", "trace.seconds": 0.2,
               "density.sigma": 0.01, "density.trace": 3.0, "density.seconds": 0.3,
               "density.n_iter": 8, "density.n_runs": 1, "density.n_params": 10, "density.n_products": 8,
               "density.n_samples": 100, "density.bn": "running"}
    arrays = {"top.eigenvalues": np.array([2.0, 1.0]), "top.residuals": np.array([1e-6, 1e-5]),
              "trace.samples": np.ones(8), "density.grid": np.linspace(0, 1, 5), "density.density": np.ones(5),
              "density.nodes": np.ones((1, 8)), "density.weights": np.ones((1, 8)) / 8}
    return ProbeResult(summary, arrays)


def test_a_stored_spectrum_loads_typed_and_stores_back_under_the_same_keys():
    stored = _spectrum_as_stored_before()
    spec = SpectrumResult.from_stored(stored)
    assert isinstance(spec.top, HessianEigs) and isinstance(spec.trace, TraceEstimate)
    assert isinstance(spec.density, SpectralDensity)
    assert spec.top.eigenvalues.tolist() == [2.0, 1.0] and spec.trace.trace == 3.0 and spec.density.n_iter == 8
    assert spec.top.eigenvectors.size == 0  # not stored
    again = spec.to_stored()
    assert again.summary == stored.summary and set(again.arrays) == set(stored.arrays)


def test_phase_cells_keep_nan_as_null_on_disk_and_metric_rows_for_the_finite_values():
    cell = PhaseCellResult(checkpoint_ids=("c0", "c1"), run_ids=("r0", "r1"), steps=(10, 10),
                           values={"test_loss": [0.5, float("nan")]}, cka_layers={}, barrier_kind="max_minus_linear",
                           align="weight")
    stored = cell.to_stored()
    assert stored.summary["values"] == {"test_loss": [0.5, None]}
    assert stored.metrics == [{"run_id": "r0", "step": 10, "split": "probe", "name": "test_loss", "value": 0.5}]
    back = PhaseCellResult.from_stored(stored)
    assert back.values["test_loss"][0] == 0.5 and np.isnan(back.values["test_loss"][1])
    assert WeightNorms.from_stored(WeightNorms(steps=(0, 5), norm=(1.0, 2.0)).to_stored()).norm == (1.0, 2.0)


@dataclass(frozen=True)
class _Slice:
    alphas: np.ndarray
    betas: np.ndarray | None
    label: str


def test_packed_turns_empty_optional_arrays_into_none():
    fmt = Packed(_Slice, optional=("betas",))
    stored = ProbeResult({"label": "x"}, {"alphas": np.arange(3.0), "betas": np.empty(0)})  # as older stores hold
    value = fmt.from_stored(stored)
    assert value.betas is None and value.alphas.tolist() == [0.0, 1.0, 2.0] and value.label == "x"
    full = fmt.from_stored(fmt.to_stored(_Slice(np.arange(2.0), np.ones(2), "y")))
    assert full.betas.tolist() == [1.0, 1.0]


def test_status_decodes_once_and_refuses_a_result_not_there():
    stored = _spectrum_as_stored_before()
    status = ProbeStatus("done", "k" * 64, result=stored, kind="curvature.spectrum")
    first = status.typed()
    assert isinstance(first, SpectrumResult)
    assert ProbeStatus("done", "k" * 64, result=stored, kind="curvature.spectrum").typed() is first  # decoded once
    assert repr(stored) == repr(_spectrum_as_stored_before())  # the memo is not part of the value
    with pytest.raises(ValueError, match=r"probe 'curvature.spectrum' \(kkkkkkkkkkkk\) is queued, not done"):
        ProbeStatus("queued", "k" * 64, kind="curvature.spectrum").typed()


def test_a_kind_registered_without_a_result_type_hands_back_the_stored_result():
    from pydantic import BaseModel

    class NoParams(BaseModel):
        pass

    def run(inputs, params, progress):
        return ProbeResult({"n": 1})

    register_probe("test.untyped_result", run, NoParams, n_checkpoints=(0, 0))
    stored = ProbeResult({"n": 1})
    assert ProbeStatus("done", "u" * 64, result=stored, kind="test.untyped_result").typed() is stored
