"""Shared pieces of the semi-supervised methods: predictions, supervised loss, batch parts."""

import math

import pytest
import torch

from umlkit.models.blocks import UNet
from umlkit.semi.base import (
    add_input_noise,
    forward_in_parts,
    in_batch_order,
    pixel_prediction,
    supervised_loss,
)


def test_in_batch_order_hand_made():
    labeled = torch.tensor([False, True, False, True])
    labeled_part = torch.tensor([[10.0], [30.0]])  # batch positions 1 and 3
    unlabeled_part = torch.tensor([[0.0], [20.0]])  # batch positions 0 and 2
    assert in_batch_order([labeled_part, unlabeled_part], labeled).flatten().tolist() == [
        0.0,
        10.0,
        20.0,
        30.0,
    ]


def test_forward_in_parts_normalises_each_part_on_its_own():
    torch.manual_seed(0)
    model = UNet(3, 2, width=4).train()
    images = torch.rand(4, 3, 16, 16)
    labeled = torch.tensor([True, False, True, False])
    joint = forward_in_parts(model, images, labeled).seg_logits
    alone = model(images[labeled]).seg_logits  # batch norm over the labeled images only
    assert torch.allclose(joint[labeled], alone, atol=1e-6)
    assert not torch.allclose(model(images).seg_logits[labeled], alone, atol=1e-4)


def test_pixel_prediction_softmax_and_evidential():
    logits = torch.zeros(1, 2, 1, 1)
    softmax = pixel_prediction(logits)
    assert softmax.prob.flatten().tolist() == [0.5, 0.5] and softmax.uncertainty.item() == 1.0
    evidential = pixel_prediction(logits, evidence="relu")  # no evidence: alpha = 1, u = K/S = 1
    assert evidential.alpha.flatten().tolist() == [1.0, 1.0]
    assert evidential.uncertainty.item() == 1.0


def test_supervised_loss_hand_computed():
    # One pixel of class 0 with p = (0.8, 0.2): D_0 = (1.6 + eps) / (1.8 + eps),
    # D_1 = eps / (0.2 + eps), Dice loss = mean(1 - D_c); cross-entropy = -ln 0.8.
    logits = torch.log(torch.tensor([0.8, 0.2])).view(1, 2, 1, 1)
    target = torch.zeros(1, 1, 1, dtype=torch.long)
    prediction = pixel_prediction(logits)
    eps = 1e-5
    dice = 1 - ((1.6 + eps) / (1.8 + eps) + eps / (0.2 + eps)) / 2
    assert supervised_loss(prediction, target, ce_weight=0).item() == pytest.approx(dice, abs=1e-6)
    with_ce = supervised_loss(prediction, target, ce_weight=1)
    assert with_ce.item() == pytest.approx(dice - math.log(0.8), abs=1e-4)
    weights = torch.ones(1, 1, 1) * 3
    weighted = supervised_loss(prediction, target, ce_weight=1, pixel_weights=weights)
    assert weighted.item() == pytest.approx(with_ce.item(), abs=1e-6)  # a weighted *mean*


def test_input_noise_is_clipped():
    torch.manual_seed(0)
    images = torch.zeros(2, 3, 8, 8)
    noisy = add_input_noise(images, std=0.5, clip=0.1)
    assert noisy.abs().max() <= 0.1 + 1e-7 and noisy.abs().max() > 0
    assert torch.equal(add_input_noise(images, std=0.0), images)
