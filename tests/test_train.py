"""umlkit.train: schedule, selection, determinism, checkpoints, exact resume, the model cache."""

import itertools
import json

import numpy as np
import pandas as pd
import pytest
import torch

import umlkit.train as train_module
from umlkit.data import make_synthetic
from umlkit.models import build_model
from umlkit.train import (
    CHECKPOINT_BEST,
    CHECKPOINT_LAST,
    TrainConfig,
    augment_batch,
    config_hash,
    get_or_train,
    learning_rate,
    load_checkpoint,
    load_model,
    load_model_state,
    selection_score,
    train,
)

#: History columns that measure time and so differ between identical runs.
TIMING = ["seconds", "cpu_seconds"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """24 synthetic derm images of 32x32: 17 train, 2 val, 5 test."""
    root = tmp_path_factory.mktemp("derm") / "derm"
    return str(make_synthetic(root, kind="derm", n=24, size=32, seed=0, progress=False))


def tiny_config(data_root, **changes):
    values = dict(
        model="uml",
        width=4,
        data_root=data_root,
        image_size=32,
        epochs=3,
        batch_size=8,
        device="cpu",
    )
    values.update(changes)
    return TrainConfig(**values)


def test_learning_rate_is_constant_then_poly_decay_with_a_floor():
    config = TrainConfig(epochs=10, lr=1e-3, constant_fraction=0.3, min_lr=1e-5)
    assert [learning_rate(config, t) for t in range(3)] == [1e-3] * 3
    # t = 5: progress (5 - 3) / (10 - 3) = 2/7, lr = 1e-3 (5/7)^0.9
    assert learning_rate(config, 5) == pytest.approx(1e-3 * (5 / 7) ** 0.9)
    tight = TrainConfig(epochs=10, lr=1e-3, constant_fraction=0.3, min_lr=9e-4)
    assert learning_rate(tight, 9) == 9e-4


def test_learning_rate_decays_within_an_epoch_down_to_the_floor():
    config = TrainConfig(epochs=4, lr=3e-3, constant_fraction=0.3, min_lr=1e-5)
    # t0 = floor(1.2) = 1; t = 3.5: progress 2.5 / 3, lr = 3e-3 (1/6)^0.9
    assert learning_rate(config, 3.5) == pytest.approx(3e-3 * (1 / 6) ** 0.9)
    assert learning_rate(config, 0.99) == 3e-3
    grid = [learning_rate(config, t / 100) for t in range(400)]
    assert all(later <= earlier for earlier, later in itertools.pairwise(grid))
    assert grid[-1] < 0.02 * 3e-3  # the last step runs at about the floor, not at 37 % of lr
    assert learning_rate(config, 4.0) == 1e-5


def test_selection_score_averages_the_available_metrics():
    assert selection_score({"accuracy": 0.8, "dice": 0.6}) == pytest.approx(0.7)
    assert selection_score({"accuracy": float("nan"), "dice": 0.6}) == pytest.approx(0.6)
    assert np.isnan(selection_score({"accuracy": float("nan"), "dice": float("nan")}))


def test_kl_annealing_defaults_to_half_the_epochs():
    assert TrainConfig(epochs=12).kl_anneal_epochs == 6
    assert TrainConfig(epochs=12, anneal_epochs=50).kl_anneal_epochs == 50


@pytest.mark.parametrize("kind", ["flip", "dihedral"])
def test_augmentation_moves_images_and_masks_together(kind):
    images = torch.rand(6, 3, 8, 8)
    masks = (images[:, 0] > 0.5).long()  # the mask is a function of the first channel
    out_images, out_masks = augment_batch(images, masks, kind, torch.Generator().manual_seed(0))
    assert torch.equal(out_masks, (out_images[:, 0] > 0.5).long())
    assert not torch.equal(out_images, images)  # six images: some symmetry was drawn
    # every output is a symmetry of its input: same multiset of pixel values
    torch.testing.assert_close(out_images.flatten(1).sort().values, images.flatten(1).sort().values)
    again, _ = augment_batch(images, masks, kind, torch.Generator().manual_seed(0))
    assert torch.equal(again, out_images)


def test_no_augmentation_is_the_identity():
    images, masks = torch.rand(2, 3, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long)
    out_images, out_masks = augment_batch(images, masks, "none", torch.Generator())
    assert out_images is images and out_masks is masks


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"augment": "mixup"}, "augment must be one of"),
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"width": 2.5}, "width must be a positive integer"),
        ({"lr": 0.0}, "need lr > 0"),
        ({"constant_fraction": 1.5}, "constant_fraction must lie in"),
        ({"anneal_epochs": 0}, "anneal_epochs must be positive"),
    ],
)
def test_bad_train_configurations_are_rejected(changes, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**changes)


def test_missing_data_root_is_reported(tmp_path):
    with pytest.raises(ValueError, match="data_root is not set"):
        train(TrainConfig(epochs=1), progress=False)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        train(TrainConfig(epochs=1, data_root=str(tmp_path / "nowhere")), progress=False)


def test_bad_model_options_fail_before_training(data_root):
    with pytest.raises(ValueError, match="model 'unet' has no option"):
        train(tiny_config(data_root, model="unet", model_options={"navigator": False}))


def test_training_is_deterministic_and_keeps_the_best_epoch(data_root, tmp_path):
    first = train(tiny_config(data_root), output_dir=tmp_path / "a", progress=False)
    second = train(tiny_config(data_root), output_dir=tmp_path / "b", progress=False)
    pd.testing.assert_frame_equal(
        first.history.drop(columns=TIMING), second.history.drop(columns=TIMING)
    )
    history = first.history
    assert len(history) == 3
    assert {"loss", "loss_cls", "loss_seg", "loss_mutual", "val_accuracy", "val_dice"} <= set(
        history.columns
    )
    assert first.best_epoch == int(history["val_score"].idxmax())
    assert first.best_score == pytest.approx(history["val_score"].max())
    assert not first.model.training
    saved = pd.read_csv(tmp_path / "a" / "history.csv")
    assert list(saved.columns) == list(history.columns) and len(saved) == 3
    assert json.loads((tmp_path / "a" / "config.json").read_text())["width"] == 4
    assert not list((tmp_path / "a").glob("*.tmp")), "a temporary file was left behind"


def test_checkpoint_holds_what_resuming_needs(data_root, tmp_path):
    train(tiny_config(data_root, epochs=1), output_dir=tmp_path, progress=False)
    checkpoint = load_checkpoint(tmp_path / CHECKPOINT_LAST)
    assert {
        "umlkit_version",
        "train_config",
        "model_config",
        "model_state",
        "optimizer_state",
        "epoch",
        "history",
        "rng",
    } <= set(checkpoint)
    assert checkpoint["epoch"] == 0 and checkpoint["model_config"]["name"] == "uml"


class Interrupted(Exception):
    pass


def test_resume_after_an_interruption_reproduces_the_uninterrupted_run(data_root, tmp_path):
    config = tiny_config(data_root, epochs=4)
    reference = train(config, output_dir=tmp_path / "full", progress=False)

    def stop_after_second_epoch(row):
        if row["epoch"] == 1:
            raise Interrupted

    with pytest.raises(Interrupted):
        train(config, output_dir=tmp_path / "cut", progress=False, callback=stop_after_second_epoch)
    assert load_checkpoint(tmp_path / "cut" / CHECKPOINT_LAST)["epoch"] == 1
    resumed = train(config, output_dir=tmp_path / "cut", resume=True, progress=False)
    pd.testing.assert_frame_equal(
        resumed.history.drop(columns=TIMING), reference.history.drop(columns=TIMING)
    )
    assert resumed.best_epoch == reference.best_epoch
    for key, value in reference.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=0, atol=0)
    last_full = load_checkpoint(tmp_path / "full" / CHECKPOINT_LAST)["model_state"]
    last_cut = load_checkpoint(tmp_path / "cut" / CHECKPOINT_LAST)["model_state"]
    for key, value in last_full.items():
        torch.testing.assert_close(last_cut[key], value, rtol=0, atol=0)


def test_resume_refuses_a_checkpoint_of_another_configuration(data_root, tmp_path):
    train(tiny_config(data_root, epochs=1), output_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"another configuration \(.*width: 8 != 4"):
        train(tiny_config(data_root, epochs=1, width=8), output_dir=tmp_path, resume=True)


def test_save_load_predict_gives_identical_outputs(data_root, tmp_path):
    result = train(tiny_config(data_root, epochs=1), output_dir=tmp_path, progress=False)
    loaded = load_model(tmp_path / CHECKPOINT_BEST)
    x = torch.rand(2, 3, 32, 32)
    a, b = result.model(x), loaded(x)
    for field in ("class_prob", "class_uncertainty", "seg_logits", "pixel_uncertainty"):
        torch.testing.assert_close(getattr(a, field), getattr(b, field), rtol=0, atol=0)


def test_loading_into_a_different_configuration_is_a_clear_error(data_root, tmp_path):
    train(tiny_config(data_root, epochs=1), output_dir=tmp_path, progress=False)
    checkpoint = load_checkpoint(tmp_path / CHECKPOINT_BEST)
    with pytest.raises(ValueError, match="different model configuration: .*navigator"):
        load_model_state(build_model("uml", width=4, navigator=False), checkpoint)
    with pytest.raises(ValueError, match="different model: .*width"):
        load_model(tmp_path / CHECKPOINT_BEST, expected=build_model("uml", width=8).config)
    with pytest.raises(FileNotFoundError, match="nothing.pt not found"):
        load_model(tmp_path / "nothing.pt")


@pytest.mark.parametrize("model", ["unet", "classifier", "multitask", "uml2024"])
def test_every_model_trains_with_the_same_loop(data_root, model):
    result = train(tiny_config(data_root, model=model, epochs=1), progress=False)
    row = result.history.iloc[0]
    assert np.isfinite(row["loss"])
    assert np.isnan(row["val_dice"]) == (model == "classifier")
    assert np.isnan(row["val_accuracy"]) == (model == "unet")


def test_get_or_train_reuses_a_finished_run(data_root, tmp_path, monkeypatch):
    config = tiny_config(data_root, epochs=2)
    first = get_or_train(config, cache_dir=tmp_path, progress=False)
    assert not first.from_cache
    assert first.output_dir == tmp_path / config_hash(config)

    def no_training(*args, **kwargs):
        raise AssertionError("get_or_train trained again")

    monkeypatch.setattr(train_module, "train", no_training)
    second = get_or_train(config, cache_dir=tmp_path, progress=False)
    assert second.from_cache and second.best_epoch == first.best_epoch
    pd.testing.assert_frame_equal(
        second.history, first.history, check_dtype=False, check_exact=False
    )
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(second.model(x).seg_logits, first.model(x).seg_logits)


def test_cache_key_follows_the_configuration_but_not_the_device(data_root):
    config = tiny_config(data_root)
    assert config_hash(config) == config_hash(tiny_config(data_root, device="cuda"))
    assert config_hash(config) == config_hash(tiny_config(data_root, array_cache="/elsewhere"))
    assert config_hash(config) != config_hash(tiny_config(data_root, seed=1))
    assert config_hash(config) != config_hash(
        tiny_config(data_root, model_options={"navigator": False})
    )


def test_array_cache_stores_both_splits_and_changes_no_number(data_root, tmp_path):
    plain = train(tiny_config(data_root, epochs=1), progress=False)
    store = tmp_path / "arrays"
    stored = train(tiny_config(data_root, epochs=1, array_cache=str(store)), progress=False)
    assert len(list(store.glob("*-train-*.npz"))) == 1
    assert len(list(store.glob("*-val-*.npz"))) == 1
    columns = [c for c in plain.history.columns if "seconds" not in c]
    pd.testing.assert_frame_equal(stored.history[columns], plain.history[columns])
