"""The papermill batch runner behind ``umlkit figures``."""

import nbformat
import pytest

from umlkit.runner import list_notebooks, load_parameters, parse_overrides, run_notebooks


def _notebook(path, *cells):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("profile = None")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, *(nbformat.v4.new_code_cell(src) for src in cells)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)


@pytest.fixture
def project(tmp_path):
    (tmp_path / "notebooks" / "params").mkdir(parents=True)
    (tmp_path / "notebooks" / "params" / "smoke.yaml").write_text("profile: smoke\nsize: 8\n")
    return tmp_path


def test_list_notebooks_in_order_and_filtered(project):
    for name in ("05_b", "01_a", "10_c"):
        _notebook(project / "notebooks" / f"{name}.ipynb")
    all_ = list_notebooks(project / "notebooks")
    assert [p.stem for p in all_] == ["01_a", "05_b", "10_c"]
    assert [p.stem for p in list_notebooks(project / "notebooks", ["10", "5"])] == ["05_b", "10_c"]
    with pytest.raises(ValueError, match="--only '07' matches no notebook"):
        list_notebooks(project / "notebooks", ["07"])


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no numbered notebooks"):
        list_notebooks(tmp_path)


def test_parameters_from_the_set_and_overrides(project):
    params = load_parameters("smoke", project / "notebooks" / "params", {"size": 16})
    assert params == {"profile": "smoke", "size": 16}
    with pytest.raises(FileNotFoundError, match="paper.yaml"):
        load_parameters("paper", project / "notebooks" / "params")


def test_overrides_are_read_as_yaml():
    assert parse_overrides([["epochs", "3"], ["kinds", "[derm, fundus]"]]) == {
        "epochs": 3,
        "kinds": ["derm", "fundus"],
    }
    with pytest.raises(ValueError, match="identifier"):
        parse_overrides([["bad-name", "1"]])


def test_a_failing_notebook_is_reported_and_the_next_one_still_runs(project):
    figures = project / "build" / "figures-smoke"
    _notebook(
        project / "notebooks" / "01_fails.ipynb", "raise RuntimeError('boom at size %d' % size)"
    )
    _notebook(
        project / "notebooks" / "02_works.ipynb",
        f"import pathlib; d = pathlib.Path({str(figures)!r}); d.mkdir(parents=True, exist_ok=True)\n"
        "(d / '02_works_plot.png').write_bytes(b'png')",
    )
    table = run_notebooks("smoke", root=project, progress=False)
    assert list(table.notebook) == ["01_fails", "02_works"]
    assert list(table.status) == ["failed", "ok"]
    assert "RuntimeError: boom at size 8" in table.error[0]
    assert list(table.figures) == [0, 1]
    assert (project / "build" / "notebooks" / "02_works.ipynb").is_file()


def test_notebook_map_reads_titles_and_parameters(project):
    path = project / "notebooks" / "03_train.ipynb"
    _notebook(path)
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_markdown_cell("# 03 · Training\n\ntext"))
    nbformat.write(nb, path)
    from umlkit.runner import notebook_map

    table = notebook_map(project / "notebooks")
    assert table.to_dict("records") == [
        {"notebook": "03_train", "title": "03 · Training", "parameters": "profile=None"}
    ]
