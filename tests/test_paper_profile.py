"""The ``paper`` profile: its settings and parameter file are well-formed, and a dry run starts.

The dry runs take the profile's training configuration through the public entry points
(``umlkit train --profile paper`` and ``umlkit figures --profile paper``) on the tiny ISIC 2017
layout of the loader tests, shrunk in epochs, images and image size only: a 256-pixel UML step
at width 32 takes seconds per image on a CPU, and the image size is a value the loader resizes
to, not a structural one (any multiple of the networks' downsampling factor trains).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from umlkit import profiles
from umlkit.cli import main
from umlkit.data.loaders import KINDS
from umlkit.profiles import profile_train_values
from umlkit.runner import check_overrides, list_notebooks, load_parameters
from umlkit.train import TrainConfig

REPO = Path(__file__).resolve().parents[1]


def _loader_tests():
    """tests/test_data_loaders.py as a module (the tests run with --import-mode=importlib, where
    test files do not import each other by name)."""
    spec = importlib.util.spec_from_file_location(
        "_loader_fixtures", Path(__file__).with_name("test_data_loaders.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: The ISIC 2017 fixture layout of the loader tests: 6 / 2 / 2 images.
isic_root = _loader_tests().isic_root
PAPER_YAML = REPO / "notebooks" / "params" / "paper.yaml"
#: TrainConfig values the notebooks do not take from a profile (analysis.train_config): the
#: paper profile may only hold them where they equal TrainConfig's defaults.
NOT_READ_BY_NOTEBOOKS = ("weight_decay", "constant_fraction", "min_lr", "loss_weights")


def official_block() -> dict:
    """The commented ``--- official configuration ---`` block of paper.yaml, parsed."""
    text = PAPER_YAML.read_text()
    found = re.search(r"# --- official configuration ---\n(.*?)# --- end ---", text, re.S)
    assert found, "paper.yaml lost its official-configuration block"
    lines = [line[2:] if line.startswith("# ") else line[1:] for line in found[1].splitlines()]
    return yaml.safe_load("\n".join(lines))


def test_paper_yaml_names_only_parameters_the_notebooks_have():
    values = load_parameters("paper", PAPER_YAML.parent)
    assert values["profile"] == "paper"
    # a misspelt or mistyped entry would be passed to every notebook and silently ignored
    entries = {name: value for name, value in values.items() if name != "profile"}
    check_overrides(list_notebooks(REPO / "notebooks"), entries)
    assert values["kind"] in KINDS


def test_paper_yaml_documents_the_profiles_values():
    block = official_block()
    paper = profiles.SETTINGS["paper"]
    for key, value in block["train"].items():
        assert paper["train"][key] == value, key
    assert set(block["datasets"]) == set(paper["datasets"])
    for kind, documented in block["datasets"].items():
        for key, value in documented.items():
            assert paper["datasets"][kind][key] == value, (kind, key)


@pytest.mark.parametrize("kind", sorted(profiles.SETTINGS["paper"]["datasets"]))
def test_paper_settings_make_a_training_configuration_for_every_dataset(kind):
    assert kind in KINDS
    values = profile_train_values("paper", kind)
    config = TrainConfig(**values, dataset=kind, data_root="unused")
    # the official schedule: 100 epochs, constant for 30, KL annealing over 50
    assert (config.epochs, int(config.constant_fraction * config.epochs)) == (100, 30)
    assert config.kl_anneal_epochs == 50
    assert config.batch_size == 8 and config.lr == 1e-4 and config.image_size == 256
    defaults = TrainConfig()
    for name in NOT_READ_BY_NOTEBOOKS:
        assert getattr(config, name) == getattr(defaults, name), name
    # the notebooks' default annealing (half the epochs) is the official 50 at 100 epochs
    assert TrainConfig(epochs=config.epochs).kl_anneal_epochs == config.kl_anneal_epochs


def test_a_misspelt_paper_setting_stops_the_command(monkeypatch, tmp_path, capsys, isic_root):
    settings = profiles.SETTINGS["paper"]
    monkeypatch.setitem(settings, "train", {**settings["train"], "epoch": 3})
    code = main(
        ["train", "--profile", "paper", "--data-root", str(isic_root)]
        + ["--output-dir", str(tmp_path / "run")]
    )
    assert code == 2
    assert "train.epoch is not a training setting" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_umlkit_train_with_the_paper_profile_runs(isic_root, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        ["train", "--profile", "paper", "--data-root", str(isic_root), "--output-dir", str(out)]
        + ["--epochs", "1", "--image-size", "32", "--device", "cpu"]
    )
    assert code == 0, capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())
    config = config.get("train_config", config)
    # the flags given win; everything else is the profile's
    assert (config["epochs"], config["image_size"]) == (1, 32)
    paper = profiles.SETTINGS["paper"]["train"]
    for key in ("width", "batch_size", "lr", "min_lr", "anneal_epochs", "augment"):
        assert config[key] == paper[key], key
    assert config["loss_weights"] == paper["loss_weights"]
    assert (out / "last.pt").is_file() and (out / "best.pt").is_file()


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A checkout holding notebook 03 and the real parameter files; builds and caches stay in it."""
    root = tmp_path / "project"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(REPO / "notebooks" / "03_training.ipynb", root / "notebooks")
    shutil.copytree(REPO / "notebooks" / "params", root / "notebooks" / "params")
    (root / "pyproject.toml").write_text("")
    (root / "umlkit").symlink_to(REPO / "umlkit")
    monkeypatch.chdir(root)
    return root


def test_umlkit_figures_with_the_paper_profile_runs_notebook_03(project, isic_root, capsys):
    overrides = {"data_root": str(isic_root), "epochs": "1", "image_size": "32", "seeds": "[0]"}
    args = [arg for name, value in overrides.items() for arg in ("-p", name, value)]
    code = main(["figures", "--profile", "paper", "--only", "03", *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert re.search(r"03_training\s+\S+\s+ok", captured.out)
    assert list((project / "build" / "figures-paper").glob("03_training_*.png"))
