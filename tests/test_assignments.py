"""Every graded exercise of the course, checked in both directions (umlkit.exercises).

* **Instructor**: the notebooks as committed. Their ``exercise`` cells run in order in a fresh
  kernel, each exercise in an emptied namespace (so each is self-contained): no cell fails, so
  every autograded test cell passes with its solution.
* **Student**: the release ``make assignments`` writes (``nbgrader generate_assignment``), run
  as released: every autograded test cell fails, and on its assertion (``AssertionError``), not
  on a missing name or a ``TypeError``; every other cell runs. No check passes without its
  solution.

Only the exercises' cells run (no training, no notebook-wide execution), all of them in one
kernel: every chapter's instructor cells, then its student cells, each exercise behind a reset
(``%reset -f``), so that no exercise sees another's names. One kernel instead of one per chapter
saves a kernel start and umlkit's imports for every chapter.
"""

import subprocess
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from umlkit.exercises import exercises, isolated_exercises, release

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: The fewest exercises each chapter holds (issue 28); the other chapters may hold none.
REQUIRED = {"02": 2, "03": 2, "04": 1, "05": 2, "06": 2, "07": 1, "08": 2, "09": 1}


def _read(path: Path):
    return nbformat.read(path, as_version=4)


def _has_exercises(path: Path) -> bool:
    try:
        return bool(exercises(_read(path)))
    except ValueError:
        return True  # run it: the error names the exercise that breaks the conventions


WITH_EXERCISES = [path for path in NOTEBOOKS if _has_exercises(path)]


def _ids(path: Path) -> str:
    return path.stem


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> dict[str, Path]:
    """The student release of every notebook, written as ``make assignments`` writes it."""
    folder = tmp_path_factory.mktemp("assignments")
    paths = release(NOTEBOOKS, folder / "assignments", folder / "course")
    return {path.stem: path for path in paths}


@pytest.fixture(scope="module")
def runs(released) -> dict[str, tuple[list, list]]:
    """The executed exercise cells of every chapter with exercises: ``{stem: (instructor,
    student)}``, all run in one kernel (the module docstring says why that isolates them)."""
    parts, cells = [], []
    for path in WITH_EXERCISES:
        instructor = isolated_exercises(_read(path)).cells
        student = isolated_exercises(_read(released[path.stem]), released=True).cells
        parts.append((path.stem, len(instructor), len(student)))
        cells += instructor + student
    both = nbformat.v4.new_notebook(cells=cells, metadata=_read(WITH_EXERCISES[0]).metadata)
    NotebookClient(
        both,
        timeout=120,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(ROOT / "notebooks")}},
    ).execute()
    done, start = {}, 0
    for stem, n_instructor, n_student in parts:
        middle, end = start + n_instructor, start + n_instructor + n_student
        done[stem] = (both.cells[start:middle], both.cells[middle:end])
        start = end
    return done


def _error(cell) -> str | None:
    """The name of the exception a cell raised (``"AssertionError"``), or None."""
    errors = [output["ename"] for output in cell.outputs if output["output_type"] == "error"]
    return errors[0] if errors else None


def _grade_id(cell) -> str:
    return cell.metadata.get("nbgrader", {}).get("grade_id", cell.source.split("\n", 1)[0])


def _is_test(cell) -> bool:
    return bool(cell.metadata.get("nbgrader", {}).get("grade"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_each_chapter_holds_its_exercises_numbered_after_it(path):
    found = exercises(_read(path))  # raises where an exercise breaks the conventions
    required = REQUIRED.get(path.name[:2], 0)
    assert len(found) >= required, f"{path.name}: {len(found)} exercises, needs {required}"
    assert all(f"{exercise.notebook:02d}" == path.name[:2] for exercise in found), path.name


@pytest.mark.parametrize("path", WITH_EXERCISES, ids=_ids)
def test_the_instructor_version_passes_every_test_cell(path, runs):
    instructor, _ = runs[path.stem]
    failed = {_grade_id(cell): _error(cell) for cell in instructor if _error(cell)}
    assert failed == {}, f"{path.name}: cells that raised"


@pytest.mark.parametrize("path", WITH_EXERCISES, ids=_ids)
def test_the_student_release_fails_every_test_cell_on_its_assertion(path, runs, released):
    _, student = runs[path.stem]
    tests = {_grade_id(cell): _error(cell) for cell in student if _is_test(cell)}
    assert tests and set(tests.values()) == {"AssertionError"}, f"{path.name}: {tests}"
    others = {_grade_id(cell): _error(cell) for cell in student if not _is_test(cell)}
    assert set(others.values()) == {None}, f"{path.name}: cells that raised: {others}"
    # the release holds every exercise, each solution replaced by the stub (checked on reading)
    assert len(exercises(_read(released[path.stem]), released=True)) == len(exercises(_read(path)))


def test_make_assignments_releases_the_notebooks_with_nbgrader():
    dry_run = subprocess.run(
        ["make", "--no-print-directory", "--dry-run", "--always-make", "assignments"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert dry_run[-1] == (
        ".venv/bin/python -m umlkit.exercises release notebooks/*.ipynb"
        " --out build/assignments --course build/nbgrader"
    )
