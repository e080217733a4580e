"""EMA teacher updates and the sigmoid ramp-up."""

import math

import pytest
import torch
from torch import nn

from umlkit.semi.ema import ema_alpha, make_teacher, sigmoid_rampup, update_ema


def test_ema_alpha_schedule():
    assert ema_alpha(0) == 0.0
    assert ema_alpha(1) == 0.5
    assert ema_alpha(3) == 0.75
    assert ema_alpha(99) == pytest.approx(0.99)
    assert ema_alpha(10_000) == 0.99


def test_update_ema_hand_computed():
    student = nn.Linear(1, 1)
    teacher = make_teacher(student)
    assert not any(p.requires_grad for p in teacher.parameters())
    with torch.no_grad():
        teacher.weight.fill_(2.0)
        student.weight.fill_(6.0)
    update_ema(teacher, student, step=3)  # alpha = 0.75: 0.75 * 2 + 0.25 * 6 = 3
    assert teacher.weight.item() == pytest.approx(3.0)
    update_ema(teacher, student, step=0)  # alpha = 0: a plain copy
    assert teacher.weight.item() == pytest.approx(6.0)


def test_update_ema_leaves_batch_norm_statistics_to_the_teacher():
    student, teacher = nn.BatchNorm1d(1), nn.BatchNorm1d(1)
    student.running_mean.fill_(4.0)
    student.weight.data.fill_(3.0)
    update_ema(teacher, student, step=1)  # alpha = 0.5
    assert teacher.weight.item() == pytest.approx(2.0)  # 0.5 * 1 + 0.5 * 3
    assert teacher.running_mean.item() == 0.0  # the teacher's own statistic, untouched


def test_update_ema_rejects_different_models():
    with pytest.raises(ValueError, match="differ"):
        update_ema(nn.Linear(1, 1), nn.Sequential(nn.Linear(1, 1)), step=0)
    with pytest.raises(ValueError, match="step"):
        ema_alpha(-1)


def test_sigmoid_rampup_values():
    assert sigmoid_rampup(0, 10) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(5, 10) == pytest.approx(math.exp(-1.25))
    assert sigmoid_rampup(10, 10) == 1.0
    assert sigmoid_rampup(25, 10) == 1.0
    assert sigmoid_rampup(3, 0) == 1.0
    with pytest.raises(ValueError, match="length"):
        sigmoid_rampup(1, -1)
