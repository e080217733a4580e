"""JupyterLab settings for umlkit's environment: the news pop-up off.

A fresh JupyterLab asks "Would you like to get notified about official Jupyter news?" in a
pop-up that covers part of the file browser: in a lab room every student meets it on the first
start, before the first notebook. JupyterLab reads default settings from an *overrides* file of
its environment, ``<prefix>/share/jupyter/lab/settings/overrides.json``, which maps a plugin's id
to setting values (the names and allowed values are in the plugin's schema, e.g.
``share/jupyter/lab/schemas/@jupyterlab/apputils-extension/notification.json``). Setting
``fetchNews`` to ``"false"`` (a string: the setting has three values, "true", "false" and
"none" = ask) answers the question once for everyone; ``checkForUpdates`` off stops the
"a newer version is available" notice that would follow. A user can still change both in
Settings > Notifications: overrides are defaults, not locks.

``make venv`` writes the file (``python -m umlkit.lab``); ``make lab`` opens JupyterLab on
``notebooks/`` in that environment.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from umlkit.folders import write_json

#: The settings umlkit gives JupyterLab, by plugin id.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False}
}


def overrides_path(prefix: str | Path | None = None) -> Path:
    """The overrides file of the environment at ``prefix`` (default: this Python's,
    ``sys.prefix``, which is the virtual environment when run from it)."""
    prefix = Path(sys.prefix if prefix is None else prefix)
    return prefix / "share" / "jupyter" / "lab" / "settings" / "overrides.json"


def write_lab_overrides(prefix: str | Path | None = None) -> Path:
    """Add :data:`LAB_SETTINGS` to the overrides file of ``prefix`` and return its path.

    Settings already in the file (another plugin's, or another setting of the notification
    plugin) are kept; only umlkit's values are set.

    Raises:
        ValueError: the existing file is not a JSON object (one line naming it).
    """
    path = overrides_path(prefix)
    settings = {}
    if path.is_file():
        try:
            settings = json.loads(path.read_text())
        except ValueError:
            settings = None
        if not isinstance(settings, dict):
            raise ValueError(f"{path} is not a JSON object: fix or delete it, then run again")
    for plugin, values in LAB_SETTINGS.items():
        settings[plugin] = {**settings.get(plugin, {}), **values}
    return write_json(path, settings)


if __name__ == "__main__":
    print(f"JupyterLab's news pop-up is off: {write_lab_overrides()}")
