"""Figures that compare variants over seeds (notebook 04, ablations).

:func:`metric_comparison` puts every variant's seeds and their mean ± sd side by side, one panel per
metric, with the Bayes-optimal ceiling where one is known, and under them a table of the
paired-by-seed differences against the reference (UML): the sharper test, since pairing by seed
cancels what two runs of the same seed share.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure, SubFigure

from umlkit.plots.style import check_columns, model_styles

#: Units of the metrics that have one (the others are shares or probabilities in [0, 1]).
METRIC_UNITS = {"HD95": "pixels"}
#: The paired differences' colour saturates at this many seed-to-seed standard deviations.
SPREADS_SHOWN = 3.0


def metric_comparison(
    runs: pd.DataFrame,
    metrics: Sequence[str],
    *,
    x: str = "variant",
    lower_is_better: Sequence[str] = (),
    ncols: int = 3,
    order: Sequence[str] | None = None,
    ceilings: Mapping[str, float] | None = None,
    differences: pd.DataFrame | None = None,
    reference: str = "UML",
    units: Mapping[str, str] = METRIC_UNITS,
) -> Figure:
    """One panel per metric: each variant's seeds (dots) and their mean ± 1 sd (diamond and bar).

    The variants are rows, so their names read without tilting the head. The value axes are scaled
    to the data, not to zero, because the differences between variants (a Dice of 0.94 against
    0.97) are what the figure is for; read the tick labels. Every metric here is a non-negative
    quantity, so no axis extends below 0 even where mean - sd would (a skewed HD95 over 3 seeds).

    Args:
        runs: one row per (variant, seed) with one column per metric (and ``seed``, whose count
            the title states).
        metrics: the metric columns to draw, one panel each.
        x: the column naming the variant.
        lower_is_better: metrics where lower is better (HD95, ECE); their titles say so.
        ncols: panels per row.
        order: order of the variants, top to bottom (default: as they first appear).
        ceilings: metric -> the best any model can reach on the same test images, drawn as a
            dashed line (the Bayes-optimal accuracy and AUC of
            ``umlkit.data.bayes_optimal_scores(..., split="test")``).
        differences: the paired differences of ``umlkit.analysis.paired_differences`` (index:
            variants, columns ``(metric, "mean")`` and ``(metric, "std")``, positive = the
            reference is better). Drawn under the panels as a table coloured by mean / sd:
            the notebook calls a difference "beyond the spread" where ``|mean| > sd``.
        reference: the variant the differences are taken against (for the table's title).
        units: metric -> unit, added to the panel's title.

    Returns:
        The figure. Its first ``len(metrics)`` axes are the metric panels (in the order of
        ``metrics``); with ``differences``, the next is the table and the last its colour bar.
    """
    check_columns(runs, (x, *metrics), "runs table")
    if not metrics:
        raise ValueError("metric_comparison needs at least one metric")
    order = list(dict.fromkeys(runs[x])) if order is None else list(order)
    ncols = min(ncols, len(metrics))
    nrows = int(np.ceil(len(metrics) / ncols))
    panel_height = 0.35 * len(order) + 1.0
    table_height = 0.45 * len(order) + 1.4 if differences is not None else 0.0
    fig = plt.figure(
        figsize=(3.6 * ncols + 1.6, panel_height * nrows + table_height + 0.5),
        layout="constrained",
    )
    if differences is None:
        panels_fig, table_fig = fig, None
    else:
        panels_fig, table_fig = fig.subfigures(
            2, 1, height_ratios=(panel_height * nrows, table_height)
        )
    axes = panels_fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    for ax, metric in zip(axes.flat, metrics, strict=False):
        _draw_metric(ax, runs, metric, x, order)
        if ceilings and metric in ceilings and np.isfinite(ceilings[metric]):
            ax.axvline(ceilings[metric], color="black", linestyle="--", linewidth=1)
            ax.annotate(
                f"Bayes-optimal (test) {ceilings[metric]:.3f}",
                xy=(ceilings[metric], 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(-3, -3),
                textcoords="offset points",
                ha="right",
                va="top",
                fontsize="x-small",
            )
        low, high = ax.get_xlim()
        ceiling = (ceilings or {}).get(metric, np.nan)
        if np.isfinite(ceiling):
            low, high = min(low, ceiling), max(high, ceiling + 0.05 * (high - low))
        ax.set_xlim(max(low, 0.0), high)
        arrow = "lower is better" if metric in lower_is_better else "higher is better"
        unit = f", {units[metric]}" if metric in units else ""
        ax.set_title(f"{metric}{unit} ({arrow})", fontsize="medium")
    for ax in axes.flat[len(metrics) :]:
        ax.remove()
    seeds = runs.groupby(x).size().max()
    panels_fig.suptitle(
        f"dots: single seeds; diamond and bar: mean ± 1 sd over {seeds} seeds", fontsize="medium"
    )
    if table_fig is not None:
        _draw_differences(table_fig, differences, metrics, order, reference, units)
    return fig


def _draw_metric(ax: plt.Axes, runs: pd.DataFrame, metric: str, x: str, order: list[str]) -> None:
    """One metric's panel: the seeds of each variant as dots, their mean ± sd as a diamond."""
    rng = np.random.default_rng(0)  # the dots' vertical jitter, the same in every figure
    colours = [colour for colour, _ in model_styles(order)]
    for row, (variant, colour) in enumerate(zip(order, colours, strict=True)):
        values = runs.loc[runs[x] == variant, metric].dropna().to_numpy(dtype=float)
        if values.size == 0:
            continue
        jitter = rng.uniform(-0.15, 0.15, values.size)
        ax.scatter(values, row + jitter, color="grey", s=14, alpha=0.7, zorder=2)
        spread = values.std(ddof=1) if values.size > 1 else 0.0
        ax.errorbar(
            values.mean(),
            row,
            xerr=spread,
            color=colour,
            marker="D",
            markersize=7,
            capsize=4,
            linewidth=2,
            zorder=3,
        )
    ax.set_yticks(range(len(order)), order)
    ax.set_ylim(len(order) - 0.5, -0.5)  # the first variant on top
    ax.set_ylabel("")


def _draw_differences(
    fig: SubFigure,
    differences: pd.DataFrame,
    metrics: Sequence[str],
    order: Sequence[str],
    reference: str,
    units: Mapping[str, str],
) -> None:
    """The paired differences as a table: each cell "mean ± sd", coloured by mean / sd."""
    variants = [variant for variant in order if variant in differences.index]
    shown = [metric for metric in metrics if (metric, "mean") in differences.columns]
    mean = differences.loc[variants, [(m, "mean") for m in shown]].to_numpy(dtype=float)
    spread = differences.loc[variants, [(m, "std") for m in shown]].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(spread > 0, mean / spread, np.sign(mean) * SPREADS_SHOWN)
    ax = fig.subplots()
    image = ax.imshow(
        np.ma.masked_invalid(np.clip(ratio, -SPREADS_SHOWN, SPREADS_SHOWN)),
        cmap="RdBu",
        norm=TwoSlopeNorm(0.0, -SPREADS_SHOWN, SPREADS_SHOWN),
        aspect="auto",
    )
    for (row, column), value in np.ndenumerate(mean):
        if np.isfinite(value):
            text = f"{value:+.3f}\n± {spread[row, column]:.3f}"
            dark = abs(ratio[row, column]) > 0.6 * SPREADS_SHOWN
            colour = "white" if dark else "black"
            ax.text(column, row, text, ha="center", va="center", fontsize="x-small", color=colour)
    labels = [f"{m}\n({units[m]})" if m in units else m for m in shown]
    ax.set_xticks(range(len(shown)), labels)
    ax.xaxis.tick_top()
    ax.set_yticks(range(len(variants)), variants)
    ax.grid(False)
    ax.set_title(
        f"paired by seed: {reference} − variant, mean ± sd (sign flipped where lower is better, "
        f"so positive = {reference} better)",
        fontsize="medium",
    )
    fig.colorbar(
        image,
        ax=ax,
        label="mean / sd  (|mean| > sd:\nbeyond the spread)",
        ticks=np.arange(-SPREADS_SHOWN, SPREADS_SHOWN + 1),
    )
