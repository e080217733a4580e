r"""Segmentation metrics on binary masks: Dice, IoU, HD95, ASSD; per-class scores; REFUGE cup/rim/disc.

Overlap:

.. math::

    \mathrm{Dice} = \frac{2|P \cap G|}{|P| + |G|}, \qquad \mathrm{IoU} = \frac{|P \cap G|}{|P \cup G|}

Surface distances: the surface of a mask is the mask XOR its binary erosion (its boundary
pixels; a mask touching the image border has a surface there too). For every surface pixel of
``pred`` the Euclidean distance to the nearest surface pixel of ``target``, and vice versa
(``scipy.ndimage.distance_transform_edt`` with ``sampling=spacing``), are pooled into one set
:math:`d`:

- HD95 = the 95th percentile of :math:`d` (linear interpolation, ``numpy.percentile``): the
  Hausdorff distance without its 5 % worst outliers.
- ASSD = the mean of :math:`d` (average symmetric surface distance).

Empty masks (documented, never an exception):

============================  ======  ======  ===========
case                          Dice    IoU     HD95, ASSD
============================  ======  ======  ===========
both empty                    1.0     1.0     0.0
exactly one empty             0.0     0.0     NaN
============================  ======  ======  ===========

NaN (not the image diagonal) because a distance to nothing is undefined and any stand-in value
would depend on the image size; pandas' ``mean()`` skips NaN, so report how many cases were NaN
next to a mean HD95.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from umlkit.metrics._checks import check_binary, check_class_indices, check_same_shape, to_numpy

#: REFUGE label convention in umlkit (``umlkit.data``): 0 background, 1 disc rim, 2 optic cup.
REFUGE_CLASSES = {"background": 0, "rim": 1, "cup": 2}


def _binary_pair(pred: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    p = check_binary(pred, "pred")
    g = check_binary(target, "target")
    check_same_shape(p, g, "pred", "target")
    if p.ndim == 0:
        raise ValueError("pred and target must be masks with at least one dimension")
    return p, g


def dice(pred: Any, target: Any) -> float:
    r"""Dice :math:`2|P\cap G| / (|P| + |G|)` of two binary masks of any shape; 1.0 if both are empty.

    Symmetric in its arguments.

    Raises:
        ValueError: non-binary masks or different shapes.
    """
    p, g = _binary_pair(pred, target)
    total = int(p.sum()) + int(g.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(p, g).sum()) / total


def iou(pred: Any, target: Any) -> float:
    r"""Intersection over union (Jaccard) :math:`|P\cap G| / |P \cup G|`; 1.0 if both are empty."""
    p, g = _binary_pair(pred, target)
    union = int(np.logical_or(p, g).sum())
    if union == 0:
        return 1.0
    return int(np.logical_and(p, g).sum()) / union


def _spacing(spacing: float | Sequence[float] | None, ndim: int) -> tuple[float, ...]:
    if spacing is None:
        return (1.0,) * ndim
    try:
        values = np.asarray(spacing, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"spacing must be a number or {ndim} numbers, got {spacing!r}") from error
    if values.ndim == 0:
        values = np.full(ndim, float(values))
    if values.shape != (ndim,):
        raise ValueError(f"spacing must be a number or {ndim} numbers, got {spacing!r}")
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"spacing must be positive and finite, got {spacing!r}")
    return tuple(float(v) for v in values)


def surface_pixels(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a boolean mask: the mask XOR its erosion (face-connected structuring
    element; pixels on the image border count as boundary)."""
    return mask ^ ndimage.binary_erosion(mask)


def surface_distances(
    pred: Any, target: Any, spacing: float | Sequence[float] | None = None
) -> np.ndarray | None:
    """The pooled surface distances pred -> target and target -> pred (see the module docstring).

    Args:
        pred, target: binary masks of the same shape, 2-D (an image) or 3-D (a volume). A batch
            of images is not a volume: score each image on its own.
        spacing: as in :func:`hd95`.

    Returns:
        A float64 array of distances in the units of ``spacing`` (pixels by default), an empty
        array when both masks are empty, or ``None`` when exactly one is empty.

    Raises:
        ValueError: non-binary masks, different shapes, masks that are not 2-D or 3-D, or a bad
            ``spacing``.
    """
    p, g = _binary_pair(pred, target)
    if p.ndim not in (2, 3):
        raise ValueError(
            f"surface distances need 2-D or 3-D masks, got {p.ndim}-D masks of shape {p.shape}; "
            "score a batch one image at a time"
        )
    sampling = _spacing(spacing, p.ndim)
    p_any, g_any = bool(p.any()), bool(g.any())
    if not p_any and not g_any:
        return np.zeros(0)
    if p_any != g_any:
        return None
    surface_p, surface_g = surface_pixels(p), surface_pixels(g)
    # distance_transform_edt measures the distance to the nearest zero, so invert each surface.
    to_g = ndimage.distance_transform_edt(~surface_g, sampling=sampling)
    to_p = ndimage.distance_transform_edt(~surface_p, sampling=sampling)
    return np.concatenate([to_g[surface_p], to_p[surface_g]])


def hd95(pred: Any, target: Any, spacing: float | Sequence[float] | None = None) -> float:
    """95th percentile of the pooled symmetric surface distances; 0 if both empty, NaN if one is.

    Args:
        pred, target: binary masks of the same shape (2-D or 3-D).
        spacing: pixel/voxel size per axis (or one number for all); distances come out in its
            units. ``None``: 1 per axis (pixels).

    Raises:
        ValueError: non-binary masks, different shapes, masks that are not 2-D or 3-D, or a
            bad ``spacing``.
    """
    distances = surface_distances(pred, target, spacing)
    if distances is None:
        return float("nan")
    if distances.size == 0:
        return 0.0
    return float(np.percentile(distances, 95))


def assd(pred: Any, target: Any, spacing: float | Sequence[float] | None = None) -> float:
    """Average symmetric surface distance: mean of the pooled distances; 0 / NaN as :func:`hd95`.

    Args:
        pred, target: binary masks of the same shape (2-D or 3-D).
        spacing: as in :func:`hd95`.

    Raises:
        ValueError: as :func:`hd95` (masks that are not 2-D or 3-D included).
    """
    distances = surface_distances(pred, target, spacing)
    if distances is None:
        return float("nan")
    if distances.size == 0:
        return 0.0
    return float(distances.mean())


def binary_scores(
    pred: Any, target: Any, spacing: float | Sequence[float] | None = None
) -> dict[str, float]:
    """``{"dice", "iou", "hd95", "assd"}`` of one pair of binary masks (surface distances once).

    The masks must be 2-D or 3-D, as for :func:`hd95`.
    """
    p, g = _binary_pair(pred, target)
    distances = surface_distances(p, g, spacing)
    if distances is None:
        hd, mean = float("nan"), float("nan")
    elif distances.size == 0:
        hd, mean = 0.0, 0.0
    else:
        hd, mean = float(np.percentile(distances, 95)), float(distances.mean())
    return {"dice": dice(p, g), "iou": iou(p, g), "hd95": hd, "assd": mean}


def segmentation_scores(
    pred: Any,
    target: Any,
    num_classes: int,
    class_names: Sequence[str] | None = None,
    spacing: float | Sequence[float] | None = None,
    include_background: bool = False,
) -> dict[str, float]:
    """Per-class Dice, IoU, HD95 and ASSD of one label map against another.

    Args:
        pred, target: integer label maps of the same shape, 2-D (``(H, W)``) or 3-D, values in
            ``[0, num_classes)``; class ``c`` is scored as the binary masks ``== c``.
        num_classes: number of classes including background (class 0).
        class_names: a name per class (length ``num_classes``); default ``"class0"``, ...
        spacing: as in :func:`hd95`.
        include_background: score class 0 too.

    Returns:
        A flat dict with the keys ``dice_<name>``, ``iou_<name>``, ``hd95_<name>`` and
        ``assd_<name>`` for each scored class (one row of a per-image table).

    Raises:
        ValueError: shapes that differ, maps that are not 2-D or 3-D, labels out of range, or
            ``class_names`` of the wrong length.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    p = check_class_indices(pred, num_classes, "pred")
    g = check_class_indices(target, num_classes, "target")
    check_same_shape(p, g, "pred", "target")
    names = [f"class{c}" for c in range(num_classes)] if class_names is None else list(class_names)
    if len(names) != num_classes:
        raise ValueError(f"class_names has {len(names)} names for {num_classes} classes")
    scores: dict[str, float] = {}
    for c in range(0 if include_background else 1, num_classes):
        for metric, value in binary_scores(p == c, g == c, spacing).items():
            scores[f"{metric}_{names[c]}"] = value
    return scores


def refuge_scores(
    pred: Any, target: Any, spacing: float | Sequence[float] | None = None
) -> dict[str, float]:
    """REFUGE optic-cup, disc-rim and full-disc scores (Dice, IoU, HD95, ASSD).

    Labels as :data:`REFUGE_CLASSES` (0 background, 1 rim, 2 cup). The disc is rim ∪ cup
    (``label >= 1``); the cup and disc scores are the ones REFUGE reports. The label maps must
    be 2-D or 3-D, as for :func:`hd95`.

    Returns:
        ``{"dice_cup", "dice_rim", "dice_disc", "iou_cup", ..., "assd_disc"}``.
    """
    p = check_class_indices(to_numpy(pred, "pred"), 3, "pred")
    g = check_class_indices(to_numpy(target, "target"), 3, "target")
    check_same_shape(p, g, "pred", "target")
    regions = {"cup": (p == 2, g == 2), "rim": (p == 1, g == 1), "disc": (p >= 1, g >= 1)}
    scores: dict[str, float] = {}
    for region, (region_pred, region_target) in regions.items():
        for metric, value in binary_scores(region_pred, region_target, spacing).items():
            scores[f"{metric}_{region}"] = value
    return scores
