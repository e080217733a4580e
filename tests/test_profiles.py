"""Profiles and the notebook setup idiom."""

import pytest
import torch

from umlkit.profiles import (
    PROFILES,
    get_settings,
    pick_device,
    project_root,
    seed_everything,
    setup_notebook,
)


def test_every_profile_sizes_data_training_and_semi():
    for profile in PROFILES:
        settings = get_settings(profile)
        assert {"data", "train", "compare", "semi"} <= set(settings)
        assert settings["data"]["n"] > 0 and settings["train"]["epochs"] > 0
        assert set(settings["compare"]) <= set(settings["train"])  # it changes, never adds


def test_comparing_notebooks_get_the_compare_budget():
    full = setup_notebook("99_test", "default").settings
    compared = setup_notebook("99_test", "default", compare=True).settings
    assert compared["train"]["image_size"] == full["compare"]["image_size"] == 32
    assert full["train"]["image_size"] == 48  # notebook 03 trains at the full budget
    assert compared["train"]["width"] == full["train"]["width"]  # only what compare names
    assert (
        setup_notebook("99_test", "smoke", compare=True).settings["train"]
        == (get_settings("smoke")["train"])
    )


def test_smoke_is_smaller_than_default():
    smoke, default = get_settings("smoke"), get_settings("default")
    assert smoke["data"]["n"] < default["data"]["n"]
    assert smoke["train"]["epochs"] < default["train"]["epochs"]


def test_unknown_profile_is_named_in_the_error():
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        get_settings("fast")


def test_settings_are_copies():
    get_settings("smoke")["data"]["n"] = -1
    assert get_settings("smoke")["data"]["n"] > 0


def test_project_root_found_from_a_subfolder():
    root = project_root()
    assert project_root(root / "notebooks") == root
    assert (root / "pyproject.toml").is_file()


def test_smoke_figures_never_go_to_the_committed_folder(monkeypatch):
    monkeypatch.setenv("UMLKIT_PROFILE", "smoke")
    ctx = setup_notebook("99_test", None)
    assert ctx.profile == "smoke"
    assert ctx.figures_dir == ctx.root / "build" / "figures-smoke"
    assert setup_notebook("99_test", "default").figures_dir == ctx.root / "figures"


def test_save_figure_writes_png_and_pdf(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ctx = setup_notebook("99_test", "smoke", figures_dir=tmp_path)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    paths = ctx.save_figure(fig, "line")
    plt.close(fig)
    assert [p.name for p in paths] == ["99_test_line.png", "99_test_line.pdf"]
    assert all(p.stat().st_size > 0 for p in paths)


def test_seeding_repeats_random_numbers():
    seed_everything(3)
    first = torch.rand(3)
    seed_everything(3)
    assert torch.equal(first, torch.rand(3))


def test_pick_device_refuses_an_absent_gpu():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ValueError, match="CUDA is not available"):
        pick_device("cuda")
    assert pick_device() in {"cpu", "mps"}


@pytest.mark.parametrize("name", ["tpu", "cuda:x", "cpu:0", "gpu"])
def test_pick_device_names_the_valid_devices(name):
    with pytest.raises(ValueError) as caught:
        pick_device(name, what="--device")
    message = str(caught.value)
    assert message.startswith(f"--device {name!r} is not a device umlkit can use")
    assert "choose cpu, cuda, cuda:<n> or mps" in message and "available here: cpu" in message
    assert "\n" not in message


def test_pick_device_accepts_the_devices_it_lists():
    assert pick_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="TrainConfig.device 'cuda:1' requested but CUDA"):
            pick_device("cuda:1", what="TrainConfig.device")
