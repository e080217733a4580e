"""umlkit.analysis.uncertainty_maps: image and pixel uncertainty on hand-made evaluations."""

import numpy as np
import pandas as pd
import pytest

from umlkit.analysis import uncertainty_maps
from umlkit.evaluate import Evaluation


def test_image_uncertainty_evidential_or_entropy(fake_evaluation):
    evidential = fake_evaluation({"class_uncertainty": [0.2, 0.4]})
    values, kind = uncertainty_maps.image_uncertainty(evidential)
    assert kind == "evidential" and values.tolist() == [0.2, 0.4]
    softmax = fake_evaluation(
        {"class_uncertainty": [np.nan, np.nan]}, class_prob=np.array([[0.5, 0.5], [1.0, 0.0]])
    )
    values, kind = uncertainty_maps.image_uncertainty(softmax)
    assert kind == "entropy"
    np.testing.assert_allclose(values, [1.0, 0.0])


def maps_evaluation() -> Evaluation:
    masks = np.zeros((2, 4, 4), dtype=int)
    masks[:, 1:3, 1:3] = 1
    pred = masks.copy()
    pred[0, 0, :] = 1  # four wrong pixels in image 0
    uncertainty = np.full((2, 4, 4), 0.1)
    uncertainty[0, 0, :2] = 0.9  # two of the errors are uncertain
    return Evaluation(
        table=pd.DataFrame({"id": ["a", "b"], "dice": [0.8, 1.0], "uncertainty": [0.3, 0.1]}),
        summary={},
        ids=["a", "b"],
        images=np.zeros((2, 4, 4, 3)),
        masks=masks,
        pred_masks=pred,
        error_maps=pred != masks,
        pixel_uncertainty=uncertainty,
    )


def test_pixel_uncertainty_maps_entropy_fallback():
    evaluation = maps_evaluation()
    maps, kind = uncertainty_maps.pixel_uncertainty_maps(evaluation)
    assert kind == "evidential" and maps.shape == (2, 4, 4)
    evaluation.pixel_uncertainty = None
    evaluation.seg_prob = np.stack([np.full((2, 4, 4), 0.5), np.full((2, 4, 4), 0.5)], axis=1)
    maps, kind = uncertainty_maps.pixel_uncertainty_maps(evaluation)
    assert kind == "entropy"
    np.testing.assert_allclose(maps, 1.0)
    evaluation.seg_prob = None
    with pytest.raises(ValueError, match="no segmentation maps"):
        uncertainty_maps.pixel_uncertainty_maps(evaluation)


def test_with_entropy_uncertainty_scores_the_segmentation_softmax():
    evaluation = maps_evaluation()
    evaluation.seg_prob = np.stack([np.full((2, 4, 4), 0.5), np.full((2, 4, 4), 0.5)], axis=1)
    view = uncertainty_maps.with_entropy_uncertainty(evaluation)
    maps, kind = uncertainty_maps.pixel_uncertainty_maps(view)
    assert kind == "entropy"
    np.testing.assert_allclose(maps, 1.0)
    assert evaluation.pixel_uncertainty is not None  # the original keeps U^s
    assert view.error_maps is evaluation.error_maps


def test_mean_pixel_uncertainty_and_pick_spread():
    evaluation = maps_evaluation()
    np.testing.assert_allclose(
        uncertainty_maps.mean_pixel_uncertainty(evaluation), [(14 * 0.1 + 2 * 0.9) / 16, 0.1]
    )
    table = pd.DataFrame({"id": list("abcde"), "dice": [0.5, 0.1, 0.9, 0.3, np.nan]})
    # ranks b, d, a, c; positions 0, 1.5 -> 2 (round half to even), 3
    assert uncertainty_maps.pick_spread(table, "dice", 3) == ["b", "a", "c"]
    assert uncertainty_maps.pick_spread(table, "dice", 10) == ["b", "d", "a", "c"]
    with pytest.raises(ValueError, match="at least 1"):
        uncertainty_maps.pick_spread(table, "dice", 0)


def test_map_cases():
    cases = uncertainty_maps.map_cases(maps_evaluation(), ids=["b"])
    assert len(cases) == 1 and cases[0]["id"] == "b"
    assert cases[0]["title"] == "b\nDice 1.00, image u 0.10"
    assert cases[0]["uncertainty"].shape == (4, 4)
    with pytest.raises(ValueError, match="no maps kept"):
        uncertainty_maps.map_cases(maps_evaluation(), ids=["c"])


def test_factor_correlations_are_rank_correlations():
    table = pd.DataFrame(
        {"size": [1.0, 2.0, 3.0, 4.0], "hairs": [1, 0, 1, 0], "uncertainty": [0.1, 0.2, 0.4, 0.9]}
    )
    correlations = uncertainty_maps.factor_correlations(table, ["size", "hairs"])
    assert correlations.loc["size", "uncertainty"] == pytest.approx(1.0)  # monotone, not linear
    assert correlations.loc["hairs", "uncertainty"] == pytest.approx(-np.sqrt(0.2))


def test_pixel_error_detection_hand_computed():
    scores, curves = uncertainty_maps.pixel_error_detection({"UML": maps_evaluation()})
    row = scores.loc["UML"]
    assert row["error_rate"] == pytest.approx(4 / 32)
    # errors: two at 0.9 and two at 0.1; the 28 right pixels are all at 0.1
    # AUROC = P(u_error > u_right) + 0.5 P(tie) = 0.5 * 1 + 0.5 * 0.5 = 0.75
    assert row["auroc"] == pytest.approx(0.75)
    # {u > t} for 0.1 <= t < 0.9 holds the two uncertain errors: UEO = 2*2 / (2 + 4)
    assert row["best_ueo"] == pytest.approx(4 / 6)
    assert 0.1 <= row["best_threshold"] < 0.9
    assert set(curves.columns) == {"model", "threshold", "ueo"}


def test_uncertainty_pile_up_hand_computed():
    values = np.array([0.10, 0.20, 0.70, 0.71, 0.72, 0.74, 0.76])
    pile = uncertainty_maps.uncertainty_pile_up(values, num_classes=2, width=0.05)
    # [0.70, 0.75) holds four of the seven values; no other band of width 0.05 holds more
    assert pile["band_lower"] == pytest.approx(0.70)
    assert pile["band_upper"] == pytest.approx(0.75)
    assert pile["band_share"] == pytest.approx(4 / 7)
    assert pile["band_evidence"] == pytest.approx(2 / 0.725 - 2)  # S - K at the middle
    assert pile["zero_logit"] == pytest.approx(1 / (1 + np.log(2)))  # notebook 02's 0.59
    assert pile["share_above_zero_logit"] == pytest.approx(5 / 7)
    assert pile["largest"] == pytest.approx(0.76)
    relu = uncertainty_maps.uncertainty_pile_up(values, num_classes=2, evidence="relu")
    assert relu["zero_logit"] == pytest.approx(1.0)  # no evidence at all: u = 1
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        uncertainty_maps.uncertainty_pile_up(np.array([1.5]), num_classes=2)
    with pytest.raises(ValueError, match="width"):
        uncertainty_maps.uncertainty_pile_up(values, num_classes=2, width=0)


def test_uncertainty_map_takeaways_are_computed_from_the_numbers():
    pile = {
        "band_lower": 0.70,
        "band_upper": 0.75,
        "band_share": 0.3,
        "band_evidence": 0.76,
        "zero_logit": 0.59,
        "share_above_zero_logit": 0.45,
        "largest": 0.78,
    }
    correlations = pd.DataFrame(
        {"uncertainty": [0.2, 0.7], "pixel_uncertainty": [-0.5, 0.1]},
        index=["lesion_size", "bayes_error"],
    )
    scores = pd.DataFrame(
        {
            "error_rate": [0.015, 0.012],
            "auroc": [0.96, 0.97],
            "auprc": [0.28, 0.36],
            "best_ueo": [0.39, 0.46],
        },
        index=["UML, U^s", "multitask"],
    )
    lines = uncertainty_maps.uncertainty_map_takeaways(pile, correlations, scores)
    assert lines[0] == (
        "UML's image uncertainty piles up in a band: 30% of the test images have u in "
        "[0.70, 0.75), and none is above 0.78. Notebook 02 derived what a head without evidence "
        "says: with all logits 0, u = 0.59; with no evidence at all, u = 1. The band lies above "
        "the zero-logit value, between it and 1: for these images the head has less evidence "
        "than zero logits would give (about 0.8 in total over the classes); 45% of all test "
        "images are more uncertain than 0.59."
    )
    assert lines[1] == (
        "Image uncertainty is tied most closely to bayes_error (Spearman +0.70: it rises as "
        "bayes_error rises; bayes_error is the label's ambiguity by construction)."
    )
    assert lines[2] == (
        "Mean pixel uncertainty is tied most closely to lesion_size (Spearman -0.50: it falls as "
        "lesion_size rises)."
    )
    assert lines[3] == (
        "UML, U^s finds the segmentation errors far above chance (AUROC 0.960, chance 0.5; AUPRC "
        "0.280 against an error rate of 0.0150); but among the 2 pixel uncertainties it ranks 2 "
        "on AUROC, 2 on AUPRC and 2 on the best UEO; the highest AUPRC is multitask's (0.360)."
    )
    chance = scores.assign(auroc=[0.48, 0.47])
    (_, line) = uncertainty_maps.uncertainty_map_takeaways(pile, None, chance)
    assert line.startswith("UML, U^s finds the segmentation errors no better than chance (AUROC")
    assert "0.0150); among the 2 pixel uncertainties it ranks 1 on AUROC" in line
    assert len(uncertainty_maps.uncertainty_map_takeaways(pile, None, scores)) == 2
    at_zero = {**pile, "band_lower": 0.57, "band_upper": 0.62}
    (line, _) = uncertainty_maps.uncertainty_map_takeaways(at_zero, None, scores)
    assert "The band sits at the zero-logit value: for these images the head's logits" in line
    below = {**pile, "band_lower": 0.10, "band_upper": 0.15, "band_evidence": 14.0}
    (line, _) = uncertainty_maps.uncertainty_map_takeaways(below, None, scores)
    assert "The band lies below the zero-logit value: these images do get evidence (about 14.0" in (
        line
    )
    with pytest.raises(ValueError, match="not a row"):
        uncertainty_maps.uncertainty_map_takeaways(pile, None, scores.drop(index="UML, U^s"))
