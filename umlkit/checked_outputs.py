"""Checks that can fail: the notebook cells whose stored output nbval compares.

nbval runs every notebook under ``--nbval-lax``: a cell that runs without an error passes,
whatever it prints. A cell whose first line is the comment ``# NBVAL_CHECK_OUTPUT`` is compared
with its stored output, so a changed number fails ``make test``. Only
outputs that are the same whatever the profile and the machine qualify: a metric of fixed
arrays, a Dirichlet statistic, the shape of a table, printed rounded.

Notebooks are committed without any output (``tests/test_packaging.py``): the checked cells'
outputs and execution counts (nbval refuses a stored output whose cell was never run) are kept
beside them, in ``notebooks/checked/<notebook>.json``, and ``notebooks/conftest.py`` puts them
back as nbval reads a notebook (:func:`with_stored_outputs`). This module writes them (``make
check-outputs``): it executes a notebook at the ``smoke`` profile, in its own folder as nbval
does, and keeps the outputs of the checked cells only::

    python -m umlkit.checked_outputs store notebooks/02_evidential_primer.ipynb
    python -m umlkit.checked_outputs clear notebooks/*.ipynb   # every other output removed
"""

from __future__ import annotations

import argparse
import copy
import json
import os
from collections.abc import Sequence
from pathlib import Path

import nbformat

MARKER = "# NBVAL_CHECK_OUTPUT"
#: The folder beside the notebooks that keeps their checked outputs (:func:`sidecar_path`).
SIDECAR_DIR = "checked"


def is_checked(cell) -> bool:
    """Whether ``cell`` is a code cell whose first line is :data:`MARKER`."""
    return cell.cell_type == "code" and cell.source.split("\n", 1)[0].strip() == MARKER


def keep_checked_outputs(notebook, executed=None):
    """``notebook`` with outputs and execution counts in its checked cells only.

    Args:
        notebook: an nbformat notebook (changed in place and returned).
        executed: the same notebook executed; its checked cells' outputs and execution counts
            replace the stored ones. ``None`` keeps what the checked cells already hold.

    Raises:
        ValueError: ``executed`` has other cells than ``notebook``.
    """
    if executed is not None and [c.source for c in executed.cells] != [
        c.source for c in notebook.cells
    ]:
        raise ValueError("the executed notebook has other cells than the notebook")
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        if not is_checked(cell):
            cell.outputs, cell.execution_count = [], None
        elif executed is not None:
            cell.outputs = copy.deepcopy(executed.cells[index].outputs)
            cell.execution_count = executed.cells[index].execution_count
    return notebook


def sidecar_path(path: str | Path) -> Path:
    """Where the checked outputs of the notebook at ``path`` are kept:
    ``<its folder>/checked/<its name>.json`` (the notebook itself is committed without outputs)."""
    path = Path(path)
    return path.parent / SIDECAR_DIR / f"{path.stem}.json"


def write_sidecar(notebook, path: str | Path) -> None:
    """Keep the checked cells' sources, outputs and execution counts in :func:`sidecar_path`."""
    entries = [
        {"source": c.source, "execution_count": c.execution_count, "outputs": c.outputs}
        for c in notebook.cells
        if is_checked(c)
    ]
    target = sidecar_path(path)
    target.parent.mkdir(exist_ok=True)
    target.write_text(json.dumps(entries, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def with_stored_outputs(notebook, path: str | Path):
    """``notebook`` (read from ``path``) with its checked cells' stored outputs put back, as nbval
    must see it (``notebooks/conftest.py``). Changed in place and returned.

    Raises:
        ValueError: the stored outputs are of other checked cells than the notebook's (a checked
            cell was edited without ``make check-outputs``); one line naming the files.
    """
    stored = sidecar_path(path)
    entries = json.loads(stored.read_text(encoding="utf-8")) if stored.is_file() else []
    cells = [c for c in notebook.cells if is_checked(c)]
    if [e["source"] for e in entries] != [c.source for c in cells]:
        raise ValueError(
            f"{stored} holds the outputs of other checked cells than {Path(path).name}'s: "
            "run make check-outputs"
        )
    for cell, entry in zip(cells, entries, strict=True):
        cell.outputs = [nbformat.from_dict(output) for output in entry["outputs"]]
        cell.execution_count = entry["execution_count"]
    return notebook


def execute(path: str | Path, profile: str = "smoke", timeout: int = 900):
    """A copy of the notebook at ``path`` executed at ``profile`` in its own folder (as nbval)."""
    from nbclient import NotebookClient

    path = Path(path).resolve()
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        coalesce_streams=True,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute(env={**os.environ, "UMLKIT_PROFILE": profile})
    return notebook


def store(path: str | Path, profile: str = "smoke") -> int:
    """Execute the notebook at ``path`` and write it back with its checked cells' outputs.

    Returns:
        How many checked cells it holds.
    """
    notebook = nbformat.read(path, as_version=4)
    keep_checked_outputs(notebook, execute(path, profile))
    write_sidecar(notebook, path)
    clear(path, notebook)
    return sum(is_checked(cell) for cell in notebook.cells)


def clear(path: str | Path, notebook=None) -> None:
    """Write the notebook at ``path`` (or ``notebook``) back without any output or execution count;
    the checked cells' outputs live in :func:`sidecar_path`."""
    notebook = nbformat.read(path, as_version=4) if notebook is None else notebook
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(notebook, path)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m umlkit.checked_outputs store|clear NOTEBOOK...`` (module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m umlkit.checked_outputs", description=__doc__)
    parser.add_argument("command", choices=("store", "clear"))
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--profile", default="smoke", help="the profile to execute at (store)")
    args = parser.parse_args(argv)
    for path in args.notebooks:
        if args.command == "store":
            print(f"{path}: {store(path, args.profile)} checked cell(s) stored")
        else:
            clear(path)


if __name__ == "__main__":
    main()
