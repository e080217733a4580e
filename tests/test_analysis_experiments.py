"""umlkit.analysis.experiments: the data set-up, the training configurations and the model set."""

import copy
import dataclasses

import numpy as np
import pytest

from umlkit.analysis import experiments
from umlkit.train import TrainConfig, config_hash


def test_prepare_data_writes_the_synthetic_set_once(analysis_ctx, derm_data):
    assert derm_data.synthetic == "derm"
    assert derm_data.loader_kind == "isic2017"
    assert derm_data.root == analysis_ctx.data_dir / "synthetic" / "derm-smoke"
    assert (derm_data.root / "umlkit_metadata.csv").is_file()
    test = derm_data.load("test")
    assert tuple(test[0]["image"].shape) == (3, 16, 16)
    # A second call finds the complete dataset and leaves it as it is.
    assert experiments.prepare_data(analysis_ctx, "derm") == derm_data


def test_prepare_data_rejects_bad_kinds(analysis_ctx):
    with pytest.raises(ValueError, match="out-of-distribution"):
        experiments.prepare_data(analysis_ctx, "ood")
    with pytest.raises(ValueError, match="unknown kind"):
        experiments.prepare_data(analysis_ctx, "mri")
    with pytest.raises(ValueError, match="data_root"):
        experiments.prepare_data(analysis_ctx, "isic2017")


def test_prepare_ood(analysis_ctx, derm_data):
    ood = experiments.prepare_ood(analysis_ctx, derm_data)
    assert ood.synthetic == "ood"
    assert len(ood.load("test")) == 6
    real = experiments.DataSpec("isic2017", derm_data.root, None, 16)
    assert experiments.prepare_ood(analysis_ctx, real) is None


def test_train_config_is_shared_and_distinguishes_variants(analysis_ctx, derm_data):
    config = experiments.train_config(analysis_ctx.settings, derm_data, "UML", seed=0)
    assert config.model == "uml" and config.model_options == {}
    assert (config.width, config.image_size, config.epochs) == (4, 16, 1)
    again = experiments.train_config(analysis_ctx.settings, derm_data, "UML", seed=0)
    assert config_hash(config) == config_hash(again)
    no_navigator = experiments.train_config(
        analysis_ctx.settings, derm_data, "UML w/o navigator", seed=0
    )
    assert no_navigator.model_options == {"navigator": False}
    assert config_hash(no_navigator) != config_hash(config)
    assert config_hash(
        experiments.train_config(analysis_ctx.settings, derm_data, "UML", seed=1)
    ) != config_hash(config)
    with pytest.raises(ValueError, match="unknown variant"):
        experiments.train_config(analysis_ctx.settings, derm_data, "UML++")


def test_train_config_takes_the_profile_augmentation_within_the_data_symmetries(
    analysis_ctx, derm_data
):
    settings = copy.deepcopy(analysis_ctx.settings)
    settings["train"]["augment"] = "dihedral"
    assert experiments.train_config(settings, derm_data, "UML").augment == "dihedral"
    fundus = dataclasses.replace(derm_data, loader_kind="refuge")
    assert experiments.train_config(settings, fundus, "UML").augment == "flip"
    del settings["train"]["augment"]
    assert experiments.train_config(settings, derm_data, "UML").augment == "none"
    settings["train"]["augment"] = "mixup"
    with pytest.raises(ValueError, match="augment must be one of"):
        experiments.train_config(settings, derm_data, "UML")


def test_train_config_adds_uml_options_to_uml_variants_only(analysis_ctx, derm_data):
    settings = copy.deepcopy(analysis_ctx.settings)
    settings["train"]["uml_options"] = {"mixer_width": 4}
    assert experiments.train_config(settings, derm_data, "UML").model_options == {"mixer_width": 4}
    option = experiments.train_config(settings, derm_data, "UML + navigated output")
    assert option.model_options == {"mixer_width": 4, "navigate_final": True}
    assert experiments.train_config(settings, derm_data, "multitask").model_options == {}


def test_train_config_takes_the_profile_learning_rate(analysis_ctx, derm_data):
    settings = copy.deepcopy(analysis_ctx.settings)
    settings["train"]["lr"] = 0.003
    config = experiments.train_config(settings, derm_data, "UML")
    assert config.lr == 0.003
    del settings["train"]["lr"]
    assert experiments.train_config(settings, derm_data, "UML").lr == TrainConfig().lr
    assert config_hash(config) != config_hash(experiments.train_config(settings, derm_data, "UML"))
    settings["train"]["lr"] = -1.0
    with pytest.raises(ValueError, match="need lr > 0"):
        experiments.train_config(settings, derm_data, "UML")


def test_train_variants_trains_once_then_loads_from_the_cache(analysis_ctx, derm_data, tmp_path):
    first = experiments.train_variants(
        analysis_ctx.settings,
        derm_data,
        ["classification only"],
        seeds=[0],
        progress=False,
        cache_dir=tmp_path,
    )
    second = experiments.train_variants(
        analysis_ctx.settings,
        derm_data,
        ["classification only"],
        seeds=[0],
        progress=False,
        cache_dir=tmp_path,
    )
    assert list(first) == [("classification only", 0)]
    assert not first["classification only", 0].from_cache
    assert second["classification only", 0].from_cache


def test_train_variants_in_worker_processes_fill_the_same_cache(analysis_ctx, derm_data, tmp_path):
    variants = ["classification only"]
    parallel = experiments.train_variants(
        analysis_ctx.settings,
        derm_data,
        variants,
        seeds=[0, 1],
        progress=False,
        cache_dir=tmp_path,
        workers=2,
    )
    assert [result.from_cache for result in parallel.values()] == [False, False]
    again = experiments.train_variants(
        analysis_ctx.settings, derm_data, variants, seeds=[0, 1], progress=False, cache_dir=tmp_path
    )
    assert all(result.from_cache for result in again.values())
    with pytest.raises(ValueError, match="workers must be"):
        experiments.train_variants(analysis_ctx.settings, derm_data, variants, workers=0)


def test_evaluate_models_adds_the_uncertainty_column(derm_data, tiny_models):
    evaluations = experiments.evaluate_models(
        tiny_models, derm_data.load("test"), surface_metrics=False
    )
    uml, unet = evaluations["UML"].table, evaluations["U-Net"].table
    np.testing.assert_allclose(uml["uncertainty"], uml["class_uncertainty"])
    assert uml.attrs["uncertainty_kind"] == "evidential"
    assert unet["uncertainty"].isna().all()
    assert unet.attrs["uncertainty_kind"] == "none"
