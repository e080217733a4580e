"""Calibration figures (notebook 05): reliability diagrams and predicted against true probability.

A model is calibrated when, among the cases it gives confidence p, a share p is right.
:func:`reliability_diagrams` checks this per confidence bin (the tables come from
``umlkit.metrics.reliability_bins``); :func:`calibration_scatter` checks it per image against the
generator's known probability, which only synthetic data has.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from umlkit.plots.style import ERROR_COLOUR, check_columns

#: Columns a reliability table must have (one row per bin, as ``umlkit.metrics.reliability_bins``).
RELIABILITY_COLUMNS = ("lower", "upper", "confidence", "accuracy", "count")


def reliability_diagrams(
    panels: Mapping[str, pd.DataFrame],
    *,
    ncols: int | None = None,
    suptitle: str | None = None,
    xlabel: str = "confidence",
    ylabel: str = "accuracy",
) -> Figure:
    """Reliability diagrams with a confidence histogram under each, side by side.

    Each panel shows, per bin, the observed accuracy (bars spanning the bin) against the mean
    confidence (the diagonal is perfect calibration). The red part of a bar is the gap
    ``|accuracy - confidence|`` whose count-weighted mean is the ECE:

        ``ECE = sum_b (n_b / N) * |acc_b - conf_b|``.

    Under each diagram a histogram shows the share of samples per bin, because a big gap in a bin
    with almost no samples hardly matters.

    Args:
        panels: panel title -> reliability table with the columns ``lower, upper, confidence,
            accuracy, count`` (one row per bin; ``confidence``/``accuracy`` are the bin means, NaN or
            any value where ``count`` is 0). Put the ECE into the title if you want it shown.
        ncols: panels per row (default: all in one row, at most 4).
        suptitle: a title over all panels.
        xlabel: label of the x axes ("confidence", or "predicted probability" for positive-class
            reliability).
        ylabel: label of the y axes ("accuracy", or "observed frequency").

    Returns:
        The figure; its axes alternate diagram, histogram (``fig.axes[2*i]`` is panel ``i``).

    Raises:
        ValueError: if ``panels`` is empty or a table lacks a column.
    """
    if not panels:
        raise ValueError("reliability_diagrams needs at least one panel")
    for title, bins in panels.items():
        check_columns(bins, RELIABILITY_COLUMNS, f"reliability table {title!r}")
    n = len(panels)
    ncols = min(n, 4) if ncols is None else ncols
    nrows = int(np.ceil(n / ncols))
    fig = plt.figure(figsize=(3.4 * ncols, 4.2 * nrows), layout="constrained")
    outer = fig.add_gridspec(nrows, ncols)
    for index, (title, bins) in enumerate(panels.items()):
        inner = outer[index // ncols, index % ncols].subgridspec(2, 1, height_ratios=(3, 1))
        ax = fig.add_subplot(inner[0])
        hist_ax = fig.add_subplot(inner[1], sharex=ax)
        _draw_reliability(ax, hist_ax, bins)
        ax.set_title(title, fontsize="medium")
        ax.set_ylabel(ylabel)
        hist_ax.set_xlabel(xlabel)
        ax.tick_params(labelbottom=False)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def reliability_diagram(bins: pd.DataFrame, *, title: str = "", **kwargs: Any) -> Figure:
    """One reliability diagram with its confidence histogram; see :func:`reliability_diagrams`."""
    return reliability_diagrams({title: bins}, **kwargs)


#: Narrowest bar of a reliability diagram: an equal-mass bin holding a single confidence value
#: spans zero width and would otherwise be invisible.
MIN_BIN_WIDTH = 0.01


def _draw_reliability(ax: plt.Axes, hist_ax: plt.Axes, bins: pd.DataFrame) -> None:
    filled = bins[bins["count"] > 0]
    widths = np.maximum(filled["upper"] - filled["lower"], MIN_BIN_WIDTH)
    ax.bar(
        filled["lower"],
        filled["accuracy"],
        width=widths,
        align="edge",
        color=sns.color_palette()[0],
        edgecolor="white",
        label="accuracy",
    )
    gap_bottom = np.minimum(filled["accuracy"], filled["confidence"])
    ax.bar(
        filled["lower"],
        np.abs(filled["accuracy"] - filled["confidence"]),
        bottom=gap_bottom,
        width=widths,
        align="edge",
        color=ERROR_COLOUR,
        alpha=0.35,
        edgecolor=ERROR_COLOUR,
        label="gap",
    )
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize="small")
    total = bins["count"].sum()
    share = filled["count"] / total if total > 0 else filled["count"]
    hist_ax.bar(filled["lower"], share, width=widths, align="edge", color="grey", edgecolor="white")
    hist_ax.set_ylabel("share")
    hist_ax.set_ylim(0, max(float(share.max()) * 1.1, 1e-3) if len(share) else 1)


def calibration_scatter(
    frame: pd.DataFrame,
    *,
    predicted: str = "predicted",
    true: str = "p_true",
    hue: str = "model",
) -> Figure:
    """Predicted probability against the generator's true probability, and the error's spread.

    Only on synthetic data is the Bayes probability ``p_true = P(y = 1 | image factors)`` known, so
    calibration can be checked per image instead of per bin: a calibrated model scatters around the
    diagonal. The right panel shows the distribution of ``predicted - p_true`` per model.

    Args:
        frame: one row per image (and model) with the columns ``predicted``, ``true`` and ``hue``.
        predicted: column of the model's positive-class probability (alpha_1 / S).
        true: column of the true probability.
        hue: column naming the model.

    Returns:
        The figure with two axes (scatter, error histogram).
    """
    check_columns(frame, (predicted, true, hue), "calibration frame")
    fig, (scatter_ax, error_ax) = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    sns.scatterplot(data=frame, x=true, y=predicted, hue=hue, alpha=0.5, s=14, ax=scatter_ax)
    scatter_ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    scatter_ax.set_xlim(0, 1)
    scatter_ax.set_ylim(0, 1)
    scatter_ax.set_xlabel("true probability (generator)")
    scatter_ax.set_ylabel("predicted probability")
    error = frame.assign(error=frame[predicted] - frame[true])
    sns.histplot(
        data=error,
        x="error",
        hue=hue,
        element="step",
        stat="density",
        common_norm=False,
        ax=error_ax,
    )
    error_ax.axvline(0, color="grey", linestyle="--", linewidth=1)
    error_ax.set_xlabel("predicted - true probability")
    return fig
