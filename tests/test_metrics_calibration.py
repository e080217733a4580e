"""umlkit.metrics.calibration: ECE, MCE, adaptive ECE, average calibration error, Brier, NLL."""

import math

import numpy as np
import pytest
import torch
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, log_loss

from umlkit.metrics import (
    aece,
    average_calibration_error,
    brier_score,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
    reliability_bins,
)
from umlkit.metrics.calibration import uniform_bin_edges, uniform_bin_index

# Five samples, two classes. Top-label confidences .9, .8, .7, .65, .95; predictions 0, 0, 1, 1, 0;
# labels 0, 1, 1, 0, 0 -> correct 1, 0, 1, 0, 1.
PROBS = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.35, 0.65], [0.95, 0.05]])
LABELS = np.array([0, 1, 1, 0, 0])


def test_ece_mce_average_hand_computed():
    # 5 bins with edges 0, .2, .4, .6, .8, 1:
    #   [.8, 1): .9, .8, .95 -> mean confidence .883333, accuracy 2/3, gap .216667
    #   [.6, .8): .7, .65    -> mean confidence .675,    accuracy 1/2, gap .175
    # ECE = 3/5 * .216667 + 2/5 * .175 = .2; MCE = .216667; unweighted mean = .195833
    assert expected_calibration_error(PROBS, LABELS, n_bins=5) == pytest.approx(0.2)
    assert maximum_calibration_error(PROBS, LABELS, n_bins=5) == pytest.approx(0.65 / 3)
    assert average_calibration_error(PROBS, LABELS, n_bins=5) == pytest.approx(
        (0.65 / 3 + 0.175) / 2
    )


def test_reliability_bins_hand_computed():
    bins = reliability_bins(PROBS, LABELS, n_bins=5)
    assert list(bins.columns) == ["bin", "lower", "upper", "count", "confidence", "accuracy", "gap"]
    assert bins["count"].tolist() == [0, 0, 0, 2, 3]
    assert bins.loc[4, "confidence"] == pytest.approx(2.65 / 3)
    assert bins.loc[4, "accuracy"] == pytest.approx(2 / 3)
    assert bins.loc[3, "gap"] == pytest.approx(0.5 - 0.675)
    assert bins.loc[:2, "confidence"].isna().all()
    assert bins.attrs == {"strategy": "uniform", "mode": "top_label"}


def test_bins_are_half_open_with_one_in_the_last_bin():
    edges = uniform_bin_edges(2)
    assert uniform_bin_index(np.array([0.0, 0.4999, 0.5, 0.75, 1.0]), edges).tolist() == [
        0,
        0,
        1,
        1,
        1,
    ]
    # binary probabilities (N,): p = 0.5 has top-label confidence 0.5 -> the upper bin [0.5, 1]
    bins = reliability_bins(np.array([0.5, 1.0]), np.array([0, 1]), n_bins=2)
    assert bins["count"].tolist() == [0, 2]


def test_bin_index_agrees_with_searchsorted_on_edges():
    rng = np.random.default_rng(0)
    for n_bins in (1, 3, 10, 15, 100):
        edges = uniform_bin_edges(n_bins)
        confidence = np.clip(
            np.concatenate(
                [rng.random(5000), edges, np.nextafter(edges, 2), np.nextafter(edges, -1)]
            ),
            0,
            1,
        )
        expected = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, n_bins - 1)
        assert np.array_equal(uniform_bin_index(confidence, edges), expected)


def test_quantile_bins_and_aece_hand_computed():
    # sorted confidences .65, .7, .8, .9, .95 split into 2 equal-mass groups (3 + 2):
    #   {.65, .7, .8}: correct 0, 1, 0 -> |1/3 - .716667| = .383333
    #   {.9, .95}:     correct 1, 1    -> |1 - .925|     = .075
    # aECE = 3/5 * .383333 + 2/5 * .075 = .26
    assert aece(PROBS, LABELS, n_bins=2) == pytest.approx(0.26)
    bins = reliability_bins(PROBS, LABELS, n_bins=2, strategy="quantile")
    assert bins["count"].tolist() == [3, 2]
    assert bins[["lower", "upper"]].to_numpy().tolist() == [[0.65, 0.8], [0.9, 0.95]]


def test_positive_class_mode_hand_computed_and_against_sklearn():
    # p(class 1) = .1, .2, .7, .65, .05 with labels 0, 1, 1, 0, 0; 5 bins:
    #   [0, .2): .1, .05 -> frequency 0, confidence .075
    #   [.2, .4): .2     -> frequency 1, confidence .2
    #   [.6, .8): .7, .65 -> frequency .5, confidence .675
    # ECE = (2 * .075 + 1 * .8 + 2 * .175) / 5 = .26
    assert expected_calibration_error(PROBS, LABELS, n_bins=5, mode="positive_class") == (
        pytest.approx(0.26)
    )
    rng = np.random.default_rng(1)
    p = rng.random(2000)
    labels = (rng.random(2000) < p**1.5).astype(int)
    bins = reliability_bins(p, labels, n_bins=10, mode="positive_class")
    filled = bins[bins["count"] > 0]
    frequency, confidence = calibration_curve(labels, p, n_bins=10, strategy="uniform")
    np.testing.assert_allclose(filled["accuracy"], frequency)
    np.testing.assert_allclose(filled["confidence"], confidence)


def test_ece_is_near_zero_for_labels_drawn_from_the_probabilities():
    rng = np.random.default_rng(2)
    probs = rng.dirichlet([0.5, 0.5, 0.5], size=200_000)
    labels = (probs.cumsum(axis=1) < rng.random((200_000, 1))).sum(axis=1)
    assert expected_calibration_error(probs, labels) < 0.01
    assert aece(probs, labels) < 0.01
    # the same labels with over-confident probabilities are clearly miscalibrated
    sharpened = probs**3 / (probs**3).sum(axis=1, keepdims=True)
    assert expected_calibration_error(sharpened, labels) > 0.05


def test_brier_hand_computed_and_against_sklearn():
    # (.8, .2) with label 0: (.8 - 1)^2 + (.2 - 0)^2 = .08; (.3, .7) with label 0: .49 + .49 = .98
    assert brier_score([[0.8, 0.2], [0.3, 0.7]], [0, 0]) == pytest.approx((0.08 + 0.98) / 2)
    rng = np.random.default_rng(3)
    p = rng.random(100)
    labels = rng.integers(0, 2, 100)
    # binary (N,) input sums both classes: twice scikit-learn's positive-class Brier
    assert brier_score(p, labels) == pytest.approx(2 * brier_score_loss(labels, p))


def test_nll_hand_computed_and_against_sklearn():
    # -(ln .8 + ln .7) / 2
    assert negative_log_likelihood([[0.8, 0.2], [0.3, 0.7]], [0, 1]) == pytest.approx(
        -(math.log(0.8) + math.log(0.7)) / 2
    )
    rng = np.random.default_rng(4)
    probs = rng.dirichlet([1, 1, 1], size=50)
    labels = rng.integers(0, 3, 50)
    assert negative_log_likelihood(probs, labels) == pytest.approx(
        log_loss(labels, probs, labels=[0, 1, 2])
    )
    # a zero probability on the true class is floored, not infinite
    assert negative_log_likelihood([[1.0, 0.0]], [1]) == pytest.approx(-math.log(1e-12))


def test_tensors_and_half_precision_are_accepted():
    rng = np.random.default_rng(5)
    probs = rng.dirichlet([1, 1], size=100).astype(np.float32)
    labels = rng.integers(0, 2, 100)
    expected = expected_calibration_error(probs, labels)
    assert expected_calibration_error(torch.from_numpy(probs), torch.from_numpy(labels)) == expected
    half = torch.from_numpy(probs).half()
    half = half / half.sum(dim=1, keepdim=True)
    assert expected_calibration_error(half, labels) == pytest.approx(expected, abs=5e-3)


BAD_PROBS = [
    (np.array([[1.2, -0.2]]), "must lie in"),
    (np.array([[0.5, float("nan")]]), "NaN or inf"),
    (np.array([[0.5, 0.6]]), "must sum to 1"),
    (np.array([[2.0, -1.0]]), "not logits"),
    (np.zeros((1, 2, 2)), "must have shape"),
    (np.zeros((0, 2)), "empty"),
    (np.array([[1.0]]), "single column"),
    (np.array([["a", "b"]]), "numeric"),
]


@pytest.mark.parametrize(
    "function",
    [
        expected_calibration_error,
        maximum_calibration_error,
        aece,
        average_calibration_error,
        brier_score,
        negative_log_likelihood,
        reliability_bins,
    ],
)
@pytest.mark.parametrize(("probs", "message"), BAD_PROBS)
def test_bad_probabilities_raise(function, probs, message):
    with pytest.raises(ValueError, match=message):
        function(probs, np.zeros(len(probs), dtype=int))


def test_bad_labels_and_options_raise():
    with pytest.raises(ValueError, match=r"labels must have shape \(5,\)"):
        expected_calibration_error(PROBS, LABELS[:4])
    with pytest.raises(ValueError, match="only 2 classes"):
        expected_calibration_error(PROBS, [0, 1, 2, 0, 0])
    with pytest.raises(ValueError, match="negative class index"):
        brier_score(PROBS, [0, 1, -1, 0, 0])
    with pytest.raises(ValueError, match="integer class indices"):
        negative_log_likelihood(PROBS, [0, 1, 0.5, 0, 0])
    with pytest.raises(ValueError, match="strategy must be one of"):
        expected_calibration_error(PROBS, LABELS, strategy="kmeans")
    with pytest.raises(ValueError, match="mode must be one of"):
        expected_calibration_error(PROBS, LABELS, mode="classwise")
    with pytest.raises(ValueError, match="needs a binary problem"):
        expected_calibration_error(np.full((2, 3), 1 / 3), [0, 1], mode="positive_class")
    with pytest.raises(ValueError, match="n_bins must be a positive integer"):
        expected_calibration_error(PROBS, LABELS, n_bins=0)
    with pytest.raises(ValueError, match="eps must lie"):
        negative_log_likelihood(PROBS, LABELS, eps=0)
