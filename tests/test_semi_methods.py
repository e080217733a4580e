"""umlkit.semi.methods: every method by name, its bad options named, and rebuilt from a checkpoint."""

import pytest
import torch

from umlkit.checkpoints import save_checkpoint
from umlkit.models import build_model
from umlkit.semi.methods import METHODS, build_method, load_method


def test_every_method_is_built_by_name_and_bad_names_and_options_are_named():
    assert list(METHODS) == ["supervised", "mean_teacher", "caml", "burl"]
    for name, cls in METHODS.items():
        method = build_method(name, num_classes=3, width=4)
        assert type(method) is cls and method.num_classes == 3
    with pytest.raises(ValueError, match="unknown semi-supervised method 'fixmatch'"):
        build_method("fixmatch")
    with pytest.raises(ValueError, match="bad options"):
        build_method("caml", temperature=3)


def test_a_method_is_rebuilt_from_its_checkpoint_with_its_weights(tmp_path):
    torch.manual_seed(0)
    method = build_method("mean_teacher", width=4, ce_weight=0.5)
    model_config = {
        "method": "mean_teacher",
        "in_channels": 3,
        "num_classes": 2,
        "width": 4,
        "options": {"ce_weight": 0.5},
    }
    path = save_checkpoint(
        tmp_path / "best.pt", {"model_config": model_config, "model_state": method.state_dict()}
    )
    loaded = load_method(path)
    assert type(loaded) is type(method) and loaded.ce_weight == 0.5 and not loaded.training
    for name, tensor in method.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name


def test_a_supervised_checkpoint_is_not_taken_for_a_method(tmp_path):
    model = build_model("unet", width=4)
    path = save_checkpoint(
        tmp_path / "best.pt",
        {"model_config": model.config.to_dict(), "model_state": model.state_dict()},
    )
    with pytest.raises(ValueError, match="is not a semi-supervised checkpoint"):
        load_method(path)
