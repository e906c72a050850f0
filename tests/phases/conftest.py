"""A tiny trained zoo (2 learning rates x 2 seeds, width-8 MLPs on moons), trained once per module."""

from __future__ import annotations

import pytest

import store
from engine.config import load_sweep
from engine.jobs import Dispatcher

TINY = {
    "name": "tiny-phases",
    "base": {"dataset": {"name": "moons"}, "arch": {"name": "mlp", "width": 8}, "batch_size": 32,
             "steps": 40, "checkpoints": "linear:2", "optim": {"name": "sgd"}},
    "grid": {"lr": [0.05, 0.2], "seed": [0, 1]},
    "phases": {"temperature": "lr/batch_size", "load": "lr"},
}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """``(store, dispatcher, zoo_id)`` with TINY trained through the real worker path."""
    st = store.open_store(tmp_path_factory.mktemp("phases") / "store")
    disp = Dispatcher(st)
    try:
        zoo_id, job_id = disp.submit_sweep(load_sweep(TINY))
        (job,) = disp.run_until_done([job_id])
        assert job["status"] == "done", job
        yield st, disp, zoo_id
    finally:
        disp.stop(kill_workers=True)
        st.close()
