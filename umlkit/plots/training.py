"""Figures of one training run (notebook 03): its curves and what its classifier learned to weigh.

:func:`training_curves` draws the training loss every few steps and the validation metrics per epoch;
:func:`factor_weight_bars` compares the share of each generator factor in the classifier's log-odds
with the generator's own share.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from umlkit.plots.style import check_columns

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
    """Label ``ax``'s x axis "epochs trained", from 0 to ``epochs``, ticks at whole epochs only."""
    ax.set_xlabel("epochs trained")
    ax.set_xlim(0, epochs)
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
    ax.tick_params(axis="x", labelrotation=15)
    return fig
