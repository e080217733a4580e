"""Calibration figures (notebook 05): reliability diagrams and predicted against true probability.

A model is calibrated when, among the cases it gives confidence p, a share p is right.
:func:`reliability_diagrams` checks this per confidence bin (the tables come from
``umlkit.metrics.reliability_bins``); :func:`calibration_against_truth` checks it per image against
the generator's known probability, which only synthetic data has.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import ListedColormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import LogLocator

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
    unit: str = "samples",
) -> Figure:
    """Reliability diagrams with a confidence histogram under each, side by side.

    Each panel shows, per bin, the observed accuracy (bars spanning the bin) against the mean
    confidence (the diagonal is perfect calibration). The red part of a bar is the gap
    ``|accuracy - confidence|`` whose count-weighted mean is the ECE:

        ``ECE = sum_b (n_b / N) * |acc_b - conf_b|``.

    Under each diagram a histogram shows how many samples each bin holds, on a log axis (pixels
    span six orders of magnitude: a million confident background pixels, a few hundred at 0.5).
    A big gap in a bin with almost no samples hardly matters, so each bin's bars in the diagram
    fade with its count (:func:`bin_opacity`): a near-empty bin stays readable but does not draw
    the eye.

    Args:
        panels: panel title -> reliability table with the columns ``lower, upper, confidence,
            accuracy, count`` (one row per bin; ``confidence``/``accuracy`` are the bin means, NaN or
            any value where ``count`` is 0). Put the ECE into the title if you want it shown.
        ncols: panels per row (default: all in one row, at most 4).
        suptitle: a title over all panels.
        xlabel: label of the x axes ("confidence", or "predicted probability" for positive-class
            reliability).
        ylabel: label of the y axes ("accuracy", or "observed frequency").
        unit: what a sample is ("images", "pixels"), for the histogram's axis label.

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
        _draw_reliability(ax, hist_ax, bins, observed=ylabel)
        ax.set_title(title, fontsize="medium")
        ax.set_ylabel(ylabel)
        hist_ax.set_xlabel(xlabel)
        hist_ax.set_ylabel(unit)
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


#: Opacity of the bars of the emptiest bins (a bin with a single sample).
MIN_BIN_OPACITY = 0.15


def bin_opacity(counts: np.ndarray) -> np.ndarray:
    """Opacity of each bin's bars: 1 for the fullest bin, falling with the log of the count.

    ``opacity = MIN_BIN_OPACITY + (1 - MIN_BIN_OPACITY) * (log(1 + n) / log(1 + n_max))^2``: a bin
    with a tenth of the fullest bin's count is still clearly drawn, one with a thousandth of it is
    pale, one with a single sample a ghost. The log is there because counts of pixels span six
    orders of magnitude; the square makes the fading visible within them. Empty bins get 0 (they
    are not drawn).
    """
    counts = np.asarray(counts, dtype=float)
    top = np.log1p(counts.max()) if counts.size else 0.0
    if top == 0:
        return np.zeros_like(counts)
    opacity = MIN_BIN_OPACITY + (1 - MIN_BIN_OPACITY) * (np.log1p(counts) / top) ** 2
    return np.where(counts > 0, opacity, 0.0)


def _draw_reliability(
    ax: plt.Axes, hist_ax: plt.Axes, bins: pd.DataFrame, observed: str = "accuracy"
) -> None:
    filled = bins[bins["count"] > 0]
    widths = np.maximum(filled["upper"] - filled["lower"], MIN_BIN_WIDTH)
    opacity = bin_opacity(filled["count"].to_numpy())
    accuracy_bars = ax.bar(
        filled["lower"],
        filled["accuracy"],
        width=widths,
        align="edge",
        color=sns.color_palette()[0],
        edgecolor="white",
    )
    gap_bottom = np.minimum(filled["accuracy"], filled["confidence"])
    gap_bars = ax.bar(
        filled["lower"],
        np.abs(filled["accuracy"] - filled["confidence"]),
        bottom=gap_bottom,
        width=widths,
        align="edge",
        color=ERROR_COLOUR,
        edgecolor=ERROR_COLOUR,
    )
    for accuracy_bar, gap_bar, alpha in zip(accuracy_bars, gap_bars, opacity, strict=True):
        accuracy_bar.set_alpha(alpha)
        gap_bar.set_alpha(0.35 * alpha)
    (perfect,) = ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    # Handles of full opacity: the bars' own would inherit the first (perhaps faded) bin's alpha.
    handles = [
        perfect,
        Patch(color=sns.color_palette()[0]),
        Patch(facecolor=ERROR_COLOUR, edgecolor=ERROR_COLOUR, alpha=0.35),
    ]
    # the bars are what the y axis says (accuracy, or a class's observed frequency)
    ax.legend(handles, ["perfect", observed, "gap"], loc="upper left", fontsize="small")
    hist_ax.bar(
        filled["lower"],
        filled["count"],
        width=widths,
        align="edge",
        color="grey",
        edgecolor="white",
    )
    hist_ax.set_yscale("log")
    hist_ax.yaxis.set_major_locator(LogLocator(numticks=4))
    if len(filled):
        hist_ax.set_ylim(0.5, float(filled["count"].max()) * 3)


#: Colours of the image counts: the light end of "Blues" cut off, so a cell of one image shows.
COUNT_CMAP = ListedColormap(plt.get_cmap("Blues")(np.linspace(0.2, 1.0, 256)))
#: Minimum images in a column of :func:`calibration_against_truth` for its mean to be drawn.
MIN_COLUMN_COUNT = 5


def calibration_against_truth(
    frame: pd.DataFrame,
    *,
    predicted: str = "predicted",
    true: str = "p_true",
    hue: str = "model",
    bins: int = 20,
    ncols: int = 4,
) -> Figure:
    """Predicted probability against the generator's true probability: one 2-D histogram per model.

    Only on synthetic data is the Bayes probability ``p_true = P(y = 1 | image factors)`` known, so
    calibration can be checked per image instead of per bin: a calibrated model's images lie on
    the diagonal. Thousands of images as dots hide each other, so each panel counts them in a
    ``bins x bins`` grid of cells (darker = more images, on a log scale, empty cells white) and
    draws the mean prediction of each column of true probability (columns with at least
    :data:`MIN_COLUMN_COUNT` images): where that line leaves the diagonal, the model is
    over- (above) or under-confident (below) in the positive class.

    Args:
        frame: one row per image (and model) with the columns ``predicted``, ``true`` and ``hue``.
        predicted: column of the model's positive-class probability (alpha_1 / S).
        true: column of the true probability.
        hue: column naming the model (one panel each, in order of first appearance).
        bins: cells per axis.
        ncols: panels per row.

    Returns:
        The figure: one axes per model, then the colour bar's axes. Each panel's cell counts are
        its first collection (``ax.collections[0].get_array()``, rows = predicted).
    """
    check_columns(frame, (predicted, true, hue), "calibration frame")
    models = list(dict.fromkeys(frame[hue]))
    if not models:
        raise ValueError("calibration_against_truth needs at least one image")
    edges = np.linspace(0.0, 1.0, bins + 1)
    counts = {
        model: np.histogram2d(
            frame.loc[frame[hue] == model, predicted].clip(0, 1),
            frame.loc[frame[hue] == model, true].clip(0, 1),
            bins=(edges, edges),
        )[0]
        for model in models
    }
    norm = LogNorm(vmin=1, vmax=max(1.0, max(float(c.max()) for c in counts.values())))
    ncols = min(ncols, len(models))
    nrows = int(np.ceil(len(models) / ncols))
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(3.3 * ncols + 1.2, 3.3 * nrows + 0.9),
        squeeze=False,
        sharex=True,
        sharey=True,
        layout="constrained",
    )
    mesh = None
    for ax, model in zip(axes.flat, models, strict=False):
        mesh = _truth_panel(ax, counts[model], edges, norm)
        ax.set_title(str(model), fontsize="medium")
    for ax in axes[-1]:
        ax.set_xlabel("true probability (generator)")
    for ax in axes[:, 0]:
        ax.set_ylabel("predicted probability")
    for ax in axes.flat[len(models) :]:
        ax.remove()
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize="small")
    fig.colorbar(mesh, ax=axes.ravel().tolist(), shrink=0.8, label="images per cell (log scale)")
    return fig


def _truth_panel(ax, counts: np.ndarray, edges: np.ndarray, norm: LogNorm):
    """One panel of :func:`calibration_against_truth`: the cell counts (rows = predicted), the
    mean prediction of each column holding enough images, and the diagonal. Returns the mesh."""
    mesh = ax.pcolormesh(edges, edges, np.ma.masked_equal(counts, 0), cmap=COUNT_CMAP, norm=norm)
    centres = (edges[:-1] + edges[1:]) / 2
    column_count = counts.sum(axis=0)
    column_mean = (counts * centres[:, None]).sum(axis=0) / np.maximum(column_count, 1)
    shown = column_count >= MIN_COLUMN_COUNT
    ax.plot(
        centres[shown],
        column_mean[shown],
        color=ERROR_COLOUR,
        marker="o",
        markersize=3,
        linewidth=1.5,
        label="mean prediction",
    )
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xticks([0, 0.5, 1], ["0", "0.5", "1"])
    ax.set_yticks([0, 0.5, 1], ["0", "0.5", "1"])
    ax.set_aspect("equal")
    ax.grid(False)
    return mesh
