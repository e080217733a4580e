"""The graded exercises of the notebooks: how one is written, checked and released to students.

The exercises are `nbgrader <https://nbgrader.readthedocs.io>`_ cells, so a lecturer can grade
them on a JupyterHub as any nbgrader course. One exercise is

1. a markdown cell whose first line is the heading ``### Exercise NN.k — title`` (``NN`` the
   notebook's number, ``k`` counting from 1) and that states the task;
2. one or more *setup* code cells: the imports and the fixed inputs the exercise needs. An
   exercise is self-contained: its cells use only what its own cells define;
3. the *solution* cell: each answer variable is first set to ``None`` on a line of its own, then
   the real computation sits between ``### BEGIN SOLUTION`` and ``### END SOLUTION``;
4. the autograded *test* cell: assertions that only the correct answer passes.

Every code cell of an exercise carries the cell tag ``exercise``; the solution cell also carries
``hide-input``, so the course website shows it collapsed. The nbgrader metadata of the solution
and the test cell is :func:`solution_metadata` and :func:`autograded_metadata`.

``nbgrader generate_assignment`` writes the student release: it replaces each solution region by
:data:`CODE_STUB` (:data:`NBGRADER_CONFIG`), so a student's copy keeps ``answer = None`` and its
test cell fails on its assertion, never on a missing name. :func:`release` runs it;
``make assignments`` calls it as ``python -m umlkit.exercises``.
"""

from __future__ import annotations

import argparse
import copy
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nbformat

EXERCISE_TAG = "exercise"
HIDE_INPUT_TAG = "hide-input"
#: ``### Exercise 02.1 — Belief and uncertainty by hand``: notebook 02, its first exercise.
HEADING = re.compile(r"^###\s+Exercise\s+(\d{2})\.(\d+)\s+—\s+(\S.*)$")
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
#: An answer variable's placeholder line in front of the solution region.
PLACEHOLDER = re.compile(r"^[A-Za-z_]\w* = None$")
#: What the student release holds where the solution was.
CODE_STUB = "# YOUR CODE HERE: replace the None above"
#: The nbgrader configuration of the release: its first line marks a course folder as ours.
NBGRADER_CONFIG = f"""# umlkit's scratch nbgrader course (python -m umlkit.exercises release)
c = get_config()  # noqa: F821 (nbgrader defines it)
c.ClearSolutions.code_stub = {{"python": {CODE_STUB!r}}}
"""


def solution_metadata(grade_id: str) -> dict:
    """nbgrader's metadata of a solution cell (``grade_id`` e.g. ``"ex02-1-solution"``)."""
    return {
        "grade": False,
        "grade_id": grade_id,
        "locked": False,
        "schema_version": 3,
        "solution": True,
        "task": False,
    }


def autograded_metadata(grade_id: str, points: int = 1) -> dict:
    """nbgrader's metadata of an autograded test cell (``grade_id`` e.g. ``"ex02-1-tests"``)."""
    return {
        "grade": True,
        "grade_id": grade_id,
        "locked": True,
        "points": points,
        "schema_version": 3,
        "solution": False,
        "task": False,
    }


@dataclass(frozen=True)
class Exercise:
    """One exercise of a notebook: its number, title and code cells (setup, solution, test)."""

    notebook: int  # NN of the heading
    number: int  # k of the heading
    title: str
    cells: tuple  # the exercise's code cells, in order

    @property
    def name(self) -> str:
        """``"02.1"``."""
        return f"{self.notebook:02d}.{self.number}"

    @property
    def grade_prefix(self) -> str:
        """The start of its cells' nbgrader ``grade_id``: ``"ex02-1"``."""
        return f"ex{self.notebook:02d}-{self.number}"

    @property
    def solution(self):
        """The solution cell."""
        return self.cells[-2]

    @property
    def test(self):
        """The autograded test cell."""
        return self.cells[-1]


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _role(cell) -> str:
    """``"solution"``, ``"test"`` or ``"setup"`` by the cell's nbgrader metadata."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    if meta.get("solution"):
        return "solution"
    if meta.get("grade"):
        return "test"
    return "setup"


def exercises(notebook, released: bool = False) -> list[Exercise]:
    """The exercises of a notebook (an nbformat notebook), each checked against the conventions.

    An exercise's cells are the code cells tagged ``exercise`` between its heading and the next
    exercise heading (other cells in between are not part of it). ``released``: the notebook is
    a student release, whose solutions nbgrader replaced by :data:`CODE_STUB`.

    Raises:
        ValueError: an ``exercise`` cell before any exercise heading, headings not numbered
            1, 2, ... of one notebook, or an exercise whose cells break the conventions
            (:func:`check_exercise`).
    """
    found: list[tuple[re.Match, list]] = []
    for cell in notebook.cells:
        first_line = cell.source.split("\n", 1)[0].strip()
        heading = HEADING.match(first_line) if cell.cell_type == "markdown" else None
        if heading:
            found.append((heading, []))
        elif cell.cell_type == "code" and EXERCISE_TAG in _tags(cell):
            if not found:
                raise ValueError(f"a cell tagged {EXERCISE_TAG!r} before any exercise heading")
            found[-1][1].append(cell)
    result = [
        Exercise(int(match[1]), int(match[2]), match[3].strip(), tuple(cells))
        for match, cells in found
    ]
    if len({exercise.notebook for exercise in result}) > 1:
        raise ValueError("exercise headings of one notebook carry different notebook numbers")
    numbers = [exercise.number for exercise in result]
    if numbers != list(range(1, len(result) + 1)):
        raise ValueError(f"exercises must be numbered 1, 2, ... in order, got {numbers}")
    for exercise in result:
        check_exercise(exercise, released)
    return result


def check_exercise(exercise: Exercise, released: bool = False) -> None:
    """Raise a ``ValueError`` naming the exercise unless its cells follow the conventions.

    The roles in order (setup cells, one solution, one test), the ``hide-input`` tag of the
    solution, the nbgrader metadata and ``grade_id`` of both graded cells, and a solution region
    preceded by ``name = None`` placeholders only. In a student release (``released``) the
    region must have been replaced by :data:`CODE_STUB`.
    """
    where = f"exercise {exercise.name}"
    roles = [_role(cell) for cell in exercise.cells]
    if len(roles) < 3 or roles[-2:] != ["solution", "test"] or set(roles[:-2]) != {"setup"}:
        raise ValueError(f"{where}: needs setup cell(s), then one solution, then one test: {roles}")
    points = exercise.test.metadata["nbgrader"].get("points", 0)
    if not (isinstance(points, int | float) and points > 0):
        raise ValueError(f"{where}: the test cell must be worth points > 0, got {points!r}")
    expected = {
        "solution": solution_metadata(f"{exercise.grade_prefix}-solution"),
        "test": autograded_metadata(f"{exercise.grade_prefix}-tests", points=points),
    }
    for role, cell in (("solution", exercise.solution), ("test", exercise.test)):
        # the release adds keys of nbgrader's own (a checksum, the cell type): compare ours
        metadata = {key: cell.metadata["nbgrader"].get(key) for key in expected[role]}
        if metadata != expected[role]:
            raise ValueError(f"{where}: the {role} cell's nbgrader metadata is {metadata}")
    if HIDE_INPUT_TAG not in _tags(exercise.solution):
        raise ValueError(f"{where}: the solution cell needs the tag {HIDE_INPUT_TAG!r}")
    lines = [line.strip() for line in exercise.solution.source.split("\n")]
    if released:
        if lines.count(CODE_STUB) != 1 or BEGIN in lines:
            raise ValueError(f"{where}: the released solution cell needs the stub, no solution")
        start = lines.index(CODE_STUB)
    elif lines.count(BEGIN) != 1 or lines.count(END) != 1 or lines.index(BEGIN) > lines.index(END):
        raise ValueError(f"{where}: the solution cell needs one {BEGIN} ... {END} region")
    else:
        start = lines.index(BEGIN)
    before = [line for line in lines[:start] if line and not line.startswith("#")]
    if not before or not all(PLACEHOLDER.match(line) for line in before):
        raise ValueError(f"{where}: set each answer to None on a line of its own before {BEGIN}")


def isolated_exercises(notebook, released: bool = False):
    """A notebook of the exercises' code cells only, each exercise in a fresh namespace.

    Before each exercise a ``%reset -f`` cell empties the kernel's namespace, so running the
    result proves every exercise self-contained, in one kernel (modules stay imported, which
    changes no name an exercise sees). ``released`` as for :func:`exercises`.
    """
    cells = []
    for exercise in exercises(notebook, released):
        cells.append(nbformat.v4.new_code_cell("%reset -f"))
        cells.extend(
            # a new cell id: the result may be joined with another copy of the same notebook
            nbformat.v4.new_code_cell(cell.source, metadata=copy.deepcopy(cell.metadata))
            for cell in exercise.cells
        )
    return nbformat.v4.new_notebook(cells=cells, metadata=dict(notebook.metadata))


def _prepare_course(course_dir: Path, notebooks: Sequence[Path]) -> None:
    """An empty nbgrader course in ``course_dir``: one assignment per notebook, our config."""
    config = course_dir / "nbgrader_config.py"
    if course_dir.exists() and any(course_dir.iterdir()):
        if not (config.is_file() and config.read_text().startswith(NBGRADER_CONFIG.split("\n")[0])):
            raise ValueError(f"{course_dir} is not empty and not a course folder of this command")
        shutil.rmtree(course_dir)  # a stale assignment or database would mix into the release
    for path in notebooks:
        folder = course_dir / "source" / path.stem
        folder.mkdir(parents=True)
        shutil.copy2(path, folder / path.name)
    config.write_text(NBGRADER_CONFIG)


def release(notebooks: Sequence[str | Path], destination: str | Path, course_dir: str | Path):
    """Write the student release of ``notebooks`` with ``nbgrader generate_assignment``.

    Each notebook becomes an nbgrader assignment of its own name in the scratch course folder
    ``course_dir`` (emptied first), and its release is copied to
    ``destination/<name>/<name>.ipynb``, replacing an earlier one. nbgrader runs without its
    gradebook database (``--no-db``): a scratch course grades nothing, and a lecturer's own
    course records the assignment when it generates it there (docs/course.md).

    Returns:
        The released notebooks' paths, in the order of ``notebooks``.

    Raises:
        ValueError: ``course_dir`` holds files this command did not write.
        RuntimeError: nbgrader failed (its output is in the message).
    """
    notebooks = [Path(path).resolve() for path in notebooks]
    course_dir, destination = Path(course_dir).resolve(), Path(destination)
    _prepare_course(course_dir, notebooks)
    command = [sys.executable, "-m", "nbgrader", "generate_assignment", "*", "--no-db"]
    done = subprocess.run(command, cwd=course_dir, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"nbgrader generate_assignment failed:\n{done.stdout}{done.stderr}")
    released = []
    for path in notebooks:
        target = destination / path.stem / path.name
        shutil.rmtree(target.parent, ignore_errors=True)
        target.parent.mkdir(parents=True)
        shutil.copyfile(course_dir / "release" / path.stem / path.name, target)
        released.append(target)
    return released


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m umlkit.exercises release NOTEBOOK... --out DIR --course DIR``."""
    parser = argparse.ArgumentParser(prog="python -m umlkit.exercises", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("release", help="write the student release (nbgrader)")
    command.add_argument("notebooks", nargs="+", type=Path)
    command.add_argument("--out", type=Path, default=Path("build/assignments"))
    command.add_argument("--course", type=Path, default=Path("build/nbgrader"))
    args = parser.parse_args(argv)
    for path in release(args.notebooks, args.out, args.course):
        print(path)


if __name__ == "__main__":
    main()
