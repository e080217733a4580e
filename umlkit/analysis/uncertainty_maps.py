"""Uncertainty maps, notebook 06: what each model is unsure about, per image and per pixel.

Uncertainty scores, one per model: evidential heads give u = K / S; softmax heads have no such
mass, and umlkit scores them by the normalised entropy H(p) / log K of their probabilities (0 for a
one-hot prediction, 1 for a uniform one). Both lie in [0, 1] but are different quantities, so
compare how each *ranks* images or pixels (AUROC, risk-coverage), not their raw values across
models.

* scores: :func:`image_uncertainty`, :func:`pixel_uncertainty_maps`,
  :func:`with_entropy_uncertainty` (UML scored by its segmentation entropy instead of U^s),
  :func:`mean_pixel_uncertainty`
* galleries: :func:`map_cases`, :func:`pick_spread`
* what the uncertainty tracks: :func:`factor_correlations` (the generator's factors),
  :func:`pixel_error_detection` (the segmentation errors)
* the takeaways: :func:`uncertainty_pile_up` (where the image uncertainties crowd, beside the
  no-evidence values of notebook 02) and :func:`uncertainty_map_takeaways`
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from umlkit import metrics
from umlkit.analysis.frames import require_columns
from umlkit.evaluate import Evaluation
from umlkit.semi.base import normalized_entropy


def image_uncertainty(evaluation: Evaluation) -> tuple[np.ndarray, str]:
    """Each image's uncertainty: evidential u = K/S, else the normalised entropy of class_prob.

    Returns:
        ``(values, kind)`` with kind ``"evidential"`` or ``"entropy"``; NaN values and kind
        ``"none"`` for a model without a class head.
    """
    table = evaluation.table
    if table["class_uncertainty"].notna().all():
        return table["class_uncertainty"].to_numpy(float), "evidential"
    if evaluation.class_prob is None:
        return np.full(len(table), np.nan), "none"
    probs = torch.as_tensor(evaluation.class_prob, dtype=torch.float64)
    return normalized_entropy(probs, dim=1)[:, 0].numpy(), "entropy"


def pixel_uncertainty_maps(evaluation: Evaluation) -> tuple[np.ndarray, str]:
    """The kept images' pixel uncertainty: UML's U^s = C/S, else the normalised entropy of seg_prob.

    Returns:
        ``(maps (n, H, W), kind)`` with kind ``"evidential"`` or ``"entropy"``.

    Raises:
        ValueError: the evaluation kept no segmentation maps.
    """
    if evaluation.pixel_uncertainty is not None:
        return evaluation.pixel_uncertainty, "evidential"
    if evaluation.seg_prob is None:
        raise ValueError("the evaluation holds no segmentation maps (no seg head, or keep_maps=0)")
    probs = torch.as_tensor(evaluation.seg_prob, dtype=torch.float32)
    return normalized_entropy(probs, dim=1)[:, 0].numpy(), "entropy"


def map_cases(
    evaluation: Evaluation, ids: Sequence[str] | None = None, titles: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Cases for :func:`umlkit.plots.uncertainty_gallery` and the explorer of :mod:`umlkit.widgets`.

    Args:
        evaluation: an evaluation that kept the maps of the wanted images.
        ids: the images (default: every kept image, in order).
        titles: one title per case (default: the id with its Dice and class uncertainty).

    Raises:
        ValueError: an id whose maps were not kept.
    """
    uncertainty, _ = pixel_uncertainty_maps(evaluation)
    position = {image_id: i for i, image_id in enumerate(evaluation.ids)}
    ids = list(evaluation.ids) if ids is None else list(ids)
    missing = [i for i in ids if i not in position]
    if missing:
        raise ValueError(f"no maps kept for {missing[:3]}; evaluate with keep_maps=None")
    table = evaluation.table.set_index("id")
    cases = []
    for k, image_id in enumerate(ids):
        i = position[image_id]
        row = table.loc[image_id]
        # the image-level u = K/S, not the pixel uncertainty of the map beside it
        default = (
            f"{image_id}\nDice {row['dice']:.2f}, image u {row.get('uncertainty', np.nan):.2f}"
        )
        cases.append(
            {
                "id": image_id,
                "image": evaluation.images[i],
                "mask": evaluation.masks[i],
                "prediction": evaluation.pred_masks[i],
                "uncertainty": uncertainty[i],
                "title": default if titles is None else titles[k],
            }
        )
    return cases


def with_entropy_uncertainty(evaluation: Evaluation) -> Evaluation:
    """A view of ``evaluation`` whose pixel uncertainty is the entropy of its segmentation softmax.

    UML has two pixel uncertainties: the mutual decoder's U^s = C/S (what the navigator uses) and
    the normalised entropy of its final segmentation (what a softmax segmenter would report). This
    copy drops U^s so that :func:`pixel_uncertainty_maps` (and everything built on it) scores the
    second; the arrays are shared, not copied.
    """
    return dataclasses.replace(evaluation, pixel_uncertainty=None)


def mean_pixel_uncertainty(evaluation: Evaluation) -> np.ndarray:
    """Each image's mean pixel uncertainty (:func:`pixel_uncertainty_maps`), ``(n,)``."""
    maps, _ = pixel_uncertainty_maps(evaluation)
    return maps.reshape(len(maps), -1).mean(axis=1)


def pick_spread(table: pd.DataFrame, column: str, n: int) -> list[str]:
    """The ids of ``n`` images evenly spread over the ranks of ``column``, from its lowest
    value to its highest (for ``dice``: worst to best).

    A gallery of them shows the typical range of a model rather than only its extremes.
    """
    require_columns(table, ("id", column), "table")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    ordered = table.dropna(subset=[column]).sort_values(column, kind="stable")
    if ordered.empty:
        raise ValueError(f"column {column!r} has no values")
    positions = np.unique(
        np.linspace(0, len(ordered) - 1, min(n, len(ordered))).round().astype(int)
    )
    return ordered["id"].iloc[positions].tolist()


def factor_correlations(
    table: pd.DataFrame, columns: Sequence[str], targets: Sequence[str] = ("uncertainty",)
) -> pd.DataFrame:
    """Spearman rank correlations of each target (e.g. the image uncertainty) with each factor.

    Rank correlation, because the question is monotone ("does uncertainty rise with border
    irregularity?") and neither side need be linear.

    Returns:
        Index: the factor columns; one column per target.
    """
    require_columns(table, (*columns, *targets), "table")
    correlation = table[list(columns) + list(targets)].corr(method="spearman")
    return correlation.loc[list(columns), list(targets)]


def pixel_error_detection(
    evaluations: Mapping[str, Evaluation], thresholds: np.ndarray | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """How well each model's pixel uncertainty finds its segmentation errors (pooled over images).

    Returns:
        ``(scores, curves)``: ``scores`` one row per model with ``uncertainty_kind``,
        ``error_rate``, ``auroc``, ``auprc`` (:func:`umlkit.metrics.uncertainty_error_auroc` /
        ``_auprc``), ``best_threshold`` and ``best_ueo`` (the maximum of the UEO curve, chosen
        once for the dataset); ``curves`` the UEO curves (``model, threshold, ueo``).
    """
    thresholds = np.linspace(0, 1, 101) if thresholds is None else np.asarray(thresholds)
    rows, curves = [], []
    for name, evaluation in evaluations.items():
        uncertainty, kind = pixel_uncertainty_maps(evaluation)
        error = evaluation.error_maps
        curve = metrics.ueo_curve(uncertainty, error, thresholds)
        best = curve.loc[curve["ueo"].idxmax()]
        rows.append(
            {
                "model": name,
                "uncertainty_kind": kind,
                "error_rate": float(error.mean()),
                "auroc": metrics.uncertainty_error_auroc(uncertainty, error),
                "auprc": metrics.uncertainty_error_auprc(uncertainty, error),
                "best_threshold": float(best["threshold"]),
                "best_ueo": float(best["ueo"]),
            }
        )
        curves.append(curve.assign(model=name))
    return pd.DataFrame(rows).set_index("model"), pd.concat(curves, ignore_index=True)


def uncertainty_pile_up(
    uncertainty: np.ndarray, num_classes: int, evidence: str = "softplus", width: float = 0.05
) -> dict[str, float]:
    r"""Where the image uncertainties u = K/S crowd, next to the values notebook 02 derives.

    Notebook 02: a head with no evidence at all has :math:`\alpha = 1`, :math:`S = K` and
    :math:`u = 1`; a head whose logits are all 0 has :math:`e = g(0)` per class (``softplus``:
    :math:`\ln 2`), so :math:`u_0 = K / (K + K\,g(0)) = 1 / (1 + g(0))` (about 0.59 for softplus).

    Args:
        uncertainty: the images' u = K/S, ``(N,)``.
        num_classes: K.
        evidence: the head's evidence function (:func:`umlkit.evidential.evidence_from_logits`).
        width: the width of the band searched for.

    Returns:
        ``band_lower``, ``band_upper`` and ``band_share``: the interval [lower, lower + width)
        holding the most images, and their share; ``band_evidence``: the total evidence
        :math:`S - K` at the band's middle; ``zero_logit``: :math:`u_0`; ``share_above_zero_logit``:
        the share of images more uncertain than :math:`u_0` (less evidence than zero logits
        give); ``largest``: the largest u.

    Raises:
        ValueError: no values, values outside [0, 1], or a width outside (0, 1].
    """
    from umlkit.evidential import dirichlet, evidence_from_logits

    values = np.sort(np.asarray(uncertainty, dtype=float).ravel())
    if values.size == 0 or not np.all((values >= 0) & (values <= 1)):
        raise ValueError("uncertainty must hold at least one value, all in [0, 1]")
    if not 0 < width <= 1:
        raise ValueError(f"width must lie in (0, 1], got {width}")
    zero = evidence_from_logits(torch.zeros(1, num_classes, dtype=torch.float64), evidence)
    zero_logit = float(dirichlet(zero, dim=1).uncertainty[0, 0])
    # images in [values[i], values[i] + width) for every start i: the densest band starts at one
    counts = np.searchsorted(values, values + width, side="left") - np.arange(values.size)
    start = int(np.argmax(counts))
    lower = float(values[start])
    middle = lower + width / 2
    return {
        "band_lower": lower,
        "band_upper": lower + width,
        "band_share": float(counts[start] / values.size),
        "band_evidence": num_classes / middle - num_classes,
        "zero_logit": zero_logit,
        "share_above_zero_logit": float(np.mean(values > zero_logit)),
        "largest": float(values[-1]),
    }


def _pile_up_sentence(pile_up: Mapping[str, float]) -> str:
    """Where the image uncertainties crowd, said beside notebook 02's no-evidence values.

    ``pile_up`` is :func:`uncertainty_pile_up`'s dict. The band "sits at" the zero-logit value
    when that value lies in the band or within half a band's width of it.
    """
    lower, upper, zero = pile_up["band_lower"], pile_up["band_upper"], pile_up["zero_logit"]
    slack = (upper - lower) / 2
    if lower - slack <= zero <= upper + slack:
        relation = (
            "The band sits at the zero-logit value: for these images the head's logits are "
            "about 0, it has found next to no evidence either way"
        )
    elif lower > zero:
        relation = (
            "The band lies above the zero-logit value, between it and 1: for these images the "
            f"head has less evidence than zero logits would give (about "
            f"{pile_up['band_evidence']:.1f} in total over the classes)"
        )
    else:
        relation = (
            "The band lies below the zero-logit value: these images do get evidence (about "
            f"{pile_up['band_evidence']:.1f} in total over the classes)"
        )
    return (
        f"UML's image uncertainty piles up in a band: {pile_up['band_share']:.0%} of the test "
        f"images have u in [{lower:.2f}, {upper:.2f}), and none is above "
        f"{pile_up['largest']:.2f}. Notebook 02 derived what a head without evidence says: with "
        f"all logits 0, u = {zero:.2f}; with no evidence at all, u = 1. {relation}; "
        f"{pile_up['share_above_zero_logit']:.0%} of all test images are more uncertain than "
        f"{zero:.2f}."
    )


def _factor_sentence(values: pd.Series, words: str) -> str:
    """Which factor an uncertainty is tied to most closely, by its Spearman correlation."""
    factor = values.abs().idxmax()
    moves = "rises" if values[factor] > 0 else "falls"
    meaning = (
        "; bayes_error is the label's ambiguity by construction" if factor == "bayes_error" else ""
    )
    return (
        f"{words} uncertainty is tied most closely to {factor} (Spearman {values[factor]:+.2f}: "
        f"it {moves} as {factor} rises{meaning})."
    )


def _detection_sentence(scores: pd.DataFrame, reference: str) -> str:
    """How the reference's pixel uncertainty finds the errors, and where it ranks."""
    row = scores.loc[reference]
    if row["auroc"] >= 0.8:
        verdict = "far above chance"
    elif row["auroc"] > 0.6:
        verdict = "above chance"
    else:
        verdict = "no better than chance"
    ranks = {
        column: int(scores[column].rank(ascending=False, method="min")[reference])
        for column in ("auroc", "auprc", "best_ueo")
    }
    behind = max(ranks.values()) > 1 and verdict != "no better than chance"
    best = scores["auprc"].idxmax()
    return (
        f"{reference} finds the segmentation errors {verdict} (AUROC {row['auroc']:.3f}, chance "
        f"0.5; AUPRC {row['auprc']:.3f} against an error rate of {row['error_rate']:.4f})"
        + ("; but" if behind else ";")
        + f" among the {len(scores)} pixel uncertainties it ranks {ranks['auroc']} on AUROC, "
        f"{ranks['auprc']} on AUPRC and {ranks['best_ueo']} on the best UEO"
        + (
            f"; the highest AUPRC is {best}'s ({scores.loc[best, 'auprc']:.3f})."
            if best != reference
            else "."
        )
    )


def uncertainty_map_takeaways(
    pile_up: Mapping[str, float],
    correlations: pd.DataFrame | None,
    scores: pd.DataFrame,
    reference: str = "UML, U^s",
) -> list[str]:
    """The takeaways of notebook 06, as sentences computed from its numbers.

    Args:
        pile_up: :func:`uncertainty_pile_up` of UML's image uncertainty.
        correlations: :func:`factor_correlations` with ``uncertainty`` and ``pixel_uncertainty``
            columns (``None`` on real data).
        scores: the scores of :func:`pixel_error_detection`.
        reference: the row of ``scores`` that is UML's evidential pixel uncertainty.

    Raises:
        ValueError: the reference is not a row of ``scores``, or a column is missing.
    """
    require_columns(scores, ("error_rate", "auroc", "auprc", "best_ueo"), "scores")
    if reference not in scores.index:
        raise ValueError(f"{reference!r} is not a row of the scores {list(scores.index)}")
    sentences = [_pile_up_sentence(pile_up)]
    if correlations is not None:
        for target, words in (("uncertainty", "Image"), ("pixel_uncertainty", "Mean pixel")):
            if target in correlations and not correlations[target].dropna().empty:
                sentences.append(_factor_sentence(correlations[target].dropna(), words))
    sentences.append(_detection_sentence(scores, reference))
    return sentences
