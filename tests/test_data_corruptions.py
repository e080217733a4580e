"""Tests of umlkit.data.corruptions."""

from __future__ import annotations

import math

import pytest
import torch

from umlkit.data import CORRUPTIONS, DEFAULT_SEVERITIES, Corruption, corrupt


def _image(seed: int = 0, shape=(3, 32, 32)) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_output_stays_in_range_and_shape(name):
    image = _image()
    severity = max(DEFAULT_SEVERITIES[name])
    out = corrupt(image, name, severity, seed=0)
    assert out.shape == image.shape and out.dtype == image.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, image)
    batch = corrupt(torch.stack([image, _image(1)]), name, severity)
    assert batch.shape == (2, 3, 32, 32) and batch.min() >= 0 and batch.max() <= 1


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_severity_zero_is_the_identity(name):
    image = _image()
    out = corrupt(image, name, 0.0, seed=3)
    assert torch.equal(out, image) and out is not image


@pytest.mark.parametrize("name", ["gaussian_noise", "salt_and_pepper"])
def test_same_seed_same_corruption(name):
    image = _image()
    assert torch.equal(corrupt(image, name, 0.1, seed=4), corrupt(image, name, 0.1, seed=4))
    assert not torch.equal(corrupt(image, name, 0.1, seed=4), corrupt(image, name, 0.1, seed=5))


def test_salt_and_pepper_changes_the_requested_fraction_of_pixels():
    image = torch.full((3, 40, 50), 0.5)
    out = corrupt(image, "salt_and_pepper", 0.1, seed=0)
    changed = (out != 0.5).any(dim=0)
    assert changed.sum() == round(0.1 * 40 * 50)  # 200 pixel positions
    # All channels of a changed pixel get the same value: black or white, never coloured.
    assert torch.equal((out == 0).all(dim=0) | (out == 1).all(dim=0), changed)
    assert (out == 0).all(dim=0).sum() == 100 and (out == 1).all(dim=0).sum() == 100


def test_salt_and_pepper_differs_between_images_of_a_batch():
    out = corrupt(torch.full((2, 1, 16, 16), 0.5), "salt_and_pepper", 0.2, seed=0)
    assert not torch.equal(out[0], out[1])


def test_gaussian_noise_has_the_requested_spread():
    image = torch.full((3, 64, 64), 0.5)
    difference = corrupt(image, "gaussian_noise", 0.05, seed=0) - image
    # 12 288 draws, no clipping at 10 sigma: the sample std is within 3 % of sigma.
    assert difference.std().item() == pytest.approx(0.05, rel=0.03)
    assert abs(difference.mean().item()) < 0.003


def test_gaussian_blur_by_hand():
    image = torch.zeros(1, 9, 9)
    image[0, 4, 4] = 1.0
    out = corrupt(image, "gaussian_blur", 1.0)
    weights = [math.exp(-(k**2) / 2) for k in range(-3, 4)]
    centre = 1 / sum(weights)
    # The separable kernel's centre weight is the product of the two 1-D centre weights.
    assert out[0, 4, 4].item() == pytest.approx(centre**2, rel=1e-5)
    assert out[0, 4, 5].item() == pytest.approx(centre * weights[4] / sum(weights), rel=1e-5)
    assert out.sum().item() == pytest.approx(1.0, rel=1e-5)
    flat = torch.full((3, 12, 12), 0.3)
    assert torch.allclose(corrupt(flat, "gaussian_blur", 2.0), flat)


def test_contrast_by_hand():
    image = torch.tensor([[[0.0, 1.0], [0.2, 0.6]]])  # mean 0.45
    out = corrupt(image, "contrast", 0.5)
    assert torch.allclose(out, torch.tensor([[[0.225, 0.725], [0.325, 0.525]]]))
    assert torch.allclose(corrupt(image, "contrast", 1.0), torch.full_like(image, 0.45))


def test_item_dict_only_image_is_corrupted_with_an_id_seed():
    transform = Corruption("gaussian_noise", 0.1, seed=0)
    mask = torch.ones(8, 8, dtype=torch.int64)
    item = {"image": torch.full((3, 8, 8), 0.5), "mask": mask, "label": torch.tensor(1), "id": "a"}
    out = transform(item)
    assert out["mask"] is mask and out["label"] is item["label"] and out["id"] == "a"
    assert not torch.equal(out["image"], item["image"])
    assert torch.equal(item["image"], torch.full((3, 8, 8), 0.5))  # the input is not modified
    assert torch.equal(transform(item)["image"], out["image"])
    other = transform({**item, "id": "b"})
    assert not torch.equal(other["image"], out["image"])


@pytest.mark.parametrize(
    ("name", "severity", "message"),
    [
        ("fog", 0.1, "unknown corruption 'fog'; choose one of gaussian_noise"),
        ("gaussian_noise", -0.1, r"severity of gaussian_noise must be >= 0"),
        ("salt_and_pepper", 1.5, r"severity of salt_and_pepper must be \[0, 1\]"),
        ("contrast", float("nan"), r"severity of contrast must be \[0, 1\]"),
        ("gaussian_blur", "strong", "must be a number"),
    ],
)
def test_bad_name_or_severity_raises(name, severity, message):
    with pytest.raises(ValueError, match=message):
        Corruption(name, severity)


def test_bad_images_raise():
    with pytest.raises(ValueError, match=r"values must lie in \[0, 1\]"):
        corrupt(torch.full((3, 4, 4), 2.0), "gaussian_noise", 0.1)
    with pytest.raises(ValueError, match="expected a float image"):
        corrupt(torch.zeros((3, 4, 4), dtype=torch.uint8), "gaussian_noise", 0.1)
    with pytest.raises(ValueError, match=r"expected an image tensor .* got \(4, 4\)"):
        corrupt(torch.zeros(4, 4), "contrast", 0.1)
    with pytest.raises(ValueError, match="no 'image'"):
        corrupt({"mask": torch.zeros(4, 4)}, "contrast", 0.1)
