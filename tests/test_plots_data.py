"""umlkit.plots.data: the figures of the datasets themselves (notebook 01)."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from umlkit import plots

pytestmark = pytest.mark.usefixtures("plot_theme")


def make_items(n: int = 3, size: int = 8) -> list[dict]:
    items = []
    for index in range(n):
        mask = np.zeros((size, size), dtype=np.int64)
        mask[2:6, 2:6] = 1
        if index == 0:
            mask[3:5, 3:5] = 2  # a cup inside the rim, as in the fundus layout
        items.append(
            {
                "image": np.full((3, size, size), 0.5),
                "mask": mask,
                "label": index % 2,
                "id": f"x{index}",
            }
        )
    return items


def test_dataset_grid_titles_and_outlines():
    fig = plots.dataset_grid(make_items(), n=5, ncols=2, class_names=("benign", "melanoma"))
    assert len(fig.axes) == 4  # 2 x 2 grid for the three items there are
    assert [ax.get_title() for ax in fig.axes[:3]] == ["x0\nbenign", "x1\nmelanoma", "x2\nbenign"]
    # one outline per mask class present: classes 1 and 2 in the first image, 1 in the second
    assert len(fig.axes[0].collections) == 2
    assert len(fig.axes[1].collections) == 1
    assert not fig.axes[3].axison  # the unused panel is blank
    assert plots.dataset_grid(make_items(1)).axes[0].get_title() == "x0\nlabel 0"
    with pytest.raises(ValueError, match="empty"):
        plots.dataset_grid([])


def test_factor_distributions_one_panel_per_factor():
    rng = np.random.default_rng(0)
    metadata = pd.DataFrame(
        {"border_irregularity": rng.random(20), "size": rng.random(20), "label": [0, 1] * 10}
    )
    fig = plots.factor_distributions(metadata, ["border_irregularity", "size"], ncols=3)
    assert [ax.get_title() for ax in fig.axes] == ["border irregularity", "size"]  # no blank panel
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["0", "1"]
    named = plots.factor_distributions(metadata, ["size"], class_names=("benign", "melanoma"))
    assert [t.get_text() for t in named.legends[0].get_texts()] == ["benign", "melanoma"]
    with pytest.raises(ValueError, match="asymmetry"):
        plots.factor_distributions(metadata, ["asymmetry"])


def test_factor_distributions_draws_flags_as_bars_of_shares():
    metadata = pd.DataFrame(
        {
            "size": np.linspace(0, 1, 8),
            "hairs": [1, 1, 0, 0, 1, 0, 0, 0],
            "low_contrast": [0, 0, 0, 0, 1, 1, 1, 1],
            "label": [0, 0, 0, 0, 1, 1, 1, 1],
        }
    )
    fig = plots.factor_distributions(metadata, ["size", "hairs", "low_contrast"])
    assert [ax.get_title() for ax in fig.axes] == ["size", "yes/no flags"]
    flags = fig.axes[1]
    assert [label.get_text() for label in flags.get_yticklabels()] == ["hairs", "low contrast"]
    # label 0: half have hairs, none low contrast; label 1: a quarter hairs, all low contrast
    widths = [patch.get_width() for patch in flags.patches]
    np.testing.assert_allclose(widths, [0.5, 0.0, 0.25, 1.0])
    assert [text.get_text() for text in fig.legends[0].get_texts()] == ["0", "1"]


def test_class_balance_counts_each_label_per_split():
    metadata = pd.DataFrame({"split": ["train", "train", "train", "test"], "label": [0, 1, 1, 1]})
    ax = plots.class_balance(metadata).axes[0]
    counts = sorted(patch.get_height() for patch in ax.patches if patch.get_height() > 0)
    assert counts == [1, 1, 2]  # train: one 0 and two 1; test: one 1
    assert ax.get_ylabel() == "images"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["0", "1"]
    named = plots.class_balance(metadata, class_names=("benign", "melanoma")).axes[0]
    assert [t.get_text() for t in named.get_legend().get_texts()] == ["benign", "melanoma"]
    assert sorted(p.get_height() for p in named.patches if p.get_height() > 0) == [1, 1, 2]
    with pytest.raises(ValueError, match="split"):
        plots.class_balance(metadata.drop(columns="split"))
