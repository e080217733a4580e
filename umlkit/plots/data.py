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

from umlkit.plots.style import CLASS_COLOURS, as_display_image, check_columns


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
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.0 * ncols, 2.2 * nrows), squeeze=False)
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
    fig.tight_layout()
    return fig


def factor_distributions(
    metadata: pd.DataFrame, factors: Sequence[str], hue: str = "label", ncols: int = 4
) -> Figure:
    """Histograms of generator factors, split by ``hue`` (the label by default).

    Shows which factors separate the classes: the label of umlkit's synthetic data is drawn from a
    known probability of these factors, so a factor whose histograms differ by class drives the risk.
    """
    check_columns(metadata, [*factors, hue], "metadata")
    nrows = int(np.ceil(len(factors) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.6 * nrows), squeeze=False)
    for ax in axes.flat[len(factors) :]:
        ax.axis("off")
    for ax, factor in zip(axes.flat, factors, strict=False):
        sns.histplot(metadata, x=factor, hue=hue, ax=ax, stat="density", common_norm=False, bins=20)
        ax.set_title(factor.replace("_", " "))
        ax.set_xlabel("")
    fig.tight_layout()
    return fig


def class_balance(metadata: pd.DataFrame, by: str = "split", hue: str = "label") -> Figure:
    """Counts of each label per split (or any other grouping column)."""
    check_columns(metadata, [by, hue], "metadata")
    fig, ax = plt.subplots(figsize=(5, 3))
    sns.countplot(metadata, x=by, hue=hue, ax=ax)
    ax.set_ylabel("images")
    for container in ax.containers:
        ax.bar_label(container, fontsize=8)
    fig.tight_layout()
    return fig
