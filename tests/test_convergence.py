"""The plateau rule, the convergence report and the half-budget tracker (umlkit.convergence)."""

import math

import numpy as np
import pytest

from umlkit.convergence import (
    HalfBudget,
    convergence,
    half_point,
    plateau_epoch,
    plateaued,
    smoothed,
)


def test_running_mean_by_hand():
    # windows of 2: [1], [1, 3], [3, 5], [5, 7]
    np.testing.assert_allclose(smoothed([1, 3, 5, 7], window=2), [1, 2, 4, 6])
    np.testing.assert_allclose(smoothed([0.5, 0.7, 0.9], window=1), [0.5, 0.7, 0.9])


def test_a_rising_run_has_not_plateaued_and_a_flat_one_has():
    rising = [0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1]
    assert not plateaued(rising, window=3, patience=2, tolerance=0.005)
    # window 1, patience 2: the best of all (0.70) against the best up to epoch 2 (0.70): no gain
    flat = [0.5, 0.6, 0.7, 0.69, 0.70]
    assert plateaued(flat, window=1, patience=2, tolerance=0.0)
    # a gain of 0.01 over the last 2 epochs is improvement at tolerance 0.005, not at 0.02
    late = [0.5, 0.6, 0.7, 0.69, 0.71]
    assert not plateaued(late, window=1, patience=2, tolerance=0.005)
    assert plateaued(late, window=1, patience=2, tolerance=0.02)


def test_the_rule_needs_window_plus_patience_epochs():
    assert not plateaued([0.7, 0.7, 0.7, 0.7], window=3, patience=2, tolerance=0.0)
    assert plateaued([0.7] * 5, window=3, patience=2, tolerance=0.0)


def test_the_plateau_epoch_is_the_first_at_which_the_rule_fires():
    scores = [0.5, 0.6, 0.7, 0.7, 0.7, 0.7]
    # window 1, patience 2: after epoch 4 (0-based) the last two epochs raised nothing
    assert plateau_epoch(scores, window=1, patience=2, tolerance=0.0) == 4
    assert plateau_epoch([0.1, 0.2, 0.3], window=1, patience=2, tolerance=0.0) is None


def test_the_report_of_a_run_still_improving_and_of_one_stopped_early():
    still = convergence([0.5, 0.6, 0.7, 0.8], best_epoch=3, max_epochs=4, window=1, patience=2)
    assert still.still_improving and not still.plateaued and not still.stopped_early
    assert "NOT plateaued" in still.describe() and "still improving" in still.describe()
    stopped = convergence(
        [0.5, 0.7, 0.7, 0.7, 0.7], best_epoch=1, max_epochs=10, window=1, patience=2
    )
    assert stopped.plateaued and stopped.stopped_early and not stopped.still_improving
    assert stopped.plateau_epoch == 3 and stopped.epochs_run == 5
    assert "stopped early after epoch 5 of at most 10" in stopped.describe()


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: smoothed([0.1], window=0), "window must be >= 1"),
        (lambda: plateaued([0.1] * 8, patience=0), "patience must be >= 1"),
        (lambda: plateaued([0.1] * 8, tolerance=-0.1), "tolerance must be >= 0"),
        (lambda: plateaued([0.1, math.nan, 0.2] * 3), "NaN"),
        (lambda: convergence([], best_epoch=0, max_epochs=3), "no validated epoch"),
        (lambda: convergence([0.1, 0.2], best_epoch=2, max_epochs=3), "best_epoch 2"),
        (lambda: smoothed([[0.1, 0.2]]), "one score per epoch"),
    ],
)
def test_bad_input_is_one_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_half_point_by_hand():
    assert [half_point(n) for n in (1, 2, 3, 4, 9)] == [1, 1, 1, 2, 4]


def test_the_half_budget_is_the_best_epoch_in_the_first_half():
    half = HalfBudget()
    states = {epoch: {"w": epoch} for epoch in range(8)}
    # improvements at epochs 0, 1, 3, 6 of an 8-epoch run
    for epochs_run in range(1, 9):
        epoch = epochs_run - 1
        if epoch in (0, 1, 3, 6):
            half.improved(epoch, states[epoch], epochs_run)
        else:
            half.drop_stale(epochs_run)
    # after 8 epochs the half budget is the best of epochs 0-3: epoch 3
    assert half.current(8) == (3, {"w": 3})
    # after 6 epochs it was the best of epochs 0-2: epoch 1 (no longer kept: only 3 and 6 are)
    assert [epoch for epoch, _ in half.entries] == [3, 6]


def test_the_tracker_keeps_only_what_can_still_become_the_half_budget():
    half = HalfBudget()
    for epoch in range(20):  # improving every epoch
        half.improved(epoch, {"w": epoch}, epoch + 1)
    # after 20 epochs: the half budget is epoch 9; epochs 10-19 may become it later
    assert half.current(20)[0] == 9
    assert [epoch for epoch, _ in half.entries] == list(range(9, 20))
    assert HalfBudget().current(4) is None


def test_a_run_validated_every_few_epochs_is_judged_over_its_validations():
    import pandas as pd

    from umlkit.convergence import validated_convergence

    # 6 epochs validated every 2 (epochs 1, 3, 5): Dice 0.5, 0.7, 0.7; best at epoch 3
    history = pd.DataFrame(
        {"epoch": range(6), "val_dice": [math.nan, 0.5, math.nan, 0.7, math.nan, 0.7]}
    )
    report = validated_convergence(history, "val_dice", best_epoch=3, epochs=6, interval=2)
    assert report.epochs_run == 3 and report.max_epochs == 3
    assert report.best_epoch == 1 and not report.still_improving
    assert validated_convergence(history.iloc[:1], "val_dice", 0, 6, 2) is None
