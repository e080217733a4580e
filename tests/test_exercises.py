"""umlkit.exercises: the conventions of a graded exercise, and the nbgrader student release."""

import nbformat
import pytest

from umlkit.exercises import (
    CODE_STUB,
    autograded_metadata,
    exercises,
    isolated_exercises,
    release,
    solution_metadata,
)

SETUP = "values = [1.0, 2.0, 3.0]"
SOLUTION = "total = None\n### BEGIN SOLUTION\ntotal = sum(values)\n### END SOLUTION"
TEST = 'assert total is not None, "set total"\nassert abs(total - 6.0) < 1e-9'


def _code(source, tags=("exercise",), nbgrader=None):
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = list(tags)
    if nbgrader is not None:
        cell.metadata["nbgrader"] = nbgrader
    return cell


def _exercise(number=1, solution=SOLUTION, solution_tags=("exercise", "hide-input")):
    prefix = f"ex02-{number}"
    return [
        nbformat.v4.new_markdown_cell(f"### Exercise 02.{number} — Add the values\n\nThe task."),
        _code(SETUP),
        _code(solution, solution_tags, solution_metadata(f"{prefix}-solution")),
        _code(TEST, nbgrader=autograded_metadata(f"{prefix}-tests")),
    ]


def _notebook(*cells):
    notebook = nbformat.v4.new_notebook(cells=list(cells))
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    return notebook


def test_an_exercise_is_read_with_its_cells_in_order():
    narration = [_code(f"print('narration {i}')", tags=()) for i in range(2)]
    found = exercises(_notebook(narration[0], *_exercise(1), narration[1], *_exercise(2)))
    assert [(e.name, e.title, e.grade_prefix) for e in found] == [
        ("02.1", "Add the values", "ex02-1"),
        ("02.2", "Add the values", "ex02-2"),
    ]
    assert [cell.source for cell in found[0].cells] == [SETUP, SOLUTION, TEST]
    assert found[1].solution.source == SOLUTION and found[1].test.source == TEST


def test_a_notebook_without_exercises_has_none():
    assert exercises(_notebook(_code("x = 1", tags=()))) == []


def test_broken_conventions_are_named():
    setup, solution, test = _exercise()[1:]
    heading = _exercise()[0]
    cases = {
        "before any exercise heading": [setup],
        "numbered 1, 2": [*_exercise(2)],
        "then one solution, then one test": [heading, solution, test],
        "tag 'hide-input'": _exercise(solution_tags=("exercise",)),
        "one ### BEGIN SOLUTION": _exercise(solution="total = None\ntotal = 6"),
        "to None on a line of its own": _exercise(solution=SOLUTION.replace("None", "0")),
    }
    for message, cells in cases.items():
        with pytest.raises(ValueError, match=message):
            exercises(_notebook(*cells))


def test_graded_cells_need_their_nbgrader_metadata():
    cells = _exercise()
    cells[3].metadata["nbgrader"] = autograded_metadata("ex02-7-tests")  # another exercise's id
    with pytest.raises(ValueError, match="test cell's nbgrader metadata"):
        exercises(_notebook(*cells))
    cells[3].metadata["nbgrader"] = autograded_metadata("ex02-1-tests", points=0)
    with pytest.raises(ValueError, match="points > 0"):
        exercises(_notebook(*cells))


def test_isolated_exercises_reset_the_namespace_before_each():
    isolated = isolated_exercises(_notebook(*_exercise(1), *_exercise(2)))
    sources = [cell.source for cell in isolated.cells]
    assert sources == ["%reset -f", SETUP, SOLUTION, TEST] * 2
    assert isolated.metadata["kernelspec"]["name"] == "python3"


def test_the_release_strips_the_solution_and_keeps_the_placeholder(tmp_path):
    source = tmp_path / "02_sums.ipynb"
    nbformat.write(_notebook(*_exercise(1)), source)
    (released,) = release([source], tmp_path / "assignments", tmp_path / "course")
    assert released == tmp_path / "assignments" / "02_sums" / "02_sums.ipynb"
    student = nbformat.read(released, as_version=4)
    cells = student.cells
    assert cells[2].source == f"total = None\n{CODE_STUB}"
    assert exercises(student, released=True)[0].solution.source == cells[2].source
    with pytest.raises(ValueError, match="needs the stub, no solution"):
        exercises(_notebook(*_exercise(1)), released=True)
    assert cells[3].source == TEST and cells[1].source == SETUP
    assert not (tmp_path / "course" / "gradebook.db").exists()  # a scratch course grades nothing
    # a second release replaces the first in the same scratch course folder
    assert release([source], tmp_path / "assignments", tmp_path / "course") == [released]


def test_the_release_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "course").mkdir()
    (tmp_path / "course" / "notes.txt").write_text("a lecturer's file")
    with pytest.raises(ValueError, match="not a course folder of this command"):
        release([], tmp_path / "assignments", tmp_path / "course")
    assert (tmp_path / "course" / "notes.txt").is_file()
