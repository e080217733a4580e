"""BURL pieces: normalised entropy, certain / uncertain regions, weighted means."""

import math

import pytest
import torch

from umlkit.semi.base import normalized_entropy
from umlkit.semi.burl import region_weighted_mean, uncertainty_regions


def test_normalized_entropy_hand_computed():
    prob = torch.tensor([[0.5, 1.0, 0.9], [0.5, 0.0, 0.1]]).T.reshape(3, 2, 1, 1)
    expected = [1.0, 0.0, -(0.9 * math.log(0.9) + 0.1 * math.log(0.1)) / math.log(2)]
    assert torch.allclose(normalized_entropy(prob).flatten(), torch.tensor(expected))
    three = torch.full((1, 3, 1, 1), 1 / 3)
    assert normalized_entropy(three).item() == pytest.approx(1.0)


def test_normalized_entropy_bad_input():
    with pytest.raises(ValueError, match="at least 2 classes"):
        normalized_entropy(torch.ones(1, 1, 2, 2))
    with pytest.raises(ValueError, match="logits"):
        normalized_entropy(torch.tensor([[2.0, -1.0]]))


UNCERTAINTY = torch.tensor([[0.1, 0.6], [0.3, 0.9]]).view(1, 1, 2, 2)


def test_threshold_regions():
    certain, uncertain = uncertainty_regions(UNCERTAINTY, "threshold", threshold=0.5)
    assert certain.flatten().tolist() == [1.0, 0.0, 1.0, 0.0]
    assert uncertain.flatten().tolist() == [0.0, 1.0, 0.0, 1.0]


def test_quantile_regions_are_per_image():
    # image 0: median of (0.1, 0.3, 0.6, 0.9) is 0.45; image 1 is 10x more certain overall
    uncertainty = torch.cat([UNCERTAINTY, UNCERTAINTY / 10])
    certain, uncertain = uncertainty_regions(uncertainty, "quantile", quantile=0.5)
    assert certain[0].flatten().tolist() == [1.0, 0.0, 1.0, 0.0]
    assert certain[1].flatten().tolist() == [1.0, 0.0, 1.0, 0.0]
    assert torch.equal(certain + uncertain, torch.ones_like(certain))


def test_soft_regions():
    certain, uncertain = uncertainty_regions(UNCERTAINTY, "soft")
    assert torch.allclose(certain, 1 - UNCERTAINTY) and torch.allclose(uncertain, UNCERTAINTY)


def test_regions_bad_input():
    with pytest.raises(ValueError, match="unknown region mode"):
        uncertainty_regions(UNCERTAINTY, "median")
    with pytest.raises(ValueError, match="quantile"):
        uncertainty_regions(UNCERTAINTY, "quantile", quantile=1.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        uncertainty_regions(UNCERTAINTY * 2, "soft")


def test_region_weighted_mean_hand_computed():
    values = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    weights = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    assert region_weighted_mean(values, weights).item() == pytest.approx((1 + 9) / 4)
    assert region_weighted_mean(values, torch.zeros(2, 2)).item() == 0.0
