"""umlkit.metrics.uncertainty: UEO, uncertainty-error AUROC/AUPRC, risk-coverage, AURC, OOD AUROC."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from umlkit.metrics import (
    aurc,
    error_map,
    ood_auroc,
    optimal_aurc,
    risk_coverage_curve,
    ueo_curve,
    uncertainty_error_auprc,
    uncertainty_error_auroc,
    uncertainty_error_overlap,
)

UNCERTAINTY = np.array([[0.9, 0.7, 0.2], [0.1, 0.6, 0.3]])
ERROR = np.array([[1, 1, 0], [0, 0, 1]], dtype=bool)


def test_ueo_hand_computed():
    # t = .5: uncertain {.9, .7, .6}, errors {.9, .7, .3}: overlap 2 -> 2 * 2 / (3 + 3) = 2/3
    assert uncertainty_error_overlap(UNCERTAINTY, ERROR, 0.5) == pytest.approx(2 / 3)
    # t = .25: uncertain {.9, .7, .6, .3}: overlap 3 -> 6 / 7
    assert uncertainty_error_overlap(UNCERTAINTY, ERROR, 0.25) == pytest.approx(6 / 7)
    # strictly above: t = .9 flags nothing -> 0 overlap, 3 errors -> 0
    assert uncertainty_error_overlap(UNCERTAINTY, ERROR, 0.9) == 0.0
    # no errors and nothing flagged: two empty sets overlap perfectly
    assert uncertainty_error_overlap(UNCERTAINTY, np.zeros((2, 3)), 1.0) == 1.0


def test_ueo_curve_equals_single_thresholds():
    rng = np.random.default_rng(0)
    uncertainty = np.round(rng.random((20, 20)), 2)  # rounded: ties at the thresholds
    error = rng.random((20, 20)) < uncertainty
    thresholds = np.linspace(0, 1, 41)
    curve = ueo_curve(uncertainty, error, thresholds)
    expected = [uncertainty_error_overlap(uncertainty, error, t) for t in thresholds]
    np.testing.assert_allclose(curve["ueo"], expected)
    default = ueo_curve(uncertainty, error)
    assert len(default) == 101
    assert default["threshold"].iloc[0] == uncertainty.min()


def test_error_map():
    assert error_map(np.array([0, 1, 2]), torch.tensor([0, 2, 2])).tolist() == [False, True, False]


def test_auroc_auprc_against_sklearn():
    rng = np.random.default_rng(1)
    uncertainty = rng.random(500)
    error = rng.random(500) < uncertainty
    assert uncertainty_error_auroc(uncertainty, error) == pytest.approx(
        roc_auc_score(error, uncertainty)
    )
    assert uncertainty_error_auprc(uncertainty, error) == pytest.approx(
        average_precision_score(error, uncertainty)
    )
    # hand: every error more uncertain than every correct pixel -> 1
    assert uncertainty_error_auroc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert math.isnan(uncertainty_error_auroc([0.1, 0.2], [0, 0]))
    assert math.isnan(uncertainty_error_auprc([0.1, 0.2], [1, 1]))


def test_risk_coverage_hand_computed():
    # most confident first: .9 right, .8 right, .7 wrong, .6 right
    curve = risk_coverage_curve([0.6, 0.9, 0.7, 0.8], [1, 1, 0, 1])
    assert curve["coverage"].tolist() == [0.25, 0.5, 0.75, 1.0]
    np.testing.assert_allclose(curve["risk"], [0, 0, 1 / 3, 1 / 4])
    assert curve["threshold"].tolist() == [0.9, 0.8, 0.7, 0.6]
    # AURC = (0 + 0 + 1/3 + 1/4) / 4
    assert aurc([0.6, 0.9, 0.7, 0.8], [1, 1, 0, 1]) == pytest.approx((1 / 3 + 1 / 4) / 4)
    # the same ranking given as uncertainty (lower = surer)
    assert aurc([0.4, 0.1, 0.3, 0.2], [1, 1, 0, 1], kind="uncertainty") == pytest.approx(
        (1 / 3 + 1 / 4) / 4
    )


def test_risk_coverage_keeps_ties_together():
    # .9 and .9 are kept together: coverage 2/3 with risk 1/2, then all with risk 1/3
    curve = risk_coverage_curve([0.9, 0.9, 0.5], [1, 0, 1])
    assert curve["coverage"].tolist() == pytest.approx([2 / 3, 1.0])
    assert curve["risk"].tolist() == pytest.approx([1 / 2, 1 / 3])
    # AURC = 2/3 * 1/2 + 1/3 * 1/3; the order of the tied samples does not matter
    assert aurc([0.9, 0.9, 0.5], [1, 0, 1]) == pytest.approx(1 / 3 + 1 / 9)
    assert aurc([0.9, 0.9, 0.5], [0, 1, 1]) == pytest.approx(1 / 3 + 1 / 9)


def test_optimal_aurc_hand_computed():
    # 3 errors in 10: risks 0 (x7), then 1/8, 2/9, 3/10 as the errors are kept last
    assert optimal_aurc([1, 0, 1, 1, 1, 1, 0, 0, 1, 1]) == pytest.approx(
        (1 / 8 + 2 / 9 + 3 / 10) / 10
    )
    assert optimal_aurc(np.ones(5, dtype=bool)) == 0.0  # no error: exact by construction
    assert optimal_aurc([0, 0]) == pytest.approx((1 / 1 + 2 / 2) / 2)  # every one wrong


def test_optimal_aurc_is_the_aurc_of_a_perfect_ranking_and_tends_to_the_formula():
    rng = np.random.default_rng(0)
    correct = rng.random(200) > 0.3
    # an uncertainty that puts every wrong sample above every right one, no two alike
    perfect = (~correct) + rng.random(200) * 0.5
    assert aurc(perfect, correct, kind="uncertainty") == pytest.approx(optimal_aurc(correct))
    # any other ranking does no better
    assert aurc(rng.random(200), correct, kind="uncertainty") > optimal_aurc(correct)
    # many samples at error rate r: r + (1 - r) ln(1 - r) (Geifman et al. 2019), approached
    # from above
    r = 0.3
    limit = r + (1 - r) * np.log(1 - r)
    for n in (10, 100, 10_000):
        assert optimal_aurc(np.arange(n) >= round(r * n)) > limit
    assert optimal_aurc(np.arange(10_000) >= 3000) == pytest.approx(limit, abs=1e-4)


def test_ood_auroc_hand_computed():
    # out .3 beats .1 and .2; out .15 beats .1 only -> 3 of 4 pairs
    assert ood_auroc([0.1, 0.2], torch.tensor([0.3, 0.15])) == pytest.approx(0.75)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="same shape"):
        uncertainty_error_overlap(UNCERTAINTY, ERROR[:1], 0.5)
    with pytest.raises(ValueError, match="must be binary"):
        ueo_curve(UNCERTAINTY, UNCERTAINTY)
    with pytest.raises(ValueError, match="NaN or inf"):
        uncertainty_error_auroc([np.nan, 0.1], [0, 1])
    with pytest.raises(ValueError, match="same length"):
        risk_coverage_curve([0.1, 0.2], [1])
    with pytest.raises(ValueError, match="kind must be one of"):
        aurc([0.1], [1], kind="entropy")
    with pytest.raises(ValueError, match="correct is empty"):
        optimal_aurc([])
    with pytest.raises(ValueError, match="must be binary"):
        optimal_aurc([1, 0.5])
    with pytest.raises(ValueError, match="uncertainty_out is empty"):
        ood_auroc([0.1], [])
    with pytest.raises(ValueError, match="same shape"):
        error_map(np.zeros(3), np.zeros(4))
