"""umlkit.plots.robustness: metrics under corruption and OOD score histograms (notebook 07)."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from umlkit import plots

pytestmark = pytest.mark.usefixtures("plot_theme")


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
