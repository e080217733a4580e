"""Figures of the semi-supervised comparison (notebook 09): CAML, BURL and the supervised baseline.

:func:`label_fraction_curves` draws a test score against the share of labeled images (and each
method's paired difference to the supervised baseline), :func:`validation_curves` the validation
score during training (seeds as bands, runs still improving marked), and :func:`trust_gallery` where
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
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from umlkit.plots.style import (
    CLASS_COLOURS,
    UNCERTAINTY_CMAP,
    UNCERTAINTY_TICKS,
    as_display_image,
    check_columns,
    class_cmap,
    uncertainty_norm,
)


def label_fraction_curves(
    runs: pd.DataFrame,
    *,
    metric: str = "dice",
    hue: str = "method",
    col: str = "dataset",
    baseline: str | None = "supervised",
) -> Figure:
    """A metric against the label fraction, one line per method, one column of panels per dataset.

    The top panel shows each method's mean over seeds (line) ± 1 sd (band), its y axis fitted to
    the data, since the methods differ by hundredths of Dice. The bottom panel shows what the
    comparison is about: each method minus the ``baseline``, paired by seed (the runs of a seed
    share the labeled images and the initialisation), as the mean (line) and every seed's
    difference (dots); above the zero line the method beat the baseline.

    Args:
        runs: one row per run with columns ``label_fraction``, ``metric``, ``hue``, ``col`` and,
            for the differences, ``seed`` (``umlkit.semi.experiments.run_means``).
        metric: the column on the y axis.
        hue: the column that separates lines.
        col: the column that separates panels.
        baseline: the method the differences are taken against; ``None`` (or a baseline that is
            not in ``runs``) leaves the difference panels out.

    Returns:
        The figure: per dataset its top axes, then (with a baseline) its difference axes below,
        in the order ``[top_0, ..., top_n, difference_0, ..., difference_n]``.
    """
    check_columns(runs, ("label_fraction", metric, hue, col), "runs table")
    panels = list(dict.fromkeys(runs[col]))
    methods = list(dict.fromkeys(runs[hue]))
    with_differences = baseline in methods and "seed" in runs and len(methods) > 1
    nrows = 2 if with_differences else 1
    fig, axes = plt.subplots(
        nrows,
        len(panels),
        figsize=(4.4 * len(panels) + 1.6, 3.2 * nrows + 0.3),
        squeeze=False,
        sharex="col",
        layout="constrained",
        height_ratios=(3, 2) if with_differences else None,
    )
    palette = dict(zip(methods, sns.color_palette(n_colors=len(methods)), strict=True))
    fractions = sorted(runs["label_fraction"].unique())
    for column, panel in enumerate(panels):
        data = runs[runs[col] == panel]
        ax = axes[0, column]
        sns.lineplot(
            data=data,
            x="label_fraction",
            y=metric,
            hue=hue,
            hue_order=methods,
            palette=palette,
            marker="o",
            errorbar="sd",
            legend=False,
            ax=ax,
        )
        ax.set_title(str(panel), fontsize="medium")
        name = "Dice" if metric == "dice" else metric
        ax.set_ylabel(f"test {name} (mean ± sd over seeds)" if column == 0 else "")
        ax.set_xticks(fractions, [f"{f:.0%}" for f in fractions])
        if with_differences:
            _draw_differences(axes[1, column], data, metric, hue, baseline, palette)
            axes[1, column].set_ylabel(
                f"{name} − {baseline}\n(dots: seeds, line: mean)" if column == 0 else ""
            )
        axes[-1, column].set_xlabel("labeled fraction of the training images")
    handles = [Line2D([], [], color=palette[m], marker="o") for m in methods]
    fig.legend(handles, methods, title=hue, loc="outside right upper")
    return fig


def _draw_differences(
    ax: plt.Axes,
    data: pd.DataFrame,
    metric: str,
    hue: str,
    baseline: str,
    palette: Mapping[str, Any],
) -> None:
    """Each method minus the baseline, paired by (label fraction, seed): seeds as dots, mean as line.

    The dots of different methods are set a little apart along x (2 % of the axis per method) so
    that seeds at the same label fraction do not hide each other; the means stay in place.
    """
    keys = ["label_fraction", "seed"]
    reference = data[data[hue] == baseline].set_index(keys)[metric]
    ax.axhline(0.0, color=palette[baseline], linewidth=1.5)
    fractions = data["label_fraction"].unique()
    span = float(np.ptp(fractions)) or float(np.max(np.abs(fractions))) or 1.0
    others = [method for method in palette if method != baseline and method in set(data[hue])]
    for index, method in enumerate(others):
        group = data[data[hue] == method]
        difference = (group.set_index(keys)[metric] - reference).dropna().reset_index()
        if difference.empty:
            continue
        offset = (index - (len(others) - 1) / 2) * 0.02 * span
        ax.scatter(
            difference["label_fraction"] + offset,
            difference[metric],
            color=palette[method],
            s=14,
            alpha=0.6,
        )
        mean = difference.groupby("label_fraction")[metric].mean()
        ax.plot(mean.index, mean.to_numpy(), color=palette[method], marker="o")


def trust_gallery(
    rows: Sequence[Mapping[str, Any]],
    *,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
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
        class_names: the mask classes' names, background first (e.g. ``train.seg_class_names``):
            a legend of the foreground classes' colours under the masks.
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
            np.asarray(row["uncertainty"]), cmap=UNCERTAINTY_CMAP, norm=uncertainty_norm()
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
    for ax, title in zip(
        axes[0][:4], ("image", "ground truth", "prediction", "uncertainty"), strict=True
    ):
        ax.set_title(title, fontsize="medium")
    if class_names is not None and len(class_names) > 1:
        patches = [
            Patch(color=CLASS_COLOURS[k], label=name)
            for k, name in enumerate(class_names[1:num_classes], start=1)
        ]
        fig.legend(handles=patches, loc="outside lower center", ncol=len(patches), frameon=False)
    fig.colorbar(
        uncertainty_image,
        ax=axes[:, 3],
        shrink=0.6,
        label="uncertainty (square-root scale)",
        ticks=UNCERTAINTY_TICKS,
    )
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
    seed: str = "seed",
) -> Figure:
    """Validation score against training progress, one line per method, one panel per dataset.

    With several seeds per method (a ``seed`` column) the line is their mean and the band spans
    the lowest to the highest seed. A star marks the last point of every run whose best
    validation score is its last one: that run was **still improving** when it stopped, so its
    test score understates what the method reaches with more steps; the legend counts them. The
    y axis is fitted to the data (the methods differ by hundredths).

    Args:
        histories: stacked training histories (``umlkit.semi.loop.SemiResult.history`` with
            ``method``, ``dataset`` and ``seed`` columns added); rows where ``y`` is NaN (epochs
            without validation) are skipped. Without a ``seed`` column every (dataset, method)
            is one run.
        x, y, hue, col: the columns for the axis, the score, the lines and the panels.
        seed: the column that tells the runs of a method apart.

    Returns:
        The figure, one axes per value of ``col``.
    """
    check_columns(histories, (x, y, hue, col), "histories")
    histories = histories.dropna(subset=[y])
    if seed not in histories:
        histories = histories.assign(**{seed: 0})
    panels = list(dict.fromkeys(histories[col]))
    methods = list(dict.fromkeys(histories[hue]))
    palette = dict(zip(methods, sns.color_palette(n_colors=len(methods)), strict=True))
    fig, axes = plt.subplots(
        1, len(panels), figsize=(4.6 * len(panels) + 2.4, 3.6), squeeze=False, layout="constrained"
    )
    for ax, panel in zip(axes[0], panels, strict=True):
        span = float(np.ptp(histories[x])) or 1.0
        for index, method in enumerate(methods):
            runs = histories[(histories[col] == panel) & (histories[hue] == method)]
            if runs.empty:
                continue
            # the stars of different methods a little apart, so that they do not hide each other
            star_offset = (index - (len(methods) - 1) / 2) * 0.025 * span
            _draw_runs(ax, runs, x, y, seed, method, palette[method], star_offset)
        ax.set_title(str(panel), fontsize="medium")
        ax.set_xlabel("optimisation step" if x == "step" else x)
        ax.set_ylabel("validation Dice" if y == "val_dice" else y)
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize="small", title=hue)
    seeds = histories.groupby([col, hue])[seed].nunique().max()
    spread = f"line: mean over {seeds} seeds, band: lowest to highest seed\n" if seeds > 1 else ""
    fig.suptitle(
        f"{spread}★: a run whose best step is its last (still improving)", fontsize="medium"
    )
    return fig


def still_improving(run: pd.DataFrame, x: str = "step", y: str = "val_dice") -> bool:
    """Whether a run's best validation score is at its last validated step (ties: the first)."""
    run = run.dropna(subset=[y]).sort_values(x)
    return bool(len(run)) and run[y].to_numpy().argmax() == len(run) - 1


def _draw_runs(
    ax: plt.Axes,
    runs: pd.DataFrame,
    x: str,
    y: str,
    seed: str,
    method: str,
    colour: Any,
    star_offset: float = 0.0,
) -> None:
    """One method's runs: mean line, min-max band, a star (``star_offset`` along x) on each run
    still improving."""
    stats = runs.groupby(x)[y].agg(["mean", "min", "max"])
    improving = [run for _, run in runs.groupby(seed) if still_improving(run, x, y)]
    n_runs = runs[seed].nunique()
    ax.plot(
        stats.index,
        stats["mean"],
        color=colour,
        marker="o",
        markersize=4,
        label=f"{method} ({len(improving)} of {n_runs} still improving)",
    )
    if n_runs > 1:
        ax.fill_between(stats.index, stats["min"], stats["max"], color=colour, alpha=0.2)
    for run in improving:
        last = run.sort_values(x).iloc[-1]
        ax.plot(
            last[x] + star_offset,
            last[y],
            marker="*",
            markersize=11,
            color=colour,
            markeredgecolor="black",
            linestyle="none",
        )
