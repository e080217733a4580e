"""Figures of one training run (notebook 03): its curves and what its classifier learned to weigh.

:func:`training_curves` draws the training loss every few steps and the validation metrics per epoch;
:func:`factor_weight_bars` compares the share of each generator factor in the classifier's log-odds
with the generator's own share; :func:`learning_curves` draws the validation curves of several
variants over their seeds (notebooks 03 and 04), so that a run still improving is seen at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from umlkit.plots.style import check_columns, model_styles, readable

#: Loss components of a training history (``umlkit.train``), in the order they are drawn.
LOSS_COLUMNS = ("loss", "loss_cls", "loss_seg", "loss_mutual")
#: Validation metrics drawn by :func:`training_curves`.
VALIDATION_COLUMNS = ("val_accuracy", "val_dice", "val_ece")
#: How :func:`training_curves` labels each column.
CURVE_NAMES = {
    "loss": "total (weighted)",
    "loss_cls": "L_cls",
    "loss_seg": "L_seg",
    "loss_mutual": "L_mutual",
    "val_accuracy": "ACC",
    "val_dice": "Dice",
    "val_ece": "ECE",
}


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
        ValueError: a table has no ``epoch`` or ``loss`` column.
    """
    check_columns(history, ("epoch", "loss"), "training history")
    if steps is not None:
        check_columns(steps, ("epoch", "loss"), "per-step table")
    curve = history.assign(epoch=history["epoch"] + 1) if steps is None else steps
    losses = [c for c in LOSS_COLUMNS if c in curve and curve[c].notna().any()]
    metrics = [c for c in VALIDATION_COLUMNS if c in history and history[c].notna().any()]
    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    marker = "o" if steps is None else None
    for column in losses:
        loss_ax.plot(curve["epoch"], curve[column], marker=marker, label=CURVE_NAMES[column])
    loss_ax.set_ylabel("training loss")
    loss_ax.legend(fontsize="small")
    for column in metrics:
        metric_ax.plot(history["epoch"] + 1, history[column], marker="o", label=CURVE_NAMES[column])
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
    """Label ``ax``'s x axis "epochs trained", from 0 to ``epochs`` and half an epoch beyond (a
    marker or the best-epoch line at the last epoch stays off the spine), whole epochs only."""
    ax.set_xlabel("epochs trained")
    ax.set_xlim(0, epochs + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


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
    check_columns(weights, ("factor", "share", "true_share"), "factor weights")
    long = weights.melt(
        id_vars="factor", value_vars=["share", "true_share"], var_name="source", value_name="value"
    )
    long["source"] = long["source"].map({"share": model, "true_share": "generator"})
    fig, ax = plt.subplots(figsize=(1.4 * len(weights) + 2.5, 3.4), layout="constrained")
    sns.barplot(data=long, x="factor", y="value", hue="source", ax=ax)
    ax.axhline(0.0, color="0.3", linewidth=0.8)
    ax.set_xlabel("")
    ax.set_ylabel("share of the log-odds weight")
    ax.set_xticks(ax.get_xticks(), [readable(label.get_text()) for label in ax.get_xticklabels()])
    ax.tick_params(axis="x", labelrotation=15)
    return fig


#: The validation metrics of :func:`learning_curves`: history column -> axis label.
LEARNING_METRICS = {"val_accuracy": "validation accuracy", "val_dice": "validation Dice"}


def learning_curves(
    runs: Mapping[str, Sequence[pd.DataFrame]],
    *,
    bayes_accuracy: float | None = None,
    best_epochs: Mapping[str, Sequence[int]] | None = None,
) -> Figure:
    """Validation accuracy and Dice per epoch of each variant, its seeds as a band.

    For each variant the line is the mean over its seeds and the band spans the lowest to the
    highest seed (runs stopped early by the plateau rule end where they stopped, so late epochs
    may have fewer seeds). A star marks the last epoch of every run whose best epoch *is* its
    last: that run was still improving when training ended, and its numbers are a stopping time
    rather than a converged result. Each variant's stars sit a little to the side of the
    others' (runs that all end on the same epoch would otherwise hide each other's stars), and
    the legend counts them: "UML (2 of 3 still improving)". The dashed line is the
    Bayes-optimal accuracy of the validation labels, the ceiling no classifier of these images
    can beat on average.

    Args:
        runs: variant -> the ``history`` tables of its runs (one per seed; columns ``epoch``
            (0-based) and ``val_accuracy`` and/or ``val_dice``).
        bayes_accuracy: the Bayes-optimal accuracy of the validation labels the curves are
            measured on, drawn on the accuracy panel when given.
        best_epochs: variant -> the 0-based best epoch of each run (same order as ``runs``);
            default: each history's epoch of the highest ``val_score``.

    Returns:
        The figure: one panel per metric, one shared legend below.

    Raises:
        ValueError: no runs, or a history without ``epoch``.
    """
    if not runs or not any(len(histories) for histories in runs.values()):
        raise ValueError("learning_curves needs at least one run")
    for variant, histories in runs.items():
        for history in histories:
            check_columns(history, ("epoch",), f"history of {variant}")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained", sharex=True)
    colours = [colour for colour, _ in model_styles(list(runs))]
    offsets = _star_offsets(len(runs))
    longest = 1
    for colour, offset, (variant, histories) in zip(colours, offsets, runs.items(), strict=False):
        if best_epochs is not None and variant in best_epochs:
            bests = list(best_epochs[variant])
        else:
            bests = [int(h["epoch"].iloc[int(np.argmax(h["val_score"]))]) for h in histories]
        improving = sum(
            _still_improving(int(h["epoch"].max()), best)
            for h, best in zip(histories, bests, strict=False)
        )
        label = f"{variant} ({improving} of {len(histories)} still improving)"
        for ax, column in zip(axes, LEARNING_METRICS, strict=True):
            drawn = _draw_seeds(ax, histories, column, bests, colour, label, offset)
            longest = max(longest, drawn)
    for ax, label in zip(axes, LEARNING_METRICS.values(), strict=True):
        ax.set_ylabel(label)
        _integer_epoch_axis(ax, longest)
        ax.set_xlim(0.5, longest + 0.5)  # room for the stars on the last epoch
    if bayes_accuracy is not None:
        axes[0].axhline(bayes_accuracy, color="black", linestyle="--", linewidth=1)
    _learning_legend(fig, axes, bayes_accuracy)
    return fig


#: How far apart along x (in epochs) the stars of neighbouring variants sit.
STAR_SPACING = 0.15


def _star_offsets(n_variants: int) -> list[float]:
    """Each variant's shift of its stars along x: centred on the epoch, :data:`STAR_SPACING`
    apart, so that stars on the same epoch stay side by side (at most 0.4 epoch either way)."""
    spacing = min(STAR_SPACING, 0.8 / max(n_variants - 1, 1))
    return [(i - (n_variants - 1) / 2) * spacing for i in range(n_variants)]


def _still_improving(last: int, best: int) -> bool:
    """Whether a run's best epoch is its last one (0-based; a run of one epoch does not count)."""
    return best == last and last > 0


def _draw_seeds(
    ax, histories, column: str, bests, colour, label: str, star_offset: float = 0.0
) -> int:
    """One variant's curves of ``column``: the mean over seeds, the band from the lowest to the
    highest seed, a star (``star_offset`` along x) on each run whose best epoch is its last.
    Returns the last epoch drawn (1-based; 0 when no history has the column)."""
    curves = [h.set_index("epoch")[column] for h in histories if column in h]
    kept = [(c, best) for c, best in zip(curves, bests, strict=False) if c.notna().any()]
    if not kept:
        return 0
    table = pd.concat([c for c, _ in kept], axis=1)
    epochs = table.index.to_numpy() + 1
    ax.plot(epochs, table.mean(axis=1), color=colour, label=label)
    if table.shape[1] > 1:
        ax.fill_between(epochs, table.min(axis=1), table.max(axis=1), color=colour, alpha=0.2)
    for curve, best in kept:
        last = int(curve.index.max())
        if _still_improving(last, best):
            x = last + 1 + star_offset
            ax.plot(x, curve.loc[last], linestyle="none", color=colour, **STAR)
    return int(epochs.max())


#: How :func:`learning_curves` marks a run still improving at its last epoch.
STAR = {"marker": "*", "markersize": 11, "markeredgecolor": "black"}


def _learning_legend(fig, axes, bayes_accuracy: float | None) -> None:
    """One legend below both panels: the variants, then what the band, star and line mean (each
    only where the figure draws one: a single seed has no band, a converged run no star)."""
    # every panel's variants, once each: segmentation only has no accuracy, classification only
    # no Dice
    named = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            named.setdefault(label, handle)
    handles, labels = list(named.values()), list(named)
    extra = []
    if any(ax.collections for ax in axes):  # fill_between's bands
        band = plt.Line2D([], [], color="grey", linewidth=6, alpha=0.3)
        extra.append((band, "lowest to highest seed"))
    if any(line.get_marker() == STAR["marker"] for ax in axes for line in ax.get_lines()):
        star = plt.Line2D([], [], color="grey", linestyle="none", **STAR)
        extra.append((star, "best epoch is the last: still improving"))
    if bayes_accuracy is not None:
        line = plt.Line2D([], [], color="black", linestyle="--", linewidth=1)
        extra.append((line, f"Bayes-optimal accuracy, validation labels ({bayes_accuracy:.3f})"))
    fig.legend(
        handles + [h for h, _ in extra],
        labels + [label for _, label in extra],
        loc="outside lower center",
        ncol=min(3, len(handles) + len(extra)),
        fontsize="small",
        frameon=False,
    )
