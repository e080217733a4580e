r"""Does the uncertainty point at the errors? UEO, uncertainty–error AUROC/AUPRC, risk–coverage, OOD AUROC.

A good uncertainty map is high where the prediction is wrong and low where it is right. The
*error mask* is the binary map ``prediction != ground truth`` (:func:`error_map`).

- **UEO** (uncertainty–error overlap, Jungo & Reyes 2019): the Dice between the thresholded
  uncertainty :math:`U_t = \{u > t\}` and the error mask :math:`E`,
  :math:`\mathrm{UEO}(t) = 2|U_t \cap E| / (|U_t| + |E|)`. One threshold is chosen per dataset
  (e.g. the maximiser of :func:`ueo_curve` on a validation set) and then applied to every image.
- **AUROC / AUPRC** of the uncertainty as a score for "this pixel is wrong": threshold-free.
- **Risk–coverage** (selective prediction): keep only the fraction of samples (the *coverage*)
  the model is most confident about; the *risk* is the error rate among them. AURC is the area
  under that curve; lower is better (Geifman et al. 2019); :func:`optimal_aurc` is the least it
  can be on the same samples.
- **OOD AUROC**: how well the uncertainty separates out-of-distribution inputs from
  in-distribution ones.

Arrays of any shape are flattened: pass one image for a per-image value, or a stack of images for
a pooled (dataset-level) one.

References:
    Jungo, Reyes. Assessing Reliability and Challenges of Uncertainty Estimations for Medical
    Image Segmentation. MICCAI 2019.
    Geifman, Uziel, El-Yaniv. Bias-Reduced Uncertainty Estimation for Deep Neural Classifiers.
    ICLR 2019 (AURC).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from umlkit.metrics._checks import (
    check_binary,
    check_choice,
    check_same_shape,
    check_scores,
    to_numpy,
)


def error_map(pred: Any, target: Any) -> np.ndarray:
    """The binary error mask ``pred != target`` of two label maps (or label vectors)."""
    p, g = to_numpy(pred, "pred"), to_numpy(target, "target")
    check_same_shape(p, g, "pred", "target")
    return p != g


def _uncertainty_error(uncertainty: Any, error: Any) -> tuple[np.ndarray, np.ndarray]:
    u = check_scores(uncertainty, "uncertainty")
    e = check_binary(error, "error")
    check_same_shape(u, e, "uncertainty", "error")
    return u.ravel(), e.ravel()


def uncertainty_error_overlap(uncertainty: Any, error: Any, threshold: float) -> float:
    r"""UEO at one threshold: Dice of :math:`\{u > t\}` and the error mask.

    Args:
        uncertainty: uncertainty values of any shape (e.g. :math:`u = K/S` per pixel).
        error: binary error mask of the same shape.
        threshold: :math:`t`; a pixel is "uncertain" when its uncertainty is strictly above it.

    Returns:
        UEO in [0, 1]; 1.0 when there are neither errors nor uncertain pixels.

    Raises:
        ValueError: NaN/inf uncertainty, a non-binary error mask or shapes that differ.
    """
    u, e = _uncertainty_error(uncertainty, error)
    uncertain = u > threshold
    total = int(uncertain.sum()) + int(e.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(uncertain, e).sum()) / total


def ueo_curve(uncertainty: Any, error: Any, thresholds: Any = None) -> pd.DataFrame:
    """UEO at many thresholds at once, in one sort (same values as :func:`uncertainty_error_overlap`).

    Args:
        uncertainty: uncertainty values of any shape.
        error: binary error mask of the same shape.
        thresholds: the thresholds to evaluate; default 101 evenly spaced values from the
            smallest to the largest uncertainty.

    Returns:
        A DataFrame with columns ``threshold`` and ``ueo``; ``curve.loc[curve.ueo.idxmax()]`` is
        the best threshold.
    """
    u, e = _uncertainty_error(uncertainty, error)
    if thresholds is None:
        thresholds = np.linspace(u.min(), u.max(), 101)
    thresholds = check_scores(thresholds, "thresholds").ravel()
    order = np.argsort(u, kind="stable")
    sorted_u = u[order]
    # errors_at_or_below[j] = number of errors among the j least uncertain values
    errors_at_or_below = np.concatenate([[0], np.cumsum(e[order])])
    at_or_below = np.searchsorted(sorted_u, thresholds, side="right")
    n_errors = int(e.sum())
    overlap = n_errors - errors_at_or_below[at_or_below]
    n_uncertain = u.size - at_or_below
    denominator = n_uncertain + n_errors
    with np.errstate(invalid="ignore", divide="ignore"):
        ueo = np.where(denominator > 0, 2.0 * overlap / denominator, 1.0)
    return pd.DataFrame({"threshold": thresholds, "ueo": ueo})


def uncertainty_error_auroc(uncertainty: Any, error: Any) -> float:
    """ROC AUC of the uncertainty as a detector of errors; NaN if all or none are errors.

    0.5 is chance, 1.0 means every error is more uncertain than every correct pixel.
    """
    u, e = _uncertainty_error(uncertainty, error)
    if e.all() or not e.any():
        return float("nan")
    return float(roc_auc_score(e, u))


def uncertainty_error_auprc(uncertainty: Any, error: Any) -> float:
    """Average precision (area under the precision–recall curve) of uncertainty against errors.

    Its chance level is the error rate, so it is easier to read than AUROC when errors are rare.
    NaN if all or none are errors.
    """
    u, e = _uncertainty_error(uncertainty, error)
    if e.all() or not e.any():
        return float("nan")
    return float(average_precision_score(e, u))


def risk_coverage_curve(score: Any, correct: Any, kind: str = "confidence") -> pd.DataFrame:
    """Selective risk against coverage when keeping the most confident samples first.

    Samples with equal scores are kept or dropped together, so the curve has one point per
    distinct score and does not depend on the order of ties.

    Args:
        score: per-sample confidence (higher = surer) or uncertainty (lower = surer), ``(N,)``
            (any shape is flattened, e.g. a map's pixels).
        correct: whether each prediction is right, binary, as many elements as ``score``.
        kind: ``"confidence"`` or ``"uncertainty"``: how to read ``score``.

    Returns:
        A DataFrame with ``threshold`` (the score at which the point is cut), ``coverage``
        (fraction kept, increasing to 1) and ``risk`` (error rate among the kept samples).

    Raises:
        ValueError: NaN/inf scores, a non-binary ``correct``, different numbers of elements or a
            bad ``kind``.
    """
    check_choice(kind, ("confidence", "uncertainty"), "kind")
    s = check_scores(score, "score").ravel()
    c = check_binary(correct, "correct").ravel()
    if s.size != c.size:
        raise ValueError(f"score and correct must have the same length: {s.size} vs {c.size}")
    # key: smaller = kept earlier
    key = -s if kind == "confidence" else s
    values, counts = np.unique(key, return_counts=True)
    order = np.argsort(key, kind="stable")
    cumulative_errors = np.cumsum(~c[order])
    kept = np.cumsum(counts)
    threshold = -values if kind == "confidence" else values
    return pd.DataFrame(
        {
            "threshold": threshold,
            "coverage": kept / s.size,
            "risk": cumulative_errors[kept - 1] / kept,
        }
    )


def aurc(score: Any, correct: Any, kind: str = "confidence") -> float:
    r"""Area under the risk–coverage curve, :math:`\sum_j (\mathrm{cov}_j - \mathrm{cov}_{j-1})\,\mathrm{risk}_j`.

    Without ties this is :math:`\frac{1}{N}\sum_{k=1}^{N} \mathrm{risk}(k/N)`, the definition of
    Geifman et al. (2019). Lower is better; a perfect ranking reaches :func:`optimal_aurc`, not 0
    (about :math:`r + (1 - r)\ln(1 - r)` at an error rate :math:`r` on many samples). Arguments
    as :func:`risk_coverage_curve`.
    """
    curve = risk_coverage_curve(score, correct, kind)
    coverage = curve["coverage"].to_numpy()
    widths = np.diff(np.concatenate([[0.0], coverage]))
    return float((widths * curve["risk"].to_numpy()).sum())


def optimal_aurc(correct: Any) -> float:
    r"""The AURC of a perfect ranking of these samples: every right one kept before every wrong one.

    With :math:`N` samples, :math:`m` of them wrong, the risk stays 0 while the :math:`N - m`
    right ones are kept; keeping the :math:`j`-th wrong one then brings it to
    :math:`j / (N - m + j)`. So, in the definition of :func:`aurc`,

    .. math:: \mathrm{AURC}^* = \frac{1}{N}\sum_{j=1}^{m} \frac{j}{N - m + j},

    the least :func:`aurc` can be on these samples; ``aurc - optimal_aurc`` is the excess AURC
    (E-AURC), 0 for a perfect ranking. As :math:`N` grows at an error rate :math:`r = m/N` it
    tends to :math:`r + (1 - r)\ln(1 - r)` (Geifman et al. 2019), which lies below it for any
    finite :math:`N`: 0.0503 against 0.0647 for 3 errors in 10 samples.

    Args:
        correct: whether each prediction is right, binary ``(N,)``.

    Raises:
        ValueError: an empty or non-binary ``correct``.
    """
    c = check_binary(correct, "correct").ravel()
    if c.size == 0:
        raise ValueError("correct is empty")
    n, m = c.size, int(np.count_nonzero(~c))
    j = np.arange(1, m + 1)
    return float(np.sum(j / (n - m + j)) / n)


def ood_auroc(uncertainty_in: Any, uncertainty_out: Any) -> float:
    """ROC AUC of uncertainty separating out-of-distribution (positive) from in-distribution inputs.

    Args:
        uncertainty_in: uncertainties of in-distribution samples (any shape, flattened).
        uncertainty_out: uncertainties of out-of-distribution samples.

    Returns:
        AUROC in [0, 1]: 1.0 when every OOD sample is more uncertain than every in-distribution one.

    Raises:
        ValueError: an empty set or NaN/inf values.
    """
    u_in = check_scores(uncertainty_in, "uncertainty_in").ravel()
    u_out = check_scores(uncertainty_out, "uncertainty_out").ravel()
    labels = np.concatenate([np.zeros(u_in.size), np.ones(u_out.size)])
    return float(roc_auc_score(labels, np.concatenate([u_in, u_out])))
