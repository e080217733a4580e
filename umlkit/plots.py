"""Every figure the notebooks draw, in one seaborn theme.

Each function takes plain arrays or pandas tables (never a model), draws one figure and returns the
:class:`matplotlib.figure.Figure`, so a notebook can show it and save it with
``ctx.save_figure(fig, "name")``. Numbers shown in a legend or a title (an ECE, an AUROC) are computed
by :mod:`umlkit.metrics` and passed in as the panel's or curve's name: a plot never recomputes a metric
in its own way.

Conventions:

* images are ``(C, H, W)`` or ``(H, W, C)`` floats in [0, 1], or ``(H, W)`` grey;
* masks and predictions are integer class maps ``(H, W)``;
* pixel uncertainty is a ``(H, W)`` map in [0, 1] (u = K / S of the pixel's Dirichlet).

Call :func:`set_theme` once (``umlkit.profiles.setup_notebook`` does) so every figure shares the theme.
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
from matplotlib.ticker import MaxNLocator

#: Colours of the class maps: background, then foreground classes (lesion / rim, cup).
CLASS_COLOURS = ("#1b1b1b", "#e6a23c", "#3c8ee6", "#6cc46c")
#: Colour map of pixel uncertainty (dark = certain, bright = uncertain).
UNCERTAINTY_CMAP = "magma"
#: Colour of misclassified pixels / the calibration gap.
ERROR_COLOUR = "#d62728"


def set_theme() -> None:
    """The one plotting theme of umlkit (seaborn "notebook" context, white grid)."""
    sns.set_theme(context="notebook", style="whitegrid")


# --------------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------------

#: Columns a reliability table must have (one row per bin, as ``umlkit.metrics.reliability_bins``).
RELIABILITY_COLUMNS = ("lower", "upper", "confidence", "accuracy", "count")


def _check_columns(frame: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks the column(s) {missing}; it has {list(frame.columns)}")


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

        ECE = sum_b (n_b / N) * |acc_b - conf_b|.

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
        _check_columns(bins, RELIABILITY_COLUMNS, f"reliability table {title!r}")
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
    _check_columns(frame, (predicted, true, hue), "calibration frame")
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


# --------------------------------------------------------------------------------------------------
# Tables of runs (ablations)
# --------------------------------------------------------------------------------------------------


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
    _check_columns(runs, (x, *metrics), "runs table")
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


# --------------------------------------------------------------------------------------------------
# Images and uncertainty maps
# --------------------------------------------------------------------------------------------------


def as_display_image(image: np.ndarray) -> np.ndarray:
    """An image as matplotlib shows it: ``(H, W, 3)`` or ``(H, W)``, from ``(C, H, W)`` if needed."""
    image = np.asarray(image, dtype=float)
    if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3):
        image = np.moveaxis(image, 0, -1)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W), (C, H, W) or (H, W, C); got shape {image.shape}")
    return np.clip(image, 0.0, 1.0)


def _class_cmap(num_classes: int) -> ListedColormap:
    return ListedColormap(CLASS_COLOURS[: max(num_classes, 2)])


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
                cmap=_class_cmap(num_classes),
                vmin=0,
                vmax=max(num_classes, 2) - 1,
                interpolation="nearest",
            )
        elif column == "uncertainty":
            uncertainty_image = ax.imshow(
                np.asarray(case["uncertainty"]), cmap=UNCERTAINTY_CMAP, vmin=0, vmax=1
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
            # Reliable pixels (uncertainty <= threshold) in white; errors that the threshold
            # flags as unreliable in orange, the ones it misses (confident errors) in red.
            unreliable = np.asarray(case["uncertainty"]) > threshold
            overlay = np.zeros(error.shape, dtype=int)
            overlay[unreliable] = 1
            overlay[error & unreliable] = 2
            overlay[error & ~unreliable] = 3
            ax.imshow(
                overlay,
                cmap=ListedColormap(["#f2f2f2", "#7f7f7f", "#ff9f1c", ERROR_COLOUR]),
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
            label="pixel uncertainty",
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


# --------------------------------------------------------------------------------------------------
# Uncertainty as an error detector
# --------------------------------------------------------------------------------------------------


def ueo_curve(
    frame: pd.DataFrame, *, x: str = "threshold", y: str = "ueo", hue: str = "model"
) -> Figure:
    """Uncertainty-error overlap against the threshold, with each curve's maximum marked.

    UEO(t) = 2 |U_t ∩ E| / (|U_t| + |E|) (Jungo & Reyes 2019) is the Dice between the error mask E and
    the thresholded uncertainty U_t = {u > t}; the best threshold is chosen once per dataset.

    Args:
        frame: columns ``x`` (threshold), ``y`` (UEO) and ``hue`` (model).

    Returns:
        The figure with one axes.
    """
    _check_columns(frame, (x, y, hue), "UEO frame")
    fig, ax = plt.subplots(figsize=(5.5, 4), layout="constrained")
    sns.lineplot(data=frame, x=x, y=y, hue=hue, ax=ax, seed=0)
    palette = dict(zip(frame[hue].unique(), sns.color_palette(), strict=False))
    for name, group in frame.groupby(hue, sort=False):
        best = group.loc[group[y].idxmax()]
        ax.scatter(best[x], best[y], color=palette[name], zorder=3, s=30)
        ax.annotate(
            f"{best[y]:.2f} @ {best[x]:.2f}",
            (best[x], best[y]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize="small",
        )
    ax.set_xlabel("uncertainty threshold t")
    ax.set_ylabel("UEO (Dice of {u > t} and errors)")
    ax.set_ylim(0, 1)
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
    fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    for colour, (label, (error, uncertainty)) in zip(
        sns.color_palette(), curves.items(), strict=False
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
        roc_ax.plot(fpr, tpr, color=colour, label=label)
        precision, recall, _ = precision_recall_curve(error, uncertainty)
        precision, recall = _thin(precision, recall, max_points=max_points)
        pr_ax.plot(recall, precision, color=colour, label=label)
        pr_ax.axhline(error.mean(), color=colour, linestyle=":", linewidth=1)
    roc_ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    roc_ax.set_xlabel("false positive rate")
    roc_ax.set_ylabel("true positive rate (errors found)")
    roc_ax.set_title("ROC: uncertainty vs error")
    roc_ax.legend(fontsize="small", loc="lower right")
    pr_ax.set_xlabel("recall (errors found)")
    pr_ax.set_ylabel("precision")
    pr_ax.set_title("precision-recall (dotted: error rate)")
    pr_ax.set_ylim(0, 1.02)
    pr_ax.legend(fontsize="small", loc="upper right")
    return fig


def risk_coverage(curves: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> Figure:
    """Risk-coverage curves: the error rate among the most certain fraction of cases kept.

    Sorting cases by uncertainty and keeping the most certain fraction c (the coverage), the risk is
    the error rate among the kept cases; the area under the curve (AURC) is lower for a model whose
    uncertainty ranks its errors last.

    Args:
        curves: label (put the AURC in it) -> ``(coverage, risk)`` as returned by
            ``umlkit.metrics.risk_coverage_curve``.

    Returns:
        The figure with one axes.
    """
    if not curves:
        raise ValueError("risk_coverage needs at least one curve")
    fig, ax = plt.subplots(figsize=(5.5, 4), layout="constrained")
    for label, (coverage, risk) in curves.items():
        ax.plot(np.asarray(coverage), np.asarray(risk), label=label)
    ax.set_xlabel("coverage (share of cases kept, most certain first)")
    ax.set_ylabel("risk (error rate of kept cases)")
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize="small")
    return fig


# --------------------------------------------------------------------------------------------------
# Robustness and out-of-distribution detection
# --------------------------------------------------------------------------------------------------


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
    _check_columns(frame, (x, hue, col, *metrics), "robustness frame")
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
    _check_columns(frame, (score, group, col), "OOD frame")
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


# --------------------------------------------------------------------------------------------------
# Uncertainty and failures against the generator's factors
# --------------------------------------------------------------------------------------------------


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
    _check_columns(frame, (y, *factors), "factor frame")
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
        ax.set_xlabel(factor)
    for ax in axes.flat[len(factors) :]:
        ax.remove()
    return fig


def factor_effects(
    effects: pd.DataFrame,
    *,
    factor: str = "factor",
    estimate: str = "coefficient",
    hue: str | None = None,
    xlabel: str = "standardised log-odds coefficient",
) -> Figure:
    """Effects of the generator's factors on an outcome (e.g. a logistic regression of errors).

    Args:
        effects: one row per factor (and per ``hue`` group) with the columns ``factor`` and
            ``estimate``; optional ``lower`` / ``upper`` columns are drawn as an interval.
        hue: a column splitting the effects into groups (e.g. the model).
        xlabel: what the estimate is.

    Returns:
        The figure with one axes: a horizontal bar per factor, zero marked.
    """
    _check_columns(effects, (factor, estimate), "effects table")
    fig, ax = plt.subplots(
        figsize=(6, 0.45 * effects[factor].nunique() * (1 if hue is None else 1.5) + 1.2),
        layout="constrained",
    )
    sns.barplot(data=effects, y=factor, x=estimate, hue=hue, orient="h", ax=ax, errorbar=None)
    if {"lower", "upper"} <= set(effects.columns) and hue is None:
        positions = {
            label.get_text(): tick
            for label, tick in zip(ax.get_yticklabels(), ax.get_yticks(), strict=True)
        }
        for _, row in effects.iterrows():
            ax.plot([row["lower"], row["upper"]], [positions[str(row[factor])]] * 2, color="black")
    ax.axvline(0, color="grey", linewidth=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("")
    return fig


def rate_by_flag(
    frame: pd.DataFrame, flags: Sequence[str], *, y: str = "error", hue: str | None = None
) -> Figure:
    """The mean of ``y`` (an error rate) with and without each binary nuisance flag.

    The error bars are seaborn's 95 % bootstrap intervals, drawn with a fixed seed so that a
    rerun draws the same figure.

    Args:
        frame: one row per image with the column ``y`` (0/1 or a rate) and the flag columns.
        flags: the binary flag columns (e.g. ``hair``, ``low_contrast``), one pair of bars each.
        y: the outcome column.
        hue: optional grouping column (e.g. the model); default: flag absent / present.

    Returns:
        The figure with one axes.
    """
    _check_columns(frame, (y, *flags), "flag frame")
    if not flags:
        raise ValueError("rate_by_flag needs at least one flag")
    id_columns = [y] if hue is None else [y, hue]
    long = frame[id_columns + list(flags)].melt(
        id_vars=id_columns, var_name="flag", value_name="present"
    )
    long["present"] = long["present"].astype(bool).map({False: "absent", True: "present"})
    fig, ax = plt.subplots(figsize=(1.3 * len(flags) + 3, 3.6), layout="constrained")
    if hue is None:
        sns.barplot(
            data=long, x="flag", y=y, hue="present", hue_order=["absent", "present"], ax=ax, seed=0
        )
    else:
        sns.barplot(data=long[long["present"] == "present"], x="flag", y=y, hue=hue, ax=ax, seed=0)
        ax.set_title("images with the flag present", fontsize="medium")
    ax.set_xlabel("")
    ax.set_ylabel(f"mean {y}")
    return fig


def factor_weight_bars(weights: pd.DataFrame, model: str = "UML") -> Figure:
    """The share of each factor in a classifier's log-odds beside the generator's share.

    Args:
        weights: :func:`umlkit.analysis.factor_weights` output (``factor``, ``share``,
            ``true_share``).
        model: the classifier's name, for the legend.

    Returns:
        The figure with one axes: one pair of bars per factor. A factor whose bar is near 0 is
        one the classifier ignores.
    """
    _check_columns(weights, ("factor", "share", "true_share"), "factor weights")
    long = weights.melt(
        id_vars="factor", value_vars=["share", "true_share"], var_name="source", value_name="value"
    )
    long["source"] = long["source"].map({"share": model, "true_share": "generator"})
    fig, ax = plt.subplots(figsize=(1.4 * len(weights) + 2.5, 3.4), layout="constrained")
    sns.barplot(data=long, x="factor", y="value", hue="source", ax=ax)
    ax.axhline(0.0, color="0.3", linewidth=0.8)
    ax.set_xlabel("")
    ax.set_ylabel("share of the log-odds weight")
    ax.tick_params(axis="x", labelrotation=15)
    return fig


# --------------------------------------------------------------------------------------------------
# Datasets (notebook 01)
# --------------------------------------------------------------------------------------------------


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
    _check_columns(metadata, [*factors, hue], "metadata")
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
    _check_columns(metadata, [by, hue], "metadata")
    fig, ax = plt.subplots(figsize=(5, 3))
    sns.countplot(metadata, x=by, hue=hue, ax=ax)
    ax.set_ylabel("images")
    for container in ax.containers:
        ax.bar_label(container, fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------
# Evidential primer (notebook 02): Dirichlet on the simplex, evidence sweeps, the 2-D toy
# --------------------------------------------------------------------------------------------------

#: Corners of the 3-class probability simplex drawn as an equilateral triangle (class 1, 2, 3).
SIMPLEX_CORNERS = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3.0) / 2.0]])


def _simplex_mesh(subdivisions: int):
    """A fine triangulation of the simplex and the barycentric coordinates of its nodes."""
    from matplotlib.tri import Triangulation, UniformTriRefiner

    mesh = UniformTriRefiner(
        Triangulation(SIMPLEX_CORNERS[:, 0], SIMPLEX_CORNERS[:, 1])
    ).refine_triangulation(subdiv=subdivisions)
    third = mesh.y / SIMPLEX_CORNERS[2, 1]
    second = mesh.x - 0.5 * third
    barycentric = np.clip(np.stack([1.0 - second - third, second, third], axis=1), 1e-9, 1.0)
    return mesh, barycentric / barycentric.sum(axis=1, keepdims=True)


def dirichlet_log_density(alpha: Sequence[float], points: np.ndarray) -> np.ndarray:
    r"""Log density of :math:`\mathrm{Dir}(\alpha)` at probability vectors ``points`` ``(n, K)``.

    :math:`\ln p(x) = \ln\Gamma(S) - \sum_k \ln\Gamma(\alpha_k) + \sum_k (\alpha_k - 1)\ln x_k`.
    """
    from scipy.special import gammaln

    alpha = np.asarray(alpha, dtype=float)
    return (
        gammaln(alpha.sum()) - gammaln(alpha).sum() + (np.log(points) * (alpha - 1.0)).sum(axis=1)
    )


def draw_dirichlet_simplex(ax: plt.Axes, alpha: Sequence[float], subdivisions: int = 6) -> None:
    """Draw the density of a 3-class ``Dir(alpha)`` on the simplex into ``ax``, mean marked."""
    alpha = np.asarray(alpha, dtype=float)
    if alpha.shape != (3,) or np.any(alpha <= 0):
        raise ValueError(f"alpha must be 3 positive numbers, got {alpha.tolist()}")
    mesh, points = _simplex_mesh(subdivisions)
    density = np.exp(dirichlet_log_density(alpha, points))
    # rasterized: thousands of contour polygons would make the PDF heavy and slow to write
    ax.tricontourf(mesh, density, levels=20, cmap="viridis", rasterized=True)
    mean = (alpha / alpha.sum()) @ SIMPLEX_CORNERS
    ax.plot(*mean, marker="o", color="white", markeredgecolor="black", markersize=6)
    outline = np.vstack([SIMPLEX_CORNERS, SIMPLEX_CORNERS[:1]])
    ax.plot(outline[:, 0], outline[:, 1], color="black", linewidth=0.8)
    for corner, label, offset in zip(
        SIMPLEX_CORNERS,
        ("class 1", "class 2", "class 3"),
        ((-0.02, -0.07), (0.02, -0.07), (0, 0.03)),
        strict=True,
    ):
        ax.text(corner[0] + offset[0], corner[1] + offset[1], label, ha="center", fontsize="small")
    ax.set_aspect("equal")
    ax.set_xlim(-0.12, 1.12)
    ax.set_ylim(-0.12, 0.95)
    ax.axis("off")


def dirichlet_simplex(
    alphas: Sequence[Sequence[float]],
    *,
    ncols: int = 4,
    subdivisions: int = 6,
    panel_size: float = 3.0,
) -> Figure:
    r"""Densities of 3-class Dirichlets on the probability simplex, one panel per ``alpha``.

    Each panel's title gives :math:`\alpha`, the strength :math:`S = \sum_k \alpha_k` and the
    uncertainty :math:`u = K/S`; the white dot is the expected probability :math:`\alpha/S`.
    Colours are scaled per panel (densities differ by orders of magnitude).

    Args:
        alphas: concentration vectors of length 3.
        ncols: panels per row.
        subdivisions: mesh refinement (4^subdivisions triangles).
        panel_size: inches per panel.

    Returns:
        The figure, one axes per ``alpha``.
    """
    if not alphas:
        raise ValueError("dirichlet_simplex needs at least one alpha")
    ncols = min(ncols, len(alphas))
    nrows = int(np.ceil(len(alphas) / ncols))
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(panel_size * ncols, panel_size * 0.95 * nrows),
        squeeze=False,
        layout="constrained",
    )
    for ax, alpha in zip(axes.flat, alphas, strict=False):
        draw_dirichlet_simplex(ax, alpha, subdivisions)
        strength = float(np.sum(alpha))
        ax.set_title(
            f"α = ({', '.join(f'{a:g}' for a in alpha)})\nS = {strength:g}, u = {3 / strength:.2f}",
            fontsize="medium",
        )
    for ax in axes.flat[len(alphas) :]:
        ax.remove()
    return fig


def evidence_curves(frame: pd.DataFrame) -> Figure:
    """Belief, expected probability and uncertainty against evidence (``umlkit.toy.evidence_sweep``).

    Args:
        frame: long table with the columns ``evidence``, ``quantity`` and ``value``.

    Returns:
        The figure with one axes.
    """
    _check_columns(frame, ("evidence", "quantity", "value"), "evidence sweep")
    fig, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
    sns.lineplot(data=frame, x="evidence", y="value", hue="quantity", errorbar=None, ax=ax)
    ax.set_xlabel("evidence for class 0 (no evidence for the others)")
    ax.set_ylabel("")
    ax.set_ylim(0, 1.02)
    return fig


def loss_curves(frame: pd.DataFrame) -> Figure:
    """The evidential losses and the KL term against evidence (``umlkit.toy.loss_sweep``).

    Args:
        frame: long table with the columns ``evidence``, ``on`` (which class gets the evidence),
            ``term`` and ``value``.

    Returns:
        The figure, one axes per value of ``on``.
    """
    _check_columns(frame, ("evidence", "on", "term", "value"), "loss sweep")
    panels = list(dict.fromkeys(frame["on"]))
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(5 * len(panels), 3.8),
        squeeze=False,
        sharey=True,
        layout="constrained",
    )
    for ax, panel in zip(axes[0], panels, strict=True):
        sns.lineplot(
            data=frame[frame["on"] == panel],
            x="evidence",
            y="value",
            hue="term",
            errorbar=None,
            ax=ax,
        )
        ax.set_title(f"evidence on the {panel}", fontsize="medium")
        ax.set_xlabel(f"evidence on the {panel}")
        ax.set_ylabel("loss per sample")
    return fig


def toy_uncertainty_maps(
    grids: Mapping[str, Mapping[str, np.ndarray]],
    points: np.ndarray,
    labels: np.ndarray,
    *,
    ncols: int = 2,
    panel_size: float = 3.6,
) -> Figure:
    """Uncertainty maps of 2-D toy classifiers with the training data and the decision boundary.

    Args:
        grids: panel title -> a grid from ``umlkit.toy.toy_grid`` (``xx``, ``yy``, ``prob``,
            ``uncertainty`` in [0, 1]).
        points: training points ``(n, 2)``.
        labels: their classes ``(n,)``.
        ncols: panels per row.
        panel_size: inches per panel.

    Returns:
        The figure: one axes per grid (dark = certain, bright = uncertain; the black line is
        p(class 1) = 0.5) and a shared colour bar.
    """
    if not grids:
        raise ValueError("toy_uncertainty_maps needs at least one grid")
    points, labels = np.asarray(points), np.asarray(labels)
    ncols = min(ncols, len(grids))
    nrows = int(np.ceil(len(grids) / ncols))
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(panel_size * ncols + 0.8, panel_size * nrows),
        squeeze=False,
        layout="constrained",
    )
    image = None
    for ax, (title, grid) in zip(axes.flat, grids.items(), strict=False):
        image = ax.pcolormesh(
            grid["xx"],
            grid["yy"],
            grid["uncertainty"],
            cmap=UNCERTAINTY_CMAP,
            vmin=0,
            vmax=1,
            shading="auto",
            rasterized=True,
        )
        # Far from RBF centres p(class 1) is flat at 0.5 and a 0.5-contour would trace rounding
        # noise there; leave those nodes out so only the real boundary is drawn.
        boundary = np.ma.masked_where(
            np.abs(grid["prob"][..., 1] - 0.5) < 1e-4, grid["prob"][..., 1]
        )
        ax.contour(grid["xx"], grid["yy"], boundary, levels=[0.5], colors="black", linewidths=1)
        for label, colour in zip(np.unique(labels), sns.color_palette("pastel"), strict=False):
            chosen = labels == label
            ax.scatter(
                *points[chosen].T, s=6, color=colour, edgecolor="none", label=f"class {label}"
            )
        ax.set_title(title, fontsize="medium")
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    for ax in axes.flat[len(grids) :]:
        ax.remove()
    fig.colorbar(image, ax=axes, shrink=0.8, label="uncertainty")
    return fig


def uncertainty_distance_curves(frame: pd.DataFrame, *, hue: str = "model") -> Figure:
    """Mean uncertainty against the distance to the nearest training point, one line per model.

    Args:
        frame: columns ``distance``, ``uncertainty`` and ``hue`` (e.g. stacked
            ``umlkit.toy.uncertainty_by_distance`` tables).

    Returns:
        The figure with one axes.
    """
    _check_columns(frame, ("distance", "uncertainty", hue), "distance frame")
    fig, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
    sns.lineplot(
        data=frame,
        x="distance",
        y="uncertainty",
        hue=hue,
        marker="o",
        markersize=3,
        errorbar=None,
        ax=ax,
    )
    ax.set_xlabel("distance to the nearest training point")
    ax.set_ylabel("mean uncertainty")
    ax.set_ylim(0, 1.02)
    return fig


# --------------------------------------------------------------------------------------------------
# Semi-supervised comparison (notebook 09)
# --------------------------------------------------------------------------------------------------


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
    _check_columns(runs, ("label_fraction", metric, hue, col), "runs table")
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
    class_style = {"cmap": _class_cmap(num_classes), "vmin": 0, "vmax": max(num_classes, 2) - 1}
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
    _check_columns(histories, (x, y, hue, col), "histories")
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


# --------------------------------------------------------------------------------------------------
# Training (notebook 03)
# --------------------------------------------------------------------------------------------------

#: Loss components of a training history (``umlkit.train``), in the order they are drawn.
LOSS_COLUMNS = ("loss", "loss_cls", "loss_seg", "loss_mutual")
#: Validation metrics drawn by :func:`training_curves`.
VALIDATION_COLUMNS = ("val_accuracy", "val_dice", "val_ece")


def training_curves(
    history: pd.DataFrame, *, best_epoch: int | None = None, steps: pd.DataFrame | None = None
) -> Figure:
    """Training loss over fractional epochs and validation metrics per epoch of one run.

    Left: the training loss and its unweighted components ``L_cls``, ``L_seg``, ``L_mutual``
    (only those the model has), as lines over the epochs trained: from ``steps`` (a row every
    few optimisation steps, at fractional epochs) when given, else one point per epoch from
    ``history`` (the epoch's mean). Right: validation accuracy, Dice and ECE as points at the
    end of each epoch. The x axes count epochs trained, with integer ticks; a dotted line marks
    the end of the selected (best) epoch.

    Args:
        history: the ``history`` table of a :class:`umlkit.train.TrainResult` (one row per epoch,
            columns ``epoch`` (0-based), ``loss``..., ``val_accuracy``, ``val_dice``, ``val_ece``).
        best_epoch: the 0-based epoch whose weights were kept, marked on both panels.
        steps: the ``steps`` table of the same result (columns ``epoch``, fractional, and
            ``loss``...).

    Returns:
        The figure (two axes).

    Raises:
        ValueError: the table has no ``epoch`` or ``loss`` column.
    """
    _check_columns(history, ("epoch", "loss"), "training history")
    if steps is not None:
        _check_columns(steps, ("epoch", "loss"), "per-step table")
    curve = history.assign(epoch=history["epoch"] + 1) if steps is None else steps
    losses = [c for c in LOSS_COLUMNS if c in curve and curve[c].notna().any()]
    metrics = [c for c in VALIDATION_COLUMNS if c in history and history[c].notna().any()]
    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    names = {
        "loss": "total (weighted)",
        "loss_cls": "L_cls",
        "loss_seg": "L_seg",
        "loss_mutual": "L_mutual",
        "val_accuracy": "ACC",
        "val_dice": "Dice",
        "val_ece": "ECE",
    }
    marker = "o" if steps is None else None
    for column in losses:
        loss_ax.plot(curve["epoch"], curve[column], marker=marker, label=names[column])
    loss_ax.set_ylabel("training loss")
    loss_ax.legend(fontsize="small")
    for column in metrics:
        metric_ax.plot(history["epoch"] + 1, history[column], marker="o", label=names[column])
    metric_ax.set_ylabel("validation (end of epoch)")
    metric_ax.set_ylim(0, 1.02)
    if metrics:
        metric_ax.legend(fontsize="small")
    for ax in (loss_ax, metric_ax):
        _integer_epoch_axis(ax, int(history["epoch"].max()) + 1)
        if best_epoch is not None:
            ax.axvline(best_epoch + 1, color="grey", linestyle=":", linewidth=1)
    return fig


def _integer_epoch_axis(ax, epochs: int) -> None:
    """Label ``ax``'s x axis "epochs trained", from 0 to ``epochs``, ticks at whole epochs only."""
    ax.set_xlabel("epochs trained")
    ax.set_xlim(0, epochs)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
