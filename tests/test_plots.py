"""Every plot draws from small synthetic inputs and returns a Figure with the expected axes."""

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from umlkit import plots


@pytest.fixture(autouse=True)
def _close_figures():
    plots.set_theme()
    yield
    plt.close("all")


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


def test_set_theme_sets_whitegrid():
    plt.rcdefaults()
    plots.set_theme()
    assert plt.rcParams["axes.grid"] is True


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


def test_as_display_image_channel_orders():
    assert plots.as_display_image(np.zeros((3, 8, 9))).shape == (8, 9, 3)
    assert plots.as_display_image(np.zeros((1, 8, 9))).shape == (8, 9)
    assert plots.as_display_image(np.full((8, 9), 2.0)).max() == 1.0
    with pytest.raises(ValueError, match="shape"):
        plots.as_display_image(np.zeros((2, 2, 2, 2)))


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
    assert len(fig.axes) == 9  # eight panels and the uncertainty colorbar


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
    assert len(plots.uncertainty_overlay(case).axes) == 6  # five panels and a colorbar


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
    ax = fig.axes[0]
    annotations = [child.get_text() for child in ax.texts]
    assert "1.00 @ 0.30" in annotations
    assert "0.50 @ 1.00" in annotations
    with pytest.raises(ValueError, match="ueo"):
        plots.ueo_curve(frame.drop(columns="ueo"))


def test_error_detection_curves():
    rng = np.random.default_rng(0)
    error = rng.random(5000) < 0.2
    uncertainty = np.where(error, rng.random(5000) * 0.5 + 0.5, rng.random(5000) * 0.7)
    fig = plots.error_detection_curves({"UML": (error, uncertainty)}, max_points=100)
    roc_ax, pr_ax = fig.axes
    assert roc_ax.get_legend().get_texts()[0].get_text() == "UML"
    assert len(roc_ax.lines[0].get_xdata()) <= 100
    assert pr_ax.lines[1].get_ydata()[0] == pytest.approx(error.mean())
    with pytest.raises(ValueError, match="both errors"):
        plots.error_detection_curves({"x": (np.zeros(4, bool), np.ones(4))})
    with pytest.raises(ValueError, match="4 values"):
        plots.error_detection_curves({"x": (np.array([0, 1, 0, 1]), np.ones(3))})


def test_risk_coverage():
    coverage = np.linspace(0.1, 1, 10)
    fig = plots.risk_coverage({"UML (AURC 0.05)": (coverage, coverage / 5)})
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), coverage / 5)
    assert ax.get_legend().get_texts()[0].get_text() == "UML (AURC 0.05)"
    with pytest.raises(ValueError, match="at least one curve"):
        plots.risk_coverage({})


def test_robustness_curves_grid():
    rows = []
    for corruption in ("gaussian", "blur"):
        for severity in (0.0, 0.1, 0.2):
            for model in ("UML", "unet"):
                rows.append(
                    {
                        "corruption": corruption,
                        "severity": severity,
                        "model": model,
                        "ACC": 1 - severity,
                        "Dice": 0.9 - severity,
                    }
                )
    fig = plots.robustness_curves(pd.DataFrame(rows), ["ACC", "Dice"])
    assert len(fig.axes) == 4
    assert fig.axes[0].get_title() == "gaussian"
    assert fig.axes[1].get_title() == "blur"
    assert fig.axes[2].get_ylabel() == "Dice"
    assert fig.axes[1].get_legend() is not None
    with pytest.raises(ValueError, match="at least one metric"):
        plots.robustness_curves(pd.DataFrame(rows), [])


def test_ood_histograms():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "uncertainty": rng.random(40),
            "dataset": ["in-distribution", "OOD"] * 20,
            "model": ["UML"] * 20 + ["softmax"] * 20,
        }
    )
    fig = plots.ood_histograms(frame, titles={"UML": "UML (AUROC 0.9)"})
    assert [ax.get_title() for ax in fig.axes] == ["UML (AUROC 0.9)", "softmax"]


def test_factor_scatter_regression_and_boxes():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "uncertainty": rng.random(30),
            "irregularity": rng.random(30),
            "hair": rng.random(30) < 0.5,
        }
    )
    fig = plots.factor_scatter(frame, ["irregularity", "hair"], ncols=2)
    assert [ax.get_xlabel() for ax in fig.axes] == ["irregularity", "hair"]
    assert len(fig.axes[0].lines) == 1  # the regression line
    with pytest.raises(ValueError, match="size"):
        plots.factor_scatter(frame, ["size"])


def test_factor_effects_with_intervals():
    effects = pd.DataFrame(
        {
            "factor": ["irregularity", "hair"],
            "coefficient": [1.2, -0.3],
            "lower": [0.8, -0.6],
            "upper": [1.6, 0.0],
        }
    )
    fig = plots.factor_effects(effects)
    ax = fig.axes[0]
    widths = sorted(patch.get_width() for patch in ax.patches)
    np.testing.assert_allclose(widths, [-0.3, 1.2])
    assert len(ax.lines) == 3  # two intervals and the zero line


def test_rate_by_flag_means():
    frame = pd.DataFrame({"error": [1, 0, 0, 0], "hair": [1, 1, 0, 0], "blur": [0, 0, 0, 1]})
    fig = plots.rate_by_flag(frame, ["hair", "blur"])
    heights = sorted(
        round(patch.get_height(), 3) for patch in fig.axes[0].patches if patch.get_height() > 0
    )
    # hair present 0.5, hair absent 0, blur absent 1/3, blur present 0
    assert heights == [0.333, 0.5]
    with pytest.raises(ValueError, match="at least one flag"):
        plots.rate_by_flag(frame, [])


def _rendered(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def test_bootstrap_intervals_are_seeded():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {"error": rng.random(40) < 0.3, "hair": rng.random(40) < 0.5, "size": rng.random(40)}
    ).astype(float)
    # seaborn bootstraps the regression band and the bar intervals: the same figure twice
    for draw in (
        lambda: plots.factor_scatter(frame, ["size"], y="error"),
        lambda: plots.rate_by_flag(frame, ["hair"]),
    ):
        np.random.seed(None)  # an unseeded global state must not leak into the figure
        first = _rendered(draw())
        np.random.seed(None)
        assert _rendered(draw()) == first


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
