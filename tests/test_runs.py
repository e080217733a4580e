"""umlkit.runs: claiming and preparing a run folder, resuming checks, the cache key, the cache."""

import pytest

from umlkit.checkpoints import CHECKPOINT_BEST, CHECKPOINT_LAST, config_differences
from umlkit.runs import (
    HISTORY_FILE,
    cache_key,
    check_resume_configuration,
    claim_run_folder,
    finished_checkpoints,
    get_or_train_cached,
    prepare_run_folder,
    resume_progress,
    save_run_state,
)

NAMES = {"output_dir": "output_dir", "resume": "resume=True", "overwrite": "overwrite=True"}


def test_a_run_folder_is_only_continued_or_replaced_on_request(tmp_path):
    run, files = tmp_path / "run", (CHECKPOINT_LAST, HISTORY_FILE)
    assert claim_run_folder(run, files, resume=False, overwrite=False, names=NAMES) == []
    run.mkdir()
    (run / HISTORY_FILE).write_text("epoch\n0\n")
    (run / "notes.txt").write_text("the user's own file")
    with pytest.raises(FileExistsError, match=r"already holds a run \(history.csv\)"):
        claim_run_folder(run, files, resume=False, overwrite=False, names=NAMES)
    with pytest.raises(ValueError, match="choose one"):
        claim_run_folder(run, files, resume=True, overwrite=True, names=NAMES)
    found = claim_run_folder(run, files, resume=True, overwrite=False, names=NAMES)
    assert found == [HISTORY_FILE]
    notes = prepare_run_folder(run, found, False, resume=True, overwrite=False, names=NAMES)
    assert notes == [f"no checkpoint in {run}: starting a new run (its history.csv removed)"]
    assert [p.name for p in run.iterdir()] == ["notes.txt"]


def test_cache_key_follows_values_and_data_but_not_the_data_path(tmp_path):
    first, second = tmp_path / "one" / "derm", tmp_path / "two" / "derm"
    for folder in (first, second):
        folder.mkdir(parents=True)
        (folder / "x.png").write_bytes(b"1234")
    assert cache_key({"seed": 0}, first) == cache_key({"seed": 0}, second)
    assert cache_key({"seed": 0}, first) != cache_key({"seed": 1}, first)
    (second / "y.png").write_bytes(b"")
    assert cache_key({"seed": 0}, first) != cache_key({"seed": 0}, second)


def test_resume_configuration_check_lists_the_differences():
    checkpoint = {"train_config": {"width": 4, "device": "cuda", "seed": 0}}
    current = {"width": 8, "device": "cpu", "seed": 0}
    assert config_differences(current, checkpoint["train_config"]) == [
        "device: 'cpu' != 'cuda'",
        "width: 8 != 4",
    ]
    with pytest.raises(ValueError, match=r"another configuration \(width: 8 != 4\); start over"):
        check_resume_configuration(
            checkpoint, "train_config", current, ["device"], "x", "start over"
        )
    check_resume_configuration(checkpoint, "train_config", current, ["device", "width"], "x")


def test_the_cache_trains_a_missing_run_and_loads_a_finished_one(tmp_path):
    calls = []

    def train(folder):
        calls.append("train")
        for epoch in range(2):
            last = {"model_config": {}, "model_state": {}, "epoch": epoch}
            save_run_state(folder, last, {**last, "score": 0.5}, {HISTORY_FILE: [{"epoch": epoch}]})
        return "trained"

    def load(folder, last, best):
        calls.append("load")
        return f"loaded epoch {last['epoch']}, best {best['score']}"

    assert get_or_train_cached(tmp_path, "key", 2, load, train) == "trained"
    assert get_or_train_cached(tmp_path, "key", 2, load, train) == "loaded epoch 1, best 0.5"
    assert calls == ["train", "load"]
    assert {p.name for p in (tmp_path / "key").iterdir()} == {
        CHECKPOINT_LAST,
        CHECKPOINT_BEST,
        HISTORY_FILE,
    }
    assert finished_checkpoints(tmp_path / "key", epochs=3) is None  # interrupted: resume it
    assert finished_checkpoints(tmp_path / "key", 2, files=("steps.csv",)) is None


def test_resume_progress_reads_and_checks_how_far_a_run_got():
    checkpoint = {"epoch": 2, "best": {"epoch": 1, "score": 0.5}, "history": ({"a": 1},), "step": 7}
    assert resume_progress(checkpoint, "last.pt", counters=("step",)) == {
        "next_epoch": 3,
        "best_epoch": 1,
        "best_score": 0.5,
        "history": [{"a": 1}],
        "step": 7,
    }
    with pytest.raises(ValueError, match=r"last.pt is not a umlkit checkpoint \(") as caught:
        resume_progress({**checkpoint, "best": None}, "last.pt")
    assert "\n" not in str(caught.value)
