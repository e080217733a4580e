"""umlkit.plots.robustness: metrics under corruption and OOD score histograms (notebook 07)."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from umlkit import plots

pytestmark = pytest.mark.usefixtures("plot_theme")


def robustness_frame(seeds: int = 1) -> pd.DataFrame:
    rows = []
    for corruption, levels in (("gaussian_noise", (0.0, 0.1, 0.2)), ("gaussian_blur", (0, 1, 2))):
        for severity in levels:
            for model in ("UML", "unet"):
                for seed in range(seeds):
                    rows.append(
                        {
                            "corruption": corruption,
                            "severity": severity,
                            "model": model,
                            "seed": seed,
                            "accuracy": 1 - 0.1 * severity - 0.1 * seed,
                            "dice": 0.9 - 0.1 * severity,
                        }
                    )
    return pd.DataFrame(rows)


def test_robustness_curves_grid():
    frame = robustness_frame()
    fig = plots.robustness_curves(frame, ["accuracy", "dice"], chance={"accuracy": 0.6})
    assert len(fig.axes) == 4
    assert [ax.get_title() for ax in fig.axes[:2]] == ["gaussian noise", "gaussian blur"]
    assert fig.axes[2].get_ylabel() == "Dice"
    # each column's severity in the corruption's own unit
    assert fig.axes[2].get_xlabel() == plots.SEVERITY_LABELS["gaussian_noise"]
    assert fig.axes[3].get_xlabel() == "blur σ (pixels)"
    chance_lines = [line for line in fig.axes[0].lines if line.get_linestyle() == ":"]
    np.testing.assert_allclose(chance_lines[0].get_ydata(), [0.6, 0.6])
    assert not [line for line in fig.axes[2].lines if line.get_linestyle() == ":"]
    labels = [text.get_text() for text in fig.legends[0].get_texts()]
    assert labels == ["UML", "unet", "chance (accuracy 0.600)"]
    assert fig._suptitle.get_text() == "one training seed"
    # the models in the colours every figure gives them: UML the first of the palette
    assert to_hex(fig.axes[0].lines[0].get_color()) == to_hex(plots.model_styles(["UML"])[0][0])
    # an uncertainty row: the title says which measure each kind of head has
    frame["uncertainty"] = 0.5
    with_u = plots.robustness_curves(frame, ["accuracy", "uncertainty"])
    assert with_u._suptitle.get_text() == "one training seed\n" + plots.UNCERTAINTY_MEASURES
    with pytest.raises(ValueError, match="at least one metric"):
        plots.robustness_curves(frame, [])


def test_robustness_curves_band_spans_the_seeds():
    fig = plots.robustness_curves(robustness_frame(seeds=3), ["accuracy"])
    assert fig._suptitle.get_text().startswith("mean over 3 training seeds")
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.9, 0.89, 0.88])  # UML's mean
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.max() == pytest.approx(1.0) and band.min() == pytest.approx(0.78)


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
    assert fig.axes[0].get_xlabel() == "image uncertainty"
    assert fig._suptitle.get_text() == plots.UNCERTAINTY_MEASURES
