"""The readability rules of the package, checked on its source (CONTRIBUTING: "A codebase a student
can read"): modules and functions stay short, no module reaches into another's private names, and the
comments explain instead of keeping a diary of timings and revisions."""

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "umlkit"
SOURCES = sorted(PACKAGE.rglob("*.py"))
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60

#: What a lab diary looks like in a comment or docstring: a timing, a revision or version history.
DIARY = re.compile(
    r"\d\s?ms\b|\bms of\b|\bs of (?:CPU|a)\b|\b(?:revision|version) \d|\bwas \d+(?:\.\d+)? (?:ms|s)\b",
    re.IGNORECASE,
)


def _relative(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent)) if path.is_relative_to(PACKAGE) else str(path)


def _body_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function's body, its docstring left out."""
    body = function.body
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        body = body[1:]
    if not body:
        return 0
    return body[-1].end_lineno - body[0].lineno + 1


def _long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        f"{_relative(path)}:{node.lineno} {node.name} ({_body_lines(node)} lines)"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and _body_lines(node) > MAX_FUNCTION_LINES
    ]


def _explanations(path: Path) -> list[tuple[int, str]]:
    """Every comment and docstring-like string of a module, with its line number."""
    source = path.read_text()
    found = [
        (token.start[0], token.string)
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    ]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            docstring = ast.get_docstring(node, clean=False)
            if docstring:
                found.append((getattr(node, "lineno", 1), docstring))
    return found


def test_the_checks_see_the_whole_package():
    assert len(SOURCES) > 30 and PACKAGE / "train.py" in SOURCES


@pytest.mark.parametrize("path", SOURCES, ids=_relative)
def test_modules_stay_short(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{_relative(path)} has {lines} lines"


@pytest.mark.parametrize("path", SOURCES, ids=_relative)
def test_function_bodies_stay_short(path):
    assert _long_functions(path) == []


@pytest.mark.parametrize("path", SOURCES, ids=_relative)
def test_no_module_imports_another_modules_private_names(path):
    tree = ast.parse(path.read_text())
    private = [
        f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("umlkit")
        for alias in node.names
        if alias.name.startswith("_")
    ]
    assert private == [], f"{_relative(path)} imports private names"


@pytest.mark.parametrize("path", SOURCES, ids=_relative)
def test_comments_explain_instead_of_keeping_a_diary(path):
    diary = [
        f"line {line}: {match.group(0)!r}"
        for line, text in _explanations(path)
        for match in DIARY.finditer(text)
    ]
    assert diary == [], f"{_relative(path)}: timings or history in comments/docstrings"


def test_the_checks_catch_what_they_look_for(tmp_path):
    long_function = "def f():\n    '''Doc.'''\n" + "    x = 1\n" * (MAX_FUNCTION_LINES + 1)
    (tmp_path / "long.py").write_text(long_function)
    assert _long_functions(tmp_path / "long.py") != []
    assert DIARY.search("# 4.9 ms of a 215-ms CPU step")
    assert DIARY.search("generator version 2 used")
    assert not DIARY.search("# milliseconds are not mentioned; versions of torch are")
