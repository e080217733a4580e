"""Figures that compare variants over seeds (notebook 04, ablations).

:func:`metric_comparison` puts every variant's seeds and their mean ± std side by side, one panel per
metric, so a difference can be read against the spread between seeds.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from umlkit.plots.style import check_columns


def metric_comparison(
    runs: pd.DataFrame,
    metrics: Sequence[str],
    *,
    x: str = "variant",
    lower_is_better: Sequence[str] = (),
    ncols: int = 3,
    order: Sequence[str] | None = None,
) -> Figure:
    """One panel per metric: each variant's mean over seeds (diamond) ± 1 std, and every seed (dot).

    The y axes are scaled to the data, not to zero, because the differences between variants
    (a Dice of 0.94 against 0.97) are what the figure is for; read the tick labels.

    Args:
        runs: one row per (variant, seed) with one column per metric.
        metrics: the metric columns to draw, one panel each.
        x: the column naming the variant.
        lower_is_better: metrics where lower is better (HD95, ECE); their titles say so.
        ncols: panels per row.
        order: order of the variants on the x axes (default: as they first appear).

    Returns:
        The figure, one axes per metric (in the order of ``metrics``).
    """
    check_columns(runs, (x, *metrics), "runs table")
    if not metrics:
        raise ValueError("metric_comparison needs at least one metric")
    order = list(dict.fromkeys(runs[x])) if order is None else list(order)
    ncols = min(ncols, len(metrics))
    nrows = int(np.ceil(len(metrics) / ncols))
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(4.2 * ncols, 3.6 * nrows),
        layout="constrained",
        squeeze=False,
    )
    for ax, metric in zip(axes.flat, metrics, strict=False):
        sns.stripplot(data=runs, x=x, y=metric, order=order, color="grey", size=4, alpha=0.7, ax=ax)
        sns.pointplot(
            data=runs,
            x=x,
            y=metric,
            order=order,
            hue=x,
            hue_order=order,
            legend=False,
            errorbar="sd",
            linestyle="none",
            markers="D",
            markersize=7,
            capsize=0.2,
            ax=ax,
        )
        arrow = "lower is better" if metric in lower_is_better else "higher is better"
        ax.set_title(f"{metric} ({arrow})", fontsize="medium")
        ax.set_xlabel("")
        ax.tick_params(axis="x", labelrotation=60)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    for ax in axes.flat[len(metrics) :]:
        ax.remove()
    return fig
