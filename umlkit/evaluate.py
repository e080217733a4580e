"""Predictions and uncertainties of a model over a dataset: a per-image table, maps and a summary.

>>> evaluation = evaluate(model, load_dataset("isic2017", root, split="test", size=64))
>>> evaluation.summary["accuracy"], evaluation.summary["dice"]
>>> evaluation.table.head()          # one row per image (id, label, prob, dice, ...)
>>> evaluation.pixel_uncertainty[0]  # (H, W) map of the first image, for a plot

Works for every umlkit model: a field the model does not produce (no segmentation head for the
classifier, no class head for the U-Net, no uncertainty for softmax heads) gives NaN columns and
``None`` maps, never an error.

Conventions:

- Class probabilities are the model's ``class_prob``: alpha/S for evidential heads, softmax for
  softmax heads. The predicted class is their argmax.
- The predicted mask is the argmax of ``seg_logits``. Dice, IoU, HD95 and ASSD are computed per
  image by :mod:`umlkit.metrics` (HD95 is NaN when exactly one of prediction and mask is empty);
  for more than two pixel classes the ``dice`` column is the mean over the foreground classes and
  ``dice_<c>`` columns hold each class.
- ``pixel_uncertainty`` in the table is the mean of the mutual decoder's U^s = C/S over the image.
- ``f1`` in the summary is the support-weighted F1 of the UML reference evaluation; ``f1_macro``
  is there too. ``ece`` is the top-label ECE with 15 equal-width bins.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from umlkit import distributed
from umlkit.metrics import classification_report, dice, iou
from umlkit.metrics.classification import REPORT_METRICS
from umlkit.metrics.segmentation import segmentation_scores
from umlkit.runtime import pick_device

#: Metadata columns that describe files and splits rather than the image's content.
_METADATA_SKIP = ("index", "split", "image", "mask", "label")


@dataclass
class Evaluation:
    """What :func:`evaluate` returns.

    ``table`` has one row per image; ``summary`` the dataset-level metrics; the array fields hold
    the first ``keep_maps`` images (``None`` where the model has no such output).
    """

    table: (
        pd.DataFrame
    )  # one row per image: id, label, pred, prob, class_uncertainty, correct, dice, ...
    summary: dict[str, float]  # accuracy, f1, auc, ece, dice, hd95, ... (NaN where not available;
    # every model's summary has the same keys)
    class_prob: np.ndarray | None = None  # (N, K) class probabilities of all images
    ids: list[str] = field(default_factory=list)  # ids of the images the maps below hold
    images: np.ndarray | None = None  # (n, H, W, C) float in [0, 1]: what the model saw
    masks: np.ndarray | None = None  # (n, H, W) int ground-truth class maps
    pred_masks: np.ndarray | None = None  # (n, H, W) int predicted class maps
    seg_prob: np.ndarray | None = None  # (n, C, H, W) softmax of the segmentation logits
    pixel_uncertainty: np.ndarray | None = None  # (n, H, W) U^s = C/S of the mutual decoder
    error_maps: np.ndarray | None = None  # (n, H, W) bool, predicted mask != ground truth
    reliable_mask: np.ndarray | None = None  # (n, ., H, W) the navigator's reliable mask


def _numpy(x: Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy()


def _segmentation_row(
    pred: np.ndarray, mask: np.ndarray, num_classes: int, surface: bool
) -> dict[str, float]:
    """Per-image Dice/IoU (+ HD95/ASSD with ``surface``); for C > 2 per class and their mean."""
    metrics = ("dice", "iou", "hd95", "assd") if surface else ("dice", "iou")
    if surface:
        scores = segmentation_scores(pred, mask, num_classes)
    else:  # overlap only: skips the distance transforms (per-epoch validation)
        scores = {
            f"{name}_class{c}": score(pred == c, mask == c)
            for c in range(1, num_classes)
            for name, score in (("dice", dice), ("iou", iou))
        }
    if num_classes == 2:
        return {metric: scores[f"{metric}_class1"] for metric in metrics}
    row = {key.replace("_class", "_"): value for key, value in scores.items()}
    for metric in metrics:
        values = [scores[f"{metric}_class{c}"] for c in range(1, num_classes)]
        row[metric] = float(np.nanmean(values)) if not np.isnan(values).all() else float("nan")
    return row


def _class_columns(output, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image classification columns of one batch (NaN without a class head)."""
    n = len(labels)
    if output.class_prob is None:
        nan = np.full(n, np.nan)
        return {"pred": np.full(n, -1), "prob": nan, "confidence": nan, "correct": nan}
    prob = _numpy(output.class_prob)
    pred = prob.argmax(axis=1)
    columns = {
        "pred": pred,
        # binary: probability of the positive class; K > 2: of the predicted class.
        "prob": prob[:, 1] if prob.shape[1] == 2 else prob.max(axis=1),
        "confidence": prob.max(axis=1),
        "correct": (pred == labels).astype(float),
    }
    if output.class_uncertainty is not None:
        columns["class_uncertainty"] = _numpy(output.class_uncertainty)[:, 0]
    return columns


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    device: str | None = None,
    batch_size: int = 32,
    keep_maps: int | None = 16,
    surface_metrics: bool = True,
    transform: Callable[[Tensor], Tensor] | None = None,
    num_workers: int = 0,
    progress: bool = False,
) -> Evaluation:
    """Run ``model`` over ``dataset`` and score every image.

    Args:
        model: any umlkit model (its forward returns a :class:`~umlkit.models.ModelOutput`). It
            is moved to ``device`` and put in eval mode for the run; its mode is restored after.
        dataset: items are dicts with ``image`` (C,H,W), ``mask`` (H,W), ``label``, ``id``
            (as :func:`umlkit.data.load_dataset` gives); an optional ``dataset.metadata`` table
            with an ``id`` column adds its factor columns to the per-image table.
        device: ``"cpu"``, ``"cuda"``, ``"mps"``; default: the best one available.
        batch_size: images per forward pass.
        keep_maps: keep the image, mask and prediction maps of the first ``keep_maps`` images
            (``None``: all; 0: none), bounding memory on big test sets.
        surface_metrics: compute HD95 and ASSD (set ``False`` to save time, e.g. during
            training's per-epoch validation; the columns are then NaN).
        transform: applied to each image batch (on the device) before the model, e.g. a noise
            corruption for a robustness study; the maps keep the transformed images.
        num_workers: DataLoader workers.
        progress: show a tqdm bar.

    Returns:
        An :class:`Evaluation`.

    Raises:
        ValueError: an empty dataset or a bad ``batch_size``/``keep_maps``.
    """
    if len(dataset) == 0:
        raise ValueError("cannot evaluate on an empty dataset")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if keep_maps is not None and keep_maps < 0:
        raise ValueError(f"keep_maps must be >= 0 or None, got {keep_maps}")
    device = pick_device(device)
    limit = len(dataset) if keep_maps is None else keep_maps
    was_training = model.training
    model.to(device).eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    rows: list[dict] = []
    probs: list[np.ndarray] = []
    maps: dict[str, list[np.ndarray]] = {}
    kept = 0
    try:
        with torch.no_grad():
            for batch in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
                images = batch["image"].to(device)
                if transform is not None:
                    images = transform(images)
                output = model(images)
                labels = batch["label"].numpy()
                masks = batch["mask"].numpy()
                rows.extend(_batch_rows(batch["id"], labels, masks, output, surface_metrics))
                if output.class_prob is not None:
                    probs.append(_numpy(output.class_prob))
                take = min(limit - kept, len(labels))
                if take > 0:
                    _keep(maps, images, masks, output, take)
                    maps.setdefault("ids", []).extend(batch["id"][:take])
                    kept += take
    finally:
        model.train(was_training)
    table = _with_metadata(_complete_columns(pd.DataFrame(rows)), dataset)
    class_prob = np.concatenate(probs) if probs else None
    return Evaluation(
        table=table,
        summary=summarise(table, class_prob, surface_metrics),
        class_prob=class_prob,
        ids=list(maps.pop("ids", [])),
        **{name: np.concatenate(parts) for name, parts in maps.items()},
    )


def _batch_rows(
    ids: list[str], labels: np.ndarray, masks: np.ndarray, output, surface_metrics: bool
) -> list[dict]:
    """One table row per image of a batch."""
    columns = _class_columns(output, labels)
    pred_masks = None if output.seg_logits is None else output.seg_logits.argmax(1).cpu().numpy()
    rows = []
    for i, image_id in enumerate(ids):
        row = {"id": image_id, "label": int(labels[i])}
        row.update({name: values[i] for name, values in columns.items()})
        if pred_masks is not None:
            num_classes = output.seg_logits.shape[1]
            row.update(_segmentation_row(pred_masks[i], masks[i], num_classes, surface_metrics))
        if output.pixel_uncertainty is not None:
            row["pixel_uncertainty"] = float(output.pixel_uncertainty[i].mean())
        rows.append(row)
    return rows


def _keep(maps: dict, images: Tensor, masks: np.ndarray, output, take: int) -> None:
    """Append the first ``take`` images' maps of a batch to ``maps`` (lists of arrays)."""
    maps.setdefault("images", []).append(_numpy(images[:take]).transpose(0, 2, 3, 1))
    maps.setdefault("masks", []).append(masks[:take])
    if output.seg_logits is not None:
        pred_masks = output.seg_logits[:take].argmax(1).cpu().numpy()
        maps.setdefault("pred_masks", []).append(pred_masks)
        maps.setdefault("error_maps", []).append(pred_masks != masks[:take])
        maps.setdefault("seg_prob", []).append(_numpy(output.seg_prob[:take]))
    if output.pixel_uncertainty is not None:
        maps.setdefault("pixel_uncertainty", []).append(
            _numpy(output.pixel_uncertainty[:take])[:, 0]
        )
    if output.reliable_mask is not None:
        maps.setdefault("reliable_mask", []).append(_numpy(output.reliable_mask[:take]))


#: Columns every table has, in this order (NaN where the model lacks the output).
TABLE_COLUMNS = (
    "id",
    "label",
    "pred",
    "prob",
    "confidence",
    "class_uncertainty",
    "correct",
    "dice",
    "iou",
    "hd95",
    "assd",
    "pixel_uncertainty",
)


def _complete_columns(table: pd.DataFrame) -> pd.DataFrame:
    for column in TABLE_COLUMNS:
        if column not in table:
            table[column] = np.nan
    rest = [c for c in table.columns if c not in TABLE_COLUMNS]
    return table[list(TABLE_COLUMNS) + rest]


def _with_metadata(table: pd.DataFrame, dataset: Dataset) -> pd.DataFrame:
    """Add the dataset's metadata columns (synthetic factors, ``p_true``, nuisances) by ``id``."""
    metadata = getattr(dataset, "metadata", None)
    if not isinstance(metadata, pd.DataFrame) or "id" not in metadata:
        return table
    extra = [c for c in metadata.columns if c not in _METADATA_SKIP and c not in table]
    return table.merge(metadata[["id", *extra]], on="id", how="left")


def summarise(
    table: pd.DataFrame, class_prob: np.ndarray | None, surface_metrics: bool = True
) -> dict[str, float]:
    """Dataset-level metrics of an :class:`Evaluation`: classification (from ``class_prob``, one
    row per row of ``table``) and the mean per-image scores of ``table``. Tables of disjoint parts
    of a dataset, concatenated with their ``class_prob``, give the whole dataset's summary."""
    nan = float("nan")
    summary = {"n": float(len(table))}
    if class_prob is not None:
        report = classification_report(class_prob, table["label"].to_numpy())
        summary.update(report)
        summary["f1"] = report["f1_weighted"]
    else:
        # the report's keys, NaN: every model's summary has the same keys
        for name in ("f1", *REPORT_METRICS):
            summary[name] = nan
    for column in ("class_uncertainty", "dice", "iou", "hd95", "assd", "pixel_uncertainty"):
        summary[column] = float(table[column].mean()) if table[column].notna().any() else nan
    # HD95 is NaN for images where exactly one of prediction and mask is empty; say how many.
    has_surface = surface_metrics and table["dice"].notna().any()
    summary["hd95_undefined"] = float(table["hd95"].isna().sum()) if has_surface else nan
    return summary


def summary_over_ranks(
    model: nn.Module, dataset: Dataset, surface_metrics: bool = True, **options: Any
) -> dict[str, float]:
    """:func:`evaluate`'s summary, with the images shared out in data-parallel training.

    Each process evaluates every ``world``-th image and the per-image results are gathered
    (:func:`umlkit.distributed.gather_objects`): every image counts once, and every process
    gets the same numbers (so all of them keep the same best epoch). In one process, or with
    fewer images than processes, it is ``evaluate(...).summary``.

    Args:
        model, dataset, surface_metrics: as for :func:`evaluate`.
        options: further arguments of :func:`evaluate` (``device``, ``batch_size``, ...).
    """
    world = distributed.world_size()
    shared = world > 1 and len(dataset) >= world
    part = Subset(dataset, range(distributed.rank(), len(dataset), world)) if shared else dataset
    evaluation = evaluate(model, part, surface_metrics=surface_metrics, keep_maps=0, **options)
    if not shared:
        return evaluation.summary
    parts = distributed.gather_objects((evaluation.table, evaluation.class_prob))
    table = pd.concat([table for table, _ in parts], ignore_index=True)
    probs = None if parts[0][1] is None else np.concatenate([prob for _, prob in parts])
    return summarise(table, probs, surface_metrics)
