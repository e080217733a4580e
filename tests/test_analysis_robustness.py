"""umlkit.analysis.robustness: corruption sweeps, their summaries and OOD scores."""

import numpy as np
import pandas as pd
import pytest
import torch

from umlkit.analysis import robustness
from umlkit.evaluate import evaluate


def test_robustness_grid():
    grid = robustness.robustness_grid("smoke")
    assert list(grid) == list(robustness.ROBUSTNESS_CORRUPTIONS)
    assert all(len(levels) == 3 and levels[0] == 0.0 for levels in grid.values())
    full = robustness.robustness_grid("default", ["contrast"])
    assert full == {"contrast": (0.0, 0.2, 0.4, 0.6, 0.8, 0.9)}
    with pytest.raises(ValueError, match="unknown corruption"):
        robustness.robustness_grid("default", ["rain"])


def test_robustness_sweep_clean_level_matches_plain_evaluation(derm_data, tiny_models):
    test = derm_data.load("test")
    frame = robustness.robustness_sweep(
        tiny_models, test, {"gaussian_noise": (0.0, 0.5)}, progress=False
    )
    assert len(frame) == 4
    assert test.transform is None  # the sweep corrupts copies, never the dataset itself
    evaluation = evaluate(tiny_models["UML"], test, surface_metrics=False)
    clean = evaluation.summary
    row = frame[(frame.model == "UML") & (frame.severity == 0.0)].iloc[0]
    assert row["accuracy"] == pytest.approx(clean["accuracy"])
    assert row["dice"] == pytest.approx(clean["dice"])
    assert row["predicted_positive"] == pytest.approx((evaluation.table["pred"] == 1).mean())
    assert frame.loc[frame.model == "U-Net", "accuracy"].isna().all()
    assert frame.loc[frame.model == "U-Net", "predicted_positive"].isna().all()


def test_robustness_sweep_evaluates_the_clean_level_once(derm_data, tiny_models, monkeypatch):
    test = derm_data.load("test")
    calls = []
    original = robustness.evaluate_models

    def counting(models, dataset, **kwargs):
        calls.append(dataset.transform.severity)
        return original(models, dataset, **kwargs)

    monkeypatch.setattr(robustness, "evaluate_models", counting)
    grid = {"gaussian_noise": (0.0, 0.5), "gaussian_blur": (0.0, 1.0)}
    frame = robustness.robustness_sweep(tiny_models, test, grid, progress=False)
    assert calls == [0.0, 0.5, 1.0]  # severity 0 is the identity of every corruption
    clean = frame[frame.severity == 0.0].set_index(["model", "corruption"])["dice"].unstack()
    assert (clean["gaussian_noise"] == clean["gaussian_blur"]).all()


class ImageSpread(torch.nn.Module):
    """A probe: its image uncertainty is the image's pixel standard deviation, which noise raises."""

    def forward(self, x):
        from umlkit.models import ModelOutput

        spread = x.flatten(1).std(dim=1, keepdim=True).clamp(0, 1)
        return ModelOutput(
            class_prob=torch.cat([1 - spread, spread], dim=1), class_uncertainty=spread
        )


def test_robustness_sweep_corrupts_the_images(derm_data):
    test = derm_data.load("test")
    frame = robustness.robustness_sweep(
        {"probe": ImageSpread()}, test, {"gaussian_noise": (0.0, 0.3)}, progress=False
    )
    clean, noisy = frame["uncertainty"]
    images = torch.stack([test[i]["image"] for i in range(len(test))])
    assert clean == pytest.approx(images.flatten(1).std(dim=1).mean().item(), rel=1e-5)
    assert noisy > clean + 0.1


@pytest.fixture
def sweep():
    rows = []
    for model, slope in (("UML", 0.5), ("multitask", 1.0)):
        for severity in (0.0, 0.1, 0.2):
            rows.append(
                {
                    "corruption": "gaussian_noise",
                    "severity": severity,
                    "model": model,
                    "accuracy": 0.9 - slope * severity,
                    "dice": 0.8 - slope * severity / 2,
                }
            )
    return pd.DataFrame(rows)


def test_robustness_summary_and_sentences(sweep):
    summary = robustness.robustness_summary(sweep, ["accuracy", "dice"])
    uml = summary.loc[("gaussian_noise", "UML")]
    assert uml[("accuracy", "clean")] == pytest.approx(0.9)
    assert uml[("accuracy", "strongest")] == pytest.approx(0.8)
    assert uml[("accuracy", "drop")] == pytest.approx(0.1)
    assert uml[("accuracy", "mean")] == pytest.approx(0.85)
    sentences = robustness.describe_robustness(summary)
    assert sentences[0] == (
        "gaussian_noise, accuracy: best over the grid UML (0.850 on average); smallest drop UML "
        "(+0.100 from clean to the strongest level, largest multitask +0.200)."
    )
    with pytest.raises(ValueError, match="ece"):
        robustness.robustness_summary(sweep, ["ece"])


def test_describe_robustness_reports_the_uncertainty_rise(sweep):
    sweep = sweep.assign(uncertainty=np.where(sweep.model == "UML", sweep.severity, 0.1))
    summary = robustness.robustness_summary(sweep, ["accuracy", "uncertainty"])
    sentences = robustness.describe_robustness(summary, ["accuracy"], ["uncertainty"])
    assert sentences[-1] == (
        "gaussian_noise, uncertainty from clean to the strongest level: UML +0.200, multitask +0.000."
    )


def test_ood_scores_hand_computed(fake_evaluation):
    inside = fake_evaluation({"uncertainty": [0.1, 0.2]}, pixel_uncertainty=np.zeros((2, 2, 2)))
    outside = fake_evaluation({"uncertainty": [0.3, 0.05]}, pixel_uncertainty=np.ones((2, 2, 2)))
    frame, scores = robustness.ood_scores({"UML": inside}, {"UML": outside})
    assert len(frame) == 4
    assert scores.loc["UML", "auroc_image"] == pytest.approx(0.5)  # 2 of 4 pairs ordered
    assert scores.loc["UML", "auroc_pixel"] == pytest.approx(1.0)


@pytest.fixture
def seeded(sweep):
    """Two training seeds: seed 1 scores 0.02 higher everywhere (the drops are unchanged)."""
    return pd.concat(
        [sweep.assign(seed=0), sweep.assign(seed=1, accuracy=sweep.accuracy + 0.02)],
        ignore_index=True,
    )


def test_robustness_summary_over_seeds_adds_the_spreads(seeded):
    summary = robustness.robustness_summary(seeded, ["accuracy"])
    uml = summary.loc[("gaussian_noise", "UML")]
    assert uml[("accuracy", "mean")] == pytest.approx(0.86)  # 0.85 and 0.87
    assert uml[("accuracy", "mean std")] == pytest.approx(np.std([0.85, 0.87], ddof=1))
    assert uml[("accuracy", "drop")] == pytest.approx(0.1)
    assert uml[("accuracy", "drop std")] == pytest.approx(0.0, abs=1e-12)


def test_describe_robustness_with_half_gives_each_ranking_its_verdict(seeded):
    final = robustness.robustness_summary(seeded, ["accuracy"])
    # at half the training UML is 0.1 lower everywhere: multitask is best over the grid
    lower = seeded.accuracy - np.where(seeded.model == "UML", 0.1, 0.0)
    half = robustness.robustness_summary(seeded.assign(accuracy=lower), ["accuracy"])
    lines = robustness.describe_robustness(final, ["accuracy"], half=half)
    assert lines[0].startswith(
        "Not settled at this budget: gaussian_noise, accuracy: best over the grid UML (0.860 on "
        "average) — first at the final budget UML, at half the training multitask"
    )
    assert lines[1].startswith(
        "Finding: gaussian_noise, accuracy: smallest drop UML (+0.100 from clean to the "
        "strongest level, largest multitask +0.200) (final UML first, +0.100"
    )
    assert lines[2].startswith("1 of 2 comparisons hold at both budgets")
    with pytest.raises(ValueError, match="other \\(corruption, model\\) rows"):
        robustness.describe_robustness(final, ["accuracy"], half=half.iloc[:1])


def test_describe_robustness_of_one_seed_settles_nothing(sweep):
    summary = robustness.robustness_summary(sweep, ["accuracy"])
    lines = robustness.describe_robustness(summary, ["accuracy"], half=summary)
    assert all("one seed: no spread to judge it by" in line for line in lines[:2])
    assert lines[2].startswith("0 of 2 comparisons")


def test_robustness_sweep_over_seeds_draws_the_same_corruptions(derm_data):
    test = derm_data.load("test")
    frame = robustness.robustness_sweep_over_seeds(
        {0: {"probe": ImageSpread()}, 3: {"probe": ImageSpread()}},
        test,
        {"gaussian_noise": (0.3,)},
        progress=False,
    )
    assert frame["seed"].tolist() == [0, 3]
    assert frame["uncertainty"].iloc[0] == pytest.approx(frame["uncertainty"].iloc[1])
    with pytest.raises(ValueError, match="models is empty"):
        robustness.robustness_sweep_over_seeds({}, test, {"gaussian_noise": (0.3,)})


def test_robustness_budgets_sweep_both_weights_of_every_seed(derm_data):
    from types import SimpleNamespace

    test = derm_data.load("test")
    probe = ImageSpread()
    results = {
        ("probe", s): SimpleNamespace(
            model=probe, half_state=probe.state_dict(), config=SimpleNamespace(model="probe")
        )
        for s in (0, 1)
    }
    final, half = robustness.robustness_budgets(
        results, test, {"gaussian_noise": (0.0,)}, progress=False
    )
    assert final["seed"].tolist() == [0, 1] and half["seed"].tolist() == [0, 1]
    # the probe's half-budget copy holds the same (no) weights: the same numbers
    assert half["uncertainty"].tolist() == pytest.approx(final["uncertainty"].tolist())
    results["probe", 1].half_state = None
    with pytest.raises(ValueError, match="no half-budget weights"):
        robustness.robustness_budgets(results, test, {"gaussian_noise": (0.0,)}, progress=False)


def _collapsing_sweep() -> pd.DataFrame:
    """Two models over three noise levels: at the strongest both call every image class 1 and
    their uncertainty falls; a U-Net row without an image head."""
    rows = []
    for model, clean_uncertainty in (("UML", 0.44), ("multitask", 0.72)):
        for severity, positive, accuracy, factor in ((0.0, 0.4, 0.8, 1.0), (0.5, 1.0, 0.4, 0.2)):
            rows.append(
                {
                    "corruption": "gaussian_noise",
                    "severity": severity,
                    "model": model,
                    "accuracy": accuracy,
                    "predicted_positive": positive,
                    "uncertainty": clean_uncertainty * factor,
                }
            )
    rows.append(
        {"corruption": "gaussian_noise", "severity": 0.5, "model": "U-Net", "accuracy": np.nan}
    )
    return pd.DataFrame(rows)


def test_robustness_takeaways_name_the_collapse_and_the_falling_uncertainty():
    sweep = _collapsing_sweep()
    ood = pd.DataFrame({"auroc_image": [0.3, 0.7]}, index=["UML", "multitask"])
    lines = robustness.robustness_takeaways(
        sweep, ("not melanoma", "melanoma"), positive_share=0.4, ood_table=ood
    )
    assert lines[0] == (
        "gaussian_noise at its strongest (0.5): every model calls (almost) every image melanoma "
        "(40% of the test images are melanoma); accuracy 0.400 against the chance line 0.600: "
        "below it for 2 of 2 models; the image uncertainty falls for 2 of 2 (UML 0.44 on clean "
        "images, 0.09 at the strongest level)."
    )
    assert lines[1] == (
        "Out-of-distribution images: the best image-uncertainty AUROC is multitask's (0.700); "
        "UML's is 0.300: below 0.5, UML is surer on images unlike any it was trained on than on "
        "its own test images."
    )


def test_robustness_takeaways_other_outcomes_and_bad_input():
    sweep = _collapsing_sweep()
    benign = sweep.assign(predicted_positive=0.0, uncertainty=1 - sweep.uncertainty)
    (line,) = robustness.robustness_takeaways(benign, ("benign", "melanoma"), positive_share=0.4)
    assert "every model calls (almost) every image benign" in line
    assert "the image uncertainty rises for 2 of 2" in line
    split = sweep.assign(predicted_positive=np.where(sweep.model == "UML", 0.5, 0.7))
    (line,) = robustness.robustness_takeaways(split, ("benign", "melanoma"), positive_share=0.4)
    assert "the models call 50% to 70% of the images melanoma" in line
    # 0 * accuracy keeps the U-Net without an image head at NaN
    mixed = sweep.assign(accuracy=np.where(sweep.model == "UML", 0.603, 0.7) + 0 * sweep.accuracy)
    (line,) = robustness.robustness_takeaways(mixed, ("benign", "melanoma"), positive_share=0.4)
    assert "accuracy 0.603 to 0.700 against the chance line 0.600: on it for 1, above it for 1" in (
        line
    )
    with pytest.raises(ValueError, match="no image head"):
        robustness.robustness_takeaways(sweep, ("a", "b"), 0.4, reference="U-Net")
    with pytest.raises(ValueError, match="predicted_positive"):
        robustness.robustness_takeaways(sweep.drop(columns="predicted_positive"), ("a", "b"), 0.4)
