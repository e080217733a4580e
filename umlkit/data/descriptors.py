r"""How much of the label do the pixels carry? Hand-made descriptors of the true mask, and a baseline.

The Bayes-optimal accuracy of a synthetic dataset is computed from the generator's latent factors
(border irregularity, asymmetry, colour variegation, size), which no model sees: it sees pixels,
at the resolution it is trained on. Between the two lies a question worth asking before blaming
the network: how much of the label can be read off the image at that resolution at all?

:func:`descriptor_baseline` gives a rough, honest answer. It describes every image by a few
classical measurements of its **ground-truth** mask and of the colours inside it, the ABCD rule of
dermoscopy in miniature (:func:`mask_descriptors`), and fits a logistic regression on the training
split. Its test accuracy is neither a bound nor a competitor (it reads the true mask, which a model
must predict, and its descriptors are crude), but when a network trails it, the network has not
learned what the pixels show; when it trails the Bayes-optimal accuracy by much, the pixels
themselves hide part of the factors (a border wiggle of one pixel at 64 x 64).

Descriptors of the foreground ``mask > 0``, from its centroid and its boundary pixels:

- ``area``: the fraction of the image covered (size);
- ``compactness``: :math:`P^2 / (4 \pi A)` with :math:`P` the number of boundary pixels
  (:func:`umlkit.metrics.segmentation.surface_pixels`, the same boundary HD95 uses) and :math:`A`
  the area: about 0.75 for a digital disc (counting pixels undercounts a circle's perimeter),
  larger for a ragged or elongated shape;
- ``asymmetry_harmonics`` and ``irregularity_harmonics``: the amplitude of the border's radial
  profile :math:`r(\theta)`, normalised by its mean, in the harmonics 3-5 and 6-14 of its
  Fourier spectrum over 64 angular bins (the generator's asymmetry and irregularity bands);
- ``colour_spread``: the mean over channels of the standard deviation of the colours inside the
  mask (colour variegation); ``colour_contrast``: the standard deviation over channels of the mean
  colour inside minus outside.

These were chosen by umlkit for its synthetic derm lesions; they describe any single-object mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from umlkit.metrics.segmentation import surface_pixels

#: The columns of :func:`mask_descriptors`, in order.
DESCRIPTORS = (
    "area",
    "compactness",
    "asymmetry_harmonics",
    "irregularity_harmonics",
    "colour_spread",
    "colour_contrast",
)
#: Angular bins of the radial border profile.
PROFILE_BINS = 64


def mask_descriptors(image: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Shape and colour descriptors of one image's foreground (see the module docstring).

    Args:
        image: ``(C, H, W)`` float in [0, 1] (a dataset item's ``image``).
        mask: ``(H, W)`` integer mask; every value > 0 is foreground.

    Returns:
        One float per name in :data:`DESCRIPTORS`. An empty mask gives ``area`` 0 and NaN for the
        rest (there is no shape to describe).

    Raises:
        ValueError: ``image`` is not (C, H, W) or ``mask`` does not match its height and width.
    """
    image = np.asarray(image, dtype=np.float64)
    foreground = np.asarray(mask) > 0
    if image.ndim != 3 or foreground.shape != image.shape[1:]:
        raise ValueError(
            f"need image (C, H, W) and mask (H, W) of the same size, got {image.shape} and "
            f"{foreground.shape}"
        )
    area = int(foreground.sum())
    values = dict.fromkeys(DESCRIPTORS, float("nan"))
    values["area"] = area / foreground.size
    if area == 0:
        return values
    boundary = surface_pixels(foreground)
    values["compactness"] = float(boundary.sum() ** 2 / (4.0 * np.pi * area))

    rows, cols = np.nonzero(foreground)
    centre_row, centre_col = rows.mean(), cols.mean()
    edge_rows, edge_cols = np.nonzero(boundary)
    angles = np.arctan2(edge_rows - centre_row, edge_cols - centre_col)
    radii = np.hypot(edge_rows - centre_row, edge_cols - centre_col)
    bins = np.minimum(((angles + np.pi) / (2 * np.pi) * PROFILE_BINS).astype(int), PROFILE_BINS - 1)
    profile = np.full(PROFILE_BINS, np.nan)
    np.fmax.at(profile, bins, radii)
    known = ~np.isnan(profile)
    # Angles with no boundary pixel (small masks): interpolate around the circle.
    positions = np.arange(PROFILE_BINS)
    profile = np.interp(positions, positions[known], profile[known], period=PROFILE_BINS)
    if profile.mean() > 0:
        spectrum = np.abs(np.fft.rfft(profile / profile.mean())) / PROFILE_BINS
        values["asymmetry_harmonics"] = float(spectrum[3:6].sum())
        values["irregularity_harmonics"] = float(spectrum[6:15].sum())

    inside = image[:, foreground]
    values["colour_spread"] = float(inside.std(axis=1).mean())
    if area < foreground.size:
        outside = image[:, ~foreground]
        values["colour_contrast"] = float((inside.mean(axis=1) - outside.mean(axis=1)).std())
    return values


def descriptor_table(dataset: Dataset, progress: bool = False) -> pd.DataFrame:
    """:func:`mask_descriptors` of every item of ``dataset``, with its ``id`` and ``label``."""
    rows = []
    for index in tqdm(range(len(dataset)), desc="descriptors", disable=not progress):
        item = dataset[index]
        values = mask_descriptors(item["image"].numpy(), item["mask"].numpy())
        rows.append({"id": item["id"], "label": int(item["label"]), **values})
    return pd.DataFrame(rows)


def descriptor_baseline(
    train: Dataset,
    test: Dataset,
    columns: Sequence[str] = DESCRIPTORS,
    C: float = 1.0,
) -> dict[str, float]:
    """Logistic regression of the label on the true-mask descriptors: fit on ``train``, score ``test``.

    Images whose descriptors are NaN (empty masks) are left out of both fit and score; the
    number scored is returned as ``n``.

    Args:
        train: the training split (items with ``image``, ``mask``, ``label``).
        test: the split to score.
        columns: which descriptors to use.
        C: inverse L2 strength of the (standardised) logistic regression.

    Returns:
        ``{"n", "accuracy", "auc"}`` on ``test``; ``auc`` is NaN when ``test`` holds one class.

    Raises:
        ValueError: unknown columns, or a training split without both labels.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    unknown = sorted(set(columns) - set(DESCRIPTORS))
    if unknown or not columns:
        raise ValueError(f"columns must be a non-empty subset of {DESCRIPTORS}, got {unknown}")
    fit_table = descriptor_table(train).dropna(subset=list(columns))
    score_table = descriptor_table(test).dropna(subset=list(columns))
    if fit_table["label"].nunique() < 2:
        raise ValueError("the training split needs images of both labels for a regression")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=1000))
    model.fit(fit_table[list(columns)], fit_table["label"])
    labels = score_table["label"].to_numpy()
    probability = model.predict_proba(score_table[list(columns)])[:, 1]
    auc = roc_auc_score(labels, probability) if len(np.unique(labels)) == 2 else float("nan")
    return {
        "n": float(len(labels)),
        "accuracy": float(((probability > 0.5) == labels).mean()),
        "auc": float(auc),
    }
