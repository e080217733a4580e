"""``python -m umlkit``: the ``umlkit`` command (what ``torchrun -m umlkit train ...`` runs)."""

from umlkit.cli import main

raise SystemExit(main())
