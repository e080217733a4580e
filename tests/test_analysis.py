"""umlkit.analysis as a package: every public name of its topic modules is re-exported."""

import importlib
import inspect
import pkgutil

import pytest

import umlkit.analysis as analysis

TOPIC_MODULES = [info.name for info in pkgutil.iter_modules(analysis.__path__)]


def _public_names(module) -> set[str]:
    """Names a module defines itself (not imports), without a leading underscore."""
    names = set()
    for name, value in vars(module).items():
        if name.startswith("_") or inspect.ismodule(value):
            continue
        defined_in = getattr(value, "__module__", None)
        if defined_in == module.__name__ or (
            defined_in in (None, "builtins", "typing") and not callable(value)
        ):
            names.add(name)
    return names


def test_the_topic_modules_are_the_documented_ones():
    assert set(TOPIC_MODULES) == {
        "ablations",
        "calibration",
        "experiments",
        "failure_cases",
        "frames",
        "robustness",
        "uncertainty_maps",
        "verdicts",
    }
    for name in TOPIC_MODULES:
        assert f":mod:`.{name}`" in analysis.__doc__


@pytest.mark.parametrize("name", TOPIC_MODULES)
def test_every_public_name_is_re_exported(name):
    module = importlib.import_module(f"umlkit.analysis.{name}")
    for public in _public_names(module):
        assert public in analysis.__all__, f"{name}.{public} is missing from __all__"
        assert getattr(analysis, public) is getattr(module, public)


def test_all_names_exist_once():
    assert len(analysis.__all__) == len(set(analysis.__all__))
    assert all(hasattr(analysis, name) for name in analysis.__all__)
