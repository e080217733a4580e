"""The experiment helpers of notebooks 04-08 on tiny data (hand-computed where possible)."""

import copy
import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from umlkit import analysis, metrics
from umlkit.evaluate import Evaluation, evaluate
from umlkit.models import build_model
from umlkit.profiles import setup_notebook
from umlkit.train import TrainConfig, config_hash

# ---------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    """A smoke-profile context whose data folder is temporary and whose sizes are tiny."""
    folder = tmp_path_factory.mktemp("analysis")
    context = setup_notebook(
        "test_analysis", "smoke", data_dir=folder / "data", figures_dir=folder / "figures"
    )
    context.settings["data"].update(n=20, size=32, n_ood=6)
    context.settings["train"].update(epochs=1, width=4, image_size=16, batch_size=4)
    return context


@pytest.fixture(scope="module")
def data(ctx):
    return analysis.prepare_data(ctx, "derm")


@pytest.fixture(scope="module")
def tiny_models():
    torch.manual_seed(0)
    return {
        "UML": build_model("uml", width=4).eval(),
        "U-Net": build_model("unet", width=4).eval(),
    }


def fake_evaluation(table: dict, **maps) -> Evaluation:
    return Evaluation(table=pd.DataFrame(table), summary={}, **maps)


# -------------------------------------------------------------------------------- data and models


def test_prepare_data_writes_the_synthetic_set_once(ctx, data):
    assert data.synthetic == "derm"
    assert data.loader_kind == "isic2017"
    assert data.root == ctx.data_dir / "synthetic" / "derm-smoke"
    assert (data.root / "umlkit_metadata.csv").is_file()
    test = data.load("test")
    assert tuple(test[0]["image"].shape) == (3, 16, 16)
    # A second call finds the complete dataset and leaves it as it is.
    assert analysis.prepare_data(ctx, "derm") == data


def test_prepare_data_rejects_bad_kinds(ctx):
    with pytest.raises(ValueError, match="out-of-distribution"):
        analysis.prepare_data(ctx, "ood")
    with pytest.raises(ValueError, match="unknown kind"):
        analysis.prepare_data(ctx, "mri")
    with pytest.raises(ValueError, match="data_root"):
        analysis.prepare_data(ctx, "isic2017")


def test_prepare_ood(ctx, data):
    ood = analysis.prepare_ood(ctx, data)
    assert ood.synthetic == "ood"
    assert len(ood.load("test")) == 6
    real = analysis.DataSpec("isic2017", data.root, None, 16)
    assert analysis.prepare_ood(ctx, real) is None


def test_train_config_is_shared_and_distinguishes_variants(ctx, data):
    config = analysis.train_config(ctx.settings, data, "UML", seed=0)
    assert config.model == "uml" and config.model_options == {}
    assert (config.width, config.image_size, config.epochs) == (4, 16, 1)
    again = analysis.train_config(ctx.settings, data, "UML", seed=0)
    assert config_hash(config) == config_hash(again)
    no_navigator = analysis.train_config(ctx.settings, data, "UML w/o navigator", seed=0)
    assert no_navigator.model_options == {"navigator": False}
    assert config_hash(no_navigator) != config_hash(config)
    assert config_hash(analysis.train_config(ctx.settings, data, "UML", seed=1)) != config_hash(
        config
    )
    with pytest.raises(ValueError, match="unknown variant"):
        analysis.train_config(ctx.settings, data, "UML++")


def test_train_config_takes_the_profile_augmentation_within_the_data_symmetries(ctx, data):
    settings = copy.deepcopy(ctx.settings)
    settings["train"]["augment"] = "dihedral"
    assert analysis.train_config(settings, data, "UML").augment == "dihedral"
    fundus = dataclasses.replace(data, loader_kind="refuge")
    assert analysis.train_config(settings, fundus, "UML").augment == "flip"
    del settings["train"]["augment"]
    assert analysis.train_config(settings, data, "UML").augment == "none"
    settings["train"]["augment"] = "mixup"
    with pytest.raises(ValueError, match="augment must be one of"):
        analysis.train_config(settings, data, "UML")


def test_train_config_adds_uml_options_to_uml_variants_only(ctx, data):
    settings = copy.deepcopy(ctx.settings)
    settings["train"]["uml_options"] = {"mixer_width": 4}
    assert analysis.train_config(settings, data, "UML").model_options == {"mixer_width": 4}
    option = analysis.train_config(settings, data, "UML + navigated output")
    assert option.model_options == {"mixer_width": 4, "navigate_final": True}
    assert analysis.train_config(settings, data, "multitask").model_options == {}


def test_train_config_takes_the_profile_learning_rate(ctx, data):
    settings = copy.deepcopy(ctx.settings)
    settings["train"]["lr"] = 0.003
    config = analysis.train_config(settings, data, "UML")
    assert config.lr == 0.003
    del settings["train"]["lr"]
    assert analysis.train_config(settings, data, "UML").lr == TrainConfig().lr
    assert config_hash(config) != config_hash(analysis.train_config(settings, data, "UML"))
    settings["train"]["lr"] = -1.0
    with pytest.raises(ValueError, match="need lr > 0"):
        analysis.train_config(settings, data, "UML")


def test_train_variants_trains_once_then_loads_from_the_cache(ctx, data, tmp_path):
    first = analysis.train_variants(
        ctx.settings, data, ["classification only"], seeds=[0], progress=False, cache_dir=tmp_path
    )
    second = analysis.train_variants(
        ctx.settings, data, ["classification only"], seeds=[0], progress=False, cache_dir=tmp_path
    )
    assert list(first) == [("classification only", 0)]
    assert not first["classification only", 0].from_cache
    assert second["classification only", 0].from_cache


def test_train_variants_in_worker_processes_fill_the_same_cache(ctx, data, tmp_path):
    variants = ["classification only"]
    parallel = analysis.train_variants(
        ctx.settings, data, variants, seeds=[0, 1], progress=False, cache_dir=tmp_path, workers=2
    )
    assert [result.from_cache for result in parallel.values()] == [False, False]
    again = analysis.train_variants(
        ctx.settings, data, variants, seeds=[0, 1], progress=False, cache_dir=tmp_path
    )
    assert all(result.from_cache for result in again.values())
    with pytest.raises(ValueError, match="workers must be"):
        analysis.train_variants(ctx.settings, data, variants, workers=0)


def test_evaluate_models_adds_the_uncertainty_column(data, tiny_models):
    evaluations = analysis.evaluate_models(tiny_models, data.load("test"), surface_metrics=False)
    uml, unet = evaluations["UML"].table, evaluations["U-Net"].table
    np.testing.assert_allclose(uml["uncertainty"], uml["class_uncertainty"])
    assert uml.attrs["uncertainty_kind"] == "evidential"
    assert unet["uncertainty"].isna().all()
    assert unet.attrs["uncertainty_kind"] == "none"


# -------------------------------------------------------------------------------- ablation tables


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
    summary = analysis.summarise_runs(runs, ["ACC", "HD95"])
    assert list(summary.index) == ["UML", "multitask", "U-Net"]
    assert summary.loc["UML", ("ACC", "mean")] == pytest.approx(0.81)
    assert summary.loc["UML", ("ACC", "std")] == pytest.approx(np.sqrt(0.0002))
    assert summary.loc["UML", ("seeds", "n")] == 2
    table = analysis.format_summary(summary)
    assert table.loc["UML", "HD95"] == "4.000 ± 1.414"
    assert table.loc["U-Net", "ACC"] == "—"
    single = analysis.format_summary(analysis.summarise_runs(runs[runs.seed == 0], ["ACC"]))
    assert single.loc["UML", "ACC"] == "0.800"


def test_compare_variants_hand_computed(runs):
    comparison = analysis.compare_variants(runs, ["ACC", "HD95"]).set_index("metric")
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
    sentences = analysis.describe_comparison(analysis.compare_variants(runs, ["ACC", "HD95"]))
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
    comparison = analysis.compare_variants(runs, ["Dice", "ACC"])
    assert comparison["reference_rank"].tolist() == [1, 1]
    sentences = analysis.describe_comparison(comparison)
    assert sentences[0] == "Dice (higher is better): UML ties for best with multitask at 0.900."
    assert "larger than the seed-to-seed spread" in sentences[1]
    assert sentences[-1].startswith("UML is best on 1 of 2 metrics (ties not counted); on 1 of")


def test_compare_variants_rejects_bad_input(runs):
    with pytest.raises(ValueError, match="reference variant"):
        analysis.compare_variants(runs, ["ACC"], reference="UML2")
    with pytest.raises(ValueError, match="Dice"):
        analysis.compare_variants(runs, ["Dice"])


def test_runs_table_reads_the_summaries():
    evaluation = Evaluation(table=pd.DataFrame(), summary={"accuracy": 0.9, "dice": 0.7})
    table = analysis.runs_table(
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


# ------------------------------------------------------------------------------------ calibration


def test_reliability_panels_title_carries_the_ece():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    labels = np.array([0, 1, 1, 1])
    panels = analysis.reliability_panels({"UML": probs}, labels, n_bins=5)
    ece = metrics.expected_calibration_error(probs, labels, 5)
    ((title, bins),) = panels.items()
    assert title == f"UML (ECE {ece:.3f})"
    assert bins["count"].sum() == 4
    quantile = analysis.reliability_panels({"UML": probs}, labels, 2, "quantile", "positive_class")
    assert list(quantile.values())[0]["count"].tolist() == [2, 2]


def test_pixel_calibration_streams_every_pixel(data, tiny_models):
    test = data.load("test")
    result = analysis.pixel_calibration(tiny_models["UML"], test, per_class=True, batch_size=3)
    assert set(result) == {"pooled", "class 1"}
    assert result["pooled"]["n_pixels"] == len(test) * 16 * 16
    assert result["pooled"]["n_images"] == len(test)
    assert result["class 1"]["bins"].attrs["mode"] == "positive_class"
    mutual = analysis.pixel_calibration(tiny_models["UML"], test, source="mutual")
    assert mutual["pooled"]["ece_pooled"] != result["pooled"]["ece_pooled"]
    with pytest.raises(ValueError, match="needs a UML model"):
        analysis.pixel_calibration(tiny_models["U-Net"], test, source="mutual")
    with pytest.raises(ValueError, match="source must be one of"):
        analysis.pixel_calibration(tiny_models["UML"], test, source="logits")


def test_truth_calibration_hand_computed():
    evaluation = fake_evaluation(
        {"id": ["a", "b"], "prob": [0.2, 0.8], "p_true": [0.1, 0.9], "label": [0, 1]}
    )
    frame, scores = analysis.truth_calibration({"UML": evaluation})
    assert frame.columns.tolist() == ["model", "id", "predicted", "p_true", "label"]
    row = scores.loc["UML"]
    assert row["mae_to_truth"] == pytest.approx(0.1)
    assert row["ece_to_truth"] == pytest.approx(0.1)
    assert row["brier"] == pytest.approx(0.04)
    assert row["bayes_brier"] == pytest.approx(0.01)
    assert row["excess_brier"] == pytest.approx(0.03)


def test_truth_calibration_rejects_real_data():
    with pytest.raises(ValueError, match="p_true"):
        analysis.truth_calibration({"UML": fake_evaluation({"prob": [0.5], "label": [1]})})
    nan = fake_evaluation({"id": ["a"], "prob": [0.5], "label": [1], "p_true": [np.nan]})
    with pytest.raises(ValueError, match="NaN"):
        analysis.truth_calibration({"UML": nan})


# ------------------------------------------------------------------------------ uncertainty maps


def test_image_uncertainty_evidential_or_entropy():
    evidential = fake_evaluation({"class_uncertainty": [0.2, 0.4]})
    values, kind = analysis.image_uncertainty(evidential)
    assert kind == "evidential" and values.tolist() == [0.2, 0.4]
    softmax = fake_evaluation(
        {"class_uncertainty": [np.nan, np.nan]}, class_prob=np.array([[0.5, 0.5], [1.0, 0.0]])
    )
    values, kind = analysis.image_uncertainty(softmax)
    assert kind == "entropy"
    np.testing.assert_allclose(values, [1.0, 0.0])


def maps_evaluation() -> Evaluation:
    masks = np.zeros((2, 4, 4), dtype=int)
    masks[:, 1:3, 1:3] = 1
    pred = masks.copy()
    pred[0, 0, :] = 1  # four wrong pixels in image 0
    uncertainty = np.full((2, 4, 4), 0.1)
    uncertainty[0, 0, :2] = 0.9  # two of the errors are uncertain
    return fake_evaluation(
        {"id": ["a", "b"], "dice": [0.8, 1.0], "uncertainty": [0.3, 0.1]},
        ids=["a", "b"],
        images=np.zeros((2, 4, 4, 3)),
        masks=masks,
        pred_masks=pred,
        error_maps=pred != masks,
        pixel_uncertainty=uncertainty,
    )


def test_pixel_uncertainty_maps_entropy_fallback():
    evaluation = maps_evaluation()
    maps, kind = analysis.pixel_uncertainty_maps(evaluation)
    assert kind == "evidential" and maps.shape == (2, 4, 4)
    evaluation.pixel_uncertainty = None
    evaluation.seg_prob = np.stack([np.full((2, 4, 4), 0.5), np.full((2, 4, 4), 0.5)], axis=1)
    maps, kind = analysis.pixel_uncertainty_maps(evaluation)
    assert kind == "entropy"
    np.testing.assert_allclose(maps, 1.0)
    evaluation.seg_prob = None
    with pytest.raises(ValueError, match="no segmentation maps"):
        analysis.pixel_uncertainty_maps(evaluation)


def test_with_entropy_uncertainty_scores_the_segmentation_softmax():
    evaluation = maps_evaluation()
    evaluation.seg_prob = np.stack([np.full((2, 4, 4), 0.5), np.full((2, 4, 4), 0.5)], axis=1)
    view = analysis.with_entropy_uncertainty(evaluation)
    maps, kind = analysis.pixel_uncertainty_maps(view)
    assert kind == "entropy"
    np.testing.assert_allclose(maps, 1.0)
    assert evaluation.pixel_uncertainty is not None  # the original keeps U^s
    assert view.error_maps is evaluation.error_maps


def test_map_cases():
    cases = analysis.map_cases(maps_evaluation(), ids=["b"])
    assert len(cases) == 1 and cases[0]["id"] == "b"
    assert cases[0]["title"] == "b\nDice 1.00, u 0.10"
    assert cases[0]["uncertainty"].shape == (4, 4)
    with pytest.raises(ValueError, match="no maps kept"):
        analysis.map_cases(maps_evaluation(), ids=["c"])


def test_pixel_error_detection_hand_computed():
    scores, curves = analysis.pixel_error_detection({"UML": maps_evaluation()})
    row = scores.loc["UML"]
    assert row["error_rate"] == pytest.approx(4 / 32)
    # errors: two at 0.9 and two at 0.1; the 28 right pixels are all at 0.1
    # AUROC = P(u_error > u_right) + 0.5 P(tie) = 0.5 * 1 + 0.5 * 0.5 = 0.75
    assert row["auroc"] == pytest.approx(0.75)
    # {u > t} for 0.1 <= t < 0.9 holds the two uncertain errors: UEO = 2*2 / (2 + 4)
    assert row["best_ueo"] == pytest.approx(4 / 6)
    assert 0.1 <= row["best_threshold"] < 0.9
    assert set(curves.columns) == {"model", "threshold", "ueo"}


# ----------------------------------------------------------------------------- robustness and OOD


def test_robustness_grid():
    grid = analysis.robustness_grid("smoke")
    assert list(grid) == list(analysis.ROBUSTNESS_CORRUPTIONS)
    assert all(len(levels) == 3 and levels[0] == 0.0 for levels in grid.values())
    full = analysis.robustness_grid("default", ["contrast"])
    assert full == {"contrast": (0.0, 0.2, 0.4, 0.6, 0.8, 0.9)}
    with pytest.raises(ValueError, match="unknown corruption"):
        analysis.robustness_grid("default", ["rain"])


def test_robustness_sweep_clean_level_matches_plain_evaluation(data, tiny_models):
    test = data.load("test")
    frame = analysis.robustness_sweep(
        tiny_models, test, {"gaussian_noise": (0.0, 0.5)}, progress=False
    )
    assert len(frame) == 4
    assert test.transform is None  # the sweep corrupts copies, never the dataset itself
    clean = evaluate(tiny_models["UML"], test, surface_metrics=False).summary
    row = frame[(frame.model == "UML") & (frame.severity == 0.0)].iloc[0]
    assert row["accuracy"] == pytest.approx(clean["accuracy"])
    assert row["dice"] == pytest.approx(clean["dice"])
    assert frame.loc[frame.model == "U-Net", "accuracy"].isna().all()


def test_robustness_sweep_evaluates_the_clean_level_once(data, tiny_models, monkeypatch):
    test = data.load("test")
    calls = []
    original = analysis.evaluate_models

    def counting(models, dataset, **kwargs):
        calls.append(dataset.transform.severity)
        return original(models, dataset, **kwargs)

    monkeypatch.setattr(analysis, "evaluate_models", counting)
    grid = {"gaussian_noise": (0.0, 0.5), "gaussian_blur": (0.0, 1.0)}
    frame = analysis.robustness_sweep(tiny_models, test, grid, progress=False)
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


def test_robustness_sweep_corrupts_the_images(data):
    test = data.load("test")
    frame = analysis.robustness_sweep(
        {"probe": ImageSpread()}, test, {"gaussian_noise": (0.0, 0.3)}, progress=False
    )
    clean, noisy = frame["uncertainty"]
    images = torch.stack([test[i]["image"] for i in range(len(test))])
    assert clean == pytest.approx(images.flatten(1).std(dim=1).mean().item(), rel=1e-5)
    assert noisy > clean + 0.1


def test_ood_scores_hand_computed():
    inside = fake_evaluation({"uncertainty": [0.1, 0.2]}, pixel_uncertainty=np.zeros((2, 2, 2)))
    outside = fake_evaluation({"uncertainty": [0.3, 0.05]}, pixel_uncertainty=np.ones((2, 2, 2)))
    frame, scores = analysis.ood_scores({"UML": inside}, {"UML": outside})
    assert len(frame) == 4
    assert scores.loc["UML", "auroc_image"] == pytest.approx(0.5)  # 2 of 4 pairs ordered
    assert scores.loc["UML", "auroc_pixel"] == pytest.approx(1.0)


# ---------------------------------------------------------------------------------- failure cases


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
    cases = analysis.select_cases(failures, n=2)
    assert cases["most uncertain"]["id"].tolist() == ["a", "e"]
    assert cases["confidently wrong"]["id"].tolist() == ["b", "f"]
    assert cases["uncertain but right"]["id"].tolist() == ["e", "c"]
    with pytest.raises(ValueError, match="at least 1"):
        analysis.select_cases(failures, n=0)
    with pytest.raises(ValueError, match="NaN"):
        analysis.select_cases(failures.assign(uncertainty=np.nan))


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
    assert analysis.failure_factors(table) == (["asymmetry"], ["hairs"])
    constant = table.assign(hairs=0)
    assert analysis.failure_factors(constant) == (["asymmetry"], [])


def test_factor_regression_finds_the_driving_factor():
    rng = np.random.default_rng(0)
    n = 400
    table = pd.DataFrame({"driver": rng.normal(size=n), "noise": rng.normal(size=n)})
    table["error"] = (rng.random(n) < 1 / (1 + np.exp(-3 * table["driver"]))).astype(int)
    effects = analysis.factor_regression(table, ["noise", "driver"], n_bootstrap=50)
    assert effects["factor"].tolist() == ["driver", "noise"]
    driver, noise = effects.iloc[0], effects.iloc[1]
    assert driver["coefficient"] > 2 and driver["lower"] > 1
    assert noise["lower"] < 0 < noise["upper"]


def test_factor_regression_rejects_bad_input():
    table = pd.DataFrame({"error": [0, 1, 2], "a": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match="must be 0/1"):
        analysis.factor_regression(table, ["a"])
    with pytest.raises(ValueError, match="NaN"):
        analysis.factor_regression(table.assign(a=[1.0, np.nan, 2.0]), ["a"])
    with pytest.raises(ValueError, match="at least one column"):
        analysis.factor_regression(table, [])
    few = pd.DataFrame({"error": [1] * 3 + [0] * 30, "a": np.arange(33.0)})
    with pytest.raises(ValueError, match="only 3 images in its smaller class"):
        analysis.factor_regression(few, ["a"])
    assert len(analysis.factor_regression(few, ["a"], min_events=3, n_bootstrap=5)) == 1


def test_flag_rates_hand_computed():
    table = pd.DataFrame({"error": [1, 0, 0, 1], "hairs": [1, 1, 0, 0], "blur": [0, 0, 0, 0]})
    rates = analysis.flag_rates(table, ["hairs", "blur"]).set_index("flag")
    assert rates.loc["hairs", "rate_present"] == 0.5
    assert rates.loc["hairs", "rate_absent"] == 0.5
    assert rates.loc["hairs", "n_present"] == 2
    assert np.isnan(rates.loc["blur", "rate_present"])
    assert rates.loc["blur", "rate_absent"] == 0.5


def test_paired_differences_pair_by_seed(runs):
    differences = analysis.paired_differences(runs, ["ACC", "HD95"])
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
        analysis.paired_differences(runs, ["ACC"], reference="nope")


def test_describe_options_reads_the_paired_differences(runs):
    differences = analysis.paired_differences(runs, ["ACC", "HD95"])
    sentences = analysis.describe_options(differences, ["multitask", "U-Net", "absent"])
    # multitask: ACC better than UML by 0.045 (std 0.007) -> helps; HD95 worse by 3 (std 0) -> hurts.
    # U-Net: no ACC; HD95 d = -1, +5 (mean 2, std 4.24) -> within the spread.
    assert sentences == [
        "multitask against the official UML: helps on ACC (+0.045); hurts HD95 (-3.000).",
        "U-Net against the official UML: helps on no metric beyond the spread.",
    ]


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
    summary = analysis.robustness_summary(sweep, ["accuracy", "dice"])
    uml = summary.loc[("gaussian_noise", "UML")]
    assert uml[("accuracy", "clean")] == pytest.approx(0.9)
    assert uml[("accuracy", "strongest")] == pytest.approx(0.8)
    assert uml[("accuracy", "drop")] == pytest.approx(0.1)
    assert uml[("accuracy", "mean")] == pytest.approx(0.85)
    sentences = analysis.describe_robustness(summary)
    assert sentences[0] == (
        "gaussian_noise, accuracy: best over the grid UML (0.850 on average); smallest drop UML "
        "(+0.100 from clean to the strongest level, largest multitask +0.200)."
    )
    with pytest.raises(ValueError, match="ece"):
        analysis.robustness_summary(sweep, ["ece"])


def test_add_failure_columns():
    table = pd.DataFrame(
        {"correct": [1.0, 0.0, np.nan], "dice": [0.9, 0.5, np.nan], "p_true": [0.2, 0.7, 0.5]}
    )
    out = analysis.add_failure_columns(table, dice_threshold=0.7)
    assert out["error"].tolist()[:2] == [0.0, 1.0]
    assert out["segmentation_failure"].tolist()[:2] == [0.0, 1.0]
    assert np.isnan(out["segmentation_failure"].iloc[2])
    np.testing.assert_allclose(out["bayes_error"], [0.2, 0.3, 0.5])
    assert "error" not in table  # a copy
    with pytest.raises(ValueError, match="dice_threshold"):
        analysis.add_failure_columns(table, dice_threshold=2)


def test_risk_coverage_curves_hand_computed():
    confidence = np.array([0.9, 0.8, 0.7, 0.6])
    correct = np.array([1, 1, 0, 1])
    curves, table = analysis.risk_coverage_curves({"UML": (confidence, correct, "confidence")})
    ((label, (coverage, risk)),) = curves.items()
    area = (0 + 0 + 1 / 3 + 1 / 4) / 4
    assert label == f"UML (AURC {area:.3f})"
    np.testing.assert_allclose(coverage, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(risk, [0, 0, 1 / 3, 1 / 4])
    assert table.loc["UML", "aurc"] == pytest.approx(area)
    assert table.loc["UML", "error_rate"] == pytest.approx(0.25)
    assert table.loc["UML", "optimal_aurc"] == pytest.approx(0.25 + 0.75 * np.log(0.75))


def test_calibration_table_matches_the_metrics():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    labels = np.array([0, 1, 1, 1])
    table = analysis.calibration_table({"UML": probs}, labels, n_bins=5)
    row = table.loc["UML"]
    assert row["accuracy"] == 0.75
    assert row["ECE"] == pytest.approx(metrics.expected_calibration_error(probs, labels, 5))
    assert row["aECE"] == pytest.approx(metrics.aece(probs, labels, 5))
    assert row["Brier"] == pytest.approx(metrics.brier_score(probs, labels))
    assert "ECE positive class" in table.columns
    three = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    assert "ECE positive class" not in analysis.calibration_table({"m": three}, [0, 2]).columns


def test_pixel_calibration_study_with_and_without_background(data, tiny_models):
    test = data.load("test")
    results, table = analysis.pixel_calibration_study(
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


def test_mean_pixel_uncertainty_and_pick_spread():
    evaluation = maps_evaluation()
    np.testing.assert_allclose(
        analysis.mean_pixel_uncertainty(evaluation), [(14 * 0.1 + 2 * 0.9) / 16, 0.1]
    )
    table = pd.DataFrame({"id": list("abcde"), "dice": [0.5, 0.1, 0.9, 0.3, np.nan]})
    # ranks b, d, a, c; positions 0, 1.5 -> 2 (round half to even), 3
    assert analysis.pick_spread(table, "dice", 3) == ["b", "a", "c"]
    assert analysis.pick_spread(table, "dice", 10) == ["b", "d", "a", "c"]
    with pytest.raises(ValueError, match="at least 1"):
        analysis.pick_spread(table, "dice", 0)


def test_factor_correlations_are_rank_correlations():
    table = pd.DataFrame(
        {"size": [1.0, 2.0, 3.0, 4.0], "hairs": [1, 0, 1, 0], "uncertainty": [0.1, 0.2, 0.4, 0.9]}
    )
    correlations = analysis.factor_correlations(table, ["size", "hairs"])
    assert correlations.loc["size", "uncertainty"] == pytest.approx(1.0)  # monotone, not linear
    assert correlations.loc["hairs", "uncertainty"] == pytest.approx(-np.sqrt(0.2))


def test_describe_effects():
    effects = pd.DataFrame(
        {
            "factor": ["irregularity", "hairs"],
            "coefficient": [1.0, -0.1],
            "lower": [0.5, -0.4],
            "upper": [1.5, 0.2],
        }
    )
    assert analysis.describe_effects(effects, "a wrong label") == [
        "irregularity raises the odds of a wrong label: +1.00 log-odds per sd "
        "(95 % interval +0.50 to +1.50, odds x2.72)."
    ]
    none = analysis.describe_effects(effects.iloc[1:], "a wrong label")
    assert none[0].startswith("No factor changes the odds of a wrong label clearly")


def test_describe_robustness_reports_the_uncertainty_rise(sweep):
    sweep = sweep.assign(uncertainty=np.where(sweep.model == "UML", sweep.severity, 0.1))
    summary = analysis.robustness_summary(sweep, ["accuracy", "uncertainty"])
    sentences = analysis.describe_robustness(summary, ["accuracy"], ["uncertainty"])
    assert sentences[-1] == (
        "gaussian_noise, uncertainty from clean to the strongest level: UML +0.200, multitask +0.000."
    )


# ------------------------------------------------------------------------------- factor weights
def test_factor_weights_recover_a_known_linear_log_odds():
    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.uniform(size=(50, 3)), columns=["a", "b", "c"])
    table["prob"] = 1.0 / (1.0 + np.exp(-(0.5 + 2.0 * table["a"] - 1.0 * table["c"])))
    weights = analysis.factor_weights(table, ["a", "b", "c"], true_weights=[4.0, 2.0, -2.0])
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
    weights = analysis.factor_weights(table, eps=1e-12)
    np.testing.assert_allclose(weights["weight"], DERM_RISK_WEIGHTS, atol=1e-4)
    np.testing.assert_allclose(weights["share"], weights["true_share"], atol=1e-5)
    no_truth = analysis.factor_weights(table, list(DERM_FACTORS))
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
        analysis.factor_weights(change(table), ["a", "b"])
    with pytest.raises(ValueError, match="3 true weights for 2 factors"):
        analysis.factor_weights(table, ["a", "b"], true_weights=[1, 2, 3])
