"""umlkit.runs: claiming and preparing a run folder, resuming checks, the cache key, the cache."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import umlkit.runs as runs
from umlkit.checkpoints import CHECKPOINT_BEST, CHECKPOINT_LAST, config_differences, save_checkpoint
from umlkit.folders import LOCK_FILE
from umlkit.runs import (
    HISTORY_FILE,
    cache_key,
    check_resume_configuration,
    claim_run_folder,
    finished_checkpoints,
    get_or_train_cached,
    hold_run_folder,
    prepare_run_folder,
    resume_progress,
    save_run_state,
    undone_if_it_fails_early,
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


@pytest.mark.parametrize("weights", [CHECKPOINT_BEST, "half/epoch_3.pt"])
def test_resume_without_a_checkpoint_keeps_trained_weights(tmp_path, weights):
    run, files = tmp_path / "run", (CHECKPOINT_LAST, CHECKPOINT_BEST, HISTORY_FILE)
    (run / "half").mkdir(parents=True)
    (run / weights).write_bytes(b"weights")
    (run / HISTORY_FILE).write_text("epoch\n0\n")
    claim = dict(names=NAMES, checkpoint=CHECKPOINT_LAST, weights=(CHECKPOINT_BEST, "half/*.pt"))
    message = rf"holds trained weights \({weights}\) but no last.pt to resume from: overwrite=True"
    with pytest.raises(FileExistsError, match=message):
        claim_run_folder(run, files, resume=True, overwrite=False, **claim)
    assert (run / weights).read_bytes() == b"weights"
    # replacing the run is still a choice the user can make
    found = claim_run_folder(run, files, resume=False, overwrite=True, **claim)
    assert set(found) == {HISTORY_FILE} | ({weights} & set(files))


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
    with pytest.raises(ValueError, match=r"key/last.pt is the last epoch of a run but steps.csv"):
        finished_checkpoints(tmp_path / "key", 2, files=("steps.csv",))


def _fake_run(folder, epochs=2):
    """Write the files of a finished run of ``epochs`` epochs into ``folder``."""
    for epoch in range(epochs):
        last = {"model_config": {}, "model_state": {}, "epoch": epoch}
        save_run_state(folder, last, {**last, "score": 0.5}, {HISTORY_FILE: [{"epoch": epoch}]})


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda entry: (entry / HISTORY_FILE).unlink(), "but history.csv is missing"),
        (lambda entry: (entry / CHECKPOINT_BEST).unlink(), "but best.pt is missing"),
        (lambda entry: (entry / CHECKPOINT_LAST).write_bytes(b""), "last.pt is empty (0 bytes)"),
    ],
)
def test_a_damaged_cache_entry_is_said_in_one_line_and_trained_again(tmp_path, damage, problem):
    entry = tmp_path / "key"
    _fake_run(entry)
    (entry / "notes.txt").write_text("not a run file")
    damage(entry)
    notes, trained = [], []

    def train(folder):
        trained.append(sorted(path.name for path in folder.iterdir()))
        _fake_run(folder)
        return "trained"

    def load(folder, last, best):
        return "loaded"

    assert get_or_train_cached(tmp_path, "key", 2, load, train, log=notes.append) == "trained"
    assert len(notes) == 1 and "\n" not in notes[0]
    assert notes[0].startswith(f"model cache entry {entry} is damaged (")
    assert problem in notes[0] and notes[0].endswith("): training it again")
    # trained from the start: the damaged run's files are gone, the others are kept
    assert trained == [[".lock", "notes.txt"]]
    assert get_or_train_cached(tmp_path, "key", 2, load, train, log=notes.append) == "loaded"
    assert len(notes) == 1 and len(trained) == 1


#: A process that wants entry "key" of the cache in argv[1]; it trains until its stdin closes.
CACHE_USER = """
import sys
from pathlib import Path
from umlkit.runs import HISTORY_FILE, get_or_train_cached, save_run_state

def train(folder):
    print("training", flush=True)
    sys.stdin.read()
    last = {"model_config": {}, "model_state": {}, "epoch": 0}
    save_run_state(folder, last, {**last, "score": 0.5}, {HISTORY_FILE: [{"epoch": 0}]})
    return "trained"

print(get_or_train_cached(Path(sys.argv[1]), "key", 1, lambda *a: "loaded", train), flush=True)
"""


def test_two_processes_wanting_one_configuration_train_it_once(tmp_path):
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-c", CACHE_USER, str(tmp_path)]
    options = {"stdout": subprocess.PIPE, "env": env, "text": True}
    first = subprocess.Popen(command, stdin=subprocess.PIPE, **options)
    assert first.stdout.readline() == "training\n"  # it holds the entry and trains
    second = subprocess.Popen(command, stdin=subprocess.DEVNULL, **options)
    waited = second.stdout.readline()
    first.stdin.close()  # the first finishes its training only now
    assert first.stdout.read() == "trained\n" and first.wait(timeout=60) == 0
    assert second.stdout.read() == "loaded\n" and second.wait(timeout=60) == 0
    assert waited.startswith(f"waiting for process {first.pid} on ")
    assert waited.endswith(f"training the same configuration in {tmp_path / 'key'}\n")


def test_a_read_only_cache_is_read_without_a_lock(tmp_path, monkeypatch):
    _fake_run(tmp_path / "key")
    monkeypatch.setattr(runs.os, "access", lambda path, mode: False)  # as on a read-only share

    def load(folder, last, best):
        assert not (folder / LOCK_FILE).exists()
        return "loaded"

    def train(folder):
        raise AssertionError("a finished run was trained again")

    assert get_or_train_cached(tmp_path, "key", 2, load, train) == "loaded"


def test_a_new_run_that_fails_before_its_first_last_pt_removes_what_it_wrote(tmp_path):
    run_files = (CHECKPOINT_LAST, CHECKPOINT_BEST, HISTORY_FILE, "config.json")
    (tmp_path / "notes.txt").write_text("the user's own file")
    with pytest.raises(KeyboardInterrupt):
        with undone_if_it_fails_early(tmp_path, run_files):
            (tmp_path / "config.json").write_text("{}")
            save_checkpoint(tmp_path / CHECKPOINT_BEST, {"epoch": 0})
            raise KeyboardInterrupt  # e.g. Ctrl-C in the first epoch
    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]
    # after the first last.pt the run can be resumed: nothing is removed
    with pytest.raises(RuntimeError):
        with undone_if_it_fails_early(tmp_path, run_files):
            _fake_run(tmp_path, epochs=1)
            raise RuntimeError("a failure in the second epoch")
    assert (tmp_path / CHECKPOINT_LAST).is_file() and (tmp_path / HISTORY_FILE).is_file()
    # a resumed run (None) removes nothing either
    (tmp_path / CHECKPOINT_LAST).unlink()
    with pytest.raises(RuntimeError):
        with undone_if_it_fails_early(None, run_files):
            raise RuntimeError("a failure")
    assert (tmp_path / CHECKPOINT_BEST).is_file()


def test_a_run_folder_is_held_for_the_run_and_not_without_a_folder(tmp_path):
    with hold_run_folder(tmp_path / "run", "output_dir"):
        assert (tmp_path / "run" / LOCK_FILE).is_file()
    assert not (tmp_path / "run").exists()
    with hold_run_folder(None, "output_dir") as held:
        assert held is None


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
