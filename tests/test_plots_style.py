"""umlkit.plots.style: the shared theme, colours and helpers of every figure."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from umlkit import plots
from umlkit.plots.style import CLASS_COLOURS, check_columns, class_cmap

pytestmark = pytest.mark.usefixtures("plot_theme")


def test_set_theme_sets_whitegrid():
    plt.rcdefaults()
    plots.set_theme()
    assert plt.rcParams["axes.grid"] is True


def test_as_display_image_channel_orders():
    assert plots.as_display_image(np.zeros((3, 8, 9))).shape == (8, 9, 3)
    assert plots.as_display_image(np.zeros((1, 8, 9))).shape == (8, 9)
    assert plots.as_display_image(np.full((8, 9), 2.0)).max() == 1.0
    with pytest.raises(ValueError, match="shape"):
        plots.as_display_image(np.zeros((2, 2, 2, 2)))


def test_check_columns_names_what_is_missing():
    frame = pd.DataFrame({"a": [1], "b": [2]})
    check_columns(frame, ("a", "b"), "table")  # all there: no error
    with pytest.raises(
        ValueError, match=r"runs table lacks the column\(s\) \['c'\]; it has \['a', 'b'\]"
    ):
        check_columns(frame, ("a", "c"), "runs table")


def test_class_cmap_gives_class_k_its_colour():
    # a one-class map still gets two colours, so vmax = 1 never collapses the colour range
    assert [to_hex(c) for c in class_cmap(1).colors] == list(CLASS_COLOURS[:2])
    three = class_cmap(3)
    assert three.N == 3
    assert to_hex(three(2)) == CLASS_COLOURS[2]
