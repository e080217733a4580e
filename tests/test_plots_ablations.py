"""umlkit.plots.ablations: variants compared over seeds (notebook 04)."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from umlkit import analysis, plots

pytestmark = pytest.mark.usefixtures("plot_theme")


def make_runs() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "variant": ["UML", "UML", "softmax", "softmax"],
            "seed": [0, 1, 0, 1],
            "Dice": [0.8, 0.82, 0.7, 0.75],
            "HD95": [0.5, 8.0, 5.0, 6.0],
        }
    )


def test_metric_comparison_one_panel_per_metric():
    runs = make_runs()
    fig = plots.metric_comparison(runs, ["Dice", "HD95"], lower_is_better=["HD95"], ncols=2)
    assert [ax.get_title() for ax in fig.axes] == [
        "Dice (higher is better)",
        "HD95, pixels (lower is better)",
    ]
    assert "mean ± 1 sd over 2 seeds" in fig._suptitle.get_text()
    ax = fig.axes[0]
    assert [label.get_text() for label in ax.get_yticklabels()] == ["UML", "softmax"]
    means = [line.get_xdata()[0] for line in ax.lines if line.get_marker() == "D"]
    np.testing.assert_allclose(means, [0.81, 0.725])
    # the error bar of UML spans mean ± sample sd (0.01414)
    bar = ax.collections[1].get_segments()[0]  # collections: UML's dots, then its error bar
    np.testing.assert_allclose(bar[:, 0], [0.81 - np.sqrt(0.0002), 0.81 + np.sqrt(0.0002)])
    assert len(ax.collections[0].get_offsets()) == 2  # the two seeds of UML as dots
    with pytest.raises(ValueError, match="ECE"):
        plots.metric_comparison(runs, ["ECE"])


def test_metric_comparison_hd95_axis_stays_at_or_above_zero():
    # UML's HD95 is 4.25 ± 5.3: mean - sd is below 0, the axis must not be
    fig = plots.metric_comparison(make_runs(), ["HD95"], lower_is_better=["HD95"])
    assert fig.axes[0].get_xlim()[0] >= 0


def test_metric_comparison_draws_the_ceiling_and_the_paired_differences():
    runs = make_runs()
    differences = analysis.paired_differences(runs, ["Dice", "HD95"], reference="UML")
    fig = plots.metric_comparison(
        runs,
        ["Dice", "HD95"],
        lower_is_better=["HD95"],
        ceilings={"Dice": 0.9},
        differences=differences,
    )
    dice = fig.axes[0]
    assert any(np.allclose(line.get_xdata(), 0.9) for line in dice.lines)
    assert dice.texts[0].get_text() == "Bayes-optimal (test) 0.900"
    assert dice.get_xlim()[1] > 0.9
    table = fig.axes[2]
    assert "UML − variant" in table.get_title()
    assert [label.get_text() for label in table.get_yticklabels()] == ["softmax"]
    # Dice: UML - softmax = +0.10 and +0.07; HD95 sign flipped: -(0.5 - 5), -(8 - 6) = +4.5, -2
    assert [text.get_text() for text in table.texts] == ["+0.085\n± 0.021", "+1.250\n± 4.596"]
    ratio = table.images[0].get_array()
    np.testing.assert_allclose(ratio[0], [3.0, 1.25 / 4.596], atol=1e-3)  # clipped at 3 sd
