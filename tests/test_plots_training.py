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
    weights = pd.DataFrame(
        {"factor": ["low_contrast", "b"], "share": [0.75, -0.25], "true_share": [0.5, 0.5]}
    )
    fig = plots.factor_weight_bars(weights, model="net")
    heights = sorted(round(patch.get_height(), 2) for patch in fig.axes[0].patches)
    assert [h for h in heights if h != 0] == [-0.25, 0.5, 0.5, 0.75]
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["net", "generator"]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["low contrast", "b"]
    with pytest.raises(ValueError, match="true_share"):
        plots.factor_weight_bars(weights.drop(columns="true_share"))


def _history(scores, dice=None):
    scores = list(scores)
    dice = scores if dice is None else dice
    return pd.DataFrame(
        {
            "epoch": range(len(scores)),
            "val_accuracy": scores,
            "val_dice": dice,
            "val_score": [(a + d) / 2 for a, d in zip(scores, dice, strict=True)],
        }
    )


def test_learning_curves_band_the_seeds_and_star_the_runs_still_improving():
    runs = {
        # seed 0 still improving at its last epoch; seed 1 peaked earlier (stopped early)
        "UML": [_history([0.6, 0.7, 0.8]), _history([0.6, 0.75])],
        "multitask": [_history([0.5, 0.9, 0.85])],
    }
    fig = plots.learning_curves(runs, bayes_accuracy=0.82)
    accuracy_ax = fig.axes[0]
    lines = {line.get_label(): line for line in accuracy_ax.get_lines()}
    # the mean over the seeds present at each epoch: (0.6 + 0.6) / 2, (0.7 + 0.75) / 2, 0.8
    np.testing.assert_allclose(lines["UML (2 of 2 still improving)"].get_ydata(), [0.6, 0.725, 0.8])
    assert "multitask (0 of 1 still improving)" in lines
    stars = [line for line in accuracy_ax.get_lines() if line.get_marker() == "*"]
    # UML seed 0 (best epoch 3 of 3) and seed 1 (best epoch 2 of 2); not multitask (best 2 of 3).
    # Two variants: UML's stars sit 0.075 epoch to the left, multitask's would sit to the right.
    assert sorted((float(s.get_xdata()[0]), float(s.get_ydata()[0])) for s in stars) == [
        (pytest.approx(1.925), 0.75),
        (pytest.approx(2.925), 0.8),
    ]
    bayes = [line for line in accuracy_ax.get_lines() if line.get_linestyle() == "--"]
    assert len(bayes) == 1 and bayes[0].get_ydata()[0] == pytest.approx(0.82)
    assert len(accuracy_ax.collections) == 1  # the band of UML's two seeds, none for one seed
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "best epoch is the last: still improving" in legend
    assert "lowest to highest seed" in legend
    assert "Bayes-optimal accuracy, validation labels (0.820)" in legend


def test_the_legend_explains_only_what_the_figure_draws():
    # one seed (no band), its best epoch before its last (no star), no Bayes line
    fig = plots.learning_curves({"UML": [_history([0.6, 0.9, 0.8])]})
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["UML (0 of 1 still improving)"]
    assert not fig.axes[0].collections


def test_the_legend_names_the_variants_of_either_panel_once():
    no_accuracy = _history([0.8, 0.9]).assign(val_accuracy=np.nan)  # segmentation only
    runs = {"UML": [_history([0.6, 0.7])], "segmentation only": [no_accuracy]}
    fig = plots.learning_curves(runs)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    uml, segmentation = "UML (1 of 1 still improving)", "segmentation only (1 of 1 still improving)"
    assert legend[:2] == [uml, segmentation]
    assert legend.count(uml) == 1


def test_stars_on_the_same_epoch_sit_side_by_side():
    # every variant still improving at its last epoch, with the same score: without the offsets
    # the three stars would be drawn on top of each other
    runs = {name: [_history([0.6, 0.8])] for name in ("UML", "multitask", "classification only")}
    fig = plots.learning_curves(runs)
    stars = [line for line in fig.axes[0].get_lines() if line.get_marker() == "*"]
    xs = sorted(float(star.get_xdata()[0]) for star in stars)
    assert xs == [pytest.approx(1.85), pytest.approx(2.0), pytest.approx(2.15)]
    # 21 variants at 0.15 apart would spread over 3 epochs: the spacing shrinks to 0.04, so
    # that every star stays within 0.4 epoch of its epoch
    many = {f"variant {i}": [_history([0.6, 0.8])] for i in range(21)}
    lines = plots.learning_curves(many).axes[0].get_lines()
    xs = sorted(float(line.get_xdata()[0]) for line in lines if line.get_marker() == "*")
    assert xs[0] == pytest.approx(1.6) and xs[-1] == pytest.approx(2.4)
    np.testing.assert_allclose(np.diff(xs), 0.04)


def test_learning_curves_refuse_no_runs():
    with pytest.raises(ValueError, match="at least one run"):
        plots.learning_curves({})
    with pytest.raises(ValueError, match="history of UML"):
        plots.learning_curves({"UML": [pd.DataFrame({"val_accuracy": [0.5]})]})
