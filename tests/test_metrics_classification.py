"""umlkit.metrics.classification: hand-computed cases, agreement with scikit-learn, bad input."""

import math

import numpy as np
import pytest
import torch
from sklearn import metrics as sk

from umlkit.metrics import (
    accuracy,
    auc,
    classification_report,
    cohen_kappa,
    f1_score,
    predicted_class,
    sensitivity,
    specificity,
)
from umlkit.metrics.classification import REPORT_METRICS

# Binary, positive-class probabilities; predictions (p >= .5 is class 1 except the tie at .5):
#   p      .9  .8  .6  .4  .3  .5
#   pred    1   1   1   0   0   0
#   label   1   0   1   1   0   0
# TP = 2 (samples 0, 2), FP = 1 (sample 1), FN = 1 (sample 3), TN = 2 (samples 4, 5)
P = np.array([0.9, 0.8, 0.6, 0.4, 0.3, 0.5])
Y = np.array([1, 0, 1, 1, 0, 0])


def test_binary_hand_computed():
    assert predicted_class(P).tolist() == [1, 1, 1, 0, 0, 0]  # the tie at .5 goes to class 0
    assert accuracy(P, Y) == pytest.approx(4 / 6)
    assert sensitivity(P, Y) == pytest.approx(2 / 3)  # TP / (TP + FN)
    assert specificity(P, Y) == pytest.approx(2 / 3)  # TN / (TN + FP)
    # F1 of class 1: 2 * (2/3 * 2/3) / (4/3) = 2/3; of class 0: the same -> macro 2/3
    assert f1_score(P, Y) == pytest.approx(2 / 3)
    # kappa: p_o = 4/6, p_e = (3/6 * 3/6) + (3/6 * 3/6) = 1/2 -> (2/3 - 1/2) / (1/2) = 1/3
    assert cohen_kappa(P, Y) == pytest.approx(1 / 3)
    # AUC: positives .9 .6 .4 vs negatives .8 .3 .5: pairs won 3 + 2 + 1 = 6 of 9
    assert auc(P, Y) == pytest.approx(6 / 9)


def test_multiclass_hand_computed():
    probs = np.array(
        [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.5, 0.3, 0.2], [0.3, 0.3, 0.4]]
    )
    labels = np.array([0, 1, 2, 1, 1])  # predictions 0, 1, 2, 0, 2
    # one-vs-rest recall: class 0 1/1, class 1 1/3, class 2 1/1 -> macro 7/9
    assert sensitivity(probs, labels) == pytest.approx(7 / 9)
    # specificity: class 0 TN 3 FP 1 -> 3/4; class 1 TN 2 FP 0 -> 1; class 2 TN 3 FP 1 -> 3/4
    assert specificity(probs, labels) == pytest.approx((0.75 + 1 + 0.75) / 3)
    assert accuracy(probs, labels) == pytest.approx(3 / 5)


def test_agrees_with_sklearn_on_random_data():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([1, 1, 1, 1], size=300)
    labels = rng.integers(0, 4, 300)
    pred = probs.argmax(axis=1)
    assert accuracy(probs, labels) == pytest.approx(sk.accuracy_score(labels, pred))
    for average in ("macro", "weighted"):
        assert f1_score(probs, labels, average) == pytest.approx(
            sk.f1_score(labels, pred, average=average)
        )
    assert cohen_kappa(probs, labels) == pytest.approx(sk.cohen_kappa_score(labels, pred))
    assert auc(probs, labels) == pytest.approx(sk.roc_auc_score(labels, probs, multi_class="ovr"))
    assert sensitivity(probs, labels) == pytest.approx(
        sk.recall_score(labels, pred, average="macro")
    )


def test_undefined_metrics_are_nan():
    only_negatives = np.zeros(4, dtype=int)
    p = np.array([0.1, 0.2, 0.7, 0.4])
    assert math.isnan(auc(p, only_negatives))
    assert math.isnan(sensitivity(p, only_negatives))
    assert specificity(p, only_negatives) == pytest.approx(3 / 4)
    assert math.isnan(cohen_kappa(np.full(3, 0.1), np.zeros(3, dtype=int)))


def test_classification_report_keys_and_tensors():
    report = classification_report(torch.tensor(P), torch.tensor(Y))
    assert set(report) == {
        "accuracy",
        "f1_macro",
        "f1_weighted",
        "auc",
        "kappa",
        "sensitivity",
        "specificity",
        "ece",
        "brier",
        "nll",
    }
    assert tuple(report) == REPORT_METRICS  # the names evaluate() fills with NaN without a head
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["auc"] == pytest.approx(6 / 9)


@pytest.mark.parametrize(
    "function",
    [accuracy, f1_score, auc, cohen_kappa, sensitivity, specificity, classification_report],
)
def test_bad_input_raises(function):
    with pytest.raises(ValueError, match="must lie in"):
        function(np.array([[2.0, -1.0]]), np.array([0]))
    with pytest.raises(ValueError, match="must sum to 1"):
        function(np.array([[0.2, 0.2]]), np.array([0]))
    with pytest.raises(ValueError, match=r"labels must have shape \(6,\)"):
        function(P, Y[:3])
    with pytest.raises(ValueError, match="only 2 classes"):
        function(P, np.array([0, 1, 2, 0, 0, 0]))


def test_bad_average_raises():
    with pytest.raises(ValueError, match="average must be one of"):
        f1_score(P, Y, average="micro")
