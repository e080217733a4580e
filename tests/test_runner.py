"""The papermill batch runner behind ``umlkit figures``."""

import os
import re
import shlex
import time
from pathlib import Path

import nbformat
import pytest

from umlkit.runner import (
    check_overrides,
    list_notebooks,
    load_parameters,
    notebook_parameters,
    parse_overrides,
    run_notebooks,
)


def _notebook(path, *cells, parameters="profile = None"):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(parameters)
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
    for empty in ([], ["", " "]):
        with pytest.raises(ValueError, match="--only names no notebook: .* among 01, 05, 10"):
            list_notebooks(project / "notebooks", empty)


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
    message = r"-p size '\[unclosed': not a YAML value \(expected ',' or '\]', but got"
    with pytest.raises(ValueError, match=message):
        parse_overrides([["size", "[unclosed"]])


def test_a_failing_notebook_is_reported_and_the_next_one_still_runs(project, capfd):
    figures = project / "build" / "figures-smoke"
    _notebook(
        project / "notebooks" / "01_fails.ipynb",
        "raise RuntimeError('boom at size %d' % size)",
        parameters="profile = None\nsize = 0",
    )
    _notebook(
        project / "notebooks" / "02_works.ipynb",
        f"import pathlib; d = pathlib.Path({str(figures)!r}); d.mkdir(parents=True, exist_ok=True)\n"
        "(d / '02_works_plot.png').write_bytes(b'png')",
    )
    # figures of an earlier run: a notebook that succeeds drops the ones it no longer writes;
    # a failed notebook's and another notebook's stay
    figures.mkdir(parents=True)
    earlier = ["01_fails_plot.png", "02_works_renamed.png", "02_works_renamed.pdf", "09_semi.png"]
    for name in earlier:
        (figures / name).write_bytes(b"old")
        os.utime(figures / name, (time.time() - 60, time.time() - 60))
    table = run_notebooks("smoke", root=project, progress=False)
    assert list(table.notebook) == ["01_fails", "02_works"]
    assert list(table.status) == ["failed", "ok"]
    assert "RuntimeError: boom at size 8" in table.error[0]
    assert list(table.figures) == [0, 1]
    assert list(table.removed) == [0, 2]
    assert sorted(p.name for p in figures.iterdir()) == [
        "01_fails_plot.png",
        "02_works_plot.png",
        "09_semi.png",
    ]
    assert (project / "build" / "notebooks-smoke" / "02_works.ipynb").is_file()
    # the kernels' "running over TCP without encryption" warning stays out of the console, and
    # 02 (which declares no size) is not passed the set's size: papermill does not warn about it
    err = capfd.readouterr().err
    assert "without encryption" not in err
    assert "Passed unknown parameter" not in err


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


PARAMETERS = """\
profile = None  # the profile
epochs: int | None = None  # None -> the profile's
rate: float = 0.1
kinds: list[str] | None = (
    None  # several lines, as ruff formats a long comment
)
seed = 0
name = "derm"
flag = False
sizes = [32, 64]
anything = None
"""


def test_notebook_parameters_reads_annotations_and_defaults(tmp_path):
    path = tmp_path / "03_train.ipynb"
    _notebook(path, parameters=PARAMETERS)
    parameters = notebook_parameters(path)
    assert list(parameters) == [
        "profile",
        "epochs",
        "rate",
        "kinds",
        "seed",
        "name",
        "flag",
        "sizes",
        "anything",
    ]
    assert parameters["epochs"].types == (int, type(None))
    assert parameters["epochs"].type_text == "int | None"
    assert parameters["rate"].types == (float, int)
    assert parameters["kinds"].types == (list, type(None)) and parameters["kinds"].default == "None"
    assert parameters["seed"].types == (int,) and parameters["seed"].default == "0"
    assert parameters["name"].types == (str,) and parameters["flag"].types == (bool,)
    assert parameters["sizes"].types == (list,)
    assert parameters["anything"].types is None and parameters["profile"].types is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"epoch": 3},
            "-p epoch: none of the notebooks to run (03) has that parameter; did you mean epochs?",
        ),
        (
            {"epochs": "abc"},
            "-p epochs 'abc': 03_train expects int | None (its default is None), got str",
        ),
        ({"epochs": True}, "-p epochs True: 03_train expects int | None"),
        ({"epochs": 2.5}, "-p epochs 2.5: 03_train expects int | None"),
        ({"seed": None}, "-p seed None: 03_train expects int (its default is 0)"),
        ({"flag": 1}, "-p flag 1: 03_train expects bool"),
        ({"sizes": 32}, "-p sizes 32: 03_train expects list"),
        ({"name": 3}, "-p name 3: 03_train expects str"),
        ({"profile": "paper"}, "-p profile: choose the profile with --profile, not -p"),
    ],
)
def test_overrides_are_checked_against_the_parameters_cells(tmp_path, overrides, message):
    path = tmp_path / "03_train.ipynb"
    _notebook(path, parameters=PARAMETERS)
    with pytest.raises(ValueError) as caught:
        check_overrides([path], overrides)
    assert str(caught.value).startswith(message)


def test_overrides_of_the_right_type_pass(tmp_path):
    path = tmp_path / "03_train.ipynb"
    _notebook(path, parameters=PARAMETERS)
    check_overrides(
        [path],
        {
            "epochs": 3,
            "rate": 1,  # an int where a float is expected
            "kinds": ["derm", "fundus"],
            "seed": 2,
            "flag": True,
            "anything": {"a": 1},  # a None default without annotation takes any value
        },
    )
    check_overrides([path], {"epochs": None, "kinds": None})


ELEMENTS = """\
seeds: list[int] | None = None
severities: dict[str, list[float]] | None = None
sizes: tuple[int, ...] = (32, 64)
names: list = []
"""


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"seeds": [0.5]},
            "-p seeds [0.5]: 03_train expects list[int] | None (its default is None), got the "
            "element 0.5 (float) where int is expected",
        ),
        ({"seeds": [1, True]}, "got the element True (bool) where int is expected"),
        ({"severities": {"blur": [1, "x"]}}, "got the element 'x' (str) where float is expected"),
        ({"severities": {3: [1.0]}}, "got the element 3 (int) where str is expected"),
        ({"severities": {"blur": 2.0}}, "got the element 2.0 (float) where list[float] is"),
        ({"sizes": [32, "64"]}, "got the element '64' (str) where int is expected"),
    ],
)
def test_the_elements_of_list_and_dict_overrides_are_checked(tmp_path, overrides, message):
    path = tmp_path / "03_train.ipynb"
    _notebook(path, parameters=ELEMENTS)
    with pytest.raises(ValueError) as caught:
        check_overrides([path], overrides)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_elements_of_the_right_type_pass(tmp_path):
    path = tmp_path / "03_train.ipynb"
    _notebook(path, parameters=ELEMENTS)
    check_overrides(
        [path],
        {
            "seeds": [0, 1],
            "severities": {"blur": [1, 2.5]},  # an int where a float is expected
            "sizes": [16],
            "names": [1, "a", None],  # a list without element type takes any elements
        },
    )
    check_overrides([path], {"seeds": [], "severities": None})


def test_an_override_must_fit_every_notebook_that_declares_it(tmp_path):
    first, second = tmp_path / "01_a.ipynb", tmp_path / "02_b.ipynb"
    _notebook(first, parameters="seed = 0\n")
    _notebook(second, parameters="seed: list[int] | None = None\n")
    with pytest.raises(ValueError, match=r"^-p seed 3: 02_b expects list\[int\] \| None"):
        check_overrides([first, second], {"seed": 3})


def test_a_bad_override_stops_the_batch_before_any_notebook_runs(project):
    _notebook(project / "notebooks" / "01_a.ipynb", parameters="epochs: int | None = None\n")
    with pytest.raises(ValueError, match="-p epochs 'abc'"):
        run_notebooks("smoke", root=project, overrides={"epochs": "abc"}, progress=False)
    with pytest.raises(ValueError, match="did you mean epochs"):
        run_notebooks("smoke", root=project, overrides={"epoch": 3}, progress=False)
    assert not (project / "build").exists()


ROOT = Path(__file__).resolve().parents[1]
#: The pages that show ``umlkit figures`` commands for readers to copy.
DOCUMENTED = (ROOT / "README.md", ROOT / "notebooks" / "00_overview.ipynb")


def _documented_figures_commands() -> list[tuple[str, list[str]]]:
    """``(page, arguments)`` of every ``umlkit figures ...`` the README and notebook 00 show (a
    command ends at a backtick, a table's ``|``, a shell comment or the end of its line)."""
    commands = []
    for page in DOCUMENTED:
        if page.suffix == ".ipynb":
            cells = nbformat.read(page, as_version=4).cells
            text = "\n".join(cell.source for cell in cells if cell.cell_type == "markdown")
        else:
            text = page.read_text(encoding="utf-8")
        for match in re.finditer(r"umlkit figures([^`|#\n]*)", text):
            commands.append((page.name, shlex.split(match.group(1))))
    return commands


def test_every_documented_figures_command_passes_the_runners_checks():
    from umlkit.cli import build_parser
    from umlkit.profiles import PROFILES

    commands = _documented_figures_commands()
    assert len(commands) >= 6  # the README's and notebook 00's examples were found
    for page, arguments in commands:
        args = build_parser().parse_args(["figures", *arguments])
        assert args.profile in PROFILES, f"{page}: umlkit figures {' '.join(arguments)}"
        only = None if args.only is None else args.only.split(",")
        notebooks = list_notebooks(ROOT / "notebooks", only)
        # raises, naming the parameter, where no chosen notebook has it or its type is wrong
        check_overrides(notebooks, parse_overrides(args.param))
