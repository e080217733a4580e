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
    # the histogram counts the samples of each bin, on a log axis
    assert [patch.get_height() for patch in histogram.patches] == [3, 5, 10, 2]
    assert histogram.get_yscale() == "log"
    assert histogram.get_ylabel() == "samples"
    legend = [text.get_text() for text in diagram.get_legend().get_texts()]
    assert legend == ["perfect", "accuracy", "gap"]


def test_reliability_bars_are_named_as_the_y_axis_names_them():
    """One-vs-rest diagrams show a class's observed frequency, not an accuracy: the legend
    says what the axis says."""
    fig = plots.reliability_diagrams({"lesion": reliability_table()}, ylabel="frequency of class c")
    diagram = fig.axes[0]
    assert diagram.get_ylabel() == "frequency of class c"
    legend = [text.get_text() for text in diagram.get_legend().get_texts()]
    assert legend == ["perfect", "frequency of class c", "gap"]


def test_reliability_near_empty_bins_fade():
    table = reliability_table().assign(count=[0, 1, 10, 1_000_000, 1000])
    fig = plots.reliability_diagram(table, unit="pixels")
    accuracy_bars = fig.axes[0].patches[:4]
    alphas = [bar.get_alpha() for bar in accuracy_bars]
    assert alphas[2] == pytest.approx(1.0)  # the fullest bin
    assert alphas[0] < 0.2 and alphas[0] < alphas[1] < alphas[3] < 1.0  # fading with the count
    assert fig.axes[1].get_ylabel() == "pixels"
    # the legend's swatches keep full colour whatever the first bin's opacity
    assert fig.axes[0].get_legend().get_patches()[0].get_alpha() is None
    np.testing.assert_allclose(
        plots.bin_opacity(np.array([0, 1, 100])),
        [0, 0.15 + 0.85 * (np.log(2) / np.log(101)) ** 2, 1],
    )


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


def test_calibration_against_truth_counts_images_per_cell():
    p_true = np.array([0.05, 0.05, 0.95, 0.55] * 5)
    frame = pd.DataFrame(
        {
            "p_true": np.tile(p_true, 2),
            "predicted": np.concatenate([p_true, np.clip(p_true + 0.1, 0, 1)]),
            "model": ["UML"] * 20 + ["softmax"] * 20,
        }
    )
    fig = plots.calibration_against_truth(frame, bins=10)
    uml, softmax = fig.axes[:2]
    assert [uml.get_title(), softmax.get_title()] == ["UML", "softmax"]
    assert uml.get_xlabel() == "true probability (generator)"
    assert uml.get_ylabel() == "predicted probability"
    counts = uml.collections[0].get_array().reshape(10, 10)  # rows: predicted, columns: true
    assert counts.sum() == 20
    assert (counts[0, 0], counts[9, 9], counts[5, 5]) == (10, 5, 5)
    assert np.ma.is_masked(counts[0, 1])  # an empty cell is left white
    shifted = softmax.collections[0].get_array().reshape(10, 10)
    assert shifted[1, 0] == 10  # predicted 0.15 against true 0.05
    # the mean prediction per column of true probability (columns of at least 5 images)
    mean = [line for line in softmax.lines if line.get_marker() == "o"][0]
    np.testing.assert_allclose(mean.get_xydata(), [[0.05, 0.15], [0.55, 0.65], [0.95, 0.95]])
    assert "log scale" in fig.axes[-1].get_ylabel()  # the colour bar
    with pytest.raises(ValueError, match="p_true"):
        plots.calibration_against_truth(frame.drop(columns="p_true"))
