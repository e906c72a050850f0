import contextlib

import pytest

import store
from engine.config import load_sweep
from engine.jobs import Dispatcher


def tiny_sweep(steps: int = 30, name: str = "tiny", **base):
    return load_sweep({
        "name": name,
        "base": {"dataset": {"name": "moons"}, "arch": {"name": "mlp", "width": 8}, "batch_size": 32,
                 "steps": steps, "checkpoints": "linear:3", **base},
        "grid": {"seed": [0, 1]},
    })


@pytest.fixture(name="tiny_sweep")
def _tiny_sweep_factory():
    return tiny_sweep


@pytest.fixture
def owner(tmp_path):
    st = store.open_store(tmp_path / "store")
    disp = Dispatcher(st)
    yield st, disp
    disp.stop(kill_workers=True)
    st.close()


@contextlib.contextmanager
def trained_zoo(folder, sweep: dict):
    """A store owned by this process with ``sweep`` trained through the real worker path.

    Yields ``(store, dispatcher, zoo_id)``; stops the workers and closes the store afterwards.
    """
    st = store.open_store(folder / "store")
    disp = Dispatcher(st)
    try:
        zoo_id, job_id = disp.submit_sweep(load_sweep(sweep))
        (job,) = disp.run_until_done([job_id])
        assert job["status"] == "done", job
        yield st, disp, zoo_id
    finally:
        disp.stop(kill_workers=True)
        st.close()


@pytest.fixture(scope="module", name="trained_zoo")
def _trained_zoo_factory():
    return trained_zoo
