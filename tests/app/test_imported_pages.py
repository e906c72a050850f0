"""AppTest: every page runs on imported runs — a model zoo imported with ``zooscope import-zoo`` (hyperparameter
columns named like ``model::type``, epochs as checkpoints, metrics from result.json) and a folder imported with
``zooscope import-run``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from app_conftest import PAGES

from engine.cli import main


def _importer_helpers():
    """tests/importer/conftest.py as a module (it writes model zoos and checkpoint folders), loaded by path
    when pytest has not loaded it already (e.g. ``pytest tests/app``)."""
    if "importer_conftest" not in sys.modules:
        source = Path(__file__).parents[1] / "importer" / "conftest.py"
        spec = importlib.util.spec_from_file_location("importer_conftest", source)
        module = importlib.util.module_from_spec(spec)
        sys.modules["importer_conftest"] = module
        spec.loader.exec_module(module)
    return sys.modules["importer_conftest"]


@pytest.fixture(scope="module")
def imported_template(tmp_path_factory) -> Path:
    helpers = _importer_helpers()
    root = tmp_path_factory.mktemp("imported")
    s = root / "store"
    model = ("--arch", "mlp", "--width", "8", "--dataset", "moons")
    zoo = helpers.write_modelzoo(root / "tune_zoo", 3, 3)
    assert main(["--store", str(s), "import-zoo", str(zoo), "--format", "modelzoo", *model]) == 0
    folder = helpers.write_run_folder(root / "my-run", 3)
    assert main(["--store", str(s), "import-run", str(folder), *model, "--zoo", "tune_zoo"]) == 0
    return s


def test_every_page_runs_on_imported_runs(app, imported_template, tmp_path):
    import shutil

    s = shutil.copytree(imported_template, tmp_path / "store")
    at = app(s)
    assert at.sidebar.selectbox(key="zoo").value is not None
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
        assert at.title, f"{page} shows no title"


def test_a_zoo_whose_runs_have_different_hyperparameters_has_phase_cells(imported_template):
    """The imported run has no ``model::*`` columns and the trials no ``width``: missing values are a cell key too
    (pandas 3 keeps NaN through ``astype(str)``, which made joining the keys fail)."""
    import store
    from engine.jobs.phases import phase_cells

    with store.open_store(imported_template, owner=False) as st:
        cells = phase_cells(st, st.get_zoo("tune_zoo")["zoo_id"])
    assert sum(len(c.run_ids) for c in cells) == 4 and len(cells) == 4  # 3 trials (dropout differs) + the run
