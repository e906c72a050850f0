"""The probe tests run tiny models: one intra-op thread each (see tests/conftest.py)."""

import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    yield
