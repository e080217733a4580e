"""umlkit.plots.failure_cases: risk-coverage and failures against the generator's factors (notebook 08)."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from umlkit import plots

pytestmark = pytest.mark.usefixtures("plot_theme")


def test_risk_coverage():
    coverage = np.linspace(0.1, 1, 10)
    fig = plots.risk_coverage({"UML (AURC 0.05)": (coverage, coverage / 5)})
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), coverage / 5)
    assert fig.legends[0].get_texts()[0].get_text() == "UML (AURC 0.05)"  # below the axes
    with pytest.raises(ValueError, match="at least one curve"):
        plots.risk_coverage({})


def test_factor_effects_with_intervals():
    effects = pd.DataFrame(
        {
            "factor": ["border_irregularity", "hair"],
            "coefficient": [1.2, -0.3],
            "lower": [0.8, -0.6],
            "upper": [1.6, 0.0],
        }
    )
    fig = plots.factor_effects(effects)
    ax = fig.axes[0]
    widths = sorted(patch.get_width() for patch in ax.patches)
    np.testing.assert_allclose(widths, [-0.3, 1.2])
    assert len(ax.lines) == 3
    # the column names as words, as notebook 01's figures write them
    assert [t.get_text() for t in ax.get_yticklabels()] == ["border irregularity", "hair"]


def test_rate_by_flag_means():
    frame = pd.DataFrame({"error": [1, 0, 0, 0], "hair": [1, 1, 0, 0], "blur": [0, 0, 0, 1]})
    fig = plots.rate_by_flag(frame, ["hair", "blur"])
    heights = sorted(
        round(patch.get_height(), 3) for patch in fig.axes[0].patches if patch.get_height() > 0
    )
    # hair present 0.5, hair absent 0, blur absent 1/3, blur present 0
    assert heights == [0.333, 0.5]
    ax = fig.axes[0]
    assert ax.get_ylabel() == "mean error (95 % interval)"
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["absent", "present"]
    assert not legend.get_title().get_text()  # no "present" over "absent" and "present"
    named = plots.rate_by_flag(
        frame.rename(columns={"blur": "low_contrast"}), ["low_contrast"], ylabel="share wrong"
    )
    assert [t.get_text() for t in named.axes[0].get_xticklabels()] == ["low contrast"]
    assert named.axes[0].get_ylabel() == "share wrong (95 % interval)"
    with pytest.raises(ValueError, match="at least one flag"):
        plots.rate_by_flag(frame, [])


def test_rate_by_flag_bootstrap_intervals_are_seeded(render_png):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {"error": rng.random(40) < 0.3, "hair": rng.random(40) < 0.5, "size": rng.random(40)}
    ).astype(float)
    # seaborn bootstraps the bar intervals: the same figure twice
    np.random.seed(None)  # an unseeded global state must not leak into the figure
    first = render_png(plots.rate_by_flag(frame, ["hair"]))
    np.random.seed(None)
    assert render_png(plots.rate_by_flag(frame, ["hair"])) == first
