"""Figures of the semi-supervised comparison (notebook 09): CAML, BURL and the supervised baseline.

:func:`label_fraction_curves` draws a test score against the share of labeled images,
:func:`validation_curves` the validation score during training, and :func:`trust_gallery` where
each method's unsupervised loss learned on one unlabeled image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from umlkit.plots.style import UNCERTAINTY_CMAP, as_display_image, check_columns, class_cmap


def label_fraction_curves(
    runs: pd.DataFrame, *, metric: str = "dice", hue: str = "method", col: str = "dataset"
) -> Figure:
    """A metric against the label fraction, one line per method, one panel per dataset.

    Args:
        runs: one row per run with columns ``label_fraction``, ``metric``, ``hue`` and ``col``
            (``umlkit.semi.experiments.run_means``); the line is the mean over seeds, the band
            its standard deviation.
        metric: the column on the y axis.
        hue: the column that separates lines.
        col: the column that separates panels.

    Returns:
        The figure, one axes per value of ``col``.
    """
    check_columns(runs, ("label_fraction", metric, hue, col), "runs table")
    panels = list(dict.fromkeys(runs[col]))
    fig, axes = plt.subplots(
        1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False, layout="constrained"
    )
    for ax, panel in zip(axes[0], panels, strict=True):
        sns.lineplot(
            data=runs[runs[col] == panel],
            x="label_fraction",
            y=metric,
            hue=hue,
            marker="o",
            errorbar="sd",
            ax=ax,
        )
        ax.set_title(str(panel), fontsize="medium")
        ax.set_xlabel("labeled fraction of the training images")
        ax.set_ylabel(f"test {metric} (mean ± sd over seeds)")
        fractions = sorted(runs["label_fraction"].unique())
        ax.set_xticks(fractions, [f"{f:.0%}" for f in fractions])
    return fig


def trust_gallery(
    rows: Sequence[Mapping[str, Any]],
    *,
    num_classes: int | None = None,
    max_trusted: int = 2,
    panel_size: float = 1.9,
) -> Figure:
    """What each semi-supervised method trusted on one unlabeled image: one row per method.

    Columns: image, ground truth, the method's prediction, its pixel uncertainty, then up to
    ``max_trusted`` maps in [0, 1] of where its unsupervised loss learned (each titled by its
    name, e.g. "pseudo-label region"); a method with fewer maps leaves those panels empty.

    Args:
        rows: mappings with ``title``, ``image``, ``mask``, ``prediction``, ``uncertainty`` and
            ``trusted`` (a mapping name -> ``(H, W)`` map); see
            ``umlkit.semi.experiments.trust_cases``.
        num_classes: segmentation classes (default: from the masks and predictions).
        max_trusted: trusted-map columns.
        panel_size: inches per panel.

    Returns:
        The figure (rows x (4 + max_trusted) axes, plus colour bars).
    """
    if not rows:
        raise ValueError("trust_gallery needs at least one row")
    for key in ("title", "image", "mask", "prediction", "uncertainty", "trusted"):
        if key not in rows[0]:
            raise ValueError(f"each row needs the key {key!r}; the first has {list(rows[0])}")
    if num_classes is None:
        num_classes = 1 + int(max(max(np.max(r["mask"]), np.max(r["prediction"])) for r in rows))
    ncols = 4 + max_trusted
    fig, axes = plt.subplots(
        len(rows),
        ncols,
        figsize=(panel_size * ncols + 0.8, panel_size * len(rows) + 0.3),
        squeeze=False,
        layout="constrained",
    )
    uncertainty_image = trust_image = None
    class_style = {"cmap": class_cmap(num_classes), "vmin": 0, "vmax": max(num_classes, 2) - 1}
    for ax_row, row in zip(axes, rows, strict=True):
        ax_row[0].imshow(as_display_image(row["image"]))
        ax_row[1].imshow(np.asarray(row["mask"]), interpolation="nearest", **class_style)
        ax_row[2].imshow(np.asarray(row["prediction"]), interpolation="nearest", **class_style)
        uncertainty_image = ax_row[3].imshow(
            np.asarray(row["uncertainty"]), cmap=UNCERTAINTY_CMAP, vmin=0, vmax=1
        )
        trusted = list(row["trusted"].items())[:max_trusted]
        for ax, (name, values) in zip(ax_row[4:], trusted, strict=False):
            trust_image = ax.imshow(np.asarray(values), cmap="viridis", vmin=0, vmax=1)
            ax.set_title(name, fontsize="small")
        for ax in ax_row:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
        for ax in ax_row[4 + len(trusted) :]:
            ax.axis("off")
        if not trusted:
            ax_row[4].text(
                0.5, 0.5, "no loss on\nunlabeled pixels", ha="center", va="center", fontsize="small"
            )
        ax_row[0].set_ylabel(str(row["title"]), fontsize="medium")
    for ax, title in zip(axes[0][:4], ("image", "truth", "prediction", "uncertainty"), strict=True):
        ax.set_title(title, fontsize="medium")
    fig.colorbar(uncertainty_image, ax=axes[:, 3], shrink=0.6, label="uncertainty")
    if trust_image is not None:
        fig.colorbar(trust_image, ax=axes[:, 4:], shrink=0.6, label="trusted (weight)")
    return fig


def validation_curves(
    histories: pd.DataFrame,
    *,
    x: str = "step",
    y: str = "val_dice",
    hue: str = "method",
    col: str = "dataset",
) -> Figure:
    """Validation score against training progress, one line per method, one panel per dataset.

    Args:
        histories: stacked training histories (``umlkit.semi.loop.SemiResult.history`` with
            ``method`` and ``dataset`` columns added); rows where ``y`` is NaN (epochs without
            validation) are skipped.
        x, y, hue, col: the columns for the axis, the score, the lines and the panels.

    Returns:
        The figure, one axes per value of ``col``.
    """
    check_columns(histories, (x, y, hue, col), "histories")
    histories = histories.dropna(subset=[y])
    panels = list(dict.fromkeys(histories[col]))
    fig, axes = plt.subplots(
        1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False, layout="constrained"
    )
    for ax, panel in zip(axes[0], panels, strict=True):
        sns.lineplot(data=histories[histories[col] == panel], x=x, y=y, hue=hue, marker="o", ax=ax)
        ax.set_title(str(panel), fontsize="medium")
        ax.set_xlabel("optimisation step" if x == "step" else x)
        ax.set_ylabel("validation Dice" if y == "val_dice" else y)
        ax.set_ylim(0, 1.02)
    return fig
