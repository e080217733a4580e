"""Figures of where models fail (notebook 08): risk-coverage and failures against the factors.

:func:`risk_coverage` shows the error rate left when the most uncertain cases are referred;
:func:`factor_effects` and :func:`rate_by_flag` show which generator factors and nuisances go with
errors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from umlkit.plots.style import check_columns, model_styles, readable


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
    fig, ax = plt.subplots(figsize=(6, 3.5 + 0.25 * len(curves)), layout="constrained")
    # a model's colour as in every figure; its second curve (UML's max p beside its u) dashed
    for (colour, style), (label, (coverage, risk)) in zip(
        model_styles(list(curves)), curves.items(), strict=True
    ):
        ax.plot(np.asarray(coverage), np.asarray(risk), color=colour, linestyle=style, label=label)
    ax.set_xlabel("coverage (share of cases kept, most certain first)")
    ax.set_ylabel("risk (error rate of kept cases)")
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    # below the axes: the labels carry the AURC and are long, and inside they covered the curves
    fig.legend(loc="outside lower center", fontsize="small")
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
    check_columns(effects, (factor, estimate), "effects table")
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
    ax.set_yticks(ax.get_yticks(), [readable(label.get_text()) for label in ax.get_yticklabels()])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("")
    return fig


def rate_by_flag(
    frame: pd.DataFrame,
    flags: Sequence[str],
    *,
    y: str = "error",
    hue: str | None = None,
    ylabel: str | None = None,
) -> Figure:
    """The mean of ``y`` (an error rate) with and without each binary nuisance flag.

    The error bars are seaborn's 95 % bootstrap intervals, drawn with a fixed seed so that a
    rerun draws the same figure.

    Args:
        frame: one row per image with the column ``y`` (0/1 or a rate) and the flag columns.
        flags: the binary flag columns (e.g. ``hair``, ``low_contrast``), one pair of bars each.
        y: the outcome column.
        hue: optional grouping column (e.g. the model); default: flag absent / present.
        ylabel: what the mean of ``y`` is, e.g. ``"share with a wrong label"`` (default:
            ``"mean <y>"``); the axis adds that the bars are 95 % intervals.

    Returns:
        The figure with one axes.
    """
    check_columns(frame, (y, *flags), "flag frame")
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
    ax.set_xticks(ax.get_xticks(), [readable(flag) for flag in flags])
    ax.set_ylabel(f"{ylabel or f'mean {y}'} (95 % interval)")
    # beside the bars, untitled: inside, it sat on an error bar's cap, titled "present"
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), title=None, frameon=False)
    return fig
