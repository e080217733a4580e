"""The exponential-moving-average (EMA) teacher and the sigmoid ramp-up of unsupervised weights.

Mean teacher (Tarvainen & Valpola, 2017) keeps a *teacher* whose weights are a running average of
the *student's*; the teacher's predictions on unlabeled images are smoother in time than the
student's and serve as its targets. Because the targets are poor early in training, every
unsupervised term is multiplied by a ramp that rises from almost 0 to 1.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def ema_alpha(step: int, max_alpha: float = 0.99) -> float:
    """The EMA decay at optimisation step ``step`` (0-based).

    .. math:: \\alpha_t = \\min\\left(1 - \\frac{1}{t + 1},\\ \\alpha_{max}\\right)

    At step 0 the decay is 0 (the teacher becomes a copy of the student); it then grows as a true
    running mean of all students so far until it reaches ``max_alpha`` (0.99 after 99 steps).

    Raises:
        ValueError: if ``step`` is negative or ``max_alpha`` is outside [0, 1).
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if not 0 <= max_alpha < 1:
        raise ValueError(f"max_alpha must be in [0, 1), got {max_alpha}")
    return min(1.0 - 1.0 / (step + 1), max_alpha)


def make_teacher(student: nn.Module) -> nn.Module:
    """A deep copy of ``student`` that takes no gradients (the EMA teacher's starting point)."""
    teacher = copy.deepcopy(student)
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher


@torch.no_grad()
def update_ema(teacher: nn.Module, student: nn.Module, step: int, max_alpha: float = 0.99) -> float:
    """Move the teacher's weights towards the student's, in place.

    .. math:: \\theta'_t = \\alpha_t\\, \\theta'_{t-1} + (1 - \\alpha_t)\\, \\theta_t

    with :math:`\\alpha_t` from :func:`ema_alpha`, for every *parameter*. Buffers (batch-norm
    running means and variances) are **not** averaged: averaged weights produce activations with
    statistics of their own, which the teacher measures itself in its training-mode forward passes
    (as in the original mean teacher). umlkit first averaged the student's running statistics too,
    and in its short default runs (150 steps, so the 0.99 average spans most of the run) the
    teacher then scored validation Dice 0.05 where the student scored 0.83; the same averaged
    weights with their own batch statistics scored 0.79.

    Args:
        teacher: the EMA model (same architecture as ``student``).
        student: the model being optimised.
        step: the 0-based optimisation step just taken.
        max_alpha: upper bound on the decay.

    Returns:
        The decay :math:`\\alpha_t` used.

    Raises:
        ValueError: if the two models' parameters do not match by name and shape.
    """
    alpha = ema_alpha(step, max_alpha)
    teacher_parameters = dict(teacher.named_parameters())
    student_parameters = dict(student.named_parameters())
    if teacher_parameters.keys() != student_parameters.keys():
        missing = sorted(teacher_parameters.keys() ^ student_parameters.keys())[:5]
        raise ValueError(f"teacher and student differ in their parameters, e.g. {missing}")
    for name, target in teacher_parameters.items():
        source = student_parameters[name]
        if target.shape != source.shape:
            raise ValueError(
                f"{name}: teacher shape {tuple(target.shape)} != {tuple(source.shape)}"
            )
        target.mul_(alpha).add_(source.detach(), alpha=1.0 - alpha)
    return alpha


def sigmoid_rampup(t: float, length: float) -> float:
    """The sigmoid-shaped ramp-up weight of the unsupervised losses.

    .. math:: r(t) = \\exp\\left(-5\\left(1 - \\frac{\\min(t, L)}{L}\\right)^2\\right)

    r(0) = e^{-5} ≈ 0.0067, r(L/2) = e^{-1.25} ≈ 0.287, r(t) = 1 for t >= L (Laine & Aila, 2017).
    ``t`` and ``L`` share a unit (umlkit's loop uses fractional epochs). ``length = 0`` means no
    ramp: the weight is 1 from the start.

    Raises:
        ValueError: if ``t`` or ``length`` is negative.
    """
    if t < 0 or length < 0:
        raise ValueError(f"t and length must be >= 0, got t={t}, length={length}")
    if length == 0:
        return 1.0
    phase = 1.0 - min(t, length) / length
    return math.exp(-5.0 * phase * phase)
