"""A tiny trained and probed zoo (2 learning rates x 2 seeds, width-8 MLPs on moons), built once per session.

The template store is trained through the real worker path and swept with the ``sweep.cell``
probe at its default parameters (what the Phases page asks for), then closed; each test module
gets its own copy, because a store has a single owner.
"""

from __future__ import annotations

import shutil
import sys

import pytest

import store
from engine.config import load_sweep
from engine.jobs import Dispatcher, probe_phase_cells

TINY = {
    "name": "tiny <script>alert(1)</script>",
    "base": {"dataset": {"name": "moons"}, "arch": {"name": "mlp", "width": 8}, "batch_size": 32,
             "steps": 40, "checkpoints": "linear:2", "optim": {"name": "sgd"}},
    "grid": {"lr": [0.05, 0.2], "seed": [0, 1]},
    "phases": {"temperature": "lr/batch_size", "load": "lr"},
}


def _train(path, sweep: dict, *, probe: bool = False):
    """A closed store at ``path`` with ``sweep`` trained (and, with ``probe``, every cell probed here)."""
    st = store.open_store(path)
    disp = Dispatcher(st)
    try:
        zoo_id, job_id = disp.submit_sweep(load_sweep(sweep))
        (job,) = disp.run_until_done([job_id])
        assert job["status"] == "done", job
        if probe:
            assert [r.status.state for r in probe_phase_cells(disp, zoo_id, compute_here=True)] == ["done", "done"]
    finally:
        disp.stop(kill_workers=True)
        st.close()
    return path


@pytest.fixture(scope="session")
def probed_template(tmp_path_factory):
    """A closed store: TINY trained, every cell probed with the default ``sweep.cell`` parameters."""
    return _train(tmp_path_factory.mktemp("phases") / "store", TINY, probe=True)


def copy_store(template, tmp_path):
    dest = tmp_path / "store"
    shutil.copytree(template, dest, ignore=shutil.ignore_patterns("owner.json"))
    return dest


@pytest.fixture(scope="module")
def zoo(probed_template, tmp_path_factory):
    """``(store, dispatcher, zoo_id)`` on a copy of the probed template, owned by this process."""
    st = store.open_store(copy_store(probed_template, tmp_path_factory.mktemp("zoo")))
    disp = Dispatcher(st)
    try:
        yield st, disp, st.list_zoos()["zoo_id"].iloc[0]
    finally:
        disp.stop(kill_workers=True)
        st.close()


MODULAR = {
    "name": "tiny-grok",
    "base": {"dataset": {"name": "modular", "test_size": 0.5, "options": {"p": 7}},
             "arch": {"name": "mlp", "width": 16, "depth": 1}, "batch_size": 16, "steps": 60,
             "checkpoints": "linear:3", "optim": {"name": "adamw", "lr": 0.01, "weight_decay": 1.0}},
    "grid": {"seed": [0]},
}


@pytest.fixture(scope="session")
def modular_template(tmp_path_factory):
    """A closed store holding one tiny modular-addition run (for the Grokking tab; not a grokking result)."""
    return _train(tmp_path_factory.mktemp("modular") / "store", MODULAR)


sys.modules["phases_conftest"] = sys.modules[__name__]  # see tests/app/conftest.py: imported by that name
