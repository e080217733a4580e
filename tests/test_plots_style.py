"""umlkit.plots.style: the shared theme, colours and helpers of every figure."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import seaborn as sns
from matplotlib.colors import to_hex

from umlkit import plots
from umlkit.plots.style import CLASS_COLOURS, MODEL_ORDER, check_columns, class_cmap, model_styles

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


def test_model_styles_give_each_model_its_colour_and_repeats_a_new_line_style():
    palette = [to_hex(colour) for colour in sns.color_palette("deep", n_colors=10)]
    labels = [
        "multitask [entropy]",
        "UML, u = K/S",
        "UML, max p",
        "UML softmax head",
        "mine",
        "UMLx",
    ]
    styles = [(to_hex(colour), style) for colour, style in model_styles(labels)]
    assert styles == [
        (palette[MODEL_ORDER.index("multitask")], "-"),
        (palette[0], "-"),  # UML, first curve
        (palette[0], "--"),  # UML again: same colour, dashed
        (palette[MODEL_ORDER.index("UML softmax head")], "-"),  # the longest name, not UML
        (palette[8], "-"),  # names no model: the colours after the eight models'
        (palette[9], "-"),  # "UMLx" is not "UML" followed by a separator
    ]
    # labels that name no model at all (notebook 09's methods) start at the first colour
    assert [to_hex(c) for c, _ in model_styles(["supervised", "caml"])] == palette[:2]
    assert model_styles([]) == []


def test_a_model_keeps_its_colour_from_figure_to_figure():
    """Notebook 06's and 08's figures list the models in different orders and with different
    companions: multitask is drawn in the same colour in both."""
    rng = np.random.default_rng(0)
    error = rng.random(200) < 0.3
    detection = plots.error_detection_curves(
        {
            "UML [evidential]": (error, rng.random(200)),
            "multitask [entropy]": (error, rng.random(200)),
        }
    )
    coverage = np.linspace(0.1, 1, 10)
    risk = plots.risk_coverage(
        {
            "multitask (AURC 0.1)": (coverage, coverage / 4),
            "segmentation only (AURC 0.2)": (coverage, coverage / 3),
        }
    )

    def colour_of(fig, prefix):
        (line,) = [line for line in fig.axes[0].get_lines() if line.get_label().startswith(prefix)]
        return to_hex(line.get_color())

    assert colour_of(detection, "multitask") == colour_of(risk, "multitask")
    assert colour_of(detection, "UML") != colour_of(detection, "multitask")
    plt.close("all")
