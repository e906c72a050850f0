"""Fixtures for the report tests, imported by name from the test modules (a conftest.py here would
shadow tests/app's ``from conftest import ...`` when both folders are collected in one run): a small
store written through the store API (see report_helpers.py). The real-browser tests are in
tests/app/test_reports_page.py, where the session's one Playwright instance lives."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import store
from report_helpers import seed_small_zoo

__all__ = ["small_store", "small_store_path", "small_template"]


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
