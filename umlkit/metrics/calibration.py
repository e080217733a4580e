r"""Calibration metrics: ECE, MCE, adaptive ECE, average calibration error, Brier, NLL, reliability bins.

A classifier is *calibrated* when, among the samples it predicts with confidence :math:`c`, a
fraction :math:`c` is right. Binning the confidences makes this measurable:

.. math::

    \mathrm{ECE} = \sum_b \frac{n_b}{N}\,\big|\mathrm{acc}_b - \mathrm{conf}_b\big|, \qquad
    \mathrm{MCE} = \max_b \big|\mathrm{acc}_b - \mathrm{conf}_b\big|

Conventions (the same in every function here and in :mod:`umlkit.metrics.pixel`):

- **Probabilities are given, never computed**: ``probs`` is ``(N, K)`` with rows summing to 1 (for
  evidential models :math:`p = \alpha/S`), or ``(N,)`` the positive-class probability of a binary
  problem (read as ``[1 - p, p]``). Logits or rows not summing to 1 raise ``ValueError``.
- ``mode="top_label"`` (default): confidence = the largest probability, outcome = "the argmax
  class is the label" (ties go to the lowest class index). ``mode="positive_class"`` (binary
  only): confidence = :math:`p(\text{class }1)`, outcome = "the label is 1"; the reliability
  diagram of a risk score.
- ``strategy="uniform"``: ``n_bins`` equal-width bins [lower, upper) over [0, 1]; a confidence
  of exactly 1.0 falls in the last bin. ``strategy="quantile"``: equal-mass bins, made by sorting
  the confidences (stable sort) and cutting them into ``n_bins`` groups whose sizes differ by at
  most one; each bin's ``lower``/``upper`` are then its smallest and largest confidence.
- Empty bins take no part in any sum, mean or maximum.

References:
    Naeini, Cooper, Hauskrecht. Obtaining Well Calibrated Probabilities Using Bayesian Binning.
    AAAI 2015 (ECE, MCE).
    Guo, Pleiss, Sun, Weinberger. On Calibration of Modern Neural Networks. ICML 2017.
    Nixon et al. Measuring Calibration in Deep Learning. CVPR Workshops 2019 (adaptive bins).
    Brier. Verification of forecasts expressed in terms of probability. Monthly Weather Review 1950.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from umlkit.metrics._checks import check_choice, check_labels, check_n_bins, check_probs

STRATEGIES = ("uniform", "quantile")
MODES = ("top_label", "positive_class")


def uniform_bin_edges(n_bins: int) -> np.ndarray:
    """The ``n_bins + 1`` edges of equal-width bins over [0, 1] (float64)."""
    check_n_bins(n_bins)
    return np.linspace(0.0, 1.0, n_bins + 1)


def uniform_bin_index(confidence: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The bin of each confidence for bins [lower, upper); 1.0 goes to the last bin.

    ``floor(c * n_bins)`` is fast but its rounding can disagree with the stored ``edges`` by one
    bin for a confidence on (or within rounding of) an edge; one comparison with each neighbouring
    edge corrects that, so the result always satisfies ``edges[i] <= c < edges[i + 1]`` (the same
    as ``searchsorted(edges, c, side="right") - 1``, at a fraction of its cost on 10^8 pixels).
    """
    n_bins = len(edges) - 1
    index = np.clip((confidence * n_bins).astype(np.int64), 0, n_bins - 1)
    index -= confidence < edges[index]
    index += (confidence >= edges[index + 1]) & (index < n_bins - 1)
    return index


def confidence_and_outcome(
    probs: Any, labels: Any, mode: str = "top_label"
) -> tuple[np.ndarray, np.ndarray]:
    """The confidence and the 0/1 outcome of each sample that calibration compares.

    Returns:
        ``(confidence, outcome)``, float64 arrays of shape ``(N,)``: for ``"top_label"`` the max
        probability and whether the argmax is right; for ``"positive_class"`` :math:`p_1` and
        whether the label is 1.

    Raises:
        ValueError: invalid probabilities or labels, an unknown ``mode``, or
            ``"positive_class"`` with more than two classes.
    """
    check_choice(mode, MODES, "mode")
    p = check_probs(probs)
    y = check_labels(labels, p.shape[0], p.shape[1])
    if mode == "top_label":
        return p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64)
    if p.shape[1] != 2:
        raise ValueError(f'mode="positive_class" needs a binary problem, got {p.shape[1]} classes')
    return p[:, 1].copy(), (y == 1).astype(np.float64)


def bin_sums(
    confidence: np.ndarray, outcome: np.ndarray, n_bins: int = 15, strategy: str = "uniform"
) -> dict[str, np.ndarray]:
    """Per-bin ``lower, upper, count, confidence_sum, outcome_sum`` (float64 arrays, ``n_bins`` long)."""
    check_n_bins(n_bins)
    check_choice(strategy, STRATEGIES, "strategy")
    if strategy == "uniform":
        edges = uniform_bin_edges(n_bins)
        index = uniform_bin_index(confidence, edges)
        return {
            "lower": edges[:-1],
            "upper": edges[1:],
            "count": np.bincount(index, minlength=n_bins).astype(np.float64),
            "confidence_sum": np.bincount(index, weights=confidence, minlength=n_bins),
            "outcome_sum": np.bincount(index, weights=outcome, minlength=n_bins),
        }
    groups = np.array_split(np.argsort(confidence, kind="stable"), n_bins)
    return {
        "lower": np.array([confidence[g].min() if g.size else np.nan for g in groups]),
        "upper": np.array([confidence[g].max() if g.size else np.nan for g in groups]),
        "count": np.array([g.size for g in groups], dtype=np.float64),
        "confidence_sum": np.array([confidence[g].sum() for g in groups]),
        "outcome_sum": np.array([outcome[g].sum() for g in groups]),
    }


def bins_frame(sums: dict[str, np.ndarray], strategy: str, mode: str) -> pd.DataFrame:
    """A reliability table from :func:`bin_sums`: one row per bin, means NaN for empty bins."""
    count = sums["count"]
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.where(count > 0, sums["confidence_sum"] / count, np.nan)
        observed = np.where(count > 0, sums["outcome_sum"] / count, np.nan)
    frame = pd.DataFrame(
        {
            "bin": np.arange(len(count)),
            "lower": sums["lower"],
            "upper": sums["upper"],
            "count": count.astype(np.int64),
            "confidence": confidence,
            "accuracy": observed,
            "gap": observed - confidence,
        }
    )
    frame.attrs.update(strategy=strategy, mode=mode)
    return frame


def ece_from_sums(count: np.ndarray, confidence_sum: np.ndarray, outcome_sum: np.ndarray) -> float:
    r""":math:`\sum_b \frac{n_b}{N}|\mathrm{acc}_b - \mathrm{conf}_b| = \frac{1}{N}\sum_b |\sum_{i\in b} o_i - \sum_{i \in b} c_i|`."""
    total = count.sum()
    if total == 0:
        return float("nan")
    return float(np.abs(outcome_sum - confidence_sum).sum() / total)


def reliability_bins(
    probs: Any,
    labels: Any,
    n_bins: int = 15,
    strategy: str = "uniform",
    mode: str = "top_label",
) -> pd.DataFrame:
    """The reliability-diagram table: one row per bin.

    Args:
        probs: ``(N, K)`` probabilities (rows sum to 1) or ``(N,)`` binary positive-class ones.
        labels: integer class indices ``(N,)``.
        n_bins: number of bins.
        strategy: ``"uniform"`` (equal width) or ``"quantile"`` (equal mass).
        mode: ``"top_label"`` or ``"positive_class"`` (binary only).

    Returns:
        A DataFrame (the input of :func:`umlkit.plots.reliability_diagram`) with one row per bin
        and the columns ``bin``, ``lower``, ``upper`` (the bin's range), ``count``,
        ``confidence`` (mean confidence), ``accuracy`` (mean outcome: the accuracy in top-label
        mode, **the observed frequency of class 1** in positive-class mode) and
        ``gap = accuracy - confidence``. Empty bins have ``count`` 0 and NaN means.
        ``frame.attrs`` records ``strategy`` and ``mode``.

    Raises:
        ValueError: invalid probabilities or labels, or an unknown option.
    """
    confidence, outcome = confidence_and_outcome(probs, labels, mode)
    return bins_frame(bin_sums(confidence, outcome, n_bins, strategy), strategy, mode)


def expected_calibration_error(
    probs: Any,
    labels: Any,
    n_bins: int = 15,
    strategy: str = "uniform",
    mode: str = "top_label",
) -> float:
    r"""Expected calibration error :math:`\sum_b \frac{n_b}{N}|\mathrm{acc}_b - \mathrm{conf}_b|`.

    Args:
        probs: ``(N, K)`` probabilities (rows sum to 1) or ``(N,)`` binary positive-class ones.
        labels: integer class indices ``(N,)``.
        n_bins: number of bins (15 is the common choice since Guo et al. 2017).
        strategy: ``"uniform"`` equal-width bins [lower, upper) (1.0 in the last bin) or
            ``"quantile"`` equal-mass bins (then see also :func:`aece`).
        mode: ``"top_label"`` or ``"positive_class"`` (binary only); see the module docstring.

    Returns:
        ECE in [0, 1].

    Raises:
        ValueError: probabilities outside [0, 1], NaN, rows not summing to 1, shapes that do not
            match, labels out of range, or an unknown option.
    """
    confidence, outcome = confidence_and_outcome(probs, labels, mode)
    sums = bin_sums(confidence, outcome, n_bins, strategy)
    return ece_from_sums(sums["count"], sums["confidence_sum"], sums["outcome_sum"])


def aece(probs: Any, labels: Any, n_bins: int = 15, mode: str = "top_label") -> float:
    """Adaptive ECE: :func:`expected_calibration_error` with equal-mass (quantile) bins.

    Equal-mass bins spend their resolution where the confidences are, which matters for modern
    networks whose confidences pile up near 1 (Nixon et al. 2019).
    """
    return expected_calibration_error(probs, labels, n_bins, strategy="quantile", mode=mode)


def _bin_gaps(probs: Any, labels: Any, n_bins: int, strategy: str, mode: str) -> np.ndarray:
    """:math:`|\\mathrm{acc}_b - \\mathrm{conf}_b|` of the non-empty bins."""
    frame = reliability_bins(probs, labels, n_bins, strategy, mode)
    return frame.loc[frame["count"] > 0, "gap"].abs().to_numpy()


def maximum_calibration_error(
    probs: Any,
    labels: Any,
    n_bins: int = 15,
    strategy: str = "uniform",
    mode: str = "top_label",
) -> float:
    r"""Maximum calibration error :math:`\max_b |\mathrm{acc}_b - \mathrm{conf}_b|` over non-empty bins.

    Arguments and errors as :func:`expected_calibration_error`. Sensitive to bins holding a
    handful of samples: read it next to the bin counts.
    """
    return float(_bin_gaps(probs, labels, n_bins, strategy, mode).max())


def average_calibration_error(
    probs: Any,
    labels: Any,
    n_bins: int = 15,
    strategy: str = "uniform",
    mode: str = "top_label",
) -> float:
    r"""Average calibration error: the *unweighted* mean of :math:`|\mathrm{acc}_b - \mathrm{conf}_b|` over non-empty bins.

    Unlike ECE every non-empty bin counts the same, however few samples it holds. (Called "ACE"
    in some papers, a name other papers use for a different, class-wise "adaptive" metric; umlkit
    never shortens it.) Arguments and errors as :func:`expected_calibration_error`.
    """
    return float(_bin_gaps(probs, labels, n_bins, strategy, mode).mean())


def brier_score(probs: Any, labels: Any) -> float:
    r"""Brier score summed over classes, averaged over samples: :math:`\frac{1}{N}\sum_i\sum_k (p_{ik} - y_{ik})^2`.

    In [0, 2]. For ``(N,)`` binary input the probabilities are read as ``[1 - p, p]`` and both
    classes are summed, which gives :math:`2(p - y)^2`: **twice** scikit-learn's
    ``brier_score_loss`` (which scores the positive class only).

    Raises:
        ValueError: invalid probabilities or labels.
    """
    p = check_probs(probs)
    y = check_labels(labels, p.shape[0], p.shape[1])
    one_hot = np.eye(p.shape[1])[y]
    return float(((p - one_hot) ** 2).sum(axis=1).mean())


def negative_log_likelihood(probs: Any, labels: Any, eps: float = 1e-12) -> float:
    r"""Mean negative log-likelihood of the labels, :math:`-\frac{1}{N}\sum_i \ln \max(p_{i,y_i}, \varepsilon)`.

    The floor :math:`\varepsilon` keeps a probability of exactly 0 on the true class finite
    (it then contributes :math:`-\ln 10^{-12} \approx 27.6`).

    Raises:
        ValueError: invalid probabilities or labels, or ``eps`` outside (0, 1).
    """
    if not 0 < eps < 1:
        raise ValueError(f"eps must lie in (0, 1), got {eps}")
    p = check_probs(probs)
    y = check_labels(labels, p.shape[0], p.shape[1])
    true_class = p[np.arange(p.shape[0]), y]
    return float(-np.log(np.maximum(true_class, eps)).mean())
