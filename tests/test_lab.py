"""make lab and umlkit.lab: JupyterLab on the notebooks, without its news pop-up.

The browser itself is not needed: JupyterLab reads the overrides file at start, so checking the
file (its place, its values against JupyterLab's own schema) and the Makefile's commands is
what can fail here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from umlkit.lab import LAB_SETTINGS, overrides_path, write_lab_overrides

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "@jupyterlab/apputils-extension:notification"


def test_the_overrides_file_turns_the_news_off_and_keeps_other_settings(tmp_path):
    path = overrides_path(tmp_path)
    assert path == tmp_path / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    path.parent.mkdir(parents=True)
    theme = {"@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"}}
    path.write_text(json.dumps({**theme, PLUGIN: {"doNotDisturbMode": True}}))
    assert write_lab_overrides(tmp_path) == path
    settings = json.loads(path.read_text())
    assert settings[PLUGIN] == {"doNotDisturbMode": True, **LAB_SETTINGS[PLUGIN]}
    assert settings[PLUGIN]["fetchNews"] == "false"
    assert {key: settings[key] for key in theme} == theme


def test_the_values_are_ones_jupyterlabs_schema_allows():
    schema_file = (
        Path(sys.prefix)
        / "share/jupyter/lab/schemas/@jupyterlab/apputils-extension"
        / "notification.json"
    )
    if not schema_file.is_file():
        pytest.skip("JupyterLab's schemas are not installed in this environment")
    properties = json.loads(schema_file.read_text())["properties"]
    allowed = [choice["const"] for choice in properties["fetchNews"]["oneOf"]]
    assert LAB_SETTINGS[PLUGIN]["fetchNews"] in allowed
    assert isinstance(LAB_SETTINGS[PLUGIN]["checkForUpdates"], bool)


def test_a_broken_overrides_file_is_one_line(tmp_path):
    path = overrides_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text("[1, 2")
    with pytest.raises(ValueError, match="is not a JSON object") as raised:
        write_lab_overrides(tmp_path)
    assert "\n" not in str(raised.value) and str(path) in str(raised.value)


def test_make_lab_writes_the_overrides_then_opens_the_notebooks():
    dry_run = subprocess.run(
        # --no-print-directory: under `make test` this make is a sub-make, which would add
        # "make[1]: Entering/Leaving directory" lines
        ["make", "--no-print-directory", "--dry-run", "--always-make", "lab"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert ".venv/bin/python -m umlkit.lab" in dry_run
    assert dry_run[-1] == ".venv/bin/jupyter lab notebooks"
