"""The install surface: pyproject and environment.yml list the same packages; the README and CI
agree; committed notebooks and figures follow the layout conventions."""

import importlib.util
import re
import tomllib
from pathlib import Path

import nbformat
import yaml

from umlkit.checked_outputs import is_checked, with_stored_outputs

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower()


def _requirements(project: dict) -> list[str]:
    """The dependencies and every extra (dev, docs): the conda environment holds them all."""
    extras = project["optional-dependencies"]
    return project["dependencies"] + [r for name in sorted(extras) for r in extras[name]]


def _pyproject_packages() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {_name(r) for r in _requirements(project)}


def _environment_packages() -> set[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return {_name(r) for r in pip_section if not r.startswith("-e")}


def test_environment_yml_lists_the_same_packages_as_pyproject():
    in_pyproject, in_environment = _pyproject_packages(), _environment_packages()
    assert in_pyproject - in_environment == set(), "missing from environment.yml"
    assert in_environment - in_pyproject == set(), "missing from pyproject.toml"


def test_the_same_version_bounds_in_both_files():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    in_pyproject = set(_requirements(project))
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert in_pyproject == {r for r in pip_section if not r.startswith("-e")}


def test_readme_opens_with_the_two_commands_and_ci_calls_make_test():
    readme = (ROOT / "README.md").read_text()
    first_screen = readme[:1500]
    assert "make figures" in first_screen and "make test" in first_screen
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_console_command_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["umlkit"] == "umlkit.cli:main"


NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_committed_notebooks_follow_the_conventions():
    assert [path.name[:2] for path in NOTEBOOKS] == [f"{i:02d}" for i in range(len(NOTEBOOKS))]
    for path in NOTEBOOKS:
        cells = nbformat.read(path, as_version=4).cells
        code = [cell for cell in cells if cell["cell_type"] == "code"]
        # no outputs at all: the checked cells' outputs live in notebooks/checked/
        executed = [i for i, cell in enumerate(code) if cell["outputs"] or cell["execution_count"]]
        assert not executed, (
            f"{path.name}: code cells {executed} hold outputs (make clean-notebooks)"
        )
        # ...where every checked cell has its output and execution count, for nbval
        stored = with_stored_outputs(nbformat.read(path, as_version=4), path)
        unstored = [
            i
            for i, cell in enumerate(c for c in stored.cells if c["cell_type"] == "code")
            if is_checked(cell) and not (cell["outputs"] and cell["execution_count"])
        ]
        assert not unstored, (
            f"{path.name}: checked cells {unstored} lack their output (make check-outputs)"
        )
        parameters = [cell for cell in code if "parameters" in cell["metadata"].get("tags", [])]
        assert len(parameters) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
        assert re.search(r"^profile = ", "".join(parameters[0]["source"]), re.M), path.name


def test_committed_figures_are_named_after_a_notebook_in_both_formats():
    stems = {path.stem for path in NOTEBOOKS}
    figures = sorted((ROOT / "figures").glob("*.png"))
    assert figures, "figures/ holds no PNG"
    for png in figures:
        assert any(png.stem.startswith(f"{stem}_") for stem in stems), png.name
        assert png.with_suffix(".pdf").is_file(), f"{png.name} has no PDF twin"


def test_the_test_schedule_names_test_files_that_exist():
    """notebooks/conftest.py starts the longest test modules first; a renamed module would
    silently fall back to xdist's order, so every name it lists must be a file."""
    spec = importlib.util.spec_from_file_location(
        "notebooks_conftest", ROOT / "notebooks" / "conftest.py"
    )
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    assert conftest.LONGEST_FIRST
    missing = [name for name in conftest.LONGEST_FIRST if not (ROOT / name).is_file()]
    assert missing == []
    assert conftest.work_unit("notebooks/04_ablations.ipynb::Cell 3", "x") == "notebooks"
    assert conftest.work_unit("notebooks/09_semi_supervised.ipynb::Cell 3", "x") == "x"
