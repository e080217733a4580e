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
        default = f"{image_id}\nDice {row['dice']:.2f}, u {row.get('uncertainty', np.nan):.2f}"
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
    """The ids of ``n`` images evenly spread over the ranks of ``column`` (worst to best).

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
