"""``python -m umlkit``: the ``umlkit`` command (what ``torchrun -m umlkit train ...`` runs).

Only when run: an import of this module (the API reference imports every module) does nothing.
"""

from umlkit.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
