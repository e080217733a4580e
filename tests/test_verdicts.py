"""umlkit.analysis.verdicts: when a comparison is a finding at both budgets, on hand-made numbers."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from umlkit.analysis import ablations, verdicts


def test_positive_and_beyond_the_spread_at_both_budgets_is_a_finding():
    # final: mean 0.04, std 0.01; half: mean 0.03, std 0.01 -> |mean| > std at both
    verdict = verdicts.two_budget(
        pd.Series([0.03, 0.04, 0.05], index=[0, 1, 2]),
        pd.Series([0.04, 0.03, 0.02], index=[2, 1, 0]),  # the same seeds in another order
        "UML beats multitask on Dice.",
    )
    assert verdict.final.difference == pytest.approx(0.04)
    assert verdict.final.spread == pytest.approx(0.01)
    assert verdict.half.difference == pytest.approx(0.03)
    assert verdict.final.beyond is True and verdict.half.beyond is True
    assert verdict.settled and verdict.reason == ""
    assert verdict.text == (
        "Finding: UML beats multitask on Dice (final +0.040 ± 0.010, beyond the spread; "
        "half +0.030 ± 0.010, beyond the spread)."
    )


def test_a_sign_that_flips_between_the_budgets_is_not_settled():
    # final +0.04 ± 0.01, half -0.03 ± 0.01: beyond the spread at both, but opposite
    verdict = verdicts.two_budget([0.03, 0.04, 0.05], [-0.02, -0.03, -0.04], "A beats B.")
    assert not verdict.settled
    assert verdict.reason == "the sign flips between the budgets"
    assert verdict.text.startswith("Not settled at this budget: A beats B — the sign flips")
    assert "final +0.040 ± 0.010" in verdict.text and "half -0.030 ± 0.010" in verdict.text


def test_beyond_the_spread_at_one_budget_only_is_not_settled():
    # half: mean 0.01, std 0.02 -> within the spread
    verdict = verdicts.two_budget([0.03, 0.04, 0.05], [-0.01, 0.01, 0.03], "A beats B.")
    assert verdict.half.difference == pytest.approx(0.01)
    assert verdict.half.spread == pytest.approx(0.02)
    assert verdict.half.beyond is False
    assert verdict.reason == "beyond the spread at one budget only"
    assert not verdict.settled


def test_within_the_spread_at_both_budgets_with_the_same_sign_is_settled():
    verdict = verdicts.two_budget([-0.01, 0.01, 0.03], [0.0, 0.01, 0.02], "A and B are level.")
    assert verdict.final.beyond is False and verdict.half.beyond is False
    assert verdict.settled


def test_one_seed_settles_nothing():
    verdict = verdicts.two_budget([0.05], [0.04], "A beats B.")
    assert np.isnan(verdict.final.spread) and verdict.final.beyond is None
    assert verdict.reason == "one seed: no spread to judge it by"
    assert "final +0.050, one seed" in verdict.text


def test_a_ranking_with_another_leader_at_half_is_not_settled():
    final = verdicts.ranking_reading("UML", 0.02, [0.01, 0.005])
    half = verdicts.ranking_reading("multitask", -0.03, [0.01, np.nan])
    assert final.spread == pytest.approx(0.01) and final.beyond is True
    assert half.beyond is True
    verdict = verdicts.Verdict("UML ranks first on ECE.", final, half)
    assert verdict.reason == "first at the final budget UML, at half the training multitask"
    same = verdicts.Verdict(
        "UML ranks first on ECE.", final, verdicts.ranking_reading("UML", 0.015, [0.01])
    )
    assert same.settled
    assert same.text.startswith("Finding: UML ranks first on ECE (final UML first, +0.020 ± 0.010")


def test_the_two_rules_of_beyond_the_spread():
    assert verdicts.paired_beyond_spread(0.02, 0.01) is True
    assert verdicts.paired_beyond_spread(-0.02, 0.03) is False
    assert verdicts.paired_beyond_spread(0.02, np.nan) is None
    assert verdicts.ranking_beyond_spread(-0.02, [0.01, 0.02]) is True  # |gap| >= the larger
    assert verdicts.ranking_beyond_spread(0.01, [np.nan, 0.02]) is False
    assert verdicts.ranking_beyond_spread(0.01, [np.nan, np.nan]) is None


@pytest.mark.parametrize(
    ("final", "half", "message"),
    [
        (
            pd.Series([0.1, 0.2], index=[0, 1]),
            pd.Series([0.1, 0.2], index=[0, 2]),
            "different seeds",
        ),
        ([], [0.1], "final: no values"),
        ([0.1, np.nan], [0.1, 0.2], "final: NaN"),
        ([0.1, 0.2], [0.1, np.nan], "half: NaN"),
    ],
)
def test_two_budget_rejects_bad_input(final, half, message):
    with pytest.raises(ValueError, match=message) as error:
        verdicts.two_budget(final, half, "A beats B.")
    assert "\n" not in str(error.value)


def test_settled_sentences_pass_plain_sentences_and_count_the_findings():
    settled = verdicts.two_budget([0.03, 0.04, 0.05], [0.02, 0.03, 0.04], "A beats B.")
    flipped = verdicts.two_budget([0.03, 0.04, 0.05], [-0.02, -0.03, -0.04], "C beats D.")
    lines = verdicts.settled_sentences(["Only A has this metric.", settled, flipped])
    assert lines[0] == "Only A has this metric."
    assert lines[1].startswith("Finding: A beats B")
    assert lines[2].startswith("Not settled at this budget: C beats D")
    assert lines[3].startswith("1 of 2 comparisons hold at both budgets")


def test_budget_note():
    assert verdicts.budget_note("smoke", "2 epochs", 48) == [
        "smoke profile: 2 epochs on 48 images; these sentences settle nothing"
    ]
    assert verdicts.budget_note("default", "2 epochs", 6000) == []


def test_half_budget_models_refuse_runs_without_half_budget_weights():
    old = {
        ("UML", 0): SimpleNamespace(
            model=None, half_state=None, config=SimpleNamespace(model="uml")
        )
    }
    with pytest.raises(ValueError, match="no half-budget weights"):
        verdicts.half_budget_models(old)


# notebook 04: the ablation sentences at two budgets


@pytest.fixture
def budgets():
    """Two seeds of UML and multitask; at half the training multitask leads on ACC."""
    final = pd.DataFrame(
        {
            "variant": ["UML", "UML", "multitask", "multitask"],
            "seed": [0, 1, 0, 1],
            "ACC": [0.90, 0.92, 0.80, 0.81],  # UML ahead by 0.105, stds 0.014, 0.007
            "ECE": [0.05, 0.06, 0.10, 0.09],  # UML lower by 0.04
        }
    )
    half = final.assign(
        ACC=[0.80, 0.82, 0.85, 0.86],  # multitask ahead by 0.045
        ECE=[0.06, 0.07, 0.10, 0.11],  # UML lower by 0.04 again
    )
    return final, half


def test_describe_comparison_with_half_settles_only_what_holds(budgets):
    final, half = budgets
    comparisons = [ablations.compare_variants(runs, ["ACC", "ECE"]) for runs in budgets]
    assert comparisons[0]["spread"].tolist() == pytest.approx(
        [np.std([0.90, 0.92], ddof=1), np.std([0.10, 0.09], ddof=1)]
    )
    lines = ablations.describe_comparison(comparisons[0], half=comparisons[1])
    assert lines[0].startswith("Not settled at this budget: ACC (higher is better): UML is best")
    assert "first at the final budget UML, at half the training multitask" in lines[0]
    assert lines[1].startswith("Finding: ECE (lower is better): UML is best with 0.055")
    assert lines[2].startswith("1 of 2 comparisons hold at both budgets")
    assert lines[3].endswith("(at half the training: 1 and 1).")
    without = ablations.describe_comparison(comparisons[0])
    assert without[0].startswith("ACC (higher is better): UML is best")  # as before: no verdict
    with pytest.raises(ValueError, match="other metrics"):
        ablations.describe_comparison(comparisons[0], half=comparisons[1].iloc[:1])


def test_describe_options_and_differences_with_half(budgets):
    final, half = (ablations.paired_differences(runs, ["ACC", "ECE"]) for runs in budgets)
    options = ablations.describe_options(final, ["multitask"], half=half)
    # multitask against UML: ACC -0.105 (final) but +0.045 (half) -> not settled
    assert options[0].startswith(
        "Not settled at this budget: multitask against the official UML hurts ACC (-0.105)"
    )
    # ECE: UML better by 0.05, 0.03 (final) and 0.04, 0.04 (half) -> a finding that it hurts
    assert options[1].startswith("Finding: multitask against the official UML hurts ECE (-0.040)")
    lines = ablations.describe_differences(final, half=half)
    assert lines[0].startswith(
        "Not settled at this budget: multitask: UML is better on ACC by 0.105"
    )
    assert lines[1].startswith("Finding: multitask: UML is better on ECE by 0.040")
    assert ablations.describe_differences(final) == [
        "multitask: UML is better on ACC by 0.105, better on ECE by 0.040."
    ]
    with pytest.raises(ValueError, match="other rows or columns"):
        ablations.describe_options(final, ["multitask"], half=half.drop(columns="ECE"))


def test_describe_differences_of_one_seed_judges_nothing(budgets):
    final, half = (
        ablations.paired_differences(runs.query("seed == 0"), ["ACC", "ECE"]) for runs in budgets
    )
    expected = [
        "multitask: one seed, no spread to judge UML - multitask by (ACC +0.100, ECE +0.050)."
    ]
    assert ablations.describe_differences(final) == expected
    assert ablations.describe_differences(final, half=half) == expected


def test_findings_list_the_settled_lines_for_the_closing_note():
    settled = verdicts.two_budget([0.03, 0.04, 0.05], [0.02, 0.03, 0.04], "A beats B.")
    flipped = verdicts.two_budget([0.03, 0.04, 0.05], [-0.02, -0.03, -0.04], "C beats D.")
    lines = verdicts.settled_sentences([settled, flipped])
    assert verdicts.findings(lines) == [
        "Findings (they hold at the final and at the half-budget weights): 1",
        "- " + settled.text.removeprefix("Finding: "),
    ]
    assert verdicts.findings(lines[1:]) == [
        "No comparison above holds at both budgets: none of them is a finding."
    ]
