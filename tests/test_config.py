"""umlkit.config: the training configuration, its checks and its round trip through a dict."""

import pytest

from umlkit.config import TrainConfig, check_image_size, model_depth, size_factor


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"augment": "mixup"}, "augment must be one of"),
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"width": 2.5}, "width must be a positive integer"),
        ({"lr": 0.0}, "need lr > 0"),
        ({"constant_fraction": 1.5}, "constant_fraction must lie in"),
        ({"anneal_epochs": 0}, "anneal_epochs must be positive"),
        ({"num_classes": 3}, "num_classes is for folder datasets; dataset 'isic2017' has its own"),
    ],
)
def test_bad_train_configurations_are_rejected(changes, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**changes)


def test_check_image_size_follows_the_depth():
    check_image_size(60, depth=3)  # 2 halvings: multiples of 4
    with pytest.raises(ValueError, match=r"^--image-size 4 is not divisible by 8: .*\(e.g. 8\)$"):
        check_image_size(4, depth=4, name="--image-size")


def test_size_factor_is_two_to_the_halvings():
    assert [size_factor(depth) for depth in (2, 3, 4)] == [2, 4, 8]


def test_model_depth_is_the_option_or_the_default_and_none_when_invalid():
    assert model_depth(TrainConfig()) == 4
    assert model_depth(TrainConfig(model_options={"depth": 3})) == 3
    assert model_depth(TrainConfig(model_options={"depth": True})) is None
    assert TrainConfig(dataset="folder", num_classes=3).num_classes == 3


def test_a_configuration_survives_its_dict():
    config = TrainConfig(epochs=3, width=8, model_options={"dropout": 0.0}, loss_weights=(1, 1, 1))
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        TrainConfig.from_dict({**config.to_dict(), "colour": "red"})
