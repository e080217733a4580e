"""umlkit.plots.semi: the semi-supervised comparison's figures (notebook 09).

The figures drawn from a real (tiny) comparison run are tested in ``tests/test_semi_experiments.py``;
these tests use hand-made tables and maps.
"""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from umlkit import plots
from umlkit.plots.style import CLASS_COLOURS

pytestmark = pytest.mark.usefixtures("plot_theme")


def trust_row(title: str, trusted: dict) -> dict:
    mask = np.zeros((8, 8), dtype=int)
    mask[2:6, 2:6] = 1
    return {
        "title": title,
        "image": np.full((3, 8, 8), 0.5),
        "mask": mask,
        "prediction": mask,
        "uncertainty": np.full((8, 8), 0.2),
        "trusted": trusted,
    }


def test_plots_reject_bad_input():
    with pytest.raises(ValueError, match="at least one row"):
        plots.trust_gallery([])
    with pytest.raises(ValueError, match="label_fraction"):
        plots.label_fraction_curves(pd.DataFrame({"dice": [0.5]}))


def test_label_fraction_curves_mean_over_seeds_per_dataset():
    runs = pd.DataFrame(
        {
            "dataset": ["derm"] * 4 + ["fundus"] * 4,
            "method": ["caml"] * 8,
            "label_fraction": [0.01, 0.01, 0.05, 0.05] * 2,
            "dice": [0.5, 0.7, 0.8, 0.8, 0.4, 0.4, 0.6, 0.6],
        }
    )
    fig = plots.label_fraction_curves(runs)
    assert [ax.get_title() for ax in fig.axes] == [
        "derm",
        "fundus",
    ]  # no supervised: no differences
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), [0.6, 0.8])
    assert [label.get_text() for label in fig.axes[0].get_xticklabels()] == ["1%", "5%"]
    low, high = fig.axes[0].get_ylim()
    assert low > 0.3 and high < 1.0  # fitted to the data, not 0..1


def test_label_fraction_curves_difference_panel_pairs_by_seed():
    runs = pd.DataFrame(
        {
            "dataset": ["fundus"] * 8,
            "method": ["supervised"] * 4 + ["caml"] * 4,
            "label_fraction": [0.01, 0.01, 0.05, 0.05] * 2,
            "seed": [0, 1] * 4,
            "dice": [0.80, 0.90, 0.90, 0.92, 0.85, 0.91, 0.90, 0.95],
        }
    )
    fig = plots.label_fraction_curves(runs)
    top, difference = fig.axes
    assert difference.get_ylabel() == "Dice − supervised\n(dots: seeds, line: mean)"
    # seed by seed: 0.05, 0.01 at 1%; 0.00, 0.03 at 5%
    np.testing.assert_allclose(
        np.sort(difference.collections[0].get_offsets()[:, 1]), [0.0, 0.01, 0.03, 0.05]
    )
    assert top.get_ylabel() == "test Dice (mean ± sd over seeds)"
    mean_line = [line for line in difference.lines if len(line.get_xdata()) == 2][-1]
    np.testing.assert_allclose(mean_line.get_ydata(), [0.03, 0.015])
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["supervised", "caml"]


def test_validation_curves_skip_epochs_without_validation():
    histories = pd.DataFrame(
        {
            "dataset": ["fundus"] * 3,
            "method": ["burl"] * 3,
            "step": [10, 20, 30],
            "val_dice": [0.3, np.nan, 0.6],
        }
    )
    ax = plots.validation_curves(histories).axes[0]
    np.testing.assert_allclose(ax.lines[0].get_xydata(), [[10, 0.3], [30, 0.6]])
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("optimisation step", "validation Dice")
    with pytest.raises(ValueError, match="step"):
        plots.validation_curves(histories.drop(columns="step"))


def test_validation_curves_band_over_seeds_and_runs_still_improving():
    histories = pd.DataFrame(
        {
            "dataset": ["fundus"] * 6,
            "method": ["caml"] * 6,
            "seed": [0, 0, 0, 1, 1, 1],
            "step": [10, 20, 30] * 2,
            "val_dice": [0.70, 0.80, 0.90, 0.75, 0.85, 0.80],  # seed 0 still improving
        }
    )
    ax = plots.validation_curves(histories).axes[0]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.725, 0.825, 0.85])
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(0.70) and band.max() == pytest.approx(0.90)
    stars = [line for line in ax.lines if line.get_marker() == "*"]
    assert len(stars) == 1 and stars[0].get_xydata().tolist() == [[30, 0.9]]
    assert ax.get_legend().get_texts()[0].get_text() == "caml (1 of 2 still improving)"
    assert ax.get_ylim()[0] > 0.5  # fitted to the data
    assert plots.still_improving(histories[histories["seed"] == 0])
    assert not plots.still_improving(histories[histories["seed"] == 1])


def test_trust_gallery_leaves_missing_trusted_maps_empty():
    rows = [
        trust_row("supervised", {}),
        trust_row("burl", {"pseudo-label region": np.ones((8, 8))}),
    ]
    fig = plots.trust_gallery(rows, num_classes=3)
    assert len(fig.axes) == 2 * 6 + 2  # the panels and two colour bars (uncertainty, trust)
    assert [ax.get_title() for ax in fig.axes[:4]] == [
        "image",
        "ground truth",
        "prediction",
        "uncertainty",
    ]
    assert not fig.legends  # no class names, no legend
    assert fig.axes[4].texts[0].get_text() == "no loss on\nunlabeled pixels"
    assert fig.axes[10].get_title() == "pseudo-label region"
    assert fig.axes[6].get_ylabel() == "burl"
    with pytest.raises(ValueError, match="trusted"):
        plots.trust_gallery([{k: v for k, v in rows[0].items() if k != "trusted"}])
    # the foreground classes' colours, named (REFUGE: rim and cup), as the masks draw them
    named = plots.trust_gallery(rows, num_classes=3, class_names=("background", "rim", "cup"))
    (legend,) = named.legends
    assert [text.get_text() for text in legend.get_texts()] == ["rim", "cup"]
    assert [to_hex(patch.get_facecolor()) for patch in legend.get_patches()] == [
        to_hex(c) for c in CLASS_COLOURS[1:3]
    ]
