"""Figures of the datasets themselves (notebook 01): what the images, masks and labels look like.

:func:`dataset_grid` outlines every mask class on the first images of a dataset,
:func:`factor_distributions` shows which generator factors separate the classes, and
:func:`class_balance` counts the labels per split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from umlkit.plots.style import CLASS_COLOURS, as_display_image, check_columns, readable


def dataset_grid(
    dataset: Sequence[Mapping[str, Any]],
    n: int = 12,
    ncols: int = 6,
    class_names: Sequence[str] | None = None,
) -> Figure:
    """The first ``n`` items of a dataset: each image with the outline of every mask class on it.

    Args:
        dataset: items with ``image`` (C,H,W), ``mask`` (H,W), ``label`` and ``id`` (a umlkit
            dataset or a list of such dicts).
        n: how many items to show.
        ncols: images per row.
        class_names: names of the image labels for the titles (default: the label number).
    """
    n = min(n, len(dataset))
    if n == 0:
        raise ValueError("dataset_grid: the dataset is empty")
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(2.0 * ncols, 2.4 * nrows), squeeze=False, layout="constrained"
    )
    for ax in axes.flat:
        ax.axis("off")
    for ax, index in zip(axes.flat, range(n), strict=False):
        item = dataset[index]
        mask = np.asarray(item["mask"])
        ax.imshow(as_display_image(np.asarray(item["image"])))
        for value in range(1, int(mask.max()) + 1):
            if (mask == value).any():
                colour = CLASS_COLOURS[value % len(CLASS_COLOURS)]
                ax.contour(mask == value, levels=[0.5], colors=[colour], linewidths=1.2)
        label = int(item["label"])
        name = class_names[label] if class_names is not None else f"label {label}"
        ax.set_title(f"{item['id']}\n{name}", fontsize=8)
    return fig


def is_flag(values: pd.Series) -> bool:
    """Whether a column is a yes/no flag: numeric, with no values other than 0 and 1."""
    return pd.api.types.is_numeric_dtype(values) and bool(values.dropna().isin((0, 1)).all())


def factor_distributions(
    metadata: pd.DataFrame,
    factors: Sequence[str],
    hue: str = "label",
    ncols: int = 5,
    class_names: Sequence[str] | None = None,
) -> Figure:
    """How the generator's factors are distributed per class (``hue``, the label by default).

    Shows which factors separate the classes: the label of umlkit's synthetic data is drawn from a
    known probability of these factors, so a factor whose distribution differs by class drives the
    risk. A continuous factor gets a panel of histograms (density per class, so classes of unequal
    size compare). The yes/no flags (:func:`is_flag`: hairs, low contrast, ...) share one last panel
    of bars: the share of each class's images that have the flag, since a histogram of 0s and 1s
    shows two spikes and hides the one number that matters.

    Args:
        metadata: one row per image with the factor columns and ``hue``.
        factors: the columns to show; flags among them are gathered into the bar panel.
        hue: the column that splits each distribution (one colour per value, one legend).
        ncols: panels per row.
        class_names: the legend's name of each label value ``k`` (``class_names[k]``, as the
            dataset grid's titles); default: the values themselves.

    Returns:
        The figure: one axes per continuous factor, then one for the flags (if any), then blank
        axes that fill the last row.
    """
    check_columns(metadata, [*factors, hue], "metadata")
    flags = [factor for factor in factors if is_flag(metadata[factor])]
    continuous = [factor for factor in factors if factor not in flags]
    n_panels = len(continuous) + bool(flags)
    ncols = max(1, min(ncols, n_panels))
    nrows = int(np.ceil(n_panels / ncols))
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(3.2 * ncols, 2.6 * nrows + 0.4),
        squeeze=False,
        layout="constrained",
    )
    for ax in axes.flat[n_panels:]:
        ax.axis("off")
    classes = sorted(metadata[hue].dropna().unique())
    palette = dict(zip(classes, sns.color_palette(n_colors=len(classes)), strict=True))
    for ax, factor in zip(axes.flat, continuous, strict=False):
        sns.histplot(
            metadata,
            x=factor,
            hue=hue,
            hue_order=classes,
            palette=palette,
            stat="density",
            common_norm=False,
            bins=20,
            element="step",
            legend=False,
            ax=ax,
        )
        ax.set_title(readable(factor))
        ax.set_xlabel("")
    if flags:
        _flag_bars(axes.flat[len(continuous)], metadata, flags, hue, classes, palette)
    handles = [plt.Rectangle((0, 0), 1, 1, color=palette[value], alpha=0.6) for value in classes]
    names = [_class_name(value, class_names) for value in classes]
    fig.legend(handles, names, title=hue, loc="outside right upper")
    return fig


def _class_name(value: Any, class_names: Sequence[str] | None) -> str:
    """``class_names[value]`` for an integer label within them, else the value as text."""
    if class_names is None or not isinstance(value, (int, float, np.integer, np.floating)):
        return str(value)
    if float(value).is_integer() and 0 <= int(value) < len(class_names):
        return str(class_names[int(value)])
    return str(value)


def _flag_bars(
    ax: plt.Axes,
    metadata: pd.DataFrame,
    flags: Sequence[str],
    hue: str,
    classes: Sequence[Any],
    palette: Mapping[Any, Any],
) -> None:
    """Grouped bars: per flag, the share of each class's images with the flag set."""
    shares = metadata.groupby(hue)[list(flags)].mean()
    height = 0.8 / len(classes)
    positions = np.arange(len(flags))
    for index, value in enumerate(classes):
        bars = ax.barh(
            positions + (index - (len(classes) - 1) / 2) * height,
            shares.loc[value].to_numpy(),
            height=height,
            color=palette[value],
            alpha=0.6,
            edgecolor=palette[value],
        )
        ax.bar_label(
            bars, labels=[f"{v:.0%}" for v in shares.loc[value]], fontsize="x-small", padding=2
        )
    ax.set_yticks(positions, [readable(flag) for flag in flags])
    ax.invert_yaxis()  # the first flag on top, as in a table
    ax.set_xlim(0, min(1.0, float(shares.to_numpy().max()) * 1.3 + 0.02))
    ax.set_xlabel("share of images with the flag")
    ax.set_title("yes/no flags")


def class_balance(
    metadata: pd.DataFrame,
    by: str = "split",
    hue: str = "label",
    class_names: Sequence[str] | None = None,
) -> Figure:
    """Counts of each label per split (or any other grouping column); ``class_names`` names the
    label values in the legend (see :func:`factor_distributions`)."""
    check_columns(metadata, [by, hue], "metadata")
    values = sorted(metadata[hue].dropna().unique())
    named = metadata.assign(**{hue: metadata[hue].map(lambda v: _class_name(v, class_names))})
    fig, ax = plt.subplots(figsize=(5, 3))
    order = [_class_name(value, class_names) for value in values]
    sns.countplot(named, x=by, hue=hue, hue_order=order, ax=ax)
    ax.set_ylabel("images")
    for container in ax.containers:
        ax.bar_label(container, fontsize=8)
    fig.tight_layout()
    return fig
