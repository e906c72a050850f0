"""Keep the data tests off the user's cache folder: MNIST-1D is cached in a session temp dir."""

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _private_zooscope_cache(tmp_path_factory):
    before = os.environ.get("ZOOSCOPE_CACHE")
    os.environ["ZOOSCOPE_CACHE"] = str(tmp_path_factory.mktemp("zooscope-cache"))
    yield
    if before is None:
        os.environ.pop("ZOOSCOPE_CACHE", None)
    else:
        os.environ["ZOOSCOPE_CACHE"] = before
