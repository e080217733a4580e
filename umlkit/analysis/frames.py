"""Checks shared by the topic modules: does a table hold the columns a function reads?

Every function of :mod:`umlkit.analysis` that reads named columns of a :class:`pandas.DataFrame`
checks them first with :func:`require_columns`, so a missing column fails with a message that
names it and lists what the table does have, instead of a bare ``KeyError`` deep inside pandas.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd


def require_columns(frame: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    """Raise unless ``frame`` has every one of ``columns``.

    Args:
        frame: the table to check.
        columns: the column names the caller reads.
        name: what to call the table in the message (e.g. ``"runs"``).

    Raises:
        ValueError: some columns are missing; the message names them and the columns present.
    """
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks the column(s) {missing}; it has {list(frame.columns)}")
