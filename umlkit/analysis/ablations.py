"""The ablation tables of notebook 04: which variant wins each metric, and by more than the noise?

Notebook 04 trains every variant of :data:`umlkit.analysis.experiments.VARIANTS` over several
seeds; these functions turn the evaluations into tables and sentences:

* :func:`runs_table`: one row per (variant, seed) with the summary metrics
  (:data:`ABLATION_METRICS`, display names; :data:`LOWER_IS_BETTER` names those where lower wins)
* :func:`summarise_runs`, :func:`format_summary`: mean and spread over seeds per variant
* :func:`compare_variants`, :func:`describe_comparison`: where the reference (UML) ranks on each
  metric, and whether its gap to the runner-up exceeds the seed-to-seed spread
* :func:`paired_differences`, :func:`describe_differences`, :func:`describe_options`: each
  variant against the reference, paired by seed (what an umlkit option adds to the official
  structure)

Every ``describe_*`` function takes ``half=``, the same table computed from the runs' half-budget
weights; each sentence then carries its two-budget verdict (:mod:`umlkit.analysis.verdicts`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from umlkit.analysis.frames import require_columns
from umlkit.analysis.verdicts import (
    Reading,
    Verdict,
    ranking_beyond_spread,
    ranking_reading,
    settled_sentences,
    summary_reading,
)
from umlkit.evaluate import Evaluation

#: Summary metrics of the ablation table: evaluation summary key -> display name.
ABLATION_METRICS = {
    "accuracy": "ACC",
    "f1": "F1",
    "auc": "AUC",
    "dice": "Dice",
    "hd95": "HD95",
    "ece": "ECE",
}
#: Display names of the metrics where lower is better.
LOWER_IS_BETTER = ("HD95", "ECE")


def runs_table(
    evaluations: Mapping[tuple[str, int], Evaluation],
    metric_names: Mapping[str, str] = ABLATION_METRICS,
) -> pd.DataFrame:
    """One row per (variant, seed) with the summary metrics under their display names.

    A metric the variant cannot have (Dice of the classifier, accuracy of the U-Net) is NaN.
    """
    rows = []
    for (variant, seed), evaluation in evaluations.items():
        row = {"variant": variant, "seed": seed}
        row.update(
            {name: evaluation.summary.get(key, np.nan) for key, name in metric_names.items()}
        )
        rows.append(row)
    return pd.DataFrame(rows)


def summarise_runs(
    runs: pd.DataFrame, metric_columns: Sequence[str], by: str = "variant"
) -> pd.DataFrame:
    """Mean and standard deviation over seeds per variant.

    Returns:
        Index: the variants (in order of appearance); columns: ``(metric, "mean")``,
        ``(metric, "std")`` (sample std, ddof = 1; NaN for a single seed) and ``("seeds", "n")``.
    """
    require_columns(runs, (by, *metric_columns), "runs")
    order = list(dict.fromkeys(runs[by]))
    grouped = runs.groupby(by, sort=False)[list(metric_columns)]
    summary = pd.concat({"mean": grouped.mean(), "std": grouped.std(ddof=1)}, axis=1)
    summary = summary.swaplevel(axis=1)[[(m, s) for m in metric_columns for s in ("mean", "std")]]
    summary[("seeds", "n")] = runs.groupby(by, sort=False).size()
    return summary.loc[order]


def format_summary(summary: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """The summary of :func:`summarise_runs` as ``"mean ± std"`` strings ("—" where undefined)."""
    metric_columns = [m for m in summary.columns.get_level_values(0).unique() if m != "seeds"]
    table = pd.DataFrame(index=summary.index)
    for metric in metric_columns:
        mean, std = summary[(metric, "mean")], summary[(metric, "std")]
        table[metric] = [
            "—"
            if np.isnan(m)
            else (f"{m:.{digits}f}" if np.isnan(s) else f"{m:.{digits}f} ± {s:.{digits}f}")
            for m, s in zip(mean, std, strict=True)
        ]
    table["seeds"] = summary[("seeds", "n")]
    return table


def compare_variants(
    runs: pd.DataFrame,
    metric_columns: Sequence[str],
    reference: str = "UML",
    lower_is_better: Sequence[str] = LOWER_IS_BETTER,
    by: str = "variant",
) -> pd.DataFrame:
    """Per metric: which variant is best, where the reference ranks, and whether the gap is noise.

    The gap between the reference and the best other variant counts as *within seed noise* when
    it is smaller than the larger of their two standard deviations over seeds (undecidable with a
    single seed, then reported as NaN).

    Returns:
        One row per metric: ``metric``, ``direction`` ("higher"/"lower" is better), ``best``
        (variant), ``best_mean``, ``reference_mean``, ``reference_rank`` (1 = best, among variants
        that have the metric), ``n_variants``, ``runner_up`` (the best variant other than the
        reference), ``gap`` (reference minus runner-up, signed so that > 0 means the reference is
        better), ``spread`` (the larger of the two standard deviations) and ``within_noise``
        (bool or NaN; :func:`umlkit.analysis.verdicts.ranking_beyond_spread` is its negation).

    Raises:
        ValueError: the reference is not among the variants, or a column is missing.
    """
    require_columns(runs, (by, *metric_columns), "runs")
    if reference not in set(runs[by]):
        raise ValueError(
            f"reference variant {reference!r} is not in the runs: {sorted(set(runs[by]))}"
        )
    summary = summarise_runs(runs, metric_columns, by)
    rows = []
    for metric in metric_columns:
        mean = summary[(metric, "mean")].dropna()
        std = summary[(metric, "std")]
        if reference not in mean.index:
            continue
        lower = metric in lower_is_better
        ordered = mean.sort_values(ascending=lower, kind="stable")
        others = ordered.drop(reference)
        runner_up = others.index[0] if len(others) else None
        gap = noise = within_noise = np.nan
        if runner_up is not None:
            gap = (
                (mean[runner_up] - mean[reference])
                if lower
                else (mean[reference] - mean[runner_up])
            )
            spreads = [std[reference], std[runner_up]]
            noise = np.nan if np.isnan(spreads).all() else np.nanmax(spreads)
            beyond = ranking_beyond_spread(gap, spreads)
            within_noise = np.nan if beyond is None else not beyond
        rows.append(
            {
                "metric": metric,
                "direction": "lower" if lower else "higher",
                "best": ordered.index[0],
                "best_mean": float(ordered.iloc[0]),
                "reference_mean": float(mean[reference]),
                # ties share a rank: 1 + the number of variants strictly better
                "reference_rank": 1
                + int(((mean < mean[reference]) if lower else (mean > mean[reference])).sum()),
                "n_variants": int(len(ordered)),
                "runner_up": runner_up,
                "gap": float(gap),
                "spread": float(noise),
                "within_noise": within_noise,
            }
        )
    return pd.DataFrame(rows)


def paired_differences(
    runs: pd.DataFrame,
    metric_columns: Sequence[str],
    reference: str = "UML",
    lower_is_better: Sequence[str] = LOWER_IS_BETTER,
) -> pd.DataFrame:
    """What each variant loses against the reference, paired by seed.

    For every seed s the difference d_s = reference_s - variant_s is taken (sign flipped for
    lower-is-better metrics, so d > 0 always means "the reference is better"); pairing by seed
    removes the part of the seed-to-seed spread that both runs share (the same data order).

    Returns:
        Index: the variants other than the reference; columns ``(metric, "mean")``,
        ``(metric, "std")`` of d over the seeds both have (NaN where a variant lacks the metric).
    """
    require_columns(runs, ("variant", "seed", *metric_columns), "runs")
    if reference not in set(runs["variant"]):
        raise ValueError(f"reference variant {reference!r} is not in the runs")
    by_seed = runs.set_index(["variant", "seed"])
    rows = {}
    for variant in dict.fromkeys(runs["variant"]):
        if variant == reference:
            continue
        row = {}
        for metric in metric_columns:
            sign = -1.0 if metric in lower_is_better else 1.0
            difference = sign * (by_seed.loc[reference, metric] - by_seed.loc[variant, metric])
            row[(metric, "mean")] = difference.mean()
            row[(metric, "std")] = difference.std(ddof=1)
        rows[variant] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def _pair_readings(
    differences: pd.DataFrame, half: pd.DataFrame | None, variant: str, metric: str, sign: float
) -> tuple[Reading, Reading | None] | None:
    """The readings of one (variant, metric) of :func:`paired_differences` at both budgets
    (``sign`` = -1 takes the variant's side); None where the variant lacks the metric."""
    mean = differences.loc[variant, (metric, "mean")]
    if pd.isna(mean):
        return None
    final = summary_reading(sign * mean, differences.loc[variant, (metric, "std")])
    if half is None:
        return final, None
    return final, summary_reading(
        sign * half.loc[variant, (metric, "mean")], half.loc[variant, (metric, "std")]
    )


def _check_half(final: pd.DataFrame, half: pd.DataFrame | None, what: str) -> None:
    if half is not None and (
        list(half.index) != list(final.index) or list(half.columns) != list(final.columns)
    ):
        raise ValueError(f"the half-budget {what} has other rows or columns than the final one")


def _option_effect(reading: Reading) -> str:
    """How an option's reading (> 0: the option is better) reads in a sentence."""
    if reading.beyond is None:
        return "changes"
    if not reading.beyond:
        return "is within the spread on"
    return "helps on" if reading.sign > 0 else "hurts"


def describe_options(
    differences: pd.DataFrame, options: Sequence[str], half: pd.DataFrame | None = None
) -> list[str]:
    """One sentence per umlkit option: where it beats the official structure, paired by seed.

    Reads :func:`paired_differences` (``d = official - option``, positive when the official
    structure is better). An option *helps* on a metric when the mean of ``-d`` is positive and
    larger than the standard deviation of ``d`` over the seeds, *hurts* when ``d`` is, and is
    otherwise within the noise. Nothing in the sentences is written by hand.

    Args:
        differences: :func:`paired_differences` of the final weights.
        options: the variants to describe (those not in ``differences`` are skipped).
        half: the same table from the half-budget weights; then every (option, metric) gets its
            own sentence with its two-budget verdict (:mod:`umlkit.analysis.verdicts`).
    """
    _check_half(differences, half, "differences")
    metrics = list(dict.fromkeys(metric for metric, _ in differences.columns))
    sentences: list[str | Verdict] = []
    for option in (o for o in options if o in differences.index):
        found = {
            metric: readings
            for metric in metrics
            if (readings := _pair_readings(differences, half, option, metric, -1.0)) is not None
        }
        if half is not None:
            for metric, (final, at_half) in found.items():
                claim = (
                    f"{option} against the official UML {_option_effect(final)} {metric} "
                    f"({final.difference:+.3f})."
                )
                sentences.append(Verdict(claim, final, at_half))
            continue
        helps = [
            f"{m} ({r.difference:+.3f})" for m, (r, _) in found.items() if r.beyond and r.sign > 0
        ]
        hurts = [
            f"{m} ({r.difference:+.3f})" for m, (r, _) in found.items() if r.beyond and r.sign < 0
        ]
        verdict = (
            f"helps on {', '.join(helps)}" if helps else "helps on no metric beyond the spread"
        )
        harm = f"; hurts {', '.join(hurts)}" if hurts else ""
        sentences.append(f"{option} against the official UML: {verdict}{harm}.")
    return settled_sentences(sentences) if half is not None else sentences


def describe_differences(
    differences: pd.DataFrame, reference: str = "UML", half: pd.DataFrame | None = None
) -> list[str]:
    """One sentence per variant of :func:`paired_differences`: the metrics on which the reference
    is better or worse than the variant beyond the seed-to-seed spread (``|mean d| > std d``).

    With ``half`` (the same table from the half-budget weights), every metric that is beyond the
    spread at either budget gets its own sentence with its two-budget verdict, and one line per
    variant lists the metrics within the spread at both budgets.
    """
    _check_half(differences, half, "differences")
    metrics = list(dict.fromkeys(metric for metric, _ in differences.columns))
    sentences: list[str | Verdict] = []
    for variant in differences.index:
        found = {
            metric: readings
            for metric in metrics
            if (readings := _pair_readings(differences, half, variant, metric, 1.0)) is not None
        }
        unjudged = [
            m for m, pair in found.items() if any(r is not None and r.beyond is None for r in pair)
        ]
        if unjudged:
            listed = ", ".join(f"{m} {found[m][0].difference:+.3f}" for m in unjudged)
            sentences.append(
                f"{variant}: one seed, no spread to judge {reference} - {variant} by ({listed})."
            )
        effects = {
            metric: f"{'better' if final.sign > 0 else 'worse'} on {metric} "
            f"by {abs(final.difference):.3f}"
            for metric, (final, _) in found.items()
            if metric not in unjudged
        }
        if half is None:
            beyond = [
                effects[m] for m, (final, _) in found.items() if m in effects and final.beyond
            ]
            if beyond or not unjudged:
                sentences.append(
                    f"{variant}: {reference} is {', '.join(beyond)}."
                    if beyond
                    else f"{variant}: no metric differs from {reference} beyond the spread."
                )
            continue
        level = []
        for metric in effects:
            final, at_half = found[metric]
            if final.beyond or at_half.beyond:
                claim = f"{variant}: {reference} is {effects[metric]}."
                sentences.append(Verdict(claim, final, at_half))
            else:
                level.append(metric)
        if level:
            sentences.append(f"{variant}: within the spread at both budgets on {', '.join(level)}.")
    return settled_sentences(sentences) if half is not None else sentences


def _ranking_sentence(row: Any, reference: str, judged: bool = True) -> str:
    """The sentence of one row of :func:`compare_variants` (``judged``: with the gap's verdict;
    a two-budget verdict states it with both budgets' numbers instead)."""
    if row.runner_up is None:
        return f"{row.metric}: only {reference} has this metric."
    noise = {
        True: " (the gap is within the seed-to-seed spread)",
        False: " (larger than the seed-to-seed spread)",
    }.get(row.within_noise, " (one seed: no spread to judge the gap by)")
    noise = noise if judged else ""
    if row.reference_rank == 1 and row.gap == 0:
        return (
            f"{row.metric} ({row.direction} is better): {reference} ties for best with "
            f"{row.runner_up} at {row.reference_mean:.3f}."
        )
    if row.reference_rank == 1:
        return (
            f"{row.metric} ({row.direction} is better): {reference} is best with "
            f"{row.reference_mean:.3f}, ahead of {row.runner_up} by {row.gap:.3f}{noise}."
        )
    return (
        f"{row.metric} ({row.direction} is better): {reference} does NOT win — "
        f"{row.best} is best with {row.best_mean:.3f}; {reference} has "
        f"{row.reference_mean:.3f}, rank {row.reference_rank} of {row.n_variants}{noise}."
    )


def _best_count(comparison: pd.DataFrame) -> tuple[int, int]:
    """(metrics where the reference is best outright, of them by more than the spread)."""
    outright = comparison["gap"] > 0
    return int(outright.sum()), int((outright & comparison["within_noise"].eq(False)).sum())


def describe_comparison(
    comparison: pd.DataFrame, reference: str = "UML", half: pd.DataFrame | None = None
) -> list[str]:
    """Sentences that say, from the numbers of :func:`compare_variants`, where the reference wins.

    One sentence per metric, then a closing count; nothing in them is written by hand.

    Args:
        comparison: :func:`compare_variants` of the final weights.
        reference: the variant the sentences are about.
        half: :func:`compare_variants` of the half-budget weights of the same runs. Then each
            metric's sentence carries its two-budget verdict: a finding only where the same
            variant is first at both budgets and the reference's gap has the same sign and the
            same beyond-the-spread verdict (:mod:`umlkit.analysis.verdicts`).

    Raises:
        ValueError: ``half`` compares other metrics.
    """
    if half is not None and list(half["metric"]) != list(comparison["metric"]):
        raise ValueError("the half-budget comparison has other metrics than the final one")
    half_rows = {} if half is None else {row.metric: row for row in half.itertuples()}
    sentences: list[str | Verdict] = []
    for row in comparison.itertuples():
        if half is None or row.runner_up is None or half_rows[row.metric].runner_up is None:
            sentences.append(_ranking_sentence(row, reference))
            continue
        sentence = _ranking_sentence(row, reference, judged=False)
        other = half_rows[row.metric]
        sentences.append(
            Verdict(
                sentence,
                ranking_reading(row.best, row.gap, [row.spread]),
                ranking_reading(other.best, other.gap, [other.spread]),
            )
        )
    best, clear = _best_count(comparison)
    closing = (
        f"{reference} is best on {best} of {len(comparison)} metrics (ties not "
        f"counted); on {clear} of them by more than the seed-to-seed spread."
    )
    if half is None:
        return [*sentences, closing]
    best, clear = _best_count(half)
    closing = closing.rstrip(".") + f" (at half the training: {best} and {clear})."
    return [*settled_sentences(sentences), closing]
