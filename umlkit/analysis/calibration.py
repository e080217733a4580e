"""Calibration, notebook 05: do the predicted probabilities match how often the model is right?

* image level: :func:`reliability_panels` (reliability diagrams with their ECE),
  :func:`calibration_table` (every calibration metric of :mod:`umlkit.metrics` side by side),
  :func:`calibration_runs`, :func:`calibration_budgets` and :func:`describe_calibration` (which
  classifier ranks first, over seeds, at the final and the half-budget weights)
* pixel level: :func:`pixel_calibration` (streamed over a dataset, from the final segmentation or
  UML's mutual decoder, :data:`PIXEL_SOURCES`), :func:`pixel_calibration_study` (several models,
  with and without the background pixels)
* against the truth: :func:`truth_calibration` (synthetic data knows each image's true
  probability, so calibration can be measured without the noise of the drawn labels),
  :func:`truth_slopes`
* the takeaways: :func:`confidence_direction` (over- or under-confident: the sign ECE hides) and
  :func:`reliability_takeaways` (the notebook's closing sentences, computed from its tables)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from umlkit import metrics
from umlkit.analysis.ablations import compare_variants, describe_comparison
from umlkit.analysis.experiments import evaluate_models
from umlkit.analysis.frames import require_columns
from umlkit.analysis.verdicts import half_budget_models
from umlkit.evaluate import Evaluation
from umlkit.evidential import dirichlet_from_alpha


def reliability_panels(
    probs: Mapping[str, np.ndarray],
    labels: np.ndarray,
    n_bins: int = 15,
    strategy: str = "uniform",
    mode: str = "top_label",
) -> dict[str, pd.DataFrame]:
    """Reliability tables of several models, keyed by a title that carries their ECE.

    Args:
        probs: model name -> ``(N, K)`` class probabilities (alpha/S or softmax).
        labels: ``(N,)`` true classes.
        n_bins, strategy, mode: as :func:`umlkit.metrics.reliability_bins`.

    Returns:
        ``"<model> (ECE 0.034)" -> reliability table``, the input of
        :func:`umlkit.plots.reliability_diagrams`.
    """
    panels = {}
    for name, p in probs.items():
        ece = metrics.expected_calibration_error(p, labels, n_bins, strategy=strategy, mode=mode)
        panels[f"{name} (ECE {ece:.3f})"] = metrics.reliability_bins(
            p, labels, n_bins, strategy, mode
        )
    return panels


def calibration_table(
    probs: Mapping[str, np.ndarray], labels: np.ndarray, n_bins: int = 15
) -> pd.DataFrame:
    """The calibration metrics of :mod:`umlkit.metrics` side by side, one row per model.

    Columns: ``accuracy``, ``ECE`` (top-label, equal-width bins), ``MCE``, ``aECE`` (equal-mass
    bins), ``average calibration error`` (unweighted over bins), ``ECE positive class`` (binary
    only), ``Brier`` (summed over classes) and ``NLL``.
    """
    rows = {}
    for name, p in probs.items():
        p = np.asarray(p)
        row = {
            "accuracy": metrics.accuracy(p, labels),
            "ECE": metrics.expected_calibration_error(p, labels, n_bins),
            "MCE": metrics.maximum_calibration_error(p, labels, n_bins),
            "aECE": metrics.aece(p, labels, n_bins),
            "average calibration error": metrics.average_calibration_error(p, labels, n_bins),
        }
        if p.shape[1] == 2:
            row["ECE positive class"] = metrics.expected_calibration_error(
                p, labels, n_bins, mode="positive_class"
            )
        row["Brier"] = metrics.brier_score(p, labels)
        row["NLL"] = metrics.negative_log_likelihood(p, labels)
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")


#: The image-level calibration metrics notebook 05 ranks the classifiers by (lower is better).
RANKED_CALIBRATION = ("ECE", "Brier", "NLL")


def calibration_runs(
    probs: Mapping[tuple[str, int], np.ndarray], labels: np.ndarray, n_bins: int = 15
) -> pd.DataFrame:
    """:func:`calibration_table` of several seeds: one row per ``(variant, seed)`` key of
    ``probs``, with ``variant`` and ``seed`` columns (the runs table of
    :func:`umlkit.analysis.compare_variants`)."""
    if not probs:
        raise ValueError("probs is empty: no classifier to rank")
    rows = [
        calibration_table({variant: p}, labels, n_bins).assign(variant=variant, seed=seed)
        for (variant, seed), p in probs.items()
    ]
    table = pd.concat(rows, ignore_index=True)
    return table[["variant", "seed", *[c for c in table.columns if c not in ("variant", "seed")]]]


def calibration_budgets(
    results: Mapping[tuple[str, int], Any],
    dataset: Dataset,
    n_bins: int = 15,
    device: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`calibration_runs` of every run's final and half-budget weights.

    Args:
        results: ``(variant, seed) -> TrainResult`` (:func:`umlkit.analysis.train_variants`);
            runs without an image head (the U-Net) are left out.
        dataset: the test split (its ``labels`` are the outcomes).
        n_bins, device: as :func:`calibration_table`, :func:`umlkit.analysis.evaluate_models`.

    Returns:
        ``(final, half)``, the two inputs of :func:`describe_calibration`.
    """

    def runs(models: Mapping[tuple[str, int], torch.nn.Module]) -> pd.DataFrame:
        evaluations = evaluate_models(
            models, dataset, keep_maps=0, surface_metrics=False, device=device
        )
        probs = {k: e.class_prob for k, e in evaluations.items() if e.class_prob is not None}
        return calibration_runs(probs, np.asarray(dataset.labels), n_bins)

    final = runs({key: result.model for key, result in results.items()})
    return final, runs(half_budget_models(results))


def describe_calibration(
    runs: pd.DataFrame,
    reference: str = "UML",
    metrics: Sequence[str] = RANKED_CALIBRATION,
    half: pd.DataFrame | None = None,
) -> list[str]:
    """Where the reference ranks on each calibration metric, and by how much, over seeds.

    The ranking of :func:`umlkit.analysis.compare_variants` (every metric lower-is-better): the
    reference's gap to its nearest rival counts only where it is at least the larger of their
    seed-to-seed standard deviations. With ``half`` (the same table from the half-budget
    weights), each sentence carries its two-budget verdict (:mod:`umlkit.analysis.verdicts`).

    Args:
        runs: :func:`calibration_runs` of the final weights.
        reference: the classifier the sentences are about.
        metrics: columns of ``runs`` to rank.
        half: :func:`calibration_runs` of the half-budget weights of the same runs.

    Raises:
        ValueError: a missing column, the reference missing, or other seeds at half the budget.
    """
    if half is not None and sorted(zip(half.variant, half.seed, strict=True)) != sorted(
        zip(runs.variant, runs.seed, strict=True)
    ):
        raise ValueError("the half-budget runs are other (variant, seed) pairs than the final ones")

    def ranking(table: pd.DataFrame) -> pd.DataFrame:
        return compare_variants(table, metrics, reference, lower_is_better=metrics)

    return describe_comparison(
        ranking(runs), reference, half=None if half is None else ranking(half)
    )


#: Pixel probabilities :func:`pixel_calibration` can read from a model's output.
PIXEL_SOURCES = ("segmentation", "mutual")


def pixel_calibration(
    model: torch.nn.Module,
    dataset: Dataset,
    source: str = "segmentation",
    n_bins: int = 15,
    include_background: bool = True,
    per_class: bool = False,
    batch_size: int = 32,
    device: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Pixel calibration streamed over a dataset (memory independent of the pixel count).

    Args:
        model: a model with a segmentation output.
        dataset: items with ``image`` and ``mask``.
        source: ``"segmentation"``: the final segmentation's softmax (what the prediction is made
            of); ``"mutual"``: the mutual decoder's Dirichlet expectation alpha^m / S (UML only).
        n_bins: equal-width bins.
        include_background: see :class:`umlkit.metrics.PixelCalibration`.
        per_class: also one-vs-rest reliability of every foreground class c: confidence p_c,
            outcome "the pixel is c" (the positive-class diagram of that class).
        batch_size, device: of the forward passes.

    Returns:
        ``{"pooled": result}`` plus ``{"class <c>": result}`` per foreground class when
        ``per_class``; each result is :meth:`umlkit.metrics.PixelCalibration.compute`'s dict
        (``ece_pooled``, ``ece_per_image_mean``, ``bins``, ...).

    Raises:
        ValueError: an unknown source, or a model without that output.
    """
    from umlkit.runtime import pick_device

    if source not in PIXEL_SOURCES:
        raise ValueError(f"source must be one of {PIXEL_SOURCES}, got {source!r}")
    device = pick_device(device)
    pooled = metrics.PixelCalibration(n_bins, include_background=include_background)
    classwise: dict[int, metrics.PixelCalibration] = {}
    was_training = model.training
    model.to(device).eval()
    try:
        with torch.no_grad():
            for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
                output = model(batch["image"].to(device))
                probs = _pixel_probs(output, source)
                mask = batch["mask"].to(device)
                pooled.update(probs, mask)
                if per_class:
                    for c in range(1, probs.shape[1]):
                        one_vs_rest = torch.stack([1 - probs[:, c], probs[:, c]], dim=1)
                        calibration = classwise.setdefault(
                            c, metrics.PixelCalibration(n_bins, mode="positive_class")
                        )
                        calibration.update(one_vs_rest.clamp(0, 1), (mask == c).long())
    finally:
        model.train(was_training)
    results = {"pooled": pooled.compute()}
    results.update({f"class {c}": calibration.compute() for c, calibration in classwise.items()})
    return results


def pixel_calibration_study(
    sources: Mapping[str, tuple[torch.nn.Module, str]],
    dataset: Dataset,
    n_bins: int = 15,
    device: str | None = None,
) -> tuple[dict[str, dict[str, dict[str, Any]]], pd.DataFrame]:
    """:func:`pixel_calibration` of several models, with and without the background pixels.

    Args:
        sources: label -> ``(model, source)`` with source ``"segmentation"`` or ``"mutual"``.
        dataset, n_bins, device: as :func:`pixel_calibration`.

    Returns:
        ``(results, table)``: ``results[label]`` is :func:`pixel_calibration`'s dict (all pixels,
        with the per-class one-vs-rest results); ``table`` one row per label with the pooled and
        per-image-mean ECE of all pixels and of the foreground union (``include_background=False``).
    """
    results, rows = {}, {}
    for label, (model, source) in sources.items():
        everything = pixel_calibration(
            model, dataset, source, n_bins, per_class=True, device=device
        )
        foreground = pixel_calibration(
            model, dataset, source, n_bins, include_background=False, device=device
        )["pooled"]
        results[label] = everything
        rows[label] = {
            "ECE pooled": everything["pooled"]["ece_pooled"],
            "ECE per-image mean": everything["pooled"]["ece_per_image_mean"],
            "ECE pooled, foreground": foreground["ece_pooled"],
            "ECE per-image mean, foreground": foreground["ece_per_image_mean"],
            "pixels": everything["pooled"]["n_pixels"],
            "foreground pixels": foreground["n_pixels"],
        }
    return results, pd.DataFrame.from_dict(rows, orient="index")


def _pixel_probs(output: Any, source: str) -> torch.Tensor:
    if source == "segmentation":
        if output.seg_prob is None:
            raise ValueError("the model has no segmentation output (seg_prob is None)")
        return output.seg_prob.float()
    if output.pixel_alpha is None:
        raise ValueError("source='mutual' needs a UML model (pixel_alpha is None)")
    return dirichlet_from_alpha(output.pixel_alpha.float()).prob


def truth_calibration(
    evaluations: Mapping[str, Evaluation], n_bins: int = 15
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predicted probabilities against the generator's true probabilities ``p_true``.

    On synthetic data the Bayes probability of every image is known, so a model's calibration can
    be measured against the truth instead of against the noisy labels:

    * ``mae_to_truth`` = mean ``|p - p_true|`` (0 for the Bayes-optimal model);
    * ``ece_to_truth`` = ``sum_b (n_b / N) |mean_b p - mean_b p_true|`` over equal-width bins of p
      (the ECE with the drawn labels replaced by their expectation, so the binning noise of the
      labels drops out);
    * ``brier`` of the model and ``bayes_brier`` of p_true (both positive-class, as
      :func:`umlkit.data.bayes_optimal_scores`), ``excess_brier`` = their difference.

    Args:
        evaluations: model -> evaluation whose table has ``prob`` (positive-class probability),
            ``label`` and ``p_true`` (synthetic metadata) columns.
        n_bins: equal-width bins of ``ece_to_truth`` (15, as every ECE of :mod:`umlkit.metrics`).

    Returns:
        ``(frame, scores)``: one row per image and model (``model, id, predicted, p_true,
        label``) and one row of scores per model.

    Raises:
        ValueError: no ``p_true`` column (real data) or NaN in it.
    """
    frames, rows = [], []
    for name, evaluation in evaluations.items():
        table = evaluation.table
        require_columns(table, ("prob", "label", "p_true"), f"evaluation table of {name!r}")
        if table["p_true"].isna().any() or table["prob"].isna().any():
            raise ValueError(f"{name!r}: p_true or prob has NaN (no class head, or not synthetic)")
        predicted = table["prob"].to_numpy(float)
        truth = table["p_true"].to_numpy(float)
        label = table["label"].to_numpy(int)
        frames.append(
            pd.DataFrame(
                {
                    "model": name,
                    "id": table["id"],
                    "predicted": predicted,
                    "p_true": truth,
                    "label": label,
                }
            )
        )
        edges = np.linspace(0, 1, n_bins + 1)
        index = np.clip(np.searchsorted(edges, predicted, side="right") - 1, 0, n_bins - 1)
        gap = sum(abs(predicted[index == b].sum() - truth[index == b].sum()) for b in range(n_bins))
        brier = float(((predicted - label) ** 2).mean())
        bayes_brier = float(((truth - label) ** 2).mean())
        rows.append(
            {
                "model": name,
                "mae_to_truth": float(np.abs(predicted - truth).mean()),
                "ece_to_truth": float(gap / len(predicted)),
                "brier": brier,
                "bayes_brier": bayes_brier,
                "excess_brier": brier - bayes_brier,
            }
        )
    return pd.concat(frames, ignore_index=True), pd.DataFrame(rows).set_index("model")


def confidence_direction(
    probs: Mapping[str, np.ndarray], labels: np.ndarray, n_bins: int = 15
) -> pd.DataFrame:
    r"""Is each classifier over- or under-confident? The sign that ECE's absolute value hides.

    ECE adds up :math:`|\mathrm{acc}_b - \mathrm{conf}_b|`; without the absolute value the same
    sum is :math:`\sum_b \frac{n_b}{N}(\mathrm{acc}_b - \mathrm{conf}_b)` = accuracy minus mean
    confidence. A model is called **under-confident** when that difference is positive *and* more
    than half of the images sit in bins whose accuracy exceeds their confidence (the bars of the
    reliability diagram stand above the diagonal), **over-confident** in the mirror case, and
    **mixed** otherwise.

    Args:
        probs: model -> ``(N, K)`` class probabilities.
        labels: ``(N,)`` true classes.
        n_bins: equal-width top-label bins, as the reliability diagrams.

    Returns:
        One row per model: ``accuracy``, ``mean_confidence``, ``gap`` (= accuracy - mean
        confidence), ``share_under`` and ``share_over`` (the fraction of images in bins whose
        accuracy is above / below their confidence) and ``direction``.
    """
    rows = {}
    for name, p in probs.items():
        bins = metrics.reliability_bins(p, labels, n_bins)
        filled = bins[bins["count"] > 0]
        weight = filled["count"] / filled["count"].sum()
        confidence = float((weight * filled["confidence"]).sum())
        accuracy = float((weight * filled["accuracy"]).sum())
        share_under = float(weight[filled["gap"] > 0].sum())
        share_over = float(weight[filled["gap"] < 0].sum())
        gap = accuracy - confidence
        if gap > 0 and share_under > 0.5:
            direction = "under-confident"
        elif gap < 0 and share_over > 0.5:
            direction = "over-confident"
        else:
            direction = "mixed"
        rows[name] = {
            "accuracy": accuracy,
            "mean_confidence": confidence,
            "gap": gap,
            "share_under": share_under,
            "share_over": share_over,
            "direction": direction,
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def truth_slopes(truth_frame: pd.DataFrame) -> pd.Series:
    """Least-squares slope of each model's predicted probability on the true one (``p_true``).

    1 follows the truth; below 1 the predictions are pulled toward the middle (too cautious at
    both ends), above 1 pushed apart. ``truth_frame`` is the first table of
    :func:`truth_calibration`.
    """
    require_columns(truth_frame, ("model", "predicted", "p_true"), "truth frame")
    slopes = {}
    for name, group in truth_frame.groupby("model", sort=False):
        truth = group["p_true"].to_numpy(float)
        predicted = group["predicted"].to_numpy(float)
        spread = float(np.var(truth))
        slopes[name] = (
            float(np.mean((truth - truth.mean()) * (predicted - predicted.mean())) / spread)
            if spread > 0
            else np.nan
        )
    return pd.Series(slopes, name="slope")


#: How each direction reads in a sentence and in the reliability diagram.
_DIRECTION_WORDS = {
    "under-confident": ("under-confident", "exceeds", "the bars stand above the diagonal"),
    "over-confident": ("over-confident", "falls below", "the bars fall below the diagonal"),
    "mixed": ("neither over- nor under-confident throughout", "exceeds", "the bars cross it"),
}


def reliability_takeaways(
    directions: pd.DataFrame,
    calibration: pd.DataFrame,
    pixel_table: pd.DataFrame | None = None,
    slopes: pd.Series | None = None,
    reference: str = "UML",
    positive: str = "class 1",
) -> list[str]:
    """The takeaways of notebook 05, as sentences computed from its tables.

    Args:
        directions: :func:`confidence_direction` of the image heads.
        calibration: :func:`calibration_table` of the same heads (``ECE`` and ``aECE``).
        pixel_table: the table of :func:`pixel_calibration_study` (optional).
        slopes: :func:`truth_slopes` (optional; synthetic data only).
        reference: the head the sentences are about.
        positive: the name of class 1 (``"melanoma"``), for the sentence on the true probabilities.

    Raises:
        ValueError: the reference is missing, or a table lacks a column.
    """
    require_columns(
        directions, ("accuracy", "mean_confidence", "gap", "share_under", "direction"), "directions"
    )
    require_columns(calibration, ("ECE", "aECE"), "calibration table")
    if reference not in directions.index or reference not in calibration.index:
        raise ValueError(f"{reference!r} is not among the heads {list(directions.index)}")
    own = directions.loc[reference]
    words, side, look = _DIRECTION_WORDS[own["direction"]]
    share = own["share_over"] if own["direction"] == "over-confident" else own["share_under"]
    sentences = [
        f"{reference}'s image head is {words}: it is right on {own['accuracy']:.1%} of the test "
        f"images while its mean confidence is {own['mean_confidence']:.1%}, and {share:.0%} of "
        f"the images sit in bins whose accuracy {side} their confidence ({look} of the first "
        "reliability figure)."
    ]
    others = directions.drop(index=reference)
    if len(others):
        sentences.append(
            "Accuracy minus mean confidence (above 0: under-confident): "
            + ", ".join(
                f"{name} {row.gap:+.3f} ({row.direction})" for name, row in others.iterrows()
            )
            + f"; {reference} {own['gap']:+.3f}."
        )
    by_ece, by_aece = calibration["ECE"].idxmin(), calibration["aECE"].idxmin()
    agree = "the same head" if by_ece == by_aece else "not the same head"
    sentences.append(
        f"The binning is part of the number: {reference}'s ECE is "
        f"{calibration.loc[reference, 'ECE']:.3f} with equal-width bins and "
        f"{calibration.loc[reference, 'aECE']:.3f} with equal-mass bins; the lowest ECE is "
        f"{by_ece}'s, the lowest equal-mass ECE {by_aece}'s ({agree})."
    )
    if slopes is not None and reference in slopes.index and np.isfinite(slopes[reference]):
        sentences.append(_truth_sentence(slopes, reference, positive))
    if pixel_table is not None and len(pixel_table):
        require_columns(pixel_table, ("ECE pooled", "ECE pooled, foreground"), "pixel table")
        ratio = pixel_table["ECE pooled, foreground"] / pixel_table["ECE pooled"]
        best = pixel_table["ECE pooled, foreground"].idxmin()
        sentences.append(
            f"Pixels: for {int((ratio > 1).sum())} of {len(pixel_table)} pixel outputs the "
            f"all-pixel ECE is below the foreground ECE (the foreground's is {ratio.min():.1f} to "
            f"{ratio.max():.1f} times as large): the easy background dilutes it. On the "
            f"foreground {best} is best calibrated "
            f"({pixel_table.loc[best, 'ECE pooled, foreground']:.3f})."
        )
    return sentences


def _truth_sentence(slopes: pd.Series, reference: str, positive: str) -> str:
    """The sentence on the slope of the predictions against the generator's probabilities."""
    slope = slopes[reference]
    if slope < 1:
        shape = (
            f"pulled toward the middle: too low where {positive} is likely, too high where it "
            "is not"
        )
    else:
        shape = f"pushed toward the ends: too sure of {positive} and of its absence"
    others = ", ".join(f"{name} {value:.2f}" for name, value in slopes.drop(reference).items())
    return (
        f"Against the generator's true probabilities {reference}'s predictions are {shape} "
        f"(slope of predicted on true probability {slope:.2f}, where 1 follows the truth"
        + (f"; {others}" if others else "")
        + ")."
    )
