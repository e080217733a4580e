"""Run the numbered notebooks in order with papermill: the engine behind ``umlkit figures``.

Every notebook has one cell tagged ``parameters``; papermill injects a cell after it that overrides
those values. A *parameter set* (``notebooks/params/<profile>.yaml``) gives the values shared by all
notebooks, ``-p name value`` overrides single ones. Executed notebooks land in ``build/notebooks/``
(the committed notebooks stay free of outputs); figures land where each notebook's profile sends
them (``figures/`` for the reference profile, :func:`umlkit.profiles.figures_dir_for`).

Everything is checked before the first notebook starts: the ``--only`` selection, and every
``-p`` override against the selected notebooks' ``parameters`` cells (:func:`check_overrides`):
its name must be a parameter of at least one of them, and its value of the parameter's type. A
parameter's type is its annotation in the cell (``epochs: int | None = None``) or else the type
of its default; a parameter whose default is ``None`` and that has no annotation takes any value.

A failing notebook does not stop the batch: it is reported with its failing cell and error, and the
next notebook runs. The summary is a pandas table (notebook, seconds, status, figures, error).

Each notebook's kernel runs with its own log at error level: at warning level it prints, for every
notebook, jupyter_client's "Kernel is running over TCP without encryption" into the console (the
kernel talks only to this process, on the loopback interface). What the notebooks' cells print,
warnings included, lands in the executed notebooks, and a kernel that fails is reported in the
summary table.
"""

from __future__ import annotations

import ast
import difflib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from umlkit.profiles import check_profile, figures_dir_for, notebooks_dir_for
from umlkit.runtime import project_root

#: The log level of the notebooks' kernels (see the module docstring).
_KERNEL_LOG_LEVEL = "ERROR"


def list_notebooks(notebooks_dir: Path, only: Iterable[str] | None = None) -> list[Path]:
    """The numbered notebooks ``NN_*.ipynb`` of ``notebooks_dir`` in order, optionally filtered.

    Args:
        notebooks_dir: the folder holding the notebooks.
        only: numbers (``"05"``, ``"7"``) or stems (``"05_reliability"``) to keep; ``None`` keeps all.

    Raises:
        FileNotFoundError: the folder holds no numbered notebook.
        ValueError: ``only`` holds no entry, or an entry matches no notebook.
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
    if not wanted:
        numbers = ", ".join(nb.stem.split("_", 1)[0] for nb in notebooks)
        raise ValueError(f"--only names no notebook: give their numbers, among {numbers}")
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
        try:
            values[name] = yaml.safe_load(raw)
        except yaml.YAMLError as error:
            problem = getattr(error, "problem", None) or "cannot be read"
            raise ValueError(
                f"-p {name} {raw!r}: not a YAML value ({problem}); quote a list as "
                f"'[1, 2]' and a string with special characters as '\"text\"'"
            ) from None
    return values


#: Annotation names of a parameters cell and the value types (as YAML reads them) they accept.
_ANNOTATION_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (float, int),
    "str": (str,),
    "bool": (bool,),
    "list": (list,),
    "tuple": (list,),
    "dict": (dict,),
    "None": (type(None),),
}


@dataclass(frozen=True)
class NotebookParameter:
    """One assignment of a notebook's ``parameters`` cell."""

    name: str
    default: str  # the default as written in the cell
    types: tuple[type, ...] | None  # the value types it accepts; None: any
    type_text: str  # the type as the messages show it, e.g. "int | None"
    # the annotation, whose subscripts (list[int]) type the elements; None: not annotated
    annotation: ast.expr | None = field(default=None, compare=False, repr=False)


def _declared(parameters: dict[str, Any], notebook: Path) -> dict[str, Any]:
    """The values of a parameter set that ``notebook``'s ``parameters`` cell declares: a set
    shared by all notebooks (``ranking_seeds`` is notebook 04's alone) passes each notebook only
    its own, so papermill has no unknown parameter to warn about."""
    declared = notebook_parameters(notebook)
    return {name: value for name, value in parameters.items() if name in declared}


def notebook_parameters(path: str | Path) -> dict[str, NotebookParameter]:
    """The parameters of a notebook, read from its cell tagged ``parameters``.

    Each top-level assignment ``name = default`` or ``name: annotation = default`` is one
    parameter. Its type is the annotation's (``int``, ``float``, ``str``, ``bool``, ``list``,
    ``dict``, ``None`` and their unions with ``|``; ``list[int]`` is a ``list`` whose elements
    :func:`check_overrides` checks too), else the type of a literal default other than
    ``None``; otherwise any value is accepted.

    Raises:
        ValueError: the cell is not valid Python.
    """
    import nbformat

    path = Path(path)
    cell = next(
        (
            cell
            for cell in nbformat.read(path, as_version=4).cells
            if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", [])
        ),
        None,
    )
    if cell is None:
        return {}
    try:
        tree = ast.parse(cell.source)
    except SyntaxError as error:
        raise ValueError(
            f"{path.name}: its parameters cell is not valid Python (line {error.lineno}: "
            f"{error.msg})"
        ) from None
    parameters = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, annotation = node.targets[0], None
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, annotation = node.target, node.annotation
        else:
            continue
        if not isinstance(target, ast.Name):
            continue
        if annotation is not None:
            types, text = _annotation_types(annotation), ast.unparse(annotation)
        else:
            types, text = _default_types(node.value)
        parameters[target.id] = NotebookParameter(
            target.id, ast.unparse(node.value), types, text, annotation
        )
    return parameters


def _annotation_types(annotation: ast.expr) -> tuple[type, ...] | None:
    """The value types an annotation allows (None: one this reader does not know: any)."""
    if isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):
        left, right = _annotation_types(annotation.left), _annotation_types(annotation.right)
        return None if left is None or right is None else left + right
    if isinstance(annotation, ast.Subscript):
        annotation = annotation.value
    if isinstance(annotation, ast.Constant) and annotation.value is None:
        return _ANNOTATION_TYPES["None"]
    if isinstance(annotation, ast.Name):
        return _ANNOTATION_TYPES.get(annotation.id)
    return None


def _default_types(value: ast.expr) -> tuple[tuple[type, ...] | None, str]:
    """The value types a default implies, and their name (None, "any": a None default)."""
    try:
        default = ast.literal_eval(value)
    except ValueError:
        return None, "any"
    if default is None:
        return None, "any"
    name = "list" if isinstance(default, tuple) else type(default).__name__
    return _ANNOTATION_TYPES.get(name), name


def _fits(value: Any, types: tuple[type, ...]) -> bool:
    """Whether ``value`` is of one of ``types`` (a bool is not taken for an int or a float)."""
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types)


def _misfit_element(value: Any, annotation: ast.expr | None) -> tuple[Any, str] | None:
    """The first element of ``value`` (a list or dict, at any depth) that does not fit the
    subscripts of ``annotation`` (``list[int]``, ``dict[str, list[float]]``), and the type it
    should have; ``None`` when every element fits or the annotation says nothing about them."""
    members = []
    stack = [annotation]
    while stack:  # the members of a union a | b | c
        node = stack.pop()
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            stack += [node.right, node.left]
        elif node is not None:
            members.append(node)
    for member in members:
        types = _annotation_types(member)
        if types is None or not _fits(value, types):
            continue
        if not isinstance(member, ast.Subscript) or not isinstance(value, list | dict):
            return None
        items = member.slice.elts if isinstance(member.slice, ast.Tuple) else [member.slice]
        if isinstance(value, dict):
            pairs = list(zip(items, (value.keys(), value.values()), strict=False))
        else:  # list[X], tuple[X, ...]: one type for every element
            pairs = [(items[0], value)]
        for item, elements in pairs:
            item_types = _annotation_types(item)
            for element in elements:
                if item_types is not None and not _fits(element, item_types):
                    return element, ast.unparse(item)
                inner = _misfit_element(element, item)
                if inner is not None:
                    return inner
        return None
    return None


def check_overrides(notebooks: Sequence[Path], overrides: dict[str, Any] | None) -> None:
    """Check ``-p`` overrides against the ``parameters`` cells of the notebooks that will run.

    Every name must be a parameter of at least one of ``notebooks`` (``profile`` is chosen with
    ``--profile``), and its value must have the type every notebook declaring it expects
    (:func:`notebook_parameters`), down to the elements of a list or dict (``-p seeds
    '[0.5]'`` is refused where ``seeds: list[int] | None``).

    Raises:
        ValueError: the first override that fails, naming it, the notebook and the problem.
    """
    if not overrides:
        return
    if "profile" in overrides:
        raise ValueError("-p profile: choose the profile with --profile, not -p")
    declared = {path: notebook_parameters(path) for path in notebooks}
    known = sorted({name for parameters in declared.values() for name in parameters} - {"profile"})
    for name, value in overrides.items():
        holders = [(path, params[name]) for path, params in declared.items() if name in params]
        if not holders:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            chosen = ", ".join(path.stem.split("_", 1)[0] for path in notebooks)
            raise ValueError(
                f"-p {name}: none of the notebooks to run ({chosen}) has that parameter; {hint}"
                f"theirs are: {', '.join(known) or 'none'}"
            )
        for path, parameter in holders:
            if parameter.types is not None and not _fits(value, parameter.types):
                raise ValueError(
                    f"-p {name} {value!r}: {path.stem} expects {parameter.type_text} (its "
                    f"default is {parameter.default}), got {type(value).__name__}"
                )
            misfit = _misfit_element(value, parameter.annotation)
            if misfit is not None:
                element, expected = misfit
                raise ValueError(
                    f"-p {name} {value!r}: {path.stem} expects {parameter.type_text} (its "
                    f"default is {parameter.default}), got the element {element!r} "
                    f"({type(element).__name__}) where {expected} is expected"
                )


def _figures_of(figures_dir: Path, stem: str) -> list[Path]:
    """The figure files of notebook ``stem`` in ``figures_dir``: ``<stem>_*.png`` and ``.pdf``."""
    if not figures_dir.is_dir():
        return []
    return sorted(path for ext in ("png", "pdf") for path in figures_dir.glob(f"{stem}_*.{ext}"))


def _figures_since(figures_dir: Path, stem: str, since: float) -> list[Path]:
    # one second of slack: some file systems keep modification times to the second
    return [path for path in _figures_of(figures_dir, stem) if path.stat().st_mtime >= since - 1]


def remove_stale_figures(figures_dir: Path, stem: str, since: float) -> list[Path]:
    """Delete the figures of notebook ``stem`` that its run starting at ``since`` did not write.

    A profile's figure folder holds exactly what that profile's notebooks write: a figure that a
    notebook no longer draws (a renamed plot, a dataset the profile no longer uses) would
    otherwise stay beside the new ones and look current. Only files named after the notebook
    that just ran successfully are touched, so a partial run (``--only``) keeps the others.

    Returns:
        The removed paths.
    """
    fresh = set(_figures_since(figures_dir, stem, since))
    stale = [path for path in _figures_of(figures_dir, stem) if path not in fresh]
    for path in stale:
        path.unlink()
    return stale


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
        profile: parameter set to use (``smoke``, ``default``, ``reference``, ``paper``).
        only: restrict to these notebooks (see :func:`list_notebooks`).
        overrides: parameter values that replace those of the set, checked against the
            notebooks' ``parameters`` cells before any runs (:func:`check_overrides`).
        root: the umlkit checkout (default: found from the working directory).
        output_dir: where executed notebooks go (default :func:`umlkit.profiles.notebooks_dir_for`
            the profile: ``build/notebooks/`` for the reference, ``build/notebooks-<profile>/``).
        progress: show a bar across notebooks.

    Returns:
        One row a notebook: ``notebook``, ``seconds``, ``status`` (``ok`` / ``failed``),
        ``figures`` (how many figure files it wrote), ``removed`` (how many of its figures the
        run did not write and were deleted as stale: :func:`remove_stale_figures`) and
        ``error`` (failing cell and message).

    Raises:
        ValueError: an unknown profile, an ``only`` that selects nothing or names no notebook,
            or an override that no selected notebook has or of the wrong type.
        FileNotFoundError: no numbered notebook, or no parameter set for the profile.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError
    from tqdm.auto import tqdm

    check_profile(profile)
    root = project_root() if root is None else Path(root)
    notebooks = list_notebooks(root / "notebooks", only)
    check_overrides(notebooks, overrides)
    parameters = load_parameters(profile, root / "notebooks" / "params", overrides)
    output_dir = notebooks_dir_for(root, profile) if output_dir is None else Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    figures_dir = figures_dir_for(root, profile)
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
                parameters=_declared(parameters, notebook),
                cwd=str(notebook.parent),
                progress_bar=False,
                kernel_name="python3",
                extra_arguments=[f"--IPKernelApp.log_level={_KERNEL_LOG_LEVEL}"],
            )
        except PapermillExecutionError as exc:
            status = "failed"
            error = f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
        except Exception as exc:  # a kernel that died or a notebook papermill cannot read
            status = "failed"
            error = f"{type(exc).__name__}: {exc}"
        stale = remove_stale_figures(figures_dir, notebook.stem, start) if status == "ok" else []
        if stale and progress:
            names = ", ".join(path.name for path in stale)
            tqdm.write(f"{notebook.stem}: removed figures this run no longer writes: {names}")
        rows.append(
            {
                "notebook": notebook.stem,
                "seconds": round(time.time() - start, 1),
                "status": status,
                "figures": len(_figures_since(figures_dir, notebook.stem, start)),
                "removed": len(stale),
                "error": error,
            }
        )
    columns = ["notebook", "seconds", "status", "figures", "removed", "error"]
    return pd.DataFrame(rows, columns=columns)


def notebook_map(notebooks_dir: Path | None = None) -> pd.DataFrame:
    """One row a notebook: its title (first markdown heading) and its parameters with their defaults.

    Read from the notebooks themselves (:func:`notebook_parameters`, the reader that checks
    ``-p`` overrides), so the map in notebook 00 and the README never drifts from what the
    notebooks really accept. (papermill's own ``inspect_notebook`` skips parameters annotated
    with a union such as ``int | None``.)
    """
    import nbformat

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
        parameters = notebook_parameters(path)
        listed = ", ".join(f"{name}={p.default}" for name, p in parameters.items())
        rows.append({"notebook": path.stem, "title": heading, "parameters": listed})
    return pd.DataFrame(rows, columns=["notebook", "title", "parameters"])
