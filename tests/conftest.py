"""Session-wide test settings."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _array_cache_in_a_temporary_folder(tmp_path_factory):
    """Decoded splits of the tests' fixture datasets go to a temporary folder, not the checkout's
    ``data/cache/arrays`` (an environment variable, so spawned worker processes see it too)."""
    previous = os.environ.get("UMLKIT_ARRAY_CACHE")
    os.environ["UMLKIT_ARRAY_CACHE"] = str(tmp_path_factory.mktemp("arrays"))
    yield
    if previous is None:
        os.environ.pop("UMLKIT_ARRAY_CACHE", None)
    else:
        os.environ["UMLKIT_ARRAY_CACHE"] = previous
