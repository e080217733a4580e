"""Classification metrics on predicted probabilities: accuracy, F1, AUC, Cohen's kappa, sensitivity, specificity.

Every function takes ``probs`` (``(N, K)`` rows summing to 1, or ``(N,)`` binary positive-class
probabilities) and integer ``labels`` ``(N,)``; scikit-learn computes the numbers. The predicted
class is the argmax of ``probs`` (ties go to the lowest index, so a binary ``p = 0.5`` predicts
class 0). Hard predictions can be passed as one-hot rows.

Sensitivity and specificity: for two classes they are those of the positive class 1
(sensitivity = TP / (TP + FN), specificity = TN / (TN + FP)); for more classes, the unweighted
(macro) mean of the one-vs-rest values of each class. A metric whose denominator is zero (no
positive labels, or AUC with a single class present) is NaN rather than an exception, so a
report over a tiny split still comes back; NaN is what pandas skips in means.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics as sk

from umlkit.metrics._checks import check_choice, check_labels, check_probs
from umlkit.metrics.calibration import (
    brier_score,
    expected_calibration_error,
    negative_log_likelihood,
)


def _probs_labels(probs: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    p = check_probs(probs)
    return p, check_labels(labels, p.shape[0], p.shape[1])


def predicted_class(probs: Any) -> np.ndarray:
    """The argmax class of each row (ties: lowest index), int64 ``(N,)``."""
    return check_probs(probs).argmax(axis=1)


def accuracy(probs: Any, labels: Any) -> float:
    """Fraction of samples whose argmax class is the label."""
    p, y = _probs_labels(probs, labels)
    return float(sk.accuracy_score(y, p.argmax(axis=1)))


def f1_score(probs: Any, labels: Any, average: str = "macro") -> float:
    """F1 = 2 precision recall / (precision + recall), averaged over classes.

    Args:
        probs, labels: as in the module docstring.
        average: ``"macro"`` (unweighted mean over the K classes) or ``"weighted"`` (weighted by
            each class's number of labels; the UML reference evaluation's choice).
    """
    check_choice(average, ("macro", "weighted"), "average")
    p, y = _probs_labels(probs, labels)
    return float(
        sk.f1_score(
            y, p.argmax(axis=1), average=average, labels=np.arange(p.shape[1]), zero_division=0
        )
    )


def auc(probs: Any, labels: Any) -> float:
    """Area under the ROC curve: binary from :math:`p_1`, else one-vs-rest macro average.

    Returns:
        AUC in [0, 1], or NaN when a class of ``probs`` never occurs in ``labels`` (AUC is
        undefined without positives and negatives).
    """
    p, y = _probs_labels(probs, labels)
    if np.unique(y).size < p.shape[1]:
        return float("nan")
    if p.shape[1] == 2:
        return float(sk.roc_auc_score(y, p[:, 1]))
    return float(
        sk.roc_auc_score(y, p, multi_class="ovr", average="macro", labels=np.arange(p.shape[1]))
    )


def cohen_kappa(probs: Any, labels: Any) -> float:
    r"""Cohen's kappa :math:`\kappa = (p_o - p_e) / (1 - p_e)`: agreement beyond chance.

    NaN when chance agreement is 1 (a single class in both predictions and labels).
    """
    p, y = _probs_labels(probs, labels)
    pred = p.argmax(axis=1)
    if np.unique(np.concatenate([y, pred])).size < 2:
        return float("nan")
    return float(sk.cohen_kappa_score(y, pred, labels=np.arange(p.shape[1])))


def _one_vs_rest_counts(
    probs: Any, labels: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    p, y = _probs_labels(probs, labels)
    # (K, 2, 2) per-class confusion matrices [[TN, FP], [FN, TP]]
    matrices = sk.multilabel_confusion_matrix(y, p.argmax(axis=1), labels=np.arange(p.shape[1]))
    tn, fp, fn, tp = (
        matrices[:, i, j].astype(np.float64) for i, j in ((0, 0), (0, 1), (1, 0), (1, 1))
    )
    if p.shape[1] == 2:
        return tn[1:], fp[1:], fn[1:], tp[1:]
    return tn, fp, fn, tp


def _safe_mean_ratio(numerator: np.ndarray, denominator: np.ndarray) -> float:
    if (denominator == 0).any():
        return float("nan")
    return float((numerator / denominator).mean())


def sensitivity(probs: Any, labels: Any) -> float:
    """Sensitivity (recall, true-positive rate) TP / (TP + FN); see the module docstring.

    NaN when the positive class 1 (two classes) or any class (more) has no labelled samples.
    """
    _, _, fn, tp = _one_vs_rest_counts(probs, labels)
    return _safe_mean_ratio(tp, tp + fn)


def specificity(probs: Any, labels: Any) -> float:
    """Specificity (true-negative rate) TN / (TN + FP); see the module docstring.

    NaN when no label is 0 (two classes) or one class is every label (more: its one-vs-rest
    problem has no negatives).
    """
    tn, fp, _, _ = _one_vs_rest_counts(probs, labels)
    return _safe_mean_ratio(tn, tn + fp)


#: The keys of :func:`classification_report`, in its order.
REPORT_METRICS = (
    "accuracy", "f1_macro", "f1_weighted", "auc", "kappa", "sensitivity", "specificity", "ece",
    "brier", "nll",
)  # fmt: skip


def classification_report(probs: Any, labels: Any, n_bins: int = 15) -> dict[str, float]:
    """All classification metrics of this module plus ECE, Brier and NLL, as one flat dict.

    Returns:
        The keys of :data:`REPORT_METRICS`: ``{"accuracy", "f1_macro", "f1_weighted", "auc",
        "kappa", "sensitivity", "specificity", "ece", "brier", "nll"}`` (floats; NaN where
        undefined, see the functions). ``ece`` is the top-label ECE with ``n_bins`` equal-width
        bins.
    """
    p, y = _probs_labels(probs, labels)
    return {
        "accuracy": accuracy(p, y),
        "f1_macro": f1_score(p, y, "macro"),
        "f1_weighted": f1_score(p, y, "weighted"),
        "auc": auc(p, y),
        "kappa": cohen_kappa(p, y),
        "sensitivity": sensitivity(p, y),
        "specificity": specificity(p, y),
        "ece": expected_calibration_error(p, y, n_bins=n_bins),
        "brier": brier_score(p, y),
        "nll": negative_log_likelihood(p, y),
    }
