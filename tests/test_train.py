"""umlkit.train: schedule, selection, determinism, checkpoints, exact resume, the model cache."""

import hashlib
import itertools
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import umlkit.train as train_module
from umlkit.data import make_synthetic
from umlkit.divergence import TrainingDiverged
from umlkit.folders import FolderInUseError
from umlkit.models import build_model
from umlkit.train import (
    CHECKPOINT_BEST,
    CHECKPOINT_LAST,
    CONFIG_FILE,
    RESUME_KEYS,
    STEPS_FILE,
    TrainConfig,
    augment_batch,
    config_hash,
    dataset_fingerprint,
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


@pytest.fixture(scope="module")
def finished_run(data_root, tmp_path_factory):
    """A finished one-epoch run; tests copy it (shutil.copytree) before touching it."""
    folder = tmp_path_factory.mktemp("run") / "run"
    train(tiny_config(data_root, epochs=1), output_dir=folder, progress=False)
    return folder


def snapshot(folder):
    """SHA-256 of every file under ``folder`` (relative path -> digest): what a failed start
    must leave unchanged."""
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def copy_run(finished_run, tmp_path):
    return shutil.copytree(finished_run, tmp_path / "run")


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


def test_the_loss_is_logged_every_few_steps_and_kept_with_the_run(data_root, tmp_path):
    # 17 training images in batches of 8: two steps per epoch, three epochs
    result = train(tiny_config(data_root, log_every=1), output_dir=tmp_path, progress=False)
    steps = result.steps
    assert steps["step"].tolist() == [1, 2, 3, 4, 5, 6]
    assert steps["epoch"].tolist() == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert {"lr", "loss", "loss_cls", "loss_seg", "loss_mutual"} <= set(steps.columns)
    epoch_means = steps.groupby(steps["epoch"].apply(math.ceil))["loss"].mean()
    np.testing.assert_allclose(epoch_means.to_numpy(), result.history["loss"].to_numpy())
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / STEPS_FILE), steps, check_dtype=False)
    coarse = train(tiny_config(data_root, log_every=10), progress=False)
    assert coarse.steps["step"].tolist() == [2, 4, 6]  # a row closes every epoch
    np.testing.assert_allclose(coarse.steps["loss"], result.history["loss"])
    # how often the loss is logged changes no number and no cache key
    pd.testing.assert_frame_equal(
        coarse.history.drop(columns=TIMING), result.history.drop(columns=TIMING)
    )
    assert config_hash(tiny_config(data_root, log_every=1)) == config_hash(tiny_config(data_root))


def test_checkpoint_holds_what_resuming_needs(data_root, finished_run):
    checkpoint = load_checkpoint(finished_run / CHECKPOINT_LAST)
    assert {"umlkit_version", "data", *RESUME_KEYS} <= set(checkpoint)
    assert checkpoint["epoch"] == 0 and checkpoint["model_config"]["name"] == "uml"


def test_checkpoints_record_what_the_model_was_trained_on(data_root, finished_run):
    for name in (CHECKPOINT_LAST, CHECKPOINT_BEST):
        record = load_checkpoint(finished_run / name)["data"]
        assert record["class_names"] == ["not melanoma", "melanoma"]
        assert record["seg_class_names"] == ["background", "lesion"]
        assert record["image_size"] == 32 and record["dataset"] == "isic2017"
        assert record["fingerprint"] == dataset_fingerprint(data_root)
        assert record["files"] == sum(1 for path in Path(data_root).rglob("*") if path.is_file())


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
    pd.testing.assert_frame_equal(resumed.steps, reference.steps)
    assert resumed.best_epoch == reference.best_epoch
    for key, value in reference.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=0, atol=0)
    last_full = load_checkpoint(tmp_path / "full" / CHECKPOINT_LAST)["model_state"]
    last_cut = load_checkpoint(tmp_path / "cut" / CHECKPOINT_LAST)["model_state"]
    for key, value in last_full.items():
        torch.testing.assert_close(last_cut[key], value, rtol=0, atol=0)


def test_resume_refuses_a_checkpoint_of_another_configuration(data_root, finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path)
    before = snapshot(run)
    with pytest.raises(ValueError, match=r"another configuration \(.*width: 8 != 4") as caught:
        train(tiny_config(data_root, epochs=1, width=8), output_dir=run, resume=True)
    assert "use another output_dir or overwrite=True to start over" in str(caught.value)
    assert snapshot(run) == before


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
    pd.testing.assert_frame_equal(second.steps, first.steps, check_dtype=False, check_exact=False)
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


def swap_labels_in_place(table: Path) -> None:
    """Swap every melanoma label of an ISIC table (1.0 <-> 0.0): the same size, and the
    modification time put back, as the issue that found the stale cache describes."""
    stat = table.stat()
    rows = table.read_text().splitlines()
    swapped = [rows[0]] + [
        ",".join([image_id, {"1.0": "0.0", "0.0": "1.0"}[label], *rest])
        for image_id, label, *rest in (row.split(",") for row in rows[1:])
    ]
    table.write_text("\n".join(swapped) + "\n")
    assert table.stat().st_size == stat.st_size and table.read_text() != "\n".join(rows) + "\n"
    os.utime(table, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_cache_key_sees_swapped_labels_and_an_image_edited_in_place(data_root, tmp_path):
    data = shutil.copytree(data_root, tmp_path / Path(data_root).name)
    config = tiny_config(str(data))
    first = config_hash(config)
    assert config_hash(tiny_config(data_root)) == first  # a copy of the folder is the same data
    swap_labels_in_place(data / "ISIC-2017_Training_Part3_GroundTruth.csv")
    swapped = config_hash(config)
    assert swapped != first
    image = next(data.rglob("*.jpg"))
    stat = image.stat()
    content = bytearray(image.read_bytes())
    content[-3] ^= 0x01  # one bit of the image data, near the end of the JPEG
    image.write_bytes(bytes(content))
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert image.stat().st_size == stat.st_size
    assert config_hash(config) not in (first, swapped)


def all_finite(checkpoint) -> bool:
    return all(
        bool(torch.isfinite(value).all())
        for value in checkpoint["model_state"].values()
        if value.is_floating_point()
    )


def test_a_loss_term_below_its_minimum_stops_the_run_before_any_checkpoint(
    data_root, tmp_path, monkeypatch
):
    official = train_module.official_objective

    def with_a_negative_mutual_term(model, **settings):
        objective = official(model, **settings)

        def call(output, mask, label, epoch):
            loss, components = objective(output, mask, label, epoch)
            return loss, {**components, "mutual": -207087.0}  # what the issue saw at lr 1000

        return call

    monkeypatch.setattr(train_module, "official_objective", with_a_negative_mutual_term)
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as caught:
        train(tiny_config(data_root, epochs=2), output_dir=run, progress=False)
    assert str(caught.value) == (
        "training diverged at epoch 0, step 1 of 2 (learning rate 0.001): the loss term mutual "
        "is -207087, below its minimum 0; lower TrainConfig.lr and start again"
    )
    assert not (run / CHECKPOINT_LAST).exists() and not (run / CHECKPOINT_BEST).exists()


def test_overflowing_weights_stop_the_run_and_keep_the_last_good_epoch(
    data_root, tmp_path, monkeypatch
):
    schedule = train_module.learning_rate  # the rate jumps to inf when the second epoch begins
    monkeypatch.setattr(
        train_module, "learning_rate", lambda config, t: schedule(config, t) if t < 1 else math.inf
    )
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as caught:
        train(tiny_config(data_root, epochs=3), output_dir=run, progress=False)
    message = str(caught.value)
    # the first step at inf breaks the weights; the second names one of them
    assert message.startswith("training diverged at epoch 1, step 2 of 2 (learning rate inf): ")
    assert " holds " in message and "lower TrainConfig.lr" in message and "\n" not in message
    for name in (CHECKPOINT_LAST, CHECKPOINT_BEST):
        checkpoint = load_checkpoint(run / name)
        assert checkpoint["epoch"] == 0 and all_finite(checkpoint)
    assert list(pd.read_csv(run / "history.csv")["epoch"]) == [0]


def test_array_cache_stores_both_splits_and_changes_no_number(data_root, tmp_path):
    plain = train(tiny_config(data_root, epochs=1), progress=False)
    store = tmp_path / "arrays"
    stored = train(tiny_config(data_root, epochs=1, array_cache=str(store)), progress=False)
    assert len(list(store.glob("*-train-*.npz"))) == 1
    assert len(list(store.glob("*-val-*.npz"))) == 1
    columns = [c for c in plain.history.columns if "seconds" not in c]
    pd.testing.assert_frame_equal(stored.history[columns], plain.history[columns])


# ------------------------------------------------------------- nothing silently wrong or overwritten
def test_an_output_folder_holding_a_run_is_refused_without_resume_or_overwrite(
    data_root, finished_run, tmp_path
):
    run = copy_run(finished_run, tmp_path)
    before = snapshot(run)
    with pytest.raises(FileExistsError) as caught:
        train(tiny_config(data_root, epochs=1), output_dir=run, progress=False)
    message = str(caught.value)
    assert (
        f"output_dir {run} already holds a run (last.pt, best.pt, half.pt, history.csv, steps.csv, config.json)"
        in (message)
    )
    assert "resume=True continues it, overwrite=True replaces it" in message
    assert snapshot(run) == before
    # any one of the run's files is a run
    only_config = tmp_path / "only-config"
    only_config.mkdir()
    (only_config / CONFIG_FILE).write_text("{}\n")
    with pytest.raises(FileExistsError, match=r"already holds a run \(config.json\)"):
        train(tiny_config(data_root, epochs=1), output_dir=only_config, progress=False)
    assert (only_config / CONFIG_FILE).read_text() == "{}\n"


def test_overwrite_replaces_the_run_and_says_so(data_root, finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path)
    (run / "notes.txt").write_text("mine")
    notes = []
    result = train(
        tiny_config(data_root, epochs=1, width=8),
        output_dir=run,
        overwrite=True,
        progress=False,
        log=notes.append,
    )
    assert notes == [f"replacing the run in {run} (overwrite=True)"]
    assert json.loads((run / CONFIG_FILE).read_text())["width"] == 8
    assert load_checkpoint(run / CHECKPOINT_BEST)["model_config"]["width"] == 8
    assert len(result.history) == 1 and (run / "notes.txt").read_text() == "mine"


def test_resume_without_a_checkpoint_says_so_and_starts_a_new_run(data_root, tmp_path):
    notes = []
    folder = tmp_path / "new"
    train(tiny_config(data_root, epochs=1), output_dir=folder, resume=True, log=notes.append)
    assert notes == [f"no checkpoint in {folder}: starting a new run"]
    assert load_checkpoint(folder / CHECKPOINT_LAST)["epoch"] == 0


def _no_data_loading(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the data were loaded before the arguments were checked")

    monkeypatch.setattr(train_module, "_load_splits", fail)


def test_device_and_image_size_are_checked_before_the_data_load(data_root, monkeypatch):
    _no_data_loading(monkeypatch)
    with pytest.raises(ValueError) as caught:
        train(tiny_config(data_root, device="tpu"), progress=False)
    assert str(caught.value).startswith(
        "TrainConfig.device 'tpu' is not a device umlkit can use: choose cpu, cuda, cuda:<n> or "
        "mps (available here: cpu"
    )
    with pytest.raises(ValueError) as caught:
        train(tiny_config(data_root, image_size=60), progress=False)
    assert str(caught.value) == (
        "TrainConfig.image_size 60 is not divisible by 8: a network of depth 4 halves the image 3 "
        "times, so sides must be multiples of 2**(depth-1) = 8 (e.g. 56 or 64)"
    )
    with pytest.raises(ValueError, match="divisible by 4"):  # the model's depth sets the factor
        train(tiny_config(data_root, image_size=30, model_options={"depth": 3}), progress=False)


#: Starts that fail: (configuration changes, train options, error, message); the last ones fail
#: only where a run is, the others anywhere.
FAILED_STARTS = [
    ({"device": "tpu"}, {"resume": True}, ValueError, "TrainConfig.device 'tpu'"),
    ({"image_size": 60}, {"overwrite": True}, ValueError, "image_size 60 is not divisible"),
    (
        {"model": "unet", "model_options": {"navigator": False}},
        {"overwrite": True},
        ValueError,
        "has no option",
    ),
    ({"data_root": "/nowhere"}, {"overwrite": True}, FileNotFoundError, "nowhere"),
    ({}, {"resume": True, "overwrite": True}, ValueError, "choose one"),
    ({"width": 8}, {"resume": True}, ValueError, "another configuration"),
    ({}, {}, FileExistsError, "already holds a run"),
]


def failing_config(data_root, changes):
    values = {"data_root": data_root, "epochs": 1, **changes}
    return tiny_config(values.pop("data_root"), **values)


@pytest.mark.parametrize(("changes", "options", "error", "match"), FAILED_STARTS)
def test_a_failed_start_leaves_the_folder_byte_identical(
    data_root, finished_run, tmp_path, changes, options, error, match
):
    run = copy_run(finished_run, tmp_path)
    before = snapshot(run)
    with pytest.raises(error, match=match):
        train(failing_config(data_root, changes), output_dir=run, progress=False, **options)
    assert snapshot(run) == before


@pytest.mark.parametrize(("changes", "options", "error", "match"), FAILED_STARTS[:-2])
def test_a_failed_start_creates_no_folder(data_root, tmp_path, changes, options, error, match):
    with pytest.raises(error, match=match):
        config = failing_config(data_root, changes)
        train(config, output_dir=tmp_path / "new", progress=False, **options)
    assert not (tmp_path / "new").exists()


def test_a_run_failing_in_its_first_epoch_removes_what_it_wrote(data_root, tmp_path, monkeypatch):
    def not_finite(*args, **kwargs):
        raise ValueError("evidence contains NaN or inf")

    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("the user's own file")
    monkeypatch.setattr(train_module, "train_one_epoch", not_finite)  # in the first epoch
    for folder in (used, tmp_path / "new"):
        with pytest.raises(ValueError, match="NaN"):
            train(tiny_config(data_root, epochs=1), output_dir=folder, progress=False)
    assert [path.name for path in used.iterdir()] == ["notes.txt"]
    assert not (tmp_path / "new").exists()
    monkeypatch.undo()
    result = train(tiny_config(data_root, epochs=1), output_dir=used, progress=False)
    assert len(result.history) == 1 and (used / CHECKPOINT_LAST).is_file()


def test_a_folder_another_process_writes_is_refused_at_once(
    data_root, tmp_path, monkeypatch, start_folder_holder
):
    folder = tmp_path / "run"
    holder = start_folder_holder(folder)
    _no_data_loading(monkeypatch)
    try:
        for options in ({}, {"resume": True}, {"overwrite": True}):
            with pytest.raises(FolderInUseError) as caught:
                train(tiny_config(data_root), output_dir=folder, progress=False, **options)
            assert str(caught.value).startswith(
                f"output_dir {folder} is in use by process {holder.pid} on "
            )
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert not folder.exists()  # the holder created it and left it empty


def test_a_damaged_cache_entry_is_trained_again(data_root, tmp_path, capsys):
    config = tiny_config(data_root, epochs=1)
    first = get_or_train(config, cache_dir=tmp_path, progress=False)
    (first.output_dir / "history.csv").unlink()
    capsys.readouterr()
    second = get_or_train(config, cache_dir=tmp_path, progress=False)
    assert capsys.readouterr().out == (
        f"model cache entry {first.output_dir} is damaged ({first.output_dir / CHECKPOINT_LAST} "
        "is the last epoch of a run but history.csv is missing): training it again\n"
    )
    assert not second.from_cache and len(second.history) == 1
    assert get_or_train(config, cache_dir=tmp_path, progress=False).from_cache


class StopAfterFirstEpoch(Exception):
    pass


def _interrupted_run(config, folder):
    def stop(row):
        raise StopAfterFirstEpoch

    with pytest.raises(StopAfterFirstEpoch):
        train(config, output_dir=folder, progress=False, callback=stop)
    return folder


@pytest.mark.parametrize("way", ["relative", "symlink"])
def test_resume_accepts_the_same_data_by_another_path(data_root, tmp_path, monkeypatch, way):
    run = _interrupted_run(tiny_config(data_root, epochs=2), tmp_path / "run")
    if way == "symlink":
        other = tmp_path / "link"
        other.symlink_to(data_root, target_is_directory=True)
    else:
        monkeypatch.chdir(Path(data_root).parent)
        other = Path(Path(data_root).name)
    resumed = train(tiny_config(str(other), epochs=2), output_dir=run, resume=True, progress=False)
    assert list(resumed.history["epoch"]) == [0, 1]
    assert load_checkpoint(run / CHECKPOINT_LAST)["epoch"] == 1


def test_resume_refuses_data_that_changed_under_the_same_path(data_root, tmp_path):
    data = shutil.copytree(data_root, tmp_path / "data")
    run = _interrupted_run(tiny_config(str(data), epochs=2), tmp_path / "run")
    before = snapshot(run)
    swap_labels_in_place(data / "ISIC-2017_Training_Part3_GroundTruth.csv")
    with pytest.raises(ValueError) as caught:
        train(tiny_config(str(data), epochs=2), output_dir=run, resume=True, progress=False)
    message = str(caught.value)
    assert message.startswith(f"cannot resume from {run / CHECKPOINT_LAST}: the data in {data}")
    assert "files were added, removed or rewritten" in message
    assert "overwrite=True to start over" in message and "\n" not in message
    assert snapshot(run) == before


def test_resume_onto_a_damaged_checkpoint_is_one_clear_error(data_root, finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path)
    (run / CHECKPOINT_LAST).write_bytes(b"")
    before = snapshot(run)
    with pytest.raises(ValueError, match=r"last.pt is empty \(0 bytes\)"):
        train(tiny_config(data_root, epochs=1), output_dir=run, resume=True, progress=False)
    assert snapshot(run) == before
    # a best.pt in last.pt's place lacks what resuming needs
    shutil.copyfile(finished_run / CHECKPOINT_BEST, run / CHECKPOINT_LAST)
    with pytest.raises(ValueError, match=r"not a umlkit checkpoint \(no optimizer_state, history"):
        train(tiny_config(data_root, epochs=1), output_dir=run, resume=True, progress=False)
    # weights that do not fit the stored model configuration
    checkpoint = load_checkpoint(finished_run / CHECKPOINT_LAST)
    checkpoint["model_state"] = {"bogus": torch.zeros(1)}
    torch.save(checkpoint, run / CHECKPOINT_LAST)
    with pytest.raises(ValueError, match=r"weights do not fit its model \(\d+ missing") as caught:
        train(tiny_config(data_root, epochs=1), output_dir=run, resume=True, progress=False)
    assert "\n" not in str(caught.value)


def test_compiled_training_follows_eager_training(data_root):
    """``compile=True`` trains the same model through torch.compile: the first step's losses are
    the eager ones up to the rounding of fused kernels (after an Adam step, rounding differences
    grow to about 1e-3, as they do between one and two processes: docs/decisions.md), and the
    configuration shares the eager run's cache key. The network has two levels, not four: the
    same blocks (encoder, pooling, up-step with its skip, both heads) in 24 kernels instead of
    37, which shortens torch.compile's first compilation from about 40 s to 25 s of one core."""
    from torch._dynamo.utils import counters

    torch.set_num_threads(1)
    options = {"model": "multitask", "model_options": {"depth": 2}, "epochs": 1, "log_every": 1}
    eager_config = tiny_config(data_root, **options)
    compiled_config = tiny_config(data_root, **options, compile=True)
    eager = train(eager_config, progress=False)
    graphs = counters["stats"]["unique_graphs"]
    compiled = train(compiled_config, progress=False)
    assert counters["stats"]["unique_graphs"] > graphs, "compile=True compiled nothing"
    columns = [c for c in eager.steps if c.startswith("loss")]
    pd.testing.assert_frame_equal(
        compiled.steps[columns].head(1), eager.steps[columns].head(1), rtol=1e-5
    )
    assert len(compiled.steps) == len(eager.steps)
    assert config_hash(compiled_config) == config_hash(eager_config)
    with pytest.raises(ValueError, match="compile must be True or False"):
        tiny_config(data_root, compile="yes")


# ------------------------------------------------------------------ convergence and the half budget
def scripted_validation(monkeypatch, scores):
    """Make validation return ``scores`` epoch after epoch (accuracy = Dice = the score), so
    that the plateau rule sees a known curve whatever the tiny network learns."""
    calls = iter(scores)

    def validate(model, val_set, config, device):
        score = next(calls)
        metrics = {name: float("nan") for name in train_module.VAL_METRICS}
        return {**metrics, "accuracy": score, "dice": score}

    monkeypatch.setattr(train_module, "validate", validate)


def test_early_stopping_ends_the_run_when_the_rule_fires_and_the_cache_loads_it(
    data_root, tmp_path, monkeypatch
):
    # window 1, patience 2, tolerance 0: after epoch 4 (0-based) two epochs raised nothing
    scripted_validation(monkeypatch, [0.5, 0.6, 0.7, 0.7, 0.7, 0.9, 0.9, 0.9, 0.9, 0.9])
    config = tiny_config(data_root, epochs=10, patience=2, plateau_window=1, plateau_tolerance=0.0)
    result = train_module.get_or_train(config, cache_dir=tmp_path, progress=False)
    assert len(result.history) == 5
    report = result.convergence
    assert report.stopped_early and report.plateaued and report.epochs_run == 5
    assert report.best_epoch == 2 and not report.still_improving
    folder = result.output_dir
    assert load_checkpoint(folder / CHECKPOINT_LAST)["stopped_early"] is True
    assert not (folder / "half").exists()  # the candidates are gone once the run finished
    # half of 5 epochs is 2: the best of epochs 0 and 1 is epoch 1
    assert result.half_epoch == 1
    half = load_checkpoint(folder / "half.pt", require=("model_state", "epoch", "epochs_run"))
    assert half["epoch"] == 1 and half["epochs_run"] == 5
    loaded = train_module.get_or_train(config, cache_dir=tmp_path, progress=False)
    assert loaded.from_cache and loaded.half_epoch == 1
    assert loaded.convergence == report
    for key, value in result.half_state.items():
        torch.testing.assert_close(loaded.half_state[key], value, rtol=0, atol=0)
    model = train_module.half_budget_model(loaded)
    assert not model.training
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, loaded.half_state[key], rtol=0, atol=0)


def test_without_patience_every_epoch_trains_and_the_report_says_still_improving(
    data_root, monkeypatch
):
    scripted_validation(monkeypatch, [0.1, 0.2, 0.3])
    result = train(tiny_config(data_root, epochs=3), progress=False)
    assert len(result.history) == 3
    assert result.convergence.still_improving and not result.convergence.stopped_early
    assert result.half_epoch == 0  # half of 3 epochs is 1: epoch 0


def test_a_resumed_run_keeps_the_half_budget_of_the_uninterrupted_one(
    data_root, tmp_path, monkeypatch
):
    config = tiny_config(data_root, epochs=6)
    scripted_validation(monkeypatch, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    full = train(config, output_dir=tmp_path / "full", progress=False)

    def stop_after_fourth_epoch(row):
        if row["epoch"] == 3:
            raise Interrupted

    scripted_validation(monkeypatch, [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(Interrupted):
        train(config, output_dir=tmp_path / "cut", progress=False, callback=stop_after_fourth_epoch)
    # after 4 epochs the half budget is epoch 1; epochs 2 and 3 may still become it
    kept = sorted(path.name for path in (tmp_path / "cut" / "half").iterdir())
    assert kept == ["epoch_0001.pt", "epoch_0002.pt", "epoch_0003.pt"]
    scripted_validation(monkeypatch, [0.5, 0.6])
    resumed = train(config, output_dir=tmp_path / "cut", resume=True, progress=False)
    assert resumed.half_epoch == full.half_epoch == 2  # the best of epochs 0-2
    for key, value in full.half_state.items():
        torch.testing.assert_close(resumed.half_state[key], value, rtol=0, atol=0)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"patience": 0}, "TrainConfig.patience must be a positive integer"),
        ({"plateau_window": 0}, "TrainConfig.plateau_window must be a positive integer"),
        ({"plateau_tolerance": -0.1}, "TrainConfig.plateau_tolerance must be >= 0"),
    ],
)
def test_bad_early_stopping_settings_are_one_clear_error(data_root, changes, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(data_root, **changes)


def test_early_stopping_never_stops_a_run_whose_last_epoch_is_its_best(
    data_root, tmp_path, monkeypatch
):
    # window 3, patience 2, tolerance 0.05: the smoothed best does not rise by more than 0.05
    # after epoch 4, but epoch 4 itself is the best so far, so the run goes on; after epoch 5
    # (not the best) the rule stops it
    scripted_validation(monkeypatch, [0.5, 0.7, 0.6, 0.6, 0.72, 0.6, 0.9, 0.9])
    config = tiny_config(data_root, epochs=8, patience=2, plateau_window=3, plateau_tolerance=0.05)
    result = train(config, progress=False)
    assert len(result.history) == 6
    assert result.convergence.stopped_early and not result.convergence.still_improving
