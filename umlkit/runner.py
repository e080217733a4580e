"""Run the numbered notebooks in order with papermill: the engine behind ``umlkit figures``.

Every notebook has one cell tagged ``parameters``; papermill injects a cell after it that overrides
those values. A *parameter set* (``notebooks/params/<profile>.yaml``) gives the values shared by all
notebooks, ``-p name value`` overrides single ones. Executed notebooks land in ``build/notebooks/``
(the committed notebooks stay free of outputs); figures land where each notebook's profile sends
them (``figures/`` for the default profile).

A failing notebook does not stop the batch: it is reported with its failing cell and error, and the
next notebook runs. The summary is a pandas table (notebook, seconds, status, figures, error).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from umlkit.profiles import check_profile, project_root


def list_notebooks(notebooks_dir: Path, only: Iterable[str] | None = None) -> list[Path]:
    """The numbered notebooks ``NN_*.ipynb`` of ``notebooks_dir`` in order, optionally filtered.

    Args:
        notebooks_dir: the folder holding the notebooks.
        only: numbers (``"05"``, ``"7"``) or stems (``"05_reliability"``) to keep; ``None`` keeps all.

    Raises:
        FileNotFoundError: the folder holds no numbered notebook.
        ValueError: an entry of ``only`` matches no notebook.
    """
    notebooks = sorted(
        path
        for path in Path(notebooks_dir).glob("[0-9][0-9]_*.ipynb")
        if not path.name.endswith("-checkpoint.ipynb")
    )
    if not notebooks:
        raise FileNotFoundError(f"no numbered notebooks (NN_name.ipynb) in {notebooks_dir}")
    if only is None:
        return notebooks
    wanted = [str(entry).strip() for entry in only if str(entry).strip()]
    chosen = []
    for entry in wanted:
        key = entry.zfill(2) if entry.isdigit() else entry.removesuffix(".ipynb")
        matches = [nb for nb in notebooks if nb.stem == key or nb.stem.split("_", 1)[0] == key]
        if not matches:
            names = ", ".join(nb.stem for nb in notebooks)
            raise ValueError(f"--only {entry!r} matches no notebook; there are: {names}")
        chosen.extend(m for m in matches if m not in chosen)
    return sorted(chosen)


def load_parameters(
    profile: str, params_dir: Path, overrides: dict[str, Any] | None = None
) -> dict:
    """The parameter set of ``profile`` (``<params_dir>/<profile>.yaml``) updated by ``overrides``.

    Raises:
        FileNotFoundError: the parameter file does not exist.
        ValueError: the file is not a YAML mapping.
    """
    check_profile(profile)
    path = Path(params_dir) / f"{profile}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"parameter set {path} not found (one file per profile)")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of parameter names to values")
    values = {**values, "profile": profile}
    values.update(overrides or {})
    return values


def parse_overrides(pairs: Sequence[Sequence[str]] | None) -> dict[str, Any]:
    """Turn ``-p name value`` pairs into a dict, reading each value as YAML (``3`` -> int, ``[1,2]``)."""
    values = {}
    for name, raw in pairs or []:
        if not name.isidentifier():
            raise ValueError(f"-p {name!r}: a parameter name must be a Python identifier")
        values[name] = yaml.safe_load(raw)
    return values


def _figures_since(figures_dir: Path, stem: str, since: float) -> list[Path]:
    if not figures_dir.is_dir():
        return []
    return sorted(
        path for path in figures_dir.glob(f"{stem}_*") if path.stat().st_mtime >= since - 1
    )


def run_notebooks(
    profile: str = "default",
    *,
    only: Iterable[str] | None = None,
    overrides: dict[str, Any] | None = None,
    root: Path | None = None,
    output_dir: Path | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Execute the notebooks in order and return the summary table.

    Args:
        profile: parameter set to use (``smoke``, ``default``, ``paper``).
        only: restrict to these notebooks (see :func:`list_notebooks`).
        overrides: parameter values that replace those of the set.
        root: the umlkit checkout (default: found from the working directory).
        output_dir: where executed notebooks go (default ``<root>/build/notebooks``).
        progress: show a bar across notebooks.

    Returns:
        One row a notebook: ``notebook``, ``seconds``, ``status`` (``ok`` / ``failed``),
        ``figures`` (how many figure files it wrote) and ``error`` (failing cell and message).
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError
    from tqdm.auto import tqdm

    check_profile(profile)
    root = project_root() if root is None else Path(root)
    notebooks = list_notebooks(root / "notebooks", only)
    parameters = load_parameters(profile, root / "notebooks" / "params", overrides)
    output_dir = root / "build" / "notebooks" if output_dir is None else Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    figures_dir = (
        root / "figures" if profile == "default" else root / "build" / f"figures-{profile}"
    )
    rows = []
    bar = tqdm(notebooks, desc=f"notebooks ({profile})", unit="nb", disable=not progress)
    for notebook in bar:
        bar.set_postfix_str(notebook.stem)
        start = time.time()
        status, error = "ok", ""
        try:
            papermill.execute_notebook(
                str(notebook),
                str(output_dir / notebook.name),
                parameters=parameters,
                cwd=str(notebook.parent),
                progress_bar=False,
                kernel_name="python3",
            )
        except PapermillExecutionError as exc:
            status = "failed"
            error = f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
        except Exception as exc:  # a kernel that died or a notebook papermill cannot read
            status = "failed"
            error = f"{type(exc).__name__}: {exc}"
        rows.append(
            {
                "notebook": notebook.stem,
                "seconds": round(time.time() - start, 1),
                "status": status,
                "figures": len(_figures_since(figures_dir, notebook.stem, start)),
                "error": error,
            }
        )
    return pd.DataFrame(rows, columns=["notebook", "seconds", "status", "figures", "error"])


def notebook_map(notebooks_dir: Path | None = None) -> pd.DataFrame:
    """One row a notebook: its title (first markdown heading) and its parameters with their defaults.

    Read from the notebooks themselves (``papermill.inspect_notebook``), so the map in notebook 00
    and the README never drifts from what the notebooks really accept.
    """
    import nbformat
    import papermill

    notebooks_dir = project_root() / "notebooks" if notebooks_dir is None else Path(notebooks_dir)
    rows = []
    for path in list_notebooks(notebooks_dir):
        cells = nbformat.read(path, as_version=4).cells
        heading = next(
            (
                line.lstrip("# ").strip()
                for cell in cells
                if cell.cell_type == "markdown"
                for line in cell.source.splitlines()
                if line.startswith("#")
            ),
            "",
        )
        parameters = papermill.inspect_notebook(str(path))
        listed = ", ".join(f"{name}={p['default']}" for name, p in parameters.items())
        rows.append({"notebook": path.stem, "title": heading, "parameters": listed})
    return pd.DataFrame(rows, columns=["notebook", "title", "parameters"])
