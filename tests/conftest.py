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


@pytest.fixture
def plot_theme():
    """umlkit's plotting theme for the test, and no figure left open after it (``tests/test_plots_*``)."""
    import matplotlib.pyplot as plt

    from umlkit.plots import set_theme

    set_theme()
    yield
    plt.close("all")


@pytest.fixture
def render_png():
    """A function that renders a figure to PNG bytes and closes it, to compare two drawings."""
    import io

    import matplotlib.pyplot as plt

    def render(fig) -> bytes:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        plt.close(fig)
        return buffer.getvalue()

    return render
