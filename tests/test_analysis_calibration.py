"""umlkit.analysis.calibration: image and pixel calibration (hand-computed where possible)."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from umlkit import analysis, metrics
from umlkit.analysis import calibration


def test_reliability_panels_title_carries_the_ece():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    labels = np.array([0, 1, 1, 1])
    panels = calibration.reliability_panels({"UML": probs}, labels, n_bins=5)
    ece = metrics.expected_calibration_error(probs, labels, 5)
    ((title, bins),) = panels.items()
    assert title == f"UML (ECE {ece:.3f})"
    assert bins["count"].sum() == 4
    quantile = calibration.reliability_panels(
        {"UML": probs}, labels, 2, "quantile", "positive_class"
    )
    assert list(quantile.values())[0]["count"].tolist() == [2, 2]


def test_calibration_table_matches_the_metrics():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    labels = np.array([0, 1, 1, 1])
    table = calibration.calibration_table({"UML": probs}, labels, n_bins=5)
    row = table.loc["UML"]
    assert row["accuracy"] == 0.75
    assert row["ECE"] == pytest.approx(metrics.expected_calibration_error(probs, labels, 5))
    assert row["aECE"] == pytest.approx(metrics.aece(probs, labels, 5))
    assert row["Brier"] == pytest.approx(metrics.brier_score(probs, labels))
    assert "ECE positive class" in table.columns
    three = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    assert "ECE positive class" not in calibration.calibration_table({"m": three}, [0, 2]).columns


def test_calibration_runs_one_row_per_variant_and_seed():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    labels = np.array([0, 1, 1, 1])
    runs = calibration.calibration_runs({("UML", 0): probs, ("UML", 1): probs[::-1]}, labels, 5)
    assert runs[["variant", "seed"]].values.tolist() == [["UML", 0], ["UML", 1]]
    assert runs.loc[0, "ECE"] == pytest.approx(metrics.expected_calibration_error(probs, labels, 5))
    with pytest.raises(ValueError, match="probs is empty"):
        calibration.calibration_runs({}, labels)


def test_describe_calibration_ranks_over_seeds_at_two_budgets():
    final = pd.DataFrame(
        {
            "variant": ["UML", "UML", "multitask", "multitask"],
            "seed": [0, 1, 0, 1],
            "ECE": [0.03, 0.04, 0.08, 0.09],  # UML lower by 0.05, stds 0.007
            "Brier": [0.30, 0.32, 0.31, 0.29],  # multitask lower by 0.01, std 0.014: within
        }
    )
    half = final.assign(ECE=[0.05, 0.06, 0.09, 0.10], Brier=[0.30, 0.31, 0.33, 0.34])
    sentences = calibration.describe_calibration(final, metrics=["ECE", "Brier"])
    assert sentences[0] == (
        "ECE (lower is better): UML is best with 0.035, ahead of multitask by 0.050 (larger "
        "than the seed-to-seed spread)."
    )
    lines = calibration.describe_calibration(final, metrics=["ECE", "Brier"], half=half)
    assert lines[0].startswith("Finding: ECE (lower is better): UML is best with 0.035")
    # Brier: multitask first at the final budget (within the spread), UML first at half
    assert lines[1].startswith("Not settled at this budget: Brier (lower is better): UML does NOT")
    assert "first at the final budget multitask, at half the training UML" in lines[1]
    with pytest.raises(ValueError, match="other \\(variant, seed\\) pairs"):
        calibration.describe_calibration(final, metrics=["ECE"], half=half.iloc[:3])


def test_calibration_budgets_evaluate_both_weights(derm_data, tiny_models):
    import copy

    test = derm_data.load("test")
    uml = tiny_models["UML"]
    other = copy.deepcopy(uml)
    with torch.no_grad():
        for parameter in other.parameters():
            parameter.mul_(0.5)
    results = {
        ("UML", 0): SimpleNamespace(
            model=uml, half_state=other.state_dict(), config=SimpleNamespace(model="uml")
        ),
        ("U-Net", 0): SimpleNamespace(
            model=tiny_models["U-Net"], half_state=None, config=SimpleNamespace(model="unet")
        ),
    }
    with pytest.raises(ValueError, match="no half-budget weights"):
        calibration.calibration_budgets(results, test)
    results[("U-Net", 0)].half_state = tiny_models["U-Net"].state_dict()
    final, half = calibration.calibration_budgets(results, test, n_bins=5)
    assert final[["variant", "seed"]].values.tolist() == [["UML", 0]]  # the U-Net has no image head
    expected = calibration.calibration_runs(
        {("UML", 0): analysis.evaluate_models({"m": other}, test)["m"].class_prob},
        test.labels,
        5,
    )
    assert half["ECE"].tolist() == pytest.approx(expected["ECE"].tolist())
    probs = analysis.evaluate_models({"m": uml}, test)["m"].class_prob
    assert final["ECE"].tolist() == pytest.approx(
        [metrics.expected_calibration_error(probs, test.labels, 5)]
    )


def test_pixel_calibration_streams_every_pixel(derm_data, tiny_models):
    test = derm_data.load("test")
    result = calibration.pixel_calibration(tiny_models["UML"], test, per_class=True, batch_size=3)
    assert set(result) == {"pooled", "class 1"}
    assert result["pooled"]["n_pixels"] == len(test) * 16 * 16
    assert result["pooled"]["n_images"] == len(test)
    assert result["class 1"]["bins"].attrs["mode"] == "positive_class"
    mutual = calibration.pixel_calibration(tiny_models["UML"], test, source="mutual")
    assert mutual["pooled"]["ece_pooled"] != result["pooled"]["ece_pooled"]
    with pytest.raises(ValueError, match="needs a UML model"):
        calibration.pixel_calibration(tiny_models["U-Net"], test, source="mutual")
    with pytest.raises(ValueError, match="source must be one of"):
        calibration.pixel_calibration(tiny_models["UML"], test, source="logits")


def test_pixel_calibration_study_with_and_without_background(derm_data, tiny_models):
    test = derm_data.load("test")
    results, table = calibration.pixel_calibration_study(
        {
            "UML": (tiny_models["UML"], "segmentation"),
            "U-Net": (tiny_models["U-Net"], "segmentation"),
        },
        test,
    )
    assert set(results) == {"UML", "U-Net"}
    assert (table["pixels"] == len(test) * 256).all()
    assert (table["foreground pixels"] <= table["pixels"]).all()
    assert table.loc["UML", "ECE pooled"] == pytest.approx(results["UML"]["pooled"]["ece_pooled"])


def test_truth_calibration_hand_computed(fake_evaluation):
    evaluation = fake_evaluation(
        {"id": ["a", "b"], "prob": [0.2, 0.8], "p_true": [0.1, 0.9], "label": [0, 1]}
    )
    frame, scores = calibration.truth_calibration({"UML": evaluation})
    assert frame.columns.tolist() == ["model", "id", "predicted", "p_true", "label"]
    row = scores.loc["UML"]
    assert row["mae_to_truth"] == pytest.approx(0.1)
    assert row["ece_to_truth"] == pytest.approx(0.1)
    assert row["brier"] == pytest.approx(0.04)
    assert row["bayes_brier"] == pytest.approx(0.01)
    assert row["excess_brier"] == pytest.approx(0.03)


def test_truth_calibration_bins_like_every_ece(fake_evaluation):
    # 0.12 and 0.18 share the bin [0.1, 0.2) of 10 bins, but not of 15 (edges at 2/15 = 0.133):
    # 10 bins |0.15 - 0.2| = 0.05; 15 bins (|0.12 - 0.1| + |0.18 - 0.3|) / 2 = 0.07
    evaluation = fake_evaluation(
        {"id": ["a", "b"], "prob": [0.12, 0.18], "p_true": [0.1, 0.3], "label": [0, 0]}
    )
    _, scores = calibration.truth_calibration({"UML": evaluation})
    assert scores.loc["UML", "ece_to_truth"] == pytest.approx(0.07)
    _, scores = calibration.truth_calibration({"UML": evaluation}, n_bins=10)
    assert scores.loc["UML", "ece_to_truth"] == pytest.approx(0.05)


def test_truth_calibration_rejects_real_data(fake_evaluation):
    with pytest.raises(ValueError, match="p_true"):
        calibration.truth_calibration({"UML": fake_evaluation({"prob": [0.5], "label": [1]})})
    nan = fake_evaluation({"id": ["a"], "prob": [0.5], "label": [1], "p_true": [np.nan]})
    with pytest.raises(ValueError, match="NaN"):
        calibration.truth_calibration({"UML": nan})


def test_confidence_direction_signs_the_gap_ece_hides():
    # 5 equal-width bins; confidences 0.6 (bin 3) and 0.9 (bin 4)
    under = np.array([[0.6, 0.4], [0.6, 0.4], [0.9, 0.1], [0.9, 0.1]])
    labels = np.array([0, 0, 0, 0])  # every prediction right: accuracy 1 > confidence
    over = np.array([[0.4, 0.6], [0.6, 0.4], [0.1, 0.9], [0.9, 0.1]])
    over_labels = np.array([1, 1, 1, 1])  # right 1 of 2 at 0.6, 1 of 2 at 0.9
    table = calibration.confidence_direction({"under": under}, labels, n_bins=5)
    row = table.loc["under"]
    assert row["accuracy"] == pytest.approx(1.0)
    assert row["mean_confidence"] == pytest.approx(0.75)
    assert row["gap"] == pytest.approx(0.25)
    assert row["share_under"] == pytest.approx(1.0)
    assert row["direction"] == "under-confident"
    row = calibration.confidence_direction({"over": over}, over_labels, n_bins=5).loc["over"]
    assert row["gap"] == pytest.approx(0.5 - 0.75)
    assert row["share_over"] == pytest.approx(1.0)
    assert row["direction"] == "over-confident"
    # accuracy above confidence in one bin, below in the other: mixed
    mixed_labels = np.array([0, 0, 1, 1])  # right at 0.6 (both), wrong at 0.9 (both)
    row = calibration.confidence_direction({"m": under}, mixed_labels, n_bins=5).loc["m"]
    assert row["share_under"] == pytest.approx(0.5) and row["share_over"] == pytest.approx(0.5)
    assert row["direction"] == "mixed"


def test_truth_slopes_hand_computed():
    frame = pd.DataFrame(
        {
            "model": ["flat"] * 3 + ["exact"] * 3,
            "p_true": [0.1, 0.5, 0.9] * 2,
            "predicted": [0.3, 0.5, 0.7, 0.1, 0.5, 0.9],
        }
    )
    slopes = calibration.truth_slopes(frame)
    assert slopes["flat"] == pytest.approx(0.5)
    assert slopes["exact"] == pytest.approx(1.0)
    constant = frame.assign(p_true=0.5)
    assert np.isnan(calibration.truth_slopes(constant)["flat"])
    with pytest.raises(ValueError, match="p_true"):
        calibration.truth_slopes(frame.drop(columns="p_true"))


def test_reliability_takeaways_are_computed_from_the_tables():
    directions = pd.DataFrame(
        {
            "accuracy": [0.8, 0.8],
            "mean_confidence": [0.7, 0.82],
            "gap": [0.1, -0.02],
            "share_under": [0.9, 0.2],
            "share_over": [0.1, 0.8],
            "direction": ["under-confident", "over-confident"],
        },
        index=["UML", "softmax"],
    )
    table = pd.DataFrame({"ECE": [0.05, 0.02], "aECE": [0.03, 0.04]}, index=["UML", "softmax"])
    pixels = pd.DataFrame(
        {"ECE pooled": [0.01, 0.02], "ECE pooled, foreground": [0.08, 0.04]}, index=["a", "b"]
    )
    slopes = pd.Series({"UML": 0.6, "softmax": 0.9})
    lines = calibration.reliability_takeaways(
        directions, table, pixels, slopes, positive="melanoma"
    )
    assert lines[0] == (
        "UML's image head is under-confident: it is right on 80.0% of the test images while its "
        "mean confidence is 70.0%, and 90% of the images sit in bins whose accuracy exceeds "
        "their confidence (the bars stand above the diagonal of the first reliability figure)."
    )
    assert lines[1] == (
        "Accuracy minus mean confidence (above 0: under-confident): softmax -0.020 "
        "(over-confident); UML +0.100."
    )
    assert (
        "lowest ECE is softmax's, the lowest equal-mass ECE UML's (not the same head)" in lines[2]
    )
    assert lines[3].startswith(
        "Against the generator's true probabilities UML's predictions are pulled toward the "
        "middle: too low where melanoma is likely"
    )
    assert (
        "slope of predicted on true probability 0.60, where 1 follows the truth; softmax 0.90"
        in (lines[3])
    )
    assert lines[4].startswith(
        "Pixels: for 2 of 2 pixel outputs the all-pixel ECE is below the foreground ECE (the "
        "foreground's is 2.0 to 8.0 times as large)"
    )
    assert lines[4].endswith("On the foreground b is best calibrated (0.040).")
    assert len(calibration.reliability_takeaways(directions, table)) == 3
    with pytest.raises(ValueError, match="not among the heads"):
        calibration.reliability_takeaways(directions, table, reference="multitask")
    with pytest.raises(ValueError, match="aECE"):
        calibration.reliability_takeaways(directions, table.drop(columns="aECE"))
