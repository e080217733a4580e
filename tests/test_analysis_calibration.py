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


def test_truth_calibration_rejects_real_data(fake_evaluation):
    with pytest.raises(ValueError, match="p_true"):
        calibration.truth_calibration({"UML": fake_evaluation({"prob": [0.5], "label": [1]})})
    nan = fake_evaluation({"id": ["a"], "prob": [0.5], "label": [1], "p_true": [np.nan]})
    with pytest.raises(ValueError, match="NaN"):
        calibration.truth_calibration({"UML": nan})
