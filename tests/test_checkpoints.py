"""umlkit.checkpoints: checkpoint files written whole, one-line checkpoint errors, RNG states."""

import datetime
import errno
import os
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import umlkit.checkpoints as checkpoints
from umlkit.checkpoints import (
    CHECKPOINT_LAST,
    load_checkpoint,
    load_model,
    load_module_state,
    restore_rng_states,
    rng_states,
    save_checkpoint,
    save_npz_atomic,
    write_table,
)
from umlkit.folders import CannotWriteError
from umlkit.models import build_model


@pytest.fixture
def model_checkpoint(tmp_path):
    """A checkpoint of an untrained tiny U-Net, as train writes one (weights and configuration)."""
    model = build_model("unet", width=4)
    path = tmp_path / CHECKPOINT_LAST
    save_checkpoint(
        path, {"model_config": model.config.to_dict(), "model_state": model.state_dict()}
    )
    return path


@pytest.mark.parametrize(
    ("code", "cause"),
    [
        (errno.ENOSPC, "the disk is full (No space left on device)"),
        (errno.EROFS, "the file system is read-only (Read-only file system)"),
        (errno.EACCES, "no permission to write there (Permission denied)"),
    ],
)
def test_a_refused_checkpoint_write_is_one_line_and_keeps_the_last_good_one(
    tmp_path, monkeypatch, code, cause
):
    path = tmp_path / CHECKPOINT_LAST
    save_checkpoint(path, {"epoch": 0})

    def refused(checkpoint, target):
        Path(target).write_bytes(b"PK\x03\x04 half a checkpoint")
        raise OSError(code, os.strerror(code), str(target))

    monkeypatch.setattr(checkpoints.torch, "save", refused)
    with pytest.raises(CannotWriteError) as caught:
        save_checkpoint(path, {"epoch": 1})
    monkeypatch.undo()
    assert str(caught.value) == f"cannot write {path}: {cause}"
    assert load_checkpoint(path, require=())["epoch"] == 0
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_LAST], "a temporary was left"


def _torch_writer_failure(checkpoint, target):
    """What torch.save raises when its writer cannot write (a full disk): no errno."""
    Path(target).write_bytes(b"PK\x03\x04 half a checkpoint")
    raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")


def test_torchs_full_disk_error_is_found_out_and_said_in_one_line(tmp_path, monkeypatch):
    path = tmp_path / CHECKPOINT_LAST
    save_checkpoint(path, {"epoch": 0})
    monkeypatch.setattr(checkpoints.torch, "save", _torch_writer_failure)
    # the disk has room: torch's error is not taken for a full disk, and passes unchanged
    with pytest.raises(RuntimeError, match="unexpected pos"):
        save_checkpoint(path, {"epoch": 1})

    def full_disk(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)  # the write that asks again fails
    with pytest.raises(CannotWriteError) as caught:
        save_checkpoint(path, {"epoch": 1})
    monkeypatch.undo()
    assert str(caught.value) == f"cannot write {path}: the disk is full (No space left on device)"
    assert load_checkpoint(path, require=())["epoch"] == 0
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_LAST], "a temporary was left"


def test_every_atomic_writer_leaves_only_its_file(tmp_path):
    write_table(tmp_path / "rows.csv", [{"a": 1, "b": 2.5}, {"a": 3, "b": 4.0}])
    save_npz_atomic(tmp_path / "arrays.npz", x=np.arange(3))
    with np.load(tmp_path / "arrays.npz") as stored:
        np.testing.assert_array_equal(stored["x"], [0, 1, 2])
    assert pd.read_csv(tmp_path / "rows.csv").to_dict("list") == {"a": [1, 3], "b": [2.5, 4.0]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arrays.npz", "rows.csv"]


def test_a_model_checkpoint_loads_back_with_identical_outputs(model_checkpoint):
    checkpoint = load_checkpoint(model_checkpoint)
    model = build_model("unet", width=4)
    load_module_state(model, checkpoint["model_state"], model_checkpoint)
    x = torch.rand(1, 3, 16, 16)
    loaded = load_model(model_checkpoint)(x).seg_logits
    torch.testing.assert_close(loaded, model.eval()(x).seg_logits, rtol=0, atol=0)


def _truncated(path):
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda path: path.write_bytes(b""), r"is empty \(0 bytes\)"),
        (_truncated, r"is truncated or corrupt \(\d+ bytes\): PytorchStreamReader"),
        (lambda path: path.write_text("not a checkpoint"), "is not in torch.save's zip format"),
        (
            lambda path: torch.save({"model_config": datetime.date(2024, 1, 1)}, path),
            "holds Python objects umlkit never writes",
        ),
        (
            lambda path: torch.save(torch.ones(2), path),
            r"not a umlkit checkpoint \(it holds a Tensor",
        ),
        (lambda path: torch.save({"epoch": 3}, path), r"not a umlkit checkpoint \(no model_config"),
    ],
)
def test_a_damaged_checkpoint_is_one_clear_error(model_checkpoint, damage, match):
    damage(model_checkpoint)
    for read in (load_checkpoint, load_model):
        with pytest.raises(ValueError, match=match) as caught:
            read(model_checkpoint)
        assert str(model_checkpoint) in str(caught.value)
        assert "\n" not in str(caught.value)


def test_missing_and_folder_checkpoints_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_checkpoint(tmp_path / "absent.pt")
    with pytest.raises(ValueError, match="is a folder"):
        load_checkpoint(tmp_path)


def test_weights_that_do_not_fit_are_one_line(model_checkpoint):
    model = build_model("unet", width=8)
    state = load_checkpoint(model_checkpoint)["model_state"]
    with pytest.raises(ValueError, match="weights do not fit its model") as caught:
        load_module_state(model, state, model_checkpoint)
    assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match=r"\(1 unexpected \(e.g. bogus\) weights\)"):
        load_module_state(build_model("unet", width=4), {**state, "bogus": torch.zeros(1)})


def test_a_checkpoint_of_a_diverged_run_is_refused_naming_the_tensor(model_checkpoint):
    checkpoint = load_checkpoint(model_checkpoint)
    checkpoint["model_state"]["encoder.stages.0.1.running_var"][0] = float("inf")
    save_checkpoint(model_checkpoint, checkpoint)
    with pytest.raises(ValueError) as caught:
        load_model(model_checkpoint)
    assert str(caught.value) == (
        f"checkpoint {model_checkpoint}: its weight encoder.stages.0.1.running_var holds inf: "
        "the run that wrote it diverged; train again with a lower learning rate"
    )


def test_rng_states_restore_every_generator():
    states = rng_states("cpu")
    drawn = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng_states(states)
    again = (torch.rand(3), np.random.rand(3), random.random())
    torch.testing.assert_close(again[0], drawn[0], rtol=0, atol=0)
    np.testing.assert_array_equal(again[1], drawn[1])
    assert again[2] == drawn[2]
