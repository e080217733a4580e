"""umlkit.plots as a package: every topic module's public names are re-exported, nothing private crosses."""

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

from umlkit import plots

MODULES = sorted(info.name for info in pkgutil.iter_modules(plots.__path__))


def public_names(module) -> set[str]:
    """Names a module defines itself (functions and constants), not the ones it imports."""
    tree = ast.parse(Path(module.__file__).read_text())
    names = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            names |= {target.id for target in node.targets if isinstance(target, ast.Name)}
    return {name for name in names if not name.startswith("_")}


def test_the_topic_modules_are_there():
    assert {"style", "calibration", "uncertainty_maps", "semi"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_every_public_name_is_re_exported(name):
    module = importlib.import_module(f"umlkit.plots.{name}")
    missing = public_names(module) - set(plots.__all__)
    assert not missing, f"umlkit.plots.{name} defines {sorted(missing)}, absent from plots.__all__"
    for public in public_names(module):
        assert getattr(plots, public) is getattr(module, public)


def test_all_lists_each_name_once_and_every_name_exists():
    assert len(plots.__all__) == len(set(plots.__all__))
    for name in plots.__all__:
        assert hasattr(plots, name), name


@pytest.mark.parametrize("name", MODULES)
def test_no_module_imports_private_names(name):
    tree = ast.parse(Path(importlib.import_module(f"umlkit.plots.{name}").__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("umlkit"):
            private = [alias.name for alias in node.names if alias.name.startswith("_")]
            assert not private, f"umlkit.plots.{name} imports {private} from {node.module}"
