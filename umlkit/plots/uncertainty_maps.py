"""Figures of pixel uncertainty (notebook 06): galleries of maps and uncertainty as an error detector.

:func:`uncertainty_gallery` (and :func:`uncertainty_overlay`, one case, for the explorer of
:mod:`umlkit.widgets`) shows image, ground truth, prediction, uncertainty map and errors side by side;
:func:`ueo_curve` and :func:`error_detection_curves` measure how well the uncertainty marks the errors;
:func:`factor_scatter` relates uncertainty to the generator's factors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from umlkit.plots.style import (
    ERROR_COLOUR,
    UNCERTAINTY_CMAP,
    UNCERTAINTY_TICKS,
    as_display_image,
    check_columns,
    class_cmap,
    model_styles,
    readable,
    uncertainty_norm,
)

#: What each gallery column shows (keys of a case; "error" and "reliable" are derived).
GALLERY_COLUMNS = ("image", "mask", "prediction", "uncertainty", "error", "reliable")
_COLUMN_TITLES = {
    "image": "image",
    "mask": "ground truth",
    "prediction": "prediction",
    "uncertainty": "pixel uncertainty",
    "error": "error",
    "reliable": "reliable mask",
}
#: The colours of the ``reliable`` column, named as its legend names them (u: pixel uncertainty,
#: t: the threshold). Red is an error no threshold flags: the dangerous kind.
RELIABLE_VIEW = {
    "reliable (u ≤ t)": "#f2f2f2",
    "unreliable (u > t)": "#7f7f7f",
    "error flagged (u > t)": "#ff9f1c",
    "error missed (u ≤ t)": ERROR_COLOUR,
}


def _draw_case(
    axes: Sequence[plt.Axes],
    case: Mapping[str, Any],
    columns: Sequence[str],
    threshold: float | None,
    num_classes: int,
) -> Any:
    """Draw one case into ``axes`` (one per column); return the uncertainty image (for a colorbar)."""
    uncertainty_image = None
    error = np.asarray(case["prediction"]) != np.asarray(case["mask"])
    for ax, column in zip(axes, columns, strict=True):
        if column == "image":
            ax.imshow(as_display_image(case["image"]), cmap="gray", vmin=0, vmax=1)
        elif column in ("mask", "prediction"):
            ax.imshow(
                np.asarray(case[column]),
                cmap=class_cmap(num_classes),
                vmin=0,
                vmax=max(num_classes, 2) - 1,
                interpolation="nearest",
            )
        elif column == "uncertainty":
            uncertainty_image = ax.imshow(
                np.asarray(case["uncertainty"]), cmap=UNCERTAINTY_CMAP, norm=uncertainty_norm()
            )
        elif column == "error":
            ax.imshow(as_display_image(case["image"]), cmap="gray", vmin=0, vmax=1)
            ax.imshow(
                np.ma.masked_where(~error, error),
                cmap=ListedColormap([ERROR_COLOUR]),
                alpha=0.8,
                interpolation="nearest",
            )
        elif column == "reliable":
            if threshold is None:
                raise ValueError("the 'reliable' column needs a threshold")
            # RELIABLE_VIEW: reliable pixels (uncertainty <= threshold) near white, unreliable
            # grey; errors the threshold flags orange, the ones it misses (confident) red.
            unreliable = np.asarray(case["uncertainty"]) > threshold
            overlay = np.zeros(error.shape, dtype=int)
            overlay[unreliable] = 1
            overlay[error & unreliable] = 2
            overlay[error & ~unreliable] = 3
            ax.imshow(
                overlay,
                cmap=ListedColormap(list(RELIABLE_VIEW.values())),
                vmin=0,
                vmax=3,
                interpolation="nearest",
            )
        else:
            raise ValueError(f"unknown gallery column {column!r}; choose from {GALLERY_COLUMNS}")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    return uncertainty_image


def uncertainty_gallery(
    cases: Sequence[Mapping[str, Any]],
    *,
    columns: Sequence[str] = ("image", "mask", "prediction", "uncertainty", "error"),
    threshold: float | None = None,
    num_classes: int | None = None,
    suptitle: str | None = None,
    panel_size: float = 2.0,
) -> Figure:
    """A gallery: one row per case, one column per view (image, ground truth, ... , error).

    Args:
        cases: mappings with the keys ``image``, ``mask``, ``prediction`` and ``uncertainty``
            (see the module docstring for shapes) and optionally ``title`` (shown left of the row).
        columns: which views to show, from :data:`GALLERY_COLUMNS`. ``error`` marks the pixels where
            prediction != ground truth; ``reliable`` shows the reliable mask
            ``uncertainty <= threshold`` with the errors it catches (orange) and misses (red).
        threshold: the reliable-mask threshold (needed for the ``reliable`` column).
        num_classes: the number of segmentation classes (default: from the masks).
        suptitle: a title over the gallery.
        panel_size: inches per panel.

    Returns:
        The figure with ``len(cases) * len(columns)`` image axes (plus a colorbar if uncertainty is
        shown).
    """
    if not cases:
        raise ValueError("uncertainty_gallery needs at least one case")
    for key in ("image", "mask", "prediction", "uncertainty"):
        if key not in cases[0]:
            raise ValueError(f"each case needs the key {key!r}; the first has {list(cases[0])}")
    if num_classes is None:
        num_classes = int(max(np.max(case["mask"]) for case in cases)) + 1
    rows, cols = len(cases), len(columns)
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(panel_size * cols + 0.6, panel_size * rows + 0.4),
        squeeze=False,
        layout="constrained",
    )
    uncertainty_image = None
    for row, case in enumerate(cases):
        drawn = _draw_case(axes[row], case, columns, threshold, num_classes)
        uncertainty_image = drawn if drawn is not None else uncertainty_image
        if "title" in case:
            axes[row, 0].set_ylabel(str(case["title"]), fontsize="small")
    for col, column in enumerate(columns):
        title = _COLUMN_TITLES[column]
        if column == "reliable":
            title = f"reliable (u ≤ {threshold:.2f})"
        axes[0, col].set_title(title, fontsize="medium")
    if uncertainty_image is not None:
        # At the right edge of the whole gallery: a colorbar beside the uncertainty column
        # would push the columns after it apart.
        fig.colorbar(
            uncertainty_image,
            ax=axes.ravel().tolist(),
            shrink=min(0.8, 3.0 / len(cases) + 0.3),
            label="pixel uncertainty u (square-root scale)",
            ticks=UNCERTAINTY_TICKS,
        )
    if "reliable" in columns:
        patches = [  # outlined: the near-white of reliable pixels on the white page
            Patch(facecolor=colour, edgecolor="#404040", linewidth=0.6, label=name)
            for name, colour in RELIABLE_VIEW.items()
        ]
        fig.legend(
            handles=patches,
            title=f"reliable column (t = {threshold:.2f})",
            loc="outside lower center",
            ncol=len(patches),
            fontsize="small",
            frameon=False,
        )
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def uncertainty_overlay(
    case: Mapping[str, Any], *, threshold: float | None = None, num_classes: int | None = None
) -> Figure:
    """One case: image, ground truth, prediction, pixel uncertainty, error (+ reliable mask).

    The view the explorer in :mod:`umlkit.widgets` redraws; see :func:`uncertainty_gallery`.
    """
    columns = list(GALLERY_COLUMNS)
    if threshold is None:
        columns.remove("reliable")
    return uncertainty_gallery(
        [case], columns=columns, threshold=threshold, num_classes=num_classes, panel_size=2.2
    )


def ueo_curve(
    frame: pd.DataFrame, *, x: str = "threshold", y: str = "ueo", hue: str = "model"
) -> Figure:
    """Uncertainty-error overlap against the threshold, each curve's maximum marked and in the legend.

    ``UEO(t) = 2 |U_t ∩ E| / (|U_t| + |E|)`` (Jungo & Reyes 2019) is the Dice between the error mask E and
    the thresholded uncertainty U_t = {u > t}; the best threshold is chosen once per dataset.

    Args:
        frame: columns ``x`` (threshold), ``y`` (UEO) and ``hue`` (model).

    Returns:
        The figure with one axes.
    """
    check_columns(frame, (x, y, hue), "UEO frame")
    fig, ax = plt.subplots(figsize=(6, 5.2), layout="constrained")
    groups = list(frame.groupby(hue, sort=False))
    for (colour, style), (name, group) in zip(
        model_styles([str(name) for name, _ in groups]), groups, strict=True
    ):
        group = group.sort_values(x)
        best = group.loc[group[y].idxmax()]
        # the maximum goes into the legend: printed beside the curves, close peaks overprint
        ax.plot(
            group[x],
            group[y],
            color=colour,
            linestyle=style,
            label=f"{name}: max {best[y]:.2f} at t = {best[x]:.2f}",
        )
        ax.scatter(best[x], best[y], color=colour, zorder=3, s=30)
    ax.set_xlabel("uncertainty threshold t")
    ax.set_ylabel("UEO (Dice of {u > t} and errors)")
    ax.set_ylim(0, 1)
    fig.legend(loc="outside lower center", fontsize="small", title=hue)
    return fig


def _thin(*arrays: np.ndarray, max_points: int) -> list[np.ndarray]:
    """Keep at most ``max_points`` evenly spaced points of a curve (a pixel ROC has millions)."""
    n = len(arrays[0])
    if n <= max_points:
        return list(arrays)
    keep = np.unique(np.linspace(0, n - 1, max_points).round().astype(int))
    return [array[keep] for array in arrays]


def error_detection_curves(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]], *, max_points: int = 400
) -> Figure:
    """ROC and precision-recall curves of uncertainty as a detector of errors.

    A positive is an erroneous pixel (or image); the score is its uncertainty. The chance level of
    the PR curve is the error rate, drawn as a dotted line per model.

    Args:
        curves: label (put the AUROC/AUPRC from :mod:`umlkit.metrics` in it) ->
            ``(error, uncertainty)``, two flat arrays of the same length.
        max_points: points kept per drawn curve.

    Returns:
        The figure with two axes (ROC, PR).
    """
    from sklearn.metrics import precision_recall_curve, roc_curve

    if not curves:
        raise ValueError("error_detection_curves needs at least one curve")
    fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(10, 5.2), layout="constrained")
    for (colour, style), (label, (error, uncertainty)) in zip(
        model_styles(list(curves)), curves.items(), strict=True
    ):
        error = np.asarray(error).ravel().astype(bool)
        uncertainty = np.asarray(uncertainty, dtype=float).ravel()
        if error.shape != uncertainty.shape:
            raise ValueError(
                f"curve {label!r}: error has {error.size} values, uncertainty {uncertainty.size}"
            )
        if error.all() or not error.any():
            raise ValueError(f"curve {label!r}: needs both errors and correct predictions")
        fpr, tpr, _ = roc_curve(error, uncertainty)
        fpr, tpr = _thin(fpr, tpr, max_points=max_points)
        roc_ax.plot(fpr, tpr, color=colour, linestyle=style, label=label)
        precision, recall, _ = precision_recall_curve(error, uncertainty)
        precision, recall = _thin(precision, recall, max_points=max_points)
        pr_ax.plot(recall, precision, color=colour, linestyle=style, label=label)
        pr_ax.axhline(error.mean(), color=colour, linestyle=":", linewidth=1)
    roc_ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    roc_ax.set_xlabel("false positive rate")
    roc_ax.set_ylabel("true positive rate (errors found)")
    roc_ax.set_title("ROC: uncertainty vs error")
    pr_ax.set_xlabel("recall (errors found)")
    pr_ax.set_ylabel("precision")
    pr_ax.set_title("precision-recall (dotted: error rate)")
    pr_ax.set_ylim(0, 1.02)
    # one legend for both panels, below them: inside either it covered curves and labels
    fig.legend(*roc_ax.get_legend_handles_labels(), loc="outside lower center", fontsize="small")
    return fig


def factor_scatter(
    frame: pd.DataFrame, factors: Sequence[str], *, y: str = "uncertainty", ncols: int = 4
) -> Figure:
    """A quantity (image uncertainty, say) against each generator factor, with a regression line.

    Continuous factors get a scatter with a linear fit (seaborn ``regplot``); binary nuisance flags
    (two distinct values) get a box plot per value.

    Args:
        frame: one row per image with the column ``y`` and every factor column.
        factors: the factor columns, one panel each.
        y: the column on the y axis.
        ncols: panels per row.

    Returns:
        The figure, one axes per factor.
    """
    check_columns(frame, (y, *factors), "factor frame")
    if not factors:
        raise ValueError("factor_scatter needs at least one factor")
    ncols = min(ncols, len(factors))
    nrows = int(np.ceil(len(factors) / ncols))
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(3.3 * ncols, 3 * nrows),
        squeeze=False,
        layout="constrained",
        sharey=True,
    )
    for ax, factor in zip(axes.flat, factors, strict=False):
        values = frame[factor]
        if values.nunique() <= 2:
            sns.boxplot(
                data=frame, x=values.astype(int), y=y, ax=ax, color="lightgrey", fliersize=2
            )
        else:
            sns.regplot(
                data=frame,
                x=factor,
                y=y,
                ax=ax,
                scatter_kws={"s": 8, "alpha": 0.4},
                line_kws={"color": ERROR_COLOUR},
                seed=0,  # the band is a bootstrap interval: seeded, so a rerun draws the same
            )
        ax.set_xlabel(readable(factor))
    for ax in axes.flat[len(factors) :]:
        ax.remove()
    return fig
