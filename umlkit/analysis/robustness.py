"""Robustness and out-of-distribution data, notebook 07: how accuracy and uncertainty move off the
training distribution.

* corrupted images: :data:`ROBUSTNESS_CORRUPTIONS`, :func:`robustness_grid` (severities per
  profile), :func:`robustness_sweep` (every model on every corruption and severity; over several
  training seeds :func:`robustness_sweep_over_seeds`, at both budgets
  :func:`robustness_budgets`), :func:`robustness_summary`,
  :func:`describe_robustness` (which model is most robust, with its two-budget verdict)
* unseen images: :func:`ood_scores` (how well each uncertainty tells the out-of-distribution set,
  :func:`umlkit.analysis.experiments.prepare_ood`, from the test set)
* the takeaways: :func:`robustness_takeaways` (which class the models call at the strongest
  level, and whether their uncertainty noticed)
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from umlkit import metrics
from umlkit.analysis.experiments import evaluate_models
from umlkit.analysis.frames import require_columns
from umlkit.analysis.uncertainty_maps import pixel_uncertainty_maps
from umlkit.analysis.verdicts import (
    Reading,
    Verdict,
    half_budget_models,
    ranking_reading,
    settled_sentences,
)
from umlkit.evaluate import Evaluation

#: The corruptions of notebook 07 (contrast is in umlkit.data too, left out to keep the run short).
ROBUSTNESS_CORRUPTIONS = ("gaussian_noise", "salt_and_pepper", "gaussian_blur")


def robustness_grid(
    profile: str, corruptions: Sequence[str] = ROBUSTNESS_CORRUPTIONS
) -> dict[str, tuple[float, ...]]:
    """Severities per corruption: the full grids of ``umlkit.data.DEFAULT_SEVERITIES``, or for the
    ``smoke`` profile only clean, a middle and the strongest level (fast in CI)."""
    from umlkit.data import DEFAULT_SEVERITIES

    unknown = [c for c in corruptions if c not in DEFAULT_SEVERITIES]
    if unknown:
        raise ValueError(f"unknown corruption(s) {unknown}; choose from {list(DEFAULT_SEVERITIES)}")
    grid = {}
    for name in corruptions:
        levels = DEFAULT_SEVERITIES[name]
        grid[name] = (
            (levels[0], levels[len(levels) // 2], levels[-1])
            if profile == "smoke"
            else tuple(levels)
        )
    return grid


def robustness_sweep(
    models: Mapping[str, torch.nn.Module],
    dataset: Dataset,
    grid: Mapping[str, Sequence[float]],
    seed: int = 0,
    device: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Evaluate every model on corrupted copies of ``dataset``, one per corruption and severity.

    Each image gets its own corruption draw, seeded by ``seed`` and its id
    (:class:`umlkit.data.Corruption` as the dataset transform), so every model sees exactly the same
    corrupted images.

    Returns:
        One row per (corruption, severity, model) with ``accuracy``, ``dice``, ``ece``,
        ``predicted_positive`` (the share of images predicted as class 1: melanoma, glaucoma),
        ``uncertainty`` (mean image uncertainty, :func:`image_uncertainty`) and
        ``pixel_uncertainty`` (mean pixel uncertainty, :func:`pixel_uncertainty_maps`); NaN where
        the model lacks the output.
    """
    from umlkit.data import Corruption

    conditions = [(name, float(level)) for name, levels in grid.items() for level in levels]
    rows = []
    clean = None  # severity 0 is the identity for every corruption: evaluated once
    bar = tqdm(conditions, desc="corruptions", disable=not progress)
    for name, severity in bar:
        bar.set_postfix_str(f"{name} {severity:g}")
        corrupted = copy.copy(dataset)
        corrupted.transform = Corruption(name, severity, seed=seed)
        if severity == 0 and clean is not None:
            evaluations = clean
        else:
            evaluations = evaluate_models(
                models, corrupted, keep_maps=None, surface_metrics=False, device=device
            )
        if severity == 0:
            clean = evaluations
        for model_name, evaluation in evaluations.items():
            summary = evaluation.summary
            try:
                pixel_uncertainty = float(pixel_uncertainty_maps(evaluation)[0].mean())
            except ValueError:
                pixel_uncertainty = np.nan
            predicted = evaluation.table["pred"]
            rows.append(
                {
                    "corruption": name,
                    "severity": severity,
                    "model": model_name,
                    "accuracy": summary["accuracy"],
                    "dice": summary["dice"],
                    "ece": summary["ece"],
                    "predicted_positive": float((predicted == 1).mean())
                    if (predicted >= 0).all()
                    else np.nan,
                    "uncertainty": float(np.nanmean(evaluation.table["uncertainty"]))
                    if evaluation.table["uncertainty"].notna().any()
                    else np.nan,
                    "pixel_uncertainty": pixel_uncertainty,
                }
            )
    return pd.DataFrame(rows)


def robustness_sweep_over_seeds(
    models: Mapping[int, Mapping[str, torch.nn.Module]],
    dataset: Dataset,
    grid: Mapping[str, Sequence[float]],
    seed: int = 0,
    device: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """:func:`robustness_sweep` of each training seed's models, with a ``seed`` column.

    Args:
        models: training seed -> the models of that seed (``{name: model}``).
        seed: the seed of the corruption draws, the same for every training seed, so that the
            seeds' models see the same corrupted images and differ only in their training.
        dataset, grid, device, progress: as :func:`robustness_sweep`.
    """
    if not models:
        raise ValueError("models is empty: no training seed to sweep")
    return pd.concat(
        [
            robustness_sweep(by_name, dataset, grid, seed, device, progress).assign(seed=training)
            for training, by_name in models.items()
        ],
        ignore_index=True,
    )


def robustness_budgets(
    results: Mapping[tuple[str, int], Any],
    dataset: Dataset,
    grid: Mapping[str, Sequence[float]],
    seed: int = 0,
    device: str | None = None,
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`robustness_sweep_over_seeds` of every run's final and half-budget weights.

    Args:
        results: ``(model name, training seed) -> TrainResult``
            (:func:`umlkit.analysis.train_variants`).
        seed: the seed of the corruption draws.
        dataset, grid, device, progress: as :func:`robustness_sweep`.

    Returns:
        ``(final, half)`` sweeps with a ``seed`` column, the inputs of
        :func:`robustness_summary` and then :func:`describe_robustness`.
    """
    half = half_budget_models(results)
    by_seed: dict[str, dict[int, dict[str, torch.nn.Module]]] = {"final": {}, "half": {}}
    for (name, training), result in results.items():
        by_seed["final"].setdefault(training, {})[name] = result.model
        by_seed["half"].setdefault(training, {})[name] = half[name, training]
    final, at_half = (
        robustness_sweep_over_seeds(by_seed[budget], dataset, grid, seed, device, progress)
        for budget in ("final", "half")
    )
    return final, at_half


def robustness_summary(
    frame: pd.DataFrame, metric_columns: Sequence[str] = ("accuracy", "dice", "ece")
) -> pd.DataFrame:
    """Per corruption and model: each metric on clean images, at the strongest level, and averaged.

    ``mean`` is the metric averaged over the severity grid (the clean level included), a summary
    of the whole curve; ``drop`` = clean - strongest (for ECE a negative drop is a rise). A frame
    with a ``seed`` column (:func:`robustness_sweep_over_seeds`) is summarised per seed first and
    then averaged over the seeds, with the seed-to-seed standard deviations of ``mean`` and
    ``drop`` added as ``"mean std"`` and ``"drop std"`` (ddof=1; NaN for one seed).

    Returns:
        Index ``(corruption, model)``; columns ``(metric, "clean" | "strongest" | "drop" | "mean")``
        (and ``"mean std"``, ``"drop std"`` with seeds).
    """
    require_columns(frame, ("corruption", "severity", "model", *metric_columns), "robustness frame")
    seeded = "seed" in frame.columns
    keys = ["corruption", "model", *(["seed"] if seeded else [])]
    rows = {}
    for key, group in frame.groupby(keys, sort=False):
        by_level = group.groupby("severity")[list(metric_columns)].mean().sort_index()
        row = {}
        for metric in metric_columns:
            clean, strongest = by_level[metric].iloc[0], by_level[metric].iloc[-1]
            row[(metric, "clean")] = clean
            row[(metric, "strongest")] = strongest
            row[(metric, "drop")] = clean - strongest
            row[(metric, "mean")] = by_level[metric].mean()
        rows[key] = row
    summary = pd.DataFrame.from_dict(rows, orient="index")
    summary.index.names = keys
    if not seeded:
        return summary
    grouped = summary.groupby(level=["corruption", "model"], sort=False)
    averaged, spread = grouped.mean(), grouped.std(ddof=1)
    for metric in metric_columns:
        for stat in ("mean", "drop"):
            averaged[(metric, f"{stat} std")] = spread[(metric, stat)]
    return averaged[[c for m in metric_columns for c in averaged.columns if c[0] == m]]


def _rank(values: pd.Series, spreads: pd.Series | None, highest: bool) -> Reading:
    """The ranking reading of one column: who is first, by how much, against which spread."""
    ordered = values.sort_values(ascending=not highest, kind="stable")
    leader = ordered.index[0]
    gap = abs(ordered.iloc[0] - ordered.iloc[1]) if len(ordered) > 1 else np.nan
    if spreads is None or len(ordered) < 2:
        stds = [np.nan]
    else:
        stds = [spreads[leader], spreads[ordered.index[1]]]
    return (
        ranking_reading(leader, gap, stds)
        if np.isfinite(gap)
        else Reading(gap, np.nan, None, leader)
    )


def _ranking_claims(
    table: pd.DataFrame, corruption: str, metric: str
) -> tuple[list[str], list[Reading]]:
    """The two rankings of one metric (best over the grid, smallest drop), as sentences and
    readings; the old combined sentence is their join."""
    mean = table[(metric, "mean")].dropna()
    drop = table[(metric, "drop")].dropna()
    spread = {
        stat: table[(metric, f"{stat} std")] if (metric, f"{stat} std") in table else None
        for stat in ("mean", "drop")
    }
    best = _rank(mean, spread["mean"], highest=True)
    steady = _rank(drop, spread["drop"], highest=False)
    claims = [
        f"{corruption}, {metric}: best over the grid {best.leader} ({mean.max():.3f} on average)",
        f"smallest drop {steady.leader} ({drop.min():+.3f} from clean to the strongest level, "
        f"largest {drop.idxmax()} {drop.max():+.3f})",
    ]
    return claims, [best, steady]


def describe_robustness(
    summary: pd.DataFrame,
    metric_columns: Sequence[str] = ("accuracy", "dice"),
    uncertainty_columns: Sequence[str] = (),
    half: pd.DataFrame | None = None,
) -> list[str]:
    """Sentences, computed from :func:`robustness_summary`, naming the most robust model.

    For each corruption and (higher-is-better) metric: the model with the highest mean over the
    severity grid, and the one whose value drops least from clean to the strongest level. For each
    uncertainty column: how much it rises from clean to the strongest level per model (a model
    whose uncertainty does not rise does not notice the corruption).

    With ``half`` (:func:`robustness_summary` of the half-budget weights), each ranking is its
    own sentence with its two-budget verdict: a finding only where the same model is first at
    both budgets and its lead over the runner-up is beyond the seed-to-seed spread at both or at
    neither (the rule of :func:`umlkit.analysis.verdicts.ranking_beyond_spread`; a summary of
    one seed has no spread, so it settles nothing).

    Raises:
        ValueError: ``half`` summarises other corruptions or models.
    """
    if half is not None and list(half.index) != list(summary.index):
        raise ValueError("the half-budget summary has other (corruption, model) rows")
    sentences: list[str | Verdict] = []
    for corruption, table in summary.groupby(level="corruption", sort=False):
        table = table.droplevel("corruption")
        for metric in metric_columns:
            if table[(metric, "mean")].dropna().empty:
                continue
            claims, finals = _ranking_claims(table, corruption, metric)
            if half is None:
                sentences.append(f"{claims[0]}; {claims[1]}.")
                continue
            _, halves = _ranking_claims(half.loc[corruption], corruption, metric)
            claims[1] = f"{corruption}, {metric}: {claims[1]}"
            sentences.extend(
                Verdict(f"{claim}.", final, other)
                for claim, final, other in zip(claims, finals, halves, strict=True)
            )
        for column in uncertainty_columns:
            rise = (0.0 - table[(column, "drop")].dropna()).sort_values(ascending=False)
            if rise.empty:
                continue
            listed = ", ".join(f"{model} {value:+.3f}" for model, value in rise.items())
            sentences.append(f"{corruption}, {column} from clean to the strongest level: {listed}.")
    return settled_sentences(sentences) if half is not None else sentences


def ood_scores(
    in_distribution: Mapping[str, Evaluation], out_of_distribution: Mapping[str, Evaluation]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Uncertainty of in-distribution and OOD images per model, and the OOD-detection AUROC.

    Returns:
        ``(frame, scores)``: ``frame`` one row per image and model (``model``, ``dataset``
        "in-distribution"/"OOD", ``uncertainty``, ``pixel_uncertainty``); ``scores`` one row per
        model with ``auroc_image`` (image uncertainty) and ``auroc_pixel`` (mean pixel uncertainty
        of the image), :func:`umlkit.metrics.ood_auroc`, NaN where the model lacks the score.
    """
    frames, rows = [], []
    for name, evaluation_in in in_distribution.items():
        evaluation_out = out_of_distribution[name]
        parts = {}
        for label, evaluation in (("in-distribution", evaluation_in), ("OOD", evaluation_out)):
            try:
                maps, _ = pixel_uncertainty_maps(evaluation)
                pixel = maps.reshape(len(maps), -1).mean(axis=1)
            except ValueError:
                pixel = np.full(len(evaluation.table), np.nan)
            if len(pixel) != len(evaluation.table):
                raise ValueError(f"{name!r}: evaluate with keep_maps=None to score every image")
            parts[label] = pd.DataFrame(
                {
                    "model": name,
                    "dataset": label,
                    "uncertainty": evaluation.table["uncertainty"].to_numpy(float),
                    "pixel_uncertainty": pixel,
                }
            )
        frames.extend(parts.values())
        row = {"model": name}
        for column, key in (("uncertainty", "auroc_image"), ("pixel_uncertainty", "auroc_pixel")):
            inside, outside = parts["in-distribution"][column], parts["OOD"][column]
            defined = inside.notna().all() and outside.notna().all()
            row[key] = metrics.ood_auroc(inside, outside) if defined else np.nan
        rows.append(row)
    return pd.concat(frames, ignore_index=True), pd.DataFrame(rows).set_index("model")


def _at_level(sweep: pd.DataFrame, corruption: str, level: str) -> pd.DataFrame:
    """Each model's metrics at a corruption's clean (``"min"``) or strongest (``"max"``) severity,
    averaged over the training seeds."""
    rows = sweep[sweep["corruption"] == corruption]
    chosen = rows["severity"].min() if level == "min" else rows["severity"].max()
    return rows[rows["severity"] == chosen].groupby("model", sort=False).mean(numeric_only=True)


def _value_range(values: pd.Series, spec: str) -> str:
    """``"38%"`` or ``"97% to 100%"`` (``spec`` ``".0%"``): the range of a value over the
    models, one number where they all print the same."""
    low, high = f"{values.min():{spec}}", f"{values.max():{spec}}"
    return low if low == high else f"{low} to {high}"


def _share_range(values: pd.Series) -> str:
    """``"38%"`` or ``"97% to 100%"``: the range of a share over the models."""
    return _value_range(values, ".0%")


def _against_chance(accuracy: pd.Series, chance: float) -> str:
    """``"accuracy 0.385 against the chance line 0.615: below it for 4 of 4 models"``: the
    models' accuracies and how many fall below, on (within 0.005) or above the chance line."""
    counts = {
        "below": int((accuracy < chance - 0.005).sum()),
        "on": int(((accuracy - chance).abs() <= 0.005).sum()),
        "above": int((accuracy > chance + 0.005).sum()),
    }
    where = ", ".join(f"{side} it for {n}" for side, n in counts.items() if n)
    return (
        f"accuracy {_value_range(accuracy, '.3f')} against the chance line "
        f"{chance:.3f}: {where} of {len(accuracy)} models"
    )


def robustness_takeaways(
    sweep: pd.DataFrame,
    class_names: Sequence[str],
    positive_share: float,
    ood_table: pd.DataFrame | None = None,
    reference: str = "UML",
) -> list[str]:
    """The takeaways of notebook 07, as sentences computed from its sweep and OOD scores.

    For each corruption at its strongest level: which class the image heads now predict, their
    accuracy against the chance line (always predicting the commonest test label) and whether
    their image uncertainty rose or fell from the clean images; then the OOD detection scores.

    Args:
        sweep: :func:`robustness_sweep` (or over seeds) with ``predicted_positive``.
        class_names: the image classes (class 1 is the positive one).
        positive_share: the share of class 1 among the test labels.
        ood_table: the scores of :func:`ood_scores` (optional).
        reference: the model whose numbers the sentences quote.

    Raises:
        ValueError: a missing column, or the reference has no image head.
    """
    columns = ("corruption", "severity", "model", "accuracy", "predicted_positive", "uncertainty")
    require_columns(sweep, columns, "robustness sweep")
    negative, positive = class_names[0], class_names[1]
    chance = max(positive_share, 1 - positive_share)
    sentences = []
    for corruption in dict.fromkeys(sweep["corruption"]):
        clean = _at_level(sweep, corruption, "min").dropna(subset=["accuracy"])
        strongest = _at_level(sweep, corruption, "max").dropna(subset=["accuracy"])
        if reference not in strongest.index:
            raise ValueError(f"{reference!r} has no image head in the sweep")
        called = strongest["predicted_positive"]
        if called.min() >= 0.95:
            who = f"every model calls (almost) every image {positive}"
        elif called.max() <= 0.05:
            who = f"every model calls (almost) every image {negative}"
        else:
            who = f"the models call {_share_range(called)} of the images {positive}"
        fall = strongest["uncertainty"] < clean["uncertainty"]
        moved = "falls" if fall.sum() > len(fall) / 2 else "rises"
        level = sweep.loc[sweep["corruption"] == corruption, "severity"].max()
        sentences.append(
            f"{corruption} at its strongest ({level:g}): {who} ({positive_share:.0%} of the test "
            f"images are {positive}); {_against_chance(strongest['accuracy'], chance)}; the image "
            f"uncertainty {moved} for {int(fall.sum() if moved == 'falls' else (~fall).sum())} of "
            f"{len(fall)} ({reference} {clean.loc[reference, 'uncertainty']:.2f} on clean images, "
            f"{strongest.loc[reference, 'uncertainty']:.2f} at the strongest level)."
        )
    if ood_table is not None and reference in ood_table.index:
        auroc = ood_table["auroc_image"].dropna()
        best = auroc.idxmax()
        own = ood_table.loc[reference, "auroc_image"]
        warning = (
            f": below 0.5, {reference} is surer on images unlike any it was trained on than on "
            "its own test images"
            if own < 0.5
            else ""
        )
        sentences.append(
            f"Out-of-distribution images: the best image-uncertainty AUROC is {best}'s "
            f"({auroc[best]:.3f}); {reference}'s is {own:.3f}{warning}."
        )
    return sentences
