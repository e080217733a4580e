"""umlkit.divergence: the checks that stop a diverged run, each naming what broke and where."""

import math

import pytest
import torch
from torch import nn

from umlkit.divergence import (
    LOSS_TOLERANCE,
    TrainingDiverged,
    check_failed_step,
    check_loss_terms,
    check_weights,
    first_nonfinite,
    place,
)

WHERE = place(1, 3, 4, 0.5)


def tiny_net():
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))


def test_place_names_epoch_step_and_learning_rate():
    assert WHERE == "epoch 1, step 3 of 4 (learning rate 0.5)"
    assert place(0, 2, 2, 1000.0, validation=True) == (
        "epoch 0, validation after step 2 of 2 (learning rate 1000)"
    )


def test_loss_terms_at_or_just_below_zero_from_rounding_pass():
    check_loss_terms({"cls": 0.0, "seg": 0.3, "mutual": -1e-7, "total": 0.12}, WHERE)
    check_loss_terms({"mutual": -LOSS_TOLERANCE / 2}, WHERE)


@pytest.mark.parametrize(
    ("components", "problem"),
    [
        ({"cls": 0.7, "mutual": -207087.0}, "the loss term mutual is -207087, below its minimum 0"),
        ({"seg": math.nan}, "the loss term seg is nan"),
        ({"cls": 0.1, "total": math.inf}, "the total loss is inf"),
        ({"cls": -2 * LOSS_TOLERANCE}, "the loss term cls is -0.0002, below its minimum 0"),
    ],
)
def test_a_broken_loss_term_is_one_line_naming_step_term_and_rate(components, problem):
    with pytest.raises(TrainingDiverged) as caught:
        check_loss_terms(components, WHERE, "--lr")
    assert str(caught.value) == (
        f"training diverged at epoch 1, step 3 of 4 (learning rate 0.5): {problem}; "
        "lower --lr and start again"
    )
    assert isinstance(caught.value, ValueError)  # the command line reports it as one line


def test_first_nonfinite_names_the_tensor_and_what_it_holds():
    state = {
        "count": torch.tensor(3),  # integers cannot hold NaN: skipped
        "w": torch.ones(2),
        "v": torch.tensor([1.0, math.inf, math.nan]),
        "u": torch.tensor([math.nan]),
    }
    assert first_nonfinite(state) == ("v", "NaN and inf")
    assert first_nonfinite({"w": torch.ones(2), "u": torch.tensor([math.nan])}) == ("u", "NaN")
    assert first_nonfinite({"w": torch.ones(2), "count": torch.tensor(3)}) is None


def test_check_weights_names_a_batch_norm_statistic_that_overflowed():
    net = tiny_net()
    check_weights(net, WHERE)
    net[1].running_var[1] = math.inf
    with pytest.raises(TrainingDiverged) as caught:
        check_weights(net, WHERE, "--lr")
    message = str(caught.value)
    assert message.startswith(f"training diverged at {WHERE}: 1.running_var holds inf; lower --lr")
    assert "no checkpoint of this epoch was written" in message and "\n" not in message


def test_a_failed_step_names_the_broken_weight_not_the_symptom():
    net = tiny_net()
    symptom = ValueError("evidence contains NaN or inf")
    with pytest.raises(TrainingDiverged, match="finite; lower lr"):  # weights fine, output not
        check_failed_step(net, symptom, WHERE)
    check_failed_step(net, ValueError("labels hold class indices outside [0, 1]"), WHERE)
    with torch.no_grad():
        net[0].weight[0, 0, 0, 0] = math.nan
    with pytest.raises(TrainingDiverged, match=r"0\.weight holds NaN; lower lr"):
        check_failed_step(net, symptom, WHERE)
