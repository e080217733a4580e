"""umlkit.plots.calibration: reliability diagrams and predicted against true probability (notebook 05)."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from umlkit import plots

pytestmark = pytest.mark.usefixtures("plot_theme")


def reliability_table(n_bins: int = 5) -> pd.DataFrame:
    edges = np.linspace(0, 1, n_bins + 1)
    return pd.DataFrame(
        {
            "lower": edges[:-1],
            "upper": edges[1:],
            "confidence": (edges[:-1] + edges[1:]) / 2,
            "accuracy": np.linspace(0.2, 0.9, n_bins),
            "count": [0, 3, 5, 10, 2][:n_bins],
        }
    )


def test_reliability_diagrams_two_panels_with_histograms():
    fig = plots.reliability_diagrams(
        {"UML (ECE 0.05)": reliability_table(), "softmax": reliability_table()}
    )
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 4
    diagram, histogram = fig.axes[0], fig.axes[1]
    assert diagram.get_title() == "UML (ECE 0.05)"
    assert diagram.get_ylabel() == "accuracy"
    assert histogram.get_xlabel() == "confidence"
    # The empty first bin draws no bar: 4 accuracy bars + 4 gap bars, 4 histogram bars.
    assert len(diagram.patches) == 8
    assert len(histogram.patches) == 4
    heights = [patch.get_height() for patch in histogram.patches]
    assert sum(heights) == pytest.approx(1.0)


def test_reliability_diagram_gap_is_accuracy_minus_confidence():
    table = reliability_table()
    fig = plots.reliability_diagram(table, title="t", xlabel="predicted probability")
    gaps = fig.axes[0].patches[4:]
    expected = np.abs(table["accuracy"] - table["confidence"])[1:]
    np.testing.assert_allclose([patch.get_height() for patch in gaps], expected)
    assert fig.axes[1].get_xlabel() == "predicted probability"


def test_reliability_diagrams_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one panel"):
        plots.reliability_diagrams({})
    with pytest.raises(ValueError, match="lacks the column"):
        plots.reliability_diagrams({"x": reliability_table().drop(columns="count")})


def test_reliability_zero_width_bins_stay_visible():
    table = pd.DataFrame(
        {
            "lower": [0.3, 0.7],
            "upper": [0.3, 0.9],
            "confidence": [0.3, 0.8],
            "accuracy": [0.0, 1.0],
            "count": [1, 4],
        }
    )
    fig = plots.reliability_diagram(table)
    widths = [patch.get_width() for patch in fig.axes[0].patches[:2]]
    np.testing.assert_allclose(widths, [plots.MIN_BIN_WIDTH, 0.2])


def test_calibration_scatter():
    rng = np.random.default_rng(0)
    p_true = rng.random(40)
    frame = pd.DataFrame(
        {
            "p_true": np.tile(p_true, 2),
            "predicted": np.clip(np.tile(p_true, 2) + 0.1, 0, 1),
            "model": ["UML"] * 40 + ["softmax"] * 40,
        }
    )
    fig = plots.calibration_scatter(frame)
    scatter_ax, error_ax = fig.axes[:2]
    assert scatter_ax.get_xlabel() == "true probability (generator)"
    assert error_ax.get_xlabel() == "predicted - true probability"
    with pytest.raises(ValueError, match="p_true"):
        plots.calibration_scatter(frame.drop(columns="p_true"))
