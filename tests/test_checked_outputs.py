"""umlkit.checked_outputs: only the cells marked # NBVAL_CHECK_OUTPUT keep an output."""

import nbformat
import pytest

from umlkit.checked_outputs import (
    MARKER,
    clear,
    is_checked,
    keep_checked_outputs,
    sidecar_path,
    store,
    with_stored_outputs,
)


def _notebook(*sources):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    return notebook


def _output(text):
    return nbformat.v4.new_output("stream", name="stdout", text=text)


def test_only_a_first_line_marker_checks_a_cell():
    notebook = _notebook(f"{MARKER}\nprint(1)", f"print(1)  {MARKER}", f"x = 1\n{MARKER}")
    notebook.cells.append(nbformat.v4.new_markdown_cell(MARKER))
    assert [is_checked(cell) for cell in notebook.cells] == [True, False, False, False]


def test_only_the_checked_cells_keep_their_outputs_and_execution_counts():
    notebook = _notebook(f"{MARKER}\nprint(1)", "print(2)")
    for count, (cell, text) in enumerate(zip(notebook.cells, ("1\n", "2\n"), strict=True), 1):
        cell.outputs, cell.execution_count = [_output(text)], count
    keep_checked_outputs(notebook)
    assert [cell.outputs for cell in notebook.cells] == [[_output("1\n")], []]
    # nbval compares a stored output only where its cell was run: the count stays
    assert [cell.execution_count for cell in notebook.cells] == [1, None]


def test_the_executed_copy_supplies_the_checked_outputs():
    notebook, executed = _notebook(f"{MARKER}\n1 + 1", "3"), _notebook(f"{MARKER}\n1 + 1", "3")
    result = nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=7)
    executed.cells[0].outputs = [result]
    executed.cells[1].outputs = [_output("3")]
    executed.cells[0].execution_count = 7
    keep_checked_outputs(notebook, executed)
    (stored,) = notebook.cells[0].outputs
    assert stored["data"] == {"text/plain": "2"} and notebook.cells[0].execution_count == 7
    assert notebook.cells[1].outputs == []
    with pytest.raises(ValueError, match="other cells"):
        keep_checked_outputs(notebook, _notebook("print('another notebook')"))


def test_store_executes_the_notebook_and_writes_the_checked_output(tmp_path):
    path = tmp_path / "nb.ipynb"
    profile_line = "import os\nprint(os.environ['UMLKIT_PROFILE'], 6 * 7)"
    nbformat.write(_notebook(f"{MARKER}\n{profile_line}", "print('not kept')"), path)
    assert store(path) == 1
    # the notebook stays clear; its checked output is kept beside it, and put back for nbval
    committed = nbformat.read(path, as_version=4)
    assert all(c.outputs == [] and c.execution_count is None for c in committed.cells)
    assert sidecar_path(path) == tmp_path / "checked" / "nb.json"
    stored = with_stored_outputs(committed, path)
    assert [output["text"] for output in stored.cells[0].outputs] == ["smoke 42\n"]
    assert stored.cells[1].outputs == [] and stored.cells[1].execution_count is None
    assert stored.cells[0].execution_count == 1
    stored.cells[1].outputs = [_output("left by a run\n")]
    nbformat.write(stored, path)
    clear(path)
    cleared = nbformat.read(path, as_version=4).cells
    assert cleared[0].outputs == [] and cleared[1].outputs == []
    # a checked cell edited without storing again: its old output is refused, in one line
    edited = nbformat.read(path, as_version=4)
    edited.cells[0].source += "\nprint(1)"
    with pytest.raises(ValueError, match="other checked cells than nb.ipynb's: run make check"):
        with_stored_outputs(edited, path)
