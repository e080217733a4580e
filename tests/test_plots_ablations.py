"""umlkit.plots.ablations: variants compared over seeds (notebook 04)."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from umlkit import plots

pytestmark = pytest.mark.usefixtures("plot_theme")


def test_metric_comparison_one_panel_per_metric():
    runs = pd.DataFrame(
        {
            "variant": ["UML", "UML", "softmax", "softmax"],
            "seed": [0, 1, 0, 1],
            "Dice": [0.8, 0.82, 0.7, 0.75],
            "HD95": [3.0, 4.0, 5.0, 6.0],
        }
    )
    fig = plots.metric_comparison(runs, ["Dice", "HD95"], lower_is_better=["HD95"], ncols=2)
    assert [ax.get_title() for ax in fig.axes] == [
        "Dice (higher is better)",
        "HD95 (lower is better)",
    ]
    ax = fig.axes[0]
    assert [label.get_text() for label in ax.get_xticklabels()] == ["UML", "softmax"]
    means = [np.nanmax(line.get_ydata()) for line in ax.lines if line.get_marker() == "D"]
    np.testing.assert_allclose(means, [0.81, 0.725])
    # the error bar of UML spans mean ± sample std (0.01414)
    bar = [line for line in ax.lines if line.get_marker() != "D"][0].get_ydata()
    np.testing.assert_allclose(np.nanmin(bar), 0.81 - np.sqrt(0.0002))
    assert len(ax.collections[0].get_offsets()) == 2  # the two seeds of UML as dots
    with pytest.raises(ValueError, match="ECE"):
        plots.metric_comparison(runs, ["ECE"])
