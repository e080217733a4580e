"""Robustness figures (notebook 07): metrics under corruption and out-of-distribution detection.

:func:`robustness_curves` draws each metric against the severity of each corruption;
:func:`ood_histograms` shows whether an uncertainty score separates in-distribution from
out-of-distribution images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from umlkit.plots.style import check_columns


def robustness_curves(
    frame: pd.DataFrame,
    metrics: Sequence[str],
    *,
    x: str = "severity",
    hue: str = "model",
    col: str = "corruption",
) -> Figure:
    """Metrics against corruption severity: one row per metric, one column per corruption.

    Args:
        frame: one row per (corruption, severity, model[, seed]) with one column per metric. Rows of
            several seeds are averaged; the band is ± 1 std.
        metrics: the metric columns, one row of panels each.
        x: the severity column (sigma of the noise, amount of salt-and-pepper, blur sigma, ...).
        hue: the model column.
        col: the corruption column.

    Returns:
        The figure, ``len(metrics) x n_corruptions`` axes (row-major).
    """
    check_columns(frame, (x, hue, col, *metrics), "robustness frame")
    if not metrics:
        raise ValueError("robustness_curves needs at least one metric")
    corruptions = list(dict.fromkeys(frame[col]))
    fig, axes = plt.subplots(
        len(metrics),
        len(corruptions),
        figsize=(3.8 * len(corruptions), 2.9 * len(metrics)),
        squeeze=False,
        layout="constrained",
        sharex="col",
        sharey="row",
    )
    hue_order = list(dict.fromkeys(frame[hue]))
    for row, metric in enumerate(metrics):
        for column, corruption in enumerate(corruptions):
            ax = axes[row, column]
            sns.lineplot(
                data=frame[frame[col] == corruption],
                x=x,
                y=metric,
                hue=hue,
                hue_order=hue_order,
                marker="o",
                errorbar="sd",
                ax=ax,
                legend=row == 0 and column == len(corruptions) - 1,
            )
            if row == 0:
                ax.set_title(str(corruption), fontsize="medium")
            if row < len(metrics) - 1:
                ax.set_xlabel("")
            else:
                ax.set_xlabel(f"{x}")
    legend = axes[0, -1].get_legend()
    if legend is not None:
        sns.move_legend(axes[0, -1], "upper left", bbox_to_anchor=(1.02, 1), fontsize="small")
    return fig


def ood_histograms(
    frame: pd.DataFrame,
    *,
    score: str = "uncertainty",
    group: str = "dataset",
    col: str = "model",
    titles: Mapping[str, str] | None = None,
) -> Figure:
    """Distributions of an uncertainty score in-distribution vs out-of-distribution, per model.

    Args:
        frame: one row per image with the columns ``score``, ``group`` (e.g. "in-distribution" /
            "OOD") and ``col`` (the model).
        titles: model -> panel title (e.g. with the OOD AUROC); default: the model name.

    Returns:
        The figure, one axes per model.
    """
    check_columns(frame, (score, group, col), "OOD frame")
    models = list(dict.fromkeys(frame[col]))
    fig, axes = plt.subplots(
        1, len(models), figsize=(4 * len(models), 3.4), squeeze=False, layout="constrained"
    )
    for ax, model in zip(axes[0], models, strict=True):
        sns.histplot(
            data=frame[frame[col] == model],
            x=score,
            hue=group,
            element="step",
            stat="density",
            common_norm=False,
            ax=ax,
        )
        if ax.get_legend() is not None:
            sns.move_legend(ax, "upper center", title=None, fontsize="small", frameon=False)
        ax.set_title((titles or {}).get(model, str(model)), fontsize="medium")
    return fig
