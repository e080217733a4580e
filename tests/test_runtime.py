"""The runtime helpers: project root, seeding, device choice."""

import pytest
import torch

from umlkit.runtime import pick_device, project_root, seed_everything


def test_project_root_found_from_a_subfolder():
    root = project_root()
    assert project_root(root / "notebooks") == root
    assert (root / "pyproject.toml").is_file()


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
