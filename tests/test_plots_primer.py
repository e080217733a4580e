"""umlkit.plots.primer: Dirichlets on the simplex and the toy's figures (notebook 02).

The figures drawn from :mod:`umlkit.toy`'s own output are tested in ``tests/test_toy.py``; these
tests use hand-made inputs.
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from umlkit import plots

pytestmark = pytest.mark.usefixtures("plot_theme")


def test_draw_dirichlet_simplex_marks_the_mean():
    fig, ax = plt.subplots()
    plots.draw_dirichlet_simplex(ax, (2.0, 1.0, 1.0))
    # expected probability (1/2, 1/4, 1/4) -> 1/2 (0, 0) + 1/4 (1, 0) + 1/4 (1/2, sqrt(3)/2)
    mean = ax.lines[0]
    np.testing.assert_allclose(mean.get_xydata(), [[0.375, np.sqrt(3) / 8]])
    with pytest.raises(ValueError, match="3 positive numbers"):
        plots.draw_dirichlet_simplex(ax, (1.0, 0.0, 1.0))


def test_dirichlet_simplex_titles_give_strength_and_uncertainty():
    fig = plots.dirichlet_simplex([(2, 5, 3), (1, 1, 1)], ncols=4)
    assert len(fig.axes) == 2
    assert fig.axes[0].get_title() == "α = (2, 5, 3)\nS = 10, u = 0.30"
    assert fig.axes[1].get_title().endswith("S = 3, u = 1.00")
    assert fig._suptitle.get_text() == plots.SIMPLEX_SCALE  # per-panel scales, no colour bar


def test_evidence_curves_one_line_per_quantity():
    frame = pd.DataFrame(
        {
            "evidence": [0, 1, 2] * 2,
            "quantity": ["belief"] * 3 + ["uncertainty"] * 3,
            "value": [0.0, 0.25, 0.4, 1.0, 0.75, 0.6],
        }
    )
    ax = plots.evidence_curves(frame).axes[0]
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [1.0, 0.75, 0.6])
    assert ax.get_ylim() == (0, 1.02)
    assert ax.get_ylabel() == "belief, probability, uncertainty"
    named = plots.evidence_curves(frame, num_classes=3).axes[0]
    assert named.get_xlabel() == "evidence for class 0 (K = 3 classes, no evidence for the others)"
    with pytest.raises(ValueError, match="quantity"):
        plots.evidence_curves(frame.drop(columns="quantity"))


def test_toy_uncertainty_maps_hand_made_grids():
    xx, yy = np.meshgrid(np.linspace(-1, 1, 5), np.linspace(-1, 1, 5))
    p1 = (xx + 1) / 2  # p(class 1) rises left to right: the boundary is x = 0
    grid = {
        "xx": xx,
        "yy": yy,
        "prob": np.stack([1 - p1, p1], axis=-1),
        "uncertainty": 1 - np.abs(xx),
    }
    points, labels = np.array([[-0.5, 0.0], [0.5, 0.0]]), np.array([0, 1])
    fig = plots.toy_uncertainty_maps({"a": grid, "b": grid}, points, labels, ncols=3)
    assert len(fig.axes) == 3  # two maps and the shared colour bar
    assert [ax.get_title() for ax in fig.axes[:2]] == ["a", "b"]
    legend = fig.axes[0].get_legend_handles_labels()[1]
    assert legend == ["class 0", "class 1"]


def test_uncertainty_distance_curves_needs_its_columns():
    frame = pd.DataFrame({"distance": [0.0, 1.0], "uncertainty": [0.1, 0.8], "model": ["UML"] * 2})
    ax = plots.uncertainty_distance_curves(frame).axes[0]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.1, 0.8])
    with pytest.raises(ValueError, match="head"):
        plots.uncertainty_distance_curves(frame, hue="head")
