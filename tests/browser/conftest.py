"""Browser tests: Chromium driven by pytest-playwright.

Playwright's own browser download is not reachable everywhere, so the tests use the first Chromium
they find: ``$UMLKIT_CHROMIUM``, Playwright's own build if it is installed, or the system's
(``apt-get install chromium`` on Debian). Without any, or without the ``playwright`` package, every
test here is skipped with one line that says why.

The JupyterLab test runs right after the nbval runs of the notebooks, in the same process (it
reuses the models that notebook 04 caches; ``tests/conftest.py`` forms that group), and the tests
share one browser (pytest-playwright's ``browser`` fixture, launched with ``executable_path``).
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BROWSER_DIR = Path(__file__).resolve().parent
#: Where the browser tests write what a person may want to look at (screenshots, the test site).
ARTEFACTS = ROOT / "build" / "browser"

_SYSTEM_CHROMIUMS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> tuple[str | None, str]:
    """The Chromium to launch and, when there is none, why (one line for the skip message)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None, "playwright is not installed (pip install -e '.[dev]')"
    forced = os.environ.get("UMLKIT_CHROMIUM")
    if forced:
        if Path(forced).is_file():
            return forced, ""
        return None, f"$UMLKIT_CHROMIUM={forced} does not exist"
    with sync_playwright() as playwright:
        bundled = playwright.chromium.executable_path
    if bundled and Path(bundled).is_file():
        return bundled, ""
    for name in _SYSTEM_CHROMIUMS:
        found = shutil.which(name)
        if found:
            return found, ""
    return None, "no Chromium found (apt-get install chromium, or set $UMLKIT_CHROMIUM)"


def pytest_collection_modifyitems(config, items):
    browser_items = [item for item in items if BROWSER_DIR in Path(str(item.path)).parents]
    if not browser_items:
        return
    chromium, reason = find_chromium()
    config._umlkit_chromium = chromium
    if chromium is None:
        skip = pytest.mark.skip(reason=f"browser tests skipped: {reason}")
        for item in browser_items:
            item.add_marker(skip)
    # notebooks/conftest.py runs the JupyterLab test right after the notebooks, so that those
    # it opens find the models that nbval's run of 04 cached.


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args, pytestconfig):
    """pytest-playwright's launch arguments with the Chromium that :func:`find_chromium` found."""
    chromium = getattr(pytestconfig, "_umlkit_chromium", None)
    arguments = {**browser_type_launch_args}
    if chromium:
        arguments["executable_path"] = chromium
    # Chromium's sandbox needs user namespaces, which containers and root shells often lack.
    # A room without internet, on every machine: no host but the loopback resolves, so a page
    # that asks for something from elsewhere fails at once (the tests record such requests)
    # instead of waiting on a network that may or may not answer.
    arguments.setdefault("args", [])
    arguments["args"] = [
        *arguments["args"],
        "--no-sandbox",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ]
    return arguments


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def free_port():
    """A function that returns a loopback TCP port nothing listens on right now."""
    return _free_port


@pytest.fixture(scope="session")
def artefacts() -> Path:
    """``build/browser/``: screenshots, logs and the test site (kept for a person to look at)."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    return ARTEFACTS
