"""umlkit.plots.training: the curves of a training run and a classifier's factor weights (notebook 03)."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from umlkit import plots

pytestmark = pytest.mark.usefixtures("plot_theme")


def test_training_curves_draw_the_losses_the_history_has():
    history = pd.DataFrame(
        {
            "epoch": [0, 1, 2],
            "loss": [1.0, 0.8, 0.7],
            "loss_seg": [0.5, 0.4, 0.3],
            "val_accuracy": [0.6, 0.7, 0.65],
            "val_dice": [0.8, 0.9, 0.92],
            "val_ece": [0.2, 0.1, 0.1],
        }
    )
    fig = plots.training_curves(history, best_epoch=1)
    loss_ax, metric_ax = fig.axes
    assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == ["total (weighted)", "L_seg"]
    assert [t.get_text() for t in metric_ax.get_legend().get_texts()] == ["ACC", "Dice", "ECE"]
    with pytest.raises(ValueError, match="lacks the column"):
        plots.training_curves(history.drop(columns="loss"))


def test_training_curves_draw_the_steps_as_lines_over_whole_epoch_ticks():
    history = pd.DataFrame({"epoch": [0, 1], "loss": [1.0, 0.5], "val_dice": [0.5, 0.75]})
    steps = pd.DataFrame({"epoch": [0.5, 1.0, 1.5, 2.0], "loss": [1.2, 0.8, 0.6, 0.4]})
    fig = plots.training_curves(history, best_epoch=1, steps=steps)
    loss_ax, metric_ax = fig.axes
    np.testing.assert_array_equal(loss_ax.lines[0].get_xdata(), [0.5, 1.0, 1.5, 2.0])
    assert loss_ax.lines[0].get_marker() in ("None", None, "")
    np.testing.assert_array_equal(metric_ax.lines[0].get_xdata(), [1, 2])  # end of each epoch
    for ax in (loss_ax, metric_ax):
        ticks = [t for t in ax.get_xticks() if 0 <= t <= 2]
        assert ticks and all(float(t).is_integer() for t in ticks)
        assert ax.lines[-1].get_xdata()[0] == 2  # the best epoch's end
    with pytest.raises(ValueError, match="lacks the column"):
        plots.training_curves(history, steps=steps.drop(columns="loss"))


def test_factor_weight_bars_draw_both_shares():
    weights = pd.DataFrame({"factor": ["a", "b"], "share": [0.75, -0.25], "true_share": [0.5, 0.5]})
    fig = plots.factor_weight_bars(weights, model="net")
    heights = sorted(round(patch.get_height(), 2) for patch in fig.axes[0].patches)
    assert [h for h in heights if h != 0] == [-0.25, 0.5, 0.5, 0.75]
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["net", "generator"]
    with pytest.raises(ValueError, match="true_share"):
        plots.factor_weight_bars(weights.drop(columns="true_share"))
