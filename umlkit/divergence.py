r"""Training that stops when it breaks: checks that the loss terms and the weights are still numbers.

A learning rate that is too high makes training *diverge*: the weights grow step after step until
some of them, or a batch norm's running statistics, overflow to ``inf`` or become ``NaN``. Nothing
stops on its own: the loss may stay finite for a while (batch norm normalises the overflowing
activations away in training mode), validation then scores a broken model, and a checkpoint keeps
the broken numbers. :func:`umlkit.train.train` therefore checks, as it goes:

* **every step, the loss terms** (:func:`check_loss_terms`). Each term of the UML objective is
  :math:`\ge 0` by construction: the evidential losses because :math:`S \ge \alpha_k`, the KL
  divergence because a divergence is never negative, the log-Dice because the soft Dice is at
  most 1, the cross-entropy because a probability is at most 1. A term that is ``NaN``, ``inf``
  or below 0 has been computed from numbers that are no longer meaningful.
* **when a step or a validation fails**, e.g. because the network's evidence holds NaN
  (:func:`check_failed_step`): the broken weight is named rather than the symptom.
* **every logged step and the last step of each epoch, the weights and the batch-norm
  statistics** (:func:`check_weights`): one pass over the model's tensors, so it is done every
  ``log_every`` steps rather than at every step. The last step of an epoch is checked before the
  epoch is validated, selected as the best or saved, so no checkpoint holds a broken number.

Each check raises :class:`TrainingDiverged`: one line naming the epoch, the step, the learning
rate and the term or tensor, and what to do (lower the learning rate).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from umlkit.distributed import unwrap

#: How far below 0 a loss term may come out before the run is stopped. float32 carries about
#: seven significant digits, so a term that is 0 in exact arithmetic (a perfect Dice, no
#: misleading evidence) can be computed a few 1e-7 below 0, times the size of the numbers it is
#: computed from; -1e-4 leaves room for that and is still far from what a diverged run gives.
LOSS_TOLERANCE = 1e-4


class TrainingDiverged(ValueError):
    """Training stopped: a loss term or a weight is no longer a valid number."""


def first_nonfinite(tensors: Mapping[str, torch.Tensor]) -> tuple[str, str] | None:
    """The name of the first floating-point tensor of ``tensors`` that holds NaN or inf, and what
    it holds (``"NaN"``, ``"inf"`` or ``"NaN and inf"``); ``None`` when every value is finite.

    Integer tensors (such as batch norm's ``num_batches_tracked``) cannot hold either and are
    skipped.
    """
    floats = {
        name: tensor.detach()
        for name, tensor in tensors.items()
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point()
    }
    if not floats:
        return None
    # A sum is NaN or inf when a value is, so one sum per tensor, read back at once, screens them
    # all in one pass (and, on a GPU, one synchronisation); the tensors it flags are looked at
    # value by value, since a sum of huge finite values can overflow too.
    device = next(iter(floats.values())).device
    sums = torch.stack([tensor.sum().to(device) for tensor in floats.values()]).cpu()
    for index in torch.nonzero(~torch.isfinite(sums)).flatten().tolist():
        name = list(floats)[index]
        nan, inf = bool(floats[name].isnan().any()), bool(floats[name].isinf().any())
        if nan or inf:
            return name, " and ".join(word for word, found in (("NaN", nan), ("inf", inf)) if found)
    return None


def place(epoch: int, step: int, steps: int, lr: float, validation: bool = False) -> str:
    """Where a run stands, as the messages name it: ``epoch 1, step 3 of 4 (learning rate 0.5)``,
    or with ``validation`` ``epoch 1, validation after step 4 of 4 (learning rate 0.5)``.

    ``step`` counts from 1 within the 0-based ``epoch``, as :func:`umlkit.train.train` logs them.
    """
    after = "validation after " if validation else ""
    return f"epoch {epoch}, {after}step {step} of {steps} (learning rate {lr:.4g})"


def check_loss_terms(components: Mapping[str, float], where: str, lr_name: str = "lr") -> None:
    """Raise :class:`TrainingDiverged` when a loss term is NaN, inf or below 0.

    Args:
        components: the terms :func:`umlkit.losses.uml_objective` returns (``cls``, ``seg``,
            ``mutual``, ``total``), as floats.
        where: :func:`place` of the step.
        lr_name: how the message names the learning rate (``--lr`` on the command line).
    """
    for name, value in components.items():
        term = "the total loss" if name == "total" else f"the loss term {name}"
        if not math.isfinite(value):
            problem = f"{term} is {value}"
        elif value < -LOSS_TOLERANCE:
            problem = f"{term} is {value:.6g}, below its minimum 0"
        else:
            continue
        raise TrainingDiverged(
            f"training diverged at {where}: {problem}; lower {lr_name} and start again"
        )


def check_weights(model: nn.Module, where: str, lr_name: str = "lr") -> None:
    """Raise :class:`TrainingDiverged` when a weight or a batch-norm statistic of ``model`` holds
    NaN or inf (``model`` may be wrapped for data-parallel training or compiled).

    Args:
        model: the model being trained.
        where: :func:`place` of the step.
        lr_name: how the message names the learning rate (``--lr`` on the command line).
    """
    found = first_nonfinite(unwrap(model).state_dict())
    if found is not None:
        name, what = found
        raise TrainingDiverged(
            f"training diverged at {where}: {name} holds {what}; lower {lr_name} and start "
            "again (no checkpoint of this epoch was written)"
        )


def check_failed_step(model: nn.Module, error: ValueError, where: str, lr_name: str = "lr") -> None:
    """Explain ``error``, raised by a step's forward pass or loss, when the run has diverged.

    A diverged run usually fails the checks of the evidential functions first ("evidence
    contains NaN or inf"), which say nothing of the cause. This raises :class:`TrainingDiverged`
    instead, naming a weight that holds NaN or inf (:func:`check_weights`), or, with every
    weight finite, ``error`` itself when it is about NaN or inf (activations that overflowed).
    Any other error (a label out of range, say) is left for the caller to re-raise.
    """
    check_weights(model, where, lr_name)
    if "NaN or inf" in str(error):
        raise TrainingDiverged(
            f"training diverged at {where}: {error}, although every weight is finite; "
            f"lower {lr_name} and start again"
        ) from None
