"""The optimiser and learning-rate schedule every umlkit training loop uses.

Both the supervised loop (:mod:`umlkit.train`) and the semi-supervised one
(:mod:`umlkit.semi.loop`) train with Adam (:func:`make_optimizer`) and set the learning rate
before every optimisation step from :func:`learning_rate`, which reads ``lr``, ``min_lr``,
``epochs`` and ``constant_fraction`` from the run's configuration.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import torch


class ScheduleConfig(Protocol):
    """The fields :func:`learning_rate` reads (``TrainConfig`` and ``SemiConfig`` have them)."""

    lr: float
    min_lr: float
    epochs: int
    constant_fraction: float


def learning_rate(config: ScheduleConfig, epoch: float) -> float:
    r"""The learning rate at training time ``epoch``: constant, then poly(0.9) decay with a floor.

    .. math::
        \mathrm{lr}_t = \begin{cases} \mathrm{lr} & t < t_0 \\
        \max\big(\mathrm{lr}_{min},\ \mathrm{lr}\,(1 - \frac{t - t_0}{T - t_0})^{0.9}\big)
        & t \ge t_0 \end{cases}, \qquad t_0 = \lfloor f\,T \rfloor

    with T = ``epochs`` and f = ``constant_fraction`` (UML reference: 30 of 100 epochs, floor
    1e-5). ``epoch`` is 0-based and may be fractional: the supervised loop
    (:func:`umlkit.train.train`) sets the rate before every optimisation step, at
    ``t = epoch + step / steps_per_epoch``, so the decay is smooth and the last steps run at
    nearly ``min_lr`` (a rate set once per epoch would hold a short run's whole last epoch at a
    high rate, and where it stops would depend on its last noisy steps). The semi-supervised
    loop (:mod:`umlkit.semi.loop`) sets it once per epoch, at whole ``epoch`` values.
    """
    start = int(config.constant_fraction * config.epochs)
    if epoch < start:
        return config.lr
    progress = min((epoch - start) / max(config.epochs - start, 1), 1.0)
    return max(config.min_lr, config.lr * (1.0 - progress) ** 0.9)


def make_optimizer(
    model: torch.nn.Module | Iterable[torch.nn.Parameter],
    device: str | torch.device,
    lr: float,
    weight_decay: float = 0.0,
) -> torch.optim.Adam:
    """The Adam optimiser every umlkit training uses: fused where the kernel exists (CPU, CUDA).

    Fused Adam updates every parameter in one kernel instead of a handful of small ops per
    tensor, and UML has many small parameter tensors; on a CPU PyTorch's default is the
    per-tensor loop. The fused kernel measured faster on both devices (``umlkit bench`` shows
    the step time). Elsewhere (e.g. MPS) the default implementation runs.

    Args:
        model: a module (all its parameters) or the parameters themselves.
    """
    parameters = model.parameters() if isinstance(model, torch.nn.Module) else model
    return torch.optim.Adam(
        parameters,
        lr=lr,
        weight_decay=weight_decay,
        fused=torch.device(device).type in ("cpu", "cuda"),
    )
