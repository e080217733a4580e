"""umlkit.analysis.failure_cases: galleries, risk-coverage and the factors behind failures."""

import numpy as np
import pandas as pd
import pytest

from umlkit.analysis import failure_cases


@pytest.fixture
def failures():
    return pd.DataFrame(
        {
            "id": list("abcdef"),
            "uncertainty": [0.9, 0.1, 0.5, 0.2, 0.8, 0.3],
            "correct": [0, 0, 1, 1, 1, 0],
        }
    )


def test_select_cases(failures):
    cases = failure_cases.select_cases(failures, n=2)
    assert cases["most uncertain"]["id"].tolist() == ["a", "e"]
    assert cases["confidently wrong"]["id"].tolist() == ["b", "f"]
    assert cases["uncertain but right"]["id"].tolist() == ["e", "c"]
    with pytest.raises(ValueError, match="at least 1"):
        failure_cases.select_cases(failures, n=0)
    with pytest.raises(ValueError, match="NaN"):
        failure_cases.select_cases(failures.assign(uncertainty=np.nan))


def test_add_failure_columns():
    table = pd.DataFrame(
        {"correct": [1.0, 0.0, np.nan], "dice": [0.9, 0.5, np.nan], "p_true": [0.2, 0.7, 0.5]}
    )
    out = failure_cases.add_failure_columns(table, dice_threshold=0.7)
    assert out["error"].tolist()[:2] == [0.0, 1.0]
    assert out["segmentation_failure"].tolist()[:2] == [0.0, 1.0]
    assert np.isnan(out["segmentation_failure"].iloc[2])
    np.testing.assert_allclose(out["bayes_error"], [0.2, 0.3, 0.5])
    assert "error" not in table  # a copy
    with pytest.raises(ValueError, match="dice_threshold"):
        failure_cases.add_failure_columns(table, dice_threshold=2)


def test_risk_coverage_curves_hand_computed():
    confidence = np.array([0.9, 0.8, 0.7, 0.6])
    correct = np.array([1, 1, 0, 1])
    curves, table = failure_cases.risk_coverage_curves({"UML": (confidence, correct, "confidence")})
    ((label, (coverage, risk)),) = curves.items()
    area = (0 + 0 + 1 / 3 + 1 / 4) / 4
    assert label == f"UML (AURC {area:.3f})"
    np.testing.assert_allclose(coverage, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(risk, [0, 0, 1 / 3, 1 / 4])
    assert table.loc["UML", "aurc"] == pytest.approx(area)
    assert table.loc["UML", "error_rate"] == pytest.approx(0.25)
    # a perfect ranking keeps the three right images first: risks 0, 0, 0, 1/4
    assert table.loc["UML", "optimal_aurc"] == pytest.approx(1 / 16)


def test_failure_factors_splits_factors_and_flags():
    table = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "dice": [0.1, 0.2, 0.3],
            "dice_1": [0.1, 0.2, 0.3],
            "p_true": [0.1, 0.5, 0.9],
            "asymmetry": [0.1, 0.7, 0.3],
            "hairs": [0, 1, 0],
            "family": ["x", "y", "z"],
        }
    )
    assert failure_cases.failure_factors(table) == (["asymmetry"], ["hairs"])
    constant = table.assign(hairs=0)
    assert failure_cases.failure_factors(constant) == (["asymmetry"], [])


def test_factor_regression_finds_the_driving_factor():
    rng = np.random.default_rng(0)
    n = 400
    table = pd.DataFrame({"driver": rng.normal(size=n), "noise": rng.normal(size=n)})
    table["error"] = (rng.random(n) < 1 / (1 + np.exp(-3 * table["driver"]))).astype(int)
    effects = failure_cases.factor_regression(table, ["noise", "driver"], n_bootstrap=50)
    assert effects["factor"].tolist() == ["driver", "noise"]
    driver, noise = effects.iloc[0], effects.iloc[1]
    assert driver["coefficient"] > 2 and driver["lower"] > 1
    assert noise["lower"] < 0 < noise["upper"]


def test_factor_regression_rejects_bad_input():
    table = pd.DataFrame({"error": [0, 1, 2], "a": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match="must be 0/1"):
        failure_cases.factor_regression(table, ["a"])
    with pytest.raises(ValueError, match="NaN"):
        failure_cases.factor_regression(table.assign(a=[1.0, np.nan, 2.0]), ["a"])
    with pytest.raises(ValueError, match="at least one column"):
        failure_cases.factor_regression(table, [])
    few = pd.DataFrame({"error": [1] * 3 + [0] * 30, "a": np.arange(33.0)})
    with pytest.raises(ValueError, match="only 3 images in its smaller class"):
        failure_cases.factor_regression(few, ["a"])
    assert len(failure_cases.factor_regression(few, ["a"], min_events=3, n_bootstrap=5)) == 1


def test_flag_rates_hand_computed():
    table = pd.DataFrame({"error": [1, 0, 0, 1], "hairs": [1, 1, 0, 0], "blur": [0, 0, 0, 0]})
    rates = failure_cases.flag_rates(table, ["hairs", "blur"]).set_index("flag")
    assert rates.loc["hairs", "rate_present"] == 0.5
    assert rates.loc["hairs", "rate_absent"] == 0.5
    assert rates.loc["hairs", "n_present"] == 2
    assert np.isnan(rates.loc["blur", "rate_present"])
    assert rates.loc["blur", "rate_absent"] == 0.5


def test_describe_effects():
    effects = pd.DataFrame(
        {
            "factor": ["irregularity", "hairs"],
            "coefficient": [1.0, -0.1],
            "lower": [0.5, -0.4],
            "upper": [1.5, 0.2],
        }
    )
    assert failure_cases.describe_effects(effects, "a wrong label") == [
        "irregularity raises the odds of a wrong label: +1.00 log-odds per sd "
        "(95 % interval +0.50 to +1.50, odds x2.72)."
    ]
    none = failure_cases.describe_effects(effects.iloc[1:], "a wrong label")
    assert none[0].startswith("No factor changes the odds of a wrong label clearly")


def test_factor_weights_recover_a_known_linear_log_odds():
    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.uniform(size=(50, 3)), columns=["a", "b", "c"])
    table["prob"] = 1.0 / (1.0 + np.exp(-(0.5 + 2.0 * table["a"] - 1.0 * table["c"])))
    weights = failure_cases.factor_weights(table, ["a", "b", "c"], true_weights=[4.0, 2.0, -2.0])
    assert weights["factor"].tolist() == ["a", "b", "c"]
    np.testing.assert_allclose(weights["weight"], [2.0, 0.0, -1.0], atol=1e-6)
    # shares: w / sum |w| = 2/3, 0, -1/3; the generator's 4/8, 2/8, -2/8
    np.testing.assert_allclose(weights["share"], [2 / 3, 0.0, -1 / 3], atol=1e-6)
    np.testing.assert_allclose(weights["true_share"], [0.5, 0.25, -0.25])
    assert weights.attrs["r2"] == pytest.approx(1.0)


def test_factor_weights_default_to_the_derm_risk_model():
    from umlkit.data.scenes import DERM_FACTORS, DERM_RISK_INTERCEPT, DERM_RISK_WEIGHTS

    rng = np.random.default_rng(1)
    table = pd.DataFrame(rng.uniform(size=(40, 4)), columns=list(DERM_FACTORS))
    logit = DERM_RISK_INTERCEPT + (table - 0.5).to_numpy() @ np.array(DERM_RISK_WEIGHTS)
    table["prob"] = 1.0 / (1.0 + np.exp(-logit))
    weights = failure_cases.factor_weights(table, eps=1e-12)
    np.testing.assert_allclose(weights["weight"], DERM_RISK_WEIGHTS, atol=1e-4)
    np.testing.assert_allclose(weights["share"], weights["true_share"], atol=1e-5)
    no_truth = failure_cases.factor_weights(table, list(DERM_FACTORS))
    assert no_truth["true_weight"].isna().all()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.drop(columns="b"), r"lacks the column\(s\) \['b'\]"),
        (lambda t: t.assign(prob=1.5), "probabilities in"),
        (lambda t: t.assign(a=np.nan), "NaN"),
        (lambda t: t.head(3), "at least 4 images"),
    ],
)
def test_factor_weights_bad_input(change, message):
    table = pd.DataFrame({"a": np.linspace(0, 1, 10), "b": np.linspace(1, 0, 10) ** 2})
    table["prob"] = np.linspace(0.1, 0.9, 10)
    with pytest.raises(ValueError, match=message):
        failure_cases.factor_weights(change(table), ["a", "b"])
    with pytest.raises(ValueError, match="3 true weights for 2 factors"):
        failure_cases.factor_weights(table, ["a", "b"], true_weights=[1, 2, 3])


def test_failure_takeaways_are_computed_from_the_tables():
    table = pd.DataFrame(
        {"uncertainty": [0.9, 0.1, 0.8, 0.2, 0.3, 0.4], "error": [1, 1, 1, 0, 0, 0]}
    )
    aurc = pd.DataFrame(
        {"aurc": [0.30, 0.25], "error_rate": [0.5, 0.4], "optimal_aurc": [0.15, 0.10]},
        index=["UML, u = K/S", "softmax, max p"],
    )
    segmentation = pd.DataFrame(
        {"aurc": [0.20, 0.12]},
        index=["UML, mean pixel uncertainty", "UML, segmentation entropy, mean pixel uncertainty"],
    )
    effects = {
        "error": pd.DataFrame(
            {
                "factor": ["bayes_error", "hairs", "size"],
                "coefficient": [0.7, 1.5, -0.9],
                "lower": [0.5, -0.2, -1.2],
                "upper": [0.9, 3.0, -0.6],
            }
        ),
        "segmentation_failure": pd.DataFrame(
            {"factor": ["hairs"], "coefficient": [0.1], "lower": [-0.1], "upper": [0.3]}
        ),
    }
    words = {"error": "a wrong label", "segmentation_failure": "a failed segmentation"}
    lines = failure_cases.failure_takeaways(table, aurc, segmentation, effects, outcomes=words)
    # wrong mean 0.6, right mean 0.3; the right median is 0.3: one wrong image (0.1) below it
    assert lines[0] == (
        "UML's wrong labels are more uncertain on average (u 0.600 against 0.300 on the right "
        "ones), yet 33% of its wrong images (1 of 3) are less uncertain than the median right image: "
        "confidently wrong, the ones no threshold on u catches."
    )
    assert lines[1] == (
        "Ranked by u = K/S, UML's AURC is 0.300: a perfect ranking would reach 0.150 and a random "
        "one about its error rate, 0.500. The lowest AURC is softmax, max p's (0.250, error rate "
        "0.400)."
    )
    assert "by the mutual decoder's U^s the AURC is 0.200, by the entropy of UML's own " in lines[2]
    assert lines[2].endswith(
        "the segmentation's entropy puts the failed segmentations last more reliably."
    )
    # hairs has the largest coefficient but its interval holds 0: size is the clear one
    assert lines[3] == (
        "Of the recorded factors, size lowers the odds of a wrong label most (-0.90 log-odds per "
        "standard deviation)."
    )
    assert lines[4] == "No recorded factor clearly changes the odds of a failed segmentation."
    calm = table.assign(uncertainty=[0.1, 0.1, 0.1, 0.5, 0.5, 0.5])
    assert failure_cases.failure_takeaways(calm, aurc)[0] == (
        "UML's wrong labels are less uncertain on average (u 0.100 against 0.500 on the right "
        "ones): u does not single out its errors; 100% of its wrong images (3 of 3) are less "
        "uncertain than the median right image."
    )
    alike = table.assign(uncertainty=[0.3, 0.3, 0.3, 0.301, 0.3, 0.3])
    assert "are about as uncertain on average" in failure_cases.failure_takeaways(alike, aurc)[0]
    first = aurc.assign(aurc=[0.2, 0.25])
    assert failure_cases.failure_takeaways(table, first)[1].endswith(
        "No other score of the table has a lower AURC."
    )
    tied = segmentation.assign(aurc=[0.2, 0.2])
    assert failure_cases.failure_takeaways(table, aurc, tied)[2].endswith(
        "the two rank them alike."
    )
    with pytest.raises(ValueError, match="not a row"):
        failure_cases.failure_takeaways(table, aurc.drop(index="UML, u = K/S"))
