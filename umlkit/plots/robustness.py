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
from matplotlib.lines import Line2D

from umlkit.plots.style import check_columns, model_styles, readable

#: The x-axis label of each corruption: its severity in the corruption's own unit
#: (see :mod:`umlkit.data.corruptions`).
SEVERITY_LABELS = {
    "gaussian_noise": "noise σ (intensity, image in [0, 1])",
    "salt_and_pepper": "share of pixels hit",
    "gaussian_blur": "blur σ (pixels)",
    "contrast": "contrast lost (1 = flat grey)",
}
#: Row labels of the metrics :func:`umlkit.analysis.robustness_sweep` writes.
METRIC_LABELS = {
    "accuracy": "accuracy",
    "dice": "Dice",
    "ece": "ECE",
    "uncertainty": "image uncertainty",
    "pixel_uncertainty": "mean pixel uncertainty",
}
#: Which uncertainty each kind of head has (umlkit.analysis.image_uncertainty and
#: pixel_uncertainty_maps).
UNCERTAINTY_MEASURES = "uncertainty: K/S of evidential heads, normalised entropy of softmax heads"


def robustness_curves(
    frame: pd.DataFrame,
    metrics: Sequence[str],
    *,
    x: str = "severity",
    hue: str = "model",
    col: str = "corruption",
    seed: str = "seed",
    chance: Mapping[str, float] | None = None,
) -> Figure:
    """Metrics against corruption severity: one row per metric, one column per corruption.

    Each column's x axis is that corruption's severity in its own unit (:data:`SEVERITY_LABELS`):
    a noise σ of 0.1 and a blur σ of 1 pixel are not the same amount of damage, so the columns
    share no x axis. With several training seeds (a ``seed`` column) the line is their mean and
    the band spans the lowest to the highest seed; the figure's title says how many seeds there
    are. ``chance`` draws what a model that ignores the image reaches (for accuracy: always
    predicting the majority class), the floor a broken model falls to.

    Args:
        frame: one row per (corruption, severity, model[, seed]) with one column per metric.
        metrics: the metric columns, one row of panels each.
        x: the severity column.
        hue: the model column.
        col: the corruption column.
        seed: the training-seed column (optional: without it the frame is one seed's).
        chance: metric -> chance level, drawn as a dotted line in that metric's row.

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
        figsize=(3.8 * len(corruptions) + 1.8, 2.6 * len(metrics) + 0.5),
        squeeze=False,
        layout="constrained",
        sharex="col",
        sharey="row",
    )
    hue_order = list(dict.fromkeys(frame[hue]))
    styles = model_styles([str(name) for name in hue_order])
    palette = {name: colour for name, (colour, _) in zip(hue_order, styles, strict=True)}
    seeds = frame[seed].nunique() if seed in frame else 1
    for row, metric in enumerate(metrics):
        for column, corruption in enumerate(corruptions):
            ax = axes[row, column]
            sns.lineplot(
                data=frame[frame[col] == corruption],
                x=x,
                y=metric,
                hue=hue,
                hue_order=hue_order,
                palette=palette,
                marker="o",
                markersize=5,
                errorbar=("pi", 100) if seeds > 1 else None,
                ax=ax,
                legend=row == 0 and column == len(corruptions) - 1,
            )
            if chance and metric in chance:
                ax.axhline(chance[metric], color="black", linestyle=":", linewidth=1.2)
            if row == 0:
                ax.set_title(readable(corruption), fontsize="medium")
            ax.set_xlabel(SEVERITY_LABELS.get(str(corruption), x))
            ax.set_ylabel(METRIC_LABELS.get(metric, metric) if column == 0 else "")
    legend_ax = axes[0, -1]
    if legend_ax.get_legend() is not None:
        handles, labels = legend_ax.get_legend_handles_labels()
        if chance:
            handles.append(Line2D([], [], color="black", linestyle=":", linewidth=1.2))
            labels.append("chance (" + ", ".join(f"{m} {v:.3f}" for m, v in chance.items()) + ")")
        legend_ax.get_legend().remove()
        fig.legend(handles, labels, title=hue, loc="outside right upper", fontsize="small")
    spread = f"mean over {seeds} training seeds, band: lowest to highest seed"
    title = spread if seeds > 1 else "one training seed"
    if {"uncertainty", "pixel_uncertainty"} & set(metrics):
        title += f"\n{UNCERTAINTY_MEASURES}"
    fig.suptitle(title, fontsize="medium")
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
        ax.set_xlabel(METRIC_LABELS.get(score, readable(score)))
    fig.suptitle(UNCERTAINTY_MEASURES, fontsize="small")
    return fig
