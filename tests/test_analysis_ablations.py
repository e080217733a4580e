"""umlkit.analysis.ablations: the tables and sentences of notebook 04, on hand-made runs."""

import numpy as np
import pandas as pd
import pytest

from umlkit.analysis import ablations
from umlkit.evaluate import Evaluation


@pytest.fixture
def runs():
    return pd.DataFrame(
        {
            "variant": ["UML", "UML", "multitask", "multitask", "U-Net", "U-Net"],
            "seed": [0, 1, 0, 1, 0, 1],
            "ACC": [0.80, 0.82, 0.85, 0.86, np.nan, np.nan],
            "HD95": [3.0, 5.0, 6.0, 8.0, 2.0, 10.0],
        }
    )


def test_summarise_and_format_runs(runs):
    summary = ablations.summarise_runs(runs, ["ACC", "HD95"])
    assert list(summary.index) == ["UML", "multitask", "U-Net"]
    assert summary.loc["UML", ("ACC", "mean")] == pytest.approx(0.81)
    assert summary.loc["UML", ("ACC", "std")] == pytest.approx(np.sqrt(0.0002))
    assert summary.loc["UML", ("seeds", "n")] == 2
    table = ablations.format_summary(summary)
    assert table.loc["UML", "HD95"] == "4.000 ± 1.414"
    assert table.loc["U-Net", "ACC"] == "—"
    single = ablations.format_summary(ablations.summarise_runs(runs[runs.seed == 0], ["ACC"]))
    assert single.loc["UML", "ACC"] == "0.800"


def test_runs_table_reads_the_summaries():
    evaluation = Evaluation(table=pd.DataFrame(), summary={"accuracy": 0.9, "dice": 0.7})
    table = ablations.runs_table(
        {("UML", 3): evaluation}, {"accuracy": "ACC", "dice": "Dice", "ece": "ECE"}
    )
    assert table.to_dict("records") == [
        {
            "variant": "UML",
            "seed": 3,
            "ACC": 0.9,
            "Dice": 0.7,
            "ECE": pytest.approx(np.nan, nan_ok=True),
        }
    ]


def test_compare_variants_hand_computed(runs):
    comparison = ablations.compare_variants(runs, ["ACC", "HD95"]).set_index("metric")
    acc = comparison.loc["ACC"]
    assert acc["best"] == "multitask"
    assert acc["reference_rank"] == 2 and acc["n_variants"] == 2  # U-Net has no accuracy
    assert acc["gap"] == pytest.approx(0.81 - 0.855)
    assert bool(acc["within_noise"]) is False  # |gap| 0.045 > max std 0.0141
    hd95 = comparison.loc["HD95"]
    assert hd95["direction"] == "lower"
    assert hd95["best"] == "UML"  # 4.0 < 6.0 (U-Net), 7.0
    assert hd95["runner_up"] == "U-Net"
    assert hd95["gap"] == pytest.approx(2.0)
    assert bool(hd95["within_noise"]) is True  # U-Net's std is 5.66


def test_describe_comparison_says_where_uml_loses(runs):
    sentences = ablations.describe_comparison(ablations.compare_variants(runs, ["ACC", "HD95"]))
    assert sentences[0].startswith("ACC (higher is better): UML does NOT win — multitask is best")
    assert "rank 2 of 2" in sentences[0]
    assert sentences[1].startswith("HD95 (lower is better): UML is best with 4.000")
    assert "within the seed-to-seed spread" in sentences[1]
    assert sentences[-1] == (
        "UML is best on 1 of 2 metrics (ties not counted); on 0 of them by more than the "
        "seed-to-seed spread."
    )


def test_describe_comparison_reports_ties_and_clear_wins():
    runs = pd.DataFrame(
        {
            "variant": ["UML", "UML", "multitask", "multitask"],
            "seed": [0, 1, 0, 1],
            "Dice": [0.9, 0.9, 0.9, 0.9],
            "ACC": [0.90, 0.91, 0.80, 0.81],
        }
    )
    comparison = ablations.compare_variants(runs, ["Dice", "ACC"])
    assert comparison["reference_rank"].tolist() == [1, 1]
    sentences = ablations.describe_comparison(comparison)
    assert sentences[0] == "Dice (higher is better): UML ties for best with multitask at 0.900."
    assert "larger than the seed-to-seed spread" in sentences[1]
    assert sentences[-1].startswith("UML is best on 1 of 2 metrics (ties not counted); on 1 of")


def test_compare_variants_rejects_bad_input(runs):
    with pytest.raises(ValueError, match="reference variant"):
        ablations.compare_variants(runs, ["ACC"], reference="UML2")
    with pytest.raises(ValueError, match="Dice"):
        ablations.compare_variants(runs, ["Dice"])


def test_paired_differences_pair_by_seed(runs):
    differences = ablations.paired_differences(runs, ["ACC", "HD95"])
    assert list(differences.index) == ["multitask", "U-Net"]
    # ACC: UML - multitask per seed = -0.05, -0.04
    assert differences.loc["multitask", ("ACC", "mean")] == pytest.approx(-0.045)
    assert differences.loc["multitask", ("ACC", "std")] == pytest.approx(
        np.std([-0.05, -0.04], ddof=1)
    )
    # HD95 (lower is better): -(UML - multitask) = 3, 3 -> UML better by 3 on both seeds
    assert differences.loc["multitask", ("HD95", "mean")] == pytest.approx(3.0)
    assert differences.loc["multitask", ("HD95", "std")] == pytest.approx(0.0)
    assert np.isnan(differences.loc["U-Net", ("ACC", "mean")])
    with pytest.raises(ValueError, match="reference variant"):
        ablations.paired_differences(runs, ["ACC"], reference="nope")


def test_describe_options_reads_the_paired_differences(runs):
    differences = ablations.paired_differences(runs, ["ACC", "HD95"])
    sentences = ablations.describe_options(differences, ["multitask", "U-Net", "absent"])
    # multitask: ACC better than UML by 0.045 (std 0.007) -> helps; HD95 worse by 3 (std 0) -> hurts.
    # U-Net: no ACC; HD95 d = -1, +5 (mean 2, std 4.24) -> within the spread.
    assert sentences == [
        "multitask against the official UML: helps on ACC (+0.045); hurts HD95 (-3.000).",
        "U-Net against the official UML: helps on no metric beyond the spread.",
    ]
