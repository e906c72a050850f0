"""Fixtures shared by every test folder."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

import store

# report_helpers.py (tests/report) writes the small zoo that tests/report and tests/app/test_reports_page.py share.
sys.path.insert(0, str(Path(__file__).parent / "report"))
from report_helpers import seed_small_zoo  # noqa: E402


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module's tests (and its module fixtures); restored afterwards.

    The models in these tests are tiny: extra threads only add overhead, badly so on a
    shared, loaded machine. A folder opts in with an autouse wrapper in its conftest.py,
    a single module with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- a small store written through the store API (tests/report, tests/app/test_reports_page.py) -------------------


@pytest.fixture(scope="module")
def small_template(tmp_path_factory) -> tuple[Path, dict]:
    """A closed store holding the small zoo, written once per test module, and its ids."""
    path = tmp_path_factory.mktemp("small") / "store"
    with store.open_store(path) as st:
        ids = seed_small_zoo(st)
    return path, ids


@pytest.fixture
def small_store_path(small_template, tmp_path) -> tuple[Path, dict]:
    """A copy of the small store for this test (not open), and its ids."""
    template, ids = small_template
    shutil.copytree(template, tmp_path / "store", ignore=shutil.ignore_patterns("owner.json"))
    return tmp_path / "store", ids


@pytest.fixture
def small_store(small_store_path) -> tuple[store.Store, dict]:
    """The small store, open as owner for this test; closed after it."""
    path, ids = small_store_path
    st = store.open_store(path)
    yield st, ids
    st.close()
