"""umlkit.plots.uncertainty_maps: galleries of uncertainty maps and uncertainty as an error detector (notebook 06)."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from umlkit import plots

pytestmark = pytest.mark.usefixtures("plot_theme")


def make_case(seed: int = 0, size: int = 16, classes: int = 2) -> dict:
    rng = np.random.default_rng(seed)
    mask = rng.integers(0, classes, (size, size))
    prediction = mask.copy()
    prediction[:4] = (prediction[:4] + 1) % classes
    return {
        "image": rng.random((3, size, size)),
        "mask": mask,
        "prediction": prediction,
        "uncertainty": rng.random((size, size)),
        "title": f"case {seed}",
    }


def test_uncertainty_gallery_rows_and_columns():
    cases = [make_case(0), make_case(1)]
    fig = plots.uncertainty_gallery(cases, columns=("image", "mask", "uncertainty", "error"))
    image_axes = fig.axes[:8]
    assert [ax.get_title() for ax in image_axes[:4]] == [
        "image",
        "ground truth",
        "pixel uncertainty",
        "error",
    ]
    assert image_axes[0].get_ylabel() == "case 0"
    assert image_axes[4].get_ylabel() == "case 1"
    assert len(fig.axes) == 9


def test_uncertainty_maps_keep_low_values_visible():
    fig = plots.uncertainty_gallery([make_case()], columns=("image", "uncertainty"))
    image = fig.axes[1].images[0]
    # on the square-root scale u = 0.04 gets the colour of 0.2, u = 0.25 that of 0.5
    np.testing.assert_allclose(image.norm([0.0, 0.04, 0.25, 1.0]), [0.0, 0.2, 0.5, 1.0])
    colour_bar = fig.axes[-1]
    assert colour_bar.get_ylabel() == "pixel uncertainty u (square-root scale)"
    np.testing.assert_allclose(colour_bar.get_yticks(), plots.UNCERTAINTY_TICKS)


def test_uncertainty_gallery_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one case"):
        plots.uncertainty_gallery([])
    case = make_case()
    del case["uncertainty"]
    with pytest.raises(ValueError, match="uncertainty"):
        plots.uncertainty_gallery([case])
    with pytest.raises(ValueError, match="threshold"):
        plots.uncertainty_gallery([make_case()], columns=("reliable",))
    with pytest.raises(ValueError, match="unknown gallery column"):
        plots.uncertainty_gallery([make_case()], columns=("banana",))


def test_uncertainty_overlay_reliable_mask_colours():
    case = make_case(classes=3)
    case["uncertainty"] = np.zeros((16, 16))
    case["uncertainty"][:2] = 0.9  # rows 0-1 uncertain; rows 0-3 wrong
    fig = plots.uncertainty_overlay(case, threshold=0.5)
    reliable_ax = fig.axes[5]
    assert reliable_ax.get_title() == "reliable (u ≤ 0.50)"
    overlay = reliable_ax.images[0].get_array()
    assert (overlay[:2] == 2).all()  # errors flagged as unreliable
    assert (overlay[2:4] == 3).all()  # confident errors
    assert (overlay[4:] == 0).all()  # reliable and right
    # each value's colour is named in a legend (the red of a missed error among them)
    (legend,) = fig.legends
    assert legend.get_title().get_text() == "reliable column (t = 0.50)"
    shown = {
        t.get_text(): to_hex(p.get_facecolor())
        for t, p in zip(legend.get_texts(), legend.get_patches(), strict=True)
    }
    cmap = reliable_ax.images[0].get_cmap()
    assert shown == {
        name: to_hex(cmap(value / 3)) for value, name in enumerate(plots.RELIABLE_VIEW)
    }
    assert shown["error missed (u ≤ t)"] == to_hex(plots.ERROR_COLOUR)
    without = plots.uncertainty_overlay(case)
    assert len(without.axes) == 6 and not without.legends


def test_ueo_curve_marks_the_maximum():
    thresholds = np.linspace(0, 1, 11)
    frame = pd.DataFrame(
        {
            "threshold": np.tile(thresholds, 2),
            "ueo": np.r_[1 - np.abs(thresholds - 0.3), thresholds / 2],
            "model": ["UML"] * 11 + ["softmax"] * 11,
        }
    )
    fig = plots.ueo_curve(frame)
    labels = [text.get_text() for text in fig.legends[0].get_texts()]
    assert labels == ["UML: max 1.00 at t = 0.30", "softmax: max 0.50 at t = 1.00"]
    marked = [tuple(points.get_offsets()[0]) for points in fig.axes[0].collections]
    assert marked == [pytest.approx((0.3, 1.0)), pytest.approx((1.0, 0.5))]
    with pytest.raises(ValueError, match="ueo"):
        plots.ueo_curve(frame.drop(columns="ueo"))


def test_error_detection_curves():
    rng = np.random.default_rng(0)
    error = rng.random(5000) < 0.2
    uncertainty = np.where(error, rng.random(5000) * 0.5 + 0.5, rng.random(5000) * 0.7)
    fig = plots.error_detection_curves({"UML": (error, uncertainty)}, max_points=100)
    roc_ax, pr_ax = fig.axes
    assert fig.legends[0].get_texts()[0].get_text() == "UML"  # one legend, below both panels
    assert len(roc_ax.lines[0].get_xdata()) <= 100
    assert pr_ax.lines[1].get_ydata()[0] == pytest.approx(error.mean())
    with pytest.raises(ValueError, match="both errors"):
        plots.error_detection_curves({"x": (np.zeros(4, bool), np.ones(4))})
    with pytest.raises(ValueError, match="4 values"):
        plots.error_detection_curves({"x": (np.array([0, 1, 0, 1]), np.ones(3))})


def test_factor_scatter_regression_and_boxes():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "uncertainty": rng.random(30),
            "border_irregularity": rng.random(30),
            "hair": rng.random(30) < 0.5,
        }
    )
    fig = plots.factor_scatter(frame, ["border_irregularity", "hair"], ncols=2)
    assert [ax.get_xlabel() for ax in fig.axes] == ["border irregularity", "hair"]
    assert len(fig.axes[0].lines) == 1  # the regression line
    with pytest.raises(ValueError, match="size"):
        plots.factor_scatter(frame, ["size"])


def test_factor_scatter_bootstrap_band_is_seeded(render_png):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {"error": rng.random(40) < 0.3, "hair": rng.random(40) < 0.5, "size": rng.random(40)}
    ).astype(float)
    # seaborn bootstraps the regression band: the same figure twice
    np.random.seed(None)  # an unseeded global state must not leak into the figure
    first = render_png(plots.factor_scatter(frame, ["size"], y="error"))
    np.random.seed(None)
    assert render_png(plots.factor_scatter(frame, ["size"], y="error")) == first
