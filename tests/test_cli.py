"""The ``umlkit`` console command."""

import errno
import hashlib
import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import test_data_loaders
import torch
from PIL import Image

import umlkit.checkpoints as checkpoints
import umlkit.cli as cli
import umlkit.data.synthetic as synthetic
import umlkit.folders as folders
from umlkit.checkpoints import load_checkpoint, save_checkpoint
from umlkit.cli import build_parser, main
from umlkit.data.synthetic import MANIFEST_NAME
from umlkit.folders import LOCK_FILE

ROOT = Path(__file__).resolve().parents[1]
#: The I-SPY1 layout of the loaders' tests: its subjects and the fixture that writes it.
ISPY_PCR, ispy_root = test_data_loaders.ISPY_PCR, test_data_loaders.ispy_root

#: How the one-line errors say the operating system's refusals.
CAUSES = {
    errno.EROFS: "the file system is read-only (Read-only file system)",
    errno.EACCES: "no permission to write there (Permission denied)",
}


def snapshot(folder):
    """SHA-256 of every file under ``folder``: what a refused command must leave unchanged."""
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def derm(tmp_path_factory):
    """16 synthetic derm images of 32x32 (11 train, 2 val, 3 test)."""
    root = tmp_path_factory.mktemp("data") / "derm"
    assert main(["synth", str(root), "--n", "16", "--size", "32"]) == 0
    return root


@pytest.fixture(scope="module")
def run(derm, tmp_path_factory):
    """A finished one-epoch run of width 4 at 32 px; tests copy it before changing it."""
    folder = tmp_path_factory.mktemp("runs") / "run"
    assert main([*train_args(derm, folder), "--epochs", "1"]) == 0
    return folder


def train_args(data, output_dir):
    return [
        "train",
        "--data-root",
        str(data),
        "--output-dir",
        str(output_dir),
        "--image-size",
        "32",
        "--width",
        "4",
        "--device",
        "cpu",
    ]


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    for command in ("synth", "preprocess", "train", "evaluate", "bench", "figures"):
        assert command in out


def test_bench_passes_several_widths_and_paths_to_the_model_benchmark(monkeypatch, capsys):
    from umlkit.benchmarks import models

    received = []
    monkeypatch.setattr(models, "main", lambda argv: received.append(argv) or 0)
    assert main(["bench", "models", "--width", "8,16,64", "--paths", "plain,fast,compiled"]) == 0
    assert received == [
        ["--width", "8,16,64", "--paths", "plain,fast,compiled", "--image-size", "64"]
    ]


@pytest.mark.parametrize(
    "option, message",
    [
        (["--width", "8,x"], "argument --width: expected positive integers separated by commas"),
        (["--width", "0"], "argument --width: expected positive integers separated by commas"),
        (["--paths", "plain,turbo"], "argument --paths: unknown path 'turbo'"),
        (["--n-pixels", "-5"], "argument --n-pixels: expected a positive number"),
    ],
)
def test_bench_refuses_bad_options_in_one_line(option, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["bench", *option])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_preprocess_names_every_case_it_could_not_preprocess(ispy_root, tmp_path, capsys):
    cache = tmp_path / "cache"
    assert main(["preprocess", str(ispy_root), "--n-slices", "3", "--cache-dir", str(cache)]) == 0
    assert (
        capsys.readouterr().out.strip()
        == f"{len(ISPY_PCR)} of {len(ISPY_PCR)} I-SPY1 cases preprocessed"
    )
    damaged = ispy_root / "Dataset ISPY" / "ISPY_1002" / "DCEMRI_1.nii"
    damaged.write_bytes(b"not a NIfTI volume")
    (ispy_root / "Tumor_segmentation_new" / "ISPY_1003_tumor_mask.nii").unlink()
    assert main(["preprocess", str(ispy_root), "--n-slices", "4", "--cache-dir", str(cache)]) == 2
    captured = capsys.readouterr()
    assert (
        captured.out.strip() == f"{len(ISPY_PCR) - 2} of {len(ISPY_PCR)} I-SPY1 cases preprocessed"
    )
    lines = captured.err[captured.err.index("umlkit preprocess:") :].splitlines()  # after tqdm's
    assert lines[0] == "umlkit preprocess: 2 case(s) could not be preprocessed:"
    assert lines[1].startswith("  ISPY_1002: ") and str(damaged) in lines[1]
    assert lines[2].startswith("  ISPY_1003: ") and "tumour mask not found" in lines[2]
    assert len(lines) == 3


@pytest.mark.parametrize("command", ["synth", "train"])
@pytest.mark.parametrize("value", ["-3", "4294967296", "x"])
def test_a_seed_outside_numpys_range_is_refused_by_the_parser(command, value, capsys):
    args = train_args("d", "o") if command == "train" else ["synth", "d"]
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*args, "--seed", value])
    assert exit_info.value.code == 2
    assert "argument --seed: expected an integer from 0 to 2**32 - 1" in capsys.readouterr().err
    assert build_parser().parse_args(["synth", "d", "--seed", "4294967295"]).seed == 2**32 - 1


@pytest.mark.parametrize("value", ["0", "-2", "x"])
def test_preprocess_refuses_a_slice_count_that_is_not_positive(value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["preprocess", "root", "--n-slices", value])
    assert exit_info.value.code == 2
    assert "argument --n-slices: expected a positive integer" in capsys.readouterr().err


def test_messages_name_the_flags_but_leave_quoted_field_names_alone():
    from umlkit.cli import _for_the_command_line

    assert _for_the_command_line("state the classes with num_classes") == (
        "state the classes with --num-classes"
    )
    assert _for_the_command_line("(num_classes=2)") == "(--num-classes=2)"
    listed = "unknown field 'depth2'; the fields are ['num_classes', 'width']"
    assert _for_the_command_line(listed) == listed
    assert _for_the_command_line('fields ["num_classes"]') == 'fields ["num_classes"]'


def test_bad_profile_is_one_line_and_exit_2(capsys):
    assert main(["figures", "--profile", "huge"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("umlkit figures: unknown profile 'huge'")


def test_synth_train_evaluate_end_to_end(tmp_path, capsys):
    data = tmp_path / "derm"
    assert main(["synth", str(data), "--n", "16", "--size", "32"]) == 0
    assert (data / "ISIC-2017_Training_Part3_GroundTruth.csv").is_file()
    run = tmp_path / "run"
    common = ["--data-root", str(data), "--image-size", "32", "--device", "cpu"]
    train = ["train", *common, "--output-dir", str(run), "--width", "4", "--epochs", "1"]
    assert main([*train, "--augment", "dihedral"]) == 0
    assert '"augment": "dihedral"' in (run / "config.json").read_text()
    assert (run / "best.pt").is_file() and (run / "history.csv").is_file()
    table = tmp_path / "table.csv"
    assert main(["evaluate", str(run / "best.pt"), *common, "--output", str(table)]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "dice" in out
    assert len(table.read_text().splitlines()) == 1 + 16 - 11 - 2  # header + test split (3 images)


def test_synth_refuses_a_foreign_folder(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["synth", str(tmp_path), "--n", "8", "--size", "32"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("umlkit synth:") and "notes.txt" in err


def test_the_command_lines_names_are_the_librarys():
    """The choices cli.py spells out (its --help imports no torch) are the library's own."""
    from umlkit.data import augment, layouts, loaders
    from umlkit.models import MODEL_NAMES

    assert cli.DATASETS == loaders.KINDS
    assert cli.SPLITS == layouts.SPLITS
    assert cli.MODELS == MODEL_NAMES
    assert cli.AUGMENTATIONS == augment.AUGMENTATIONS
    assert cli.SYNTHETIC_KINDS == synthetic.SYNTHETIC_KINDS


@pytest.mark.parametrize(
    ("words", "flag"),
    [
        (["train", "--augment", "mixup"], "--augment"),
        (["train", "--model", "resnet"], "--model"),
        (["train", "--dataset", "isic"], "--dataset"),
        (["evaluate", "run/best.pt", "--split", "validation"], "--split"),
        (["evaluate", "run/best.pt", "--dataset", "isic"], "--dataset"),
        (["synth", "out", "--kind", "brain"], "--kind"),
    ],
)
def test_a_name_outside_the_choices_is_refused_with_the_choices(tmp_path, capsys, words, flag):
    """Refused by the parser, before any file is read or written, in one line naming the flag
    and listing what it accepts (not the library's Python argument, such as kind='isic')."""
    paths = ["--data-root", str(tmp_path / "data"), "--output-dir", str(tmp_path / "run")]
    words = [*words, *paths[: 4 if words[0] == "train" else 2 if words[0] == "evaluate" else 0]]
    with pytest.raises(SystemExit) as exit_info:
        main(words)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"umlkit {words[0]}: error: argument {flag}: invalid choice")
    assert "choose from" in error
    assert not list(tmp_path.iterdir())


def test_evaluate_a_missing_checkpoint(tmp_path, capsys):
    args = ["evaluate", str(tmp_path / "nope.pt"), "--data-root", str(tmp_path)]
    assert main(args) == 2
    assert "nope.pt not found" in capsys.readouterr().err


# --------------------------------------------------------------------------------------- train
def test_train_refuses_a_folder_holding_a_run_and_names_the_flags(derm, run, capsys):
    before = snapshot(run)
    assert main([*train_args(derm, run), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"umlkit train: --output-dir {run} already holds a run (last.pt, best.pt, half.pt, "
        "history.csv, steps.csv, config.json): --resume continues it, --overwrite replaces it, or choose another "
        "--output-dir\n"
    )
    assert snapshot(run) == before


def _umlkit(*args, **options):
    """``python -m umlkit *args`` as a process, with this checkout importable."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "umlkit", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **options,
    )


def test_a_second_train_into_a_folder_in_use_is_refused_at_once(derm, tmp_path):
    folder = tmp_path / "run"
    first = _umlkit(*train_args(derm, folder), "--epochs", "2", "--seed", "0")
    lock = folder / LOCK_FILE
    deadline = time.monotonic() + 60
    while f'"pid": {first.pid},' not in (lock.read_text() if lock.is_file() else ""):
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.01)
    refusals = []
    for extra in ([], ["--resume"], ["--overwrite"]):
        started = time.perf_counter()
        second = _umlkit(*train_args(derm, folder), "--epochs", "1", "--seed", "1", *extra)
        out, err = second.communicate(timeout=60)
        refusals.append((time.perf_counter() - started, second.returncode, err))
    assert first.wait(timeout=300) == 0, first.stderr.read()
    for seconds, code, err in refusals:
        assert code == 2 and seconds < 1.0, (seconds, err)
        assert err.startswith(
            f"umlkit train: --output-dir {folder} is in use by process {first.pid}"
        )
        assert err.endswith("wait for it to finish, or choose another --output-dir\n")
        assert err.count("\n") == 1
    # the folder holds the first run alone, consistent
    assert json.loads((folder / "config.json").read_text())["seed"] == 0
    assert pd.read_csv(folder / "history.csv")["epoch"].tolist() == [0, 1]
    last, best = load_checkpoint(folder / "last.pt"), load_checkpoint(folder / "best.pt")
    assert last["epoch"] == 1 and last["train_config"]["seed"] == 0
    assert best["train_config"]["seed"] == 0 and best["epoch"] == last["best"]["epoch"]
    assert sorted(path.name for path in folder.iterdir()) == sorted(
        ["best.pt", "config.json", "half.pt", "history.csv", "last.pt", "steps.csv"]
    )


@pytest.mark.parametrize(
    ("code", "cause"),
    [
        (errno.ENOSPC, "the disk is full (No space left on device)"),
        (errno.EROFS, "the file system is read-only (Read-only file system)"),
        (errno.EACCES, "no permission to write there (Permission denied)"),
    ],
)
def test_train_ends_a_refused_write_in_one_line_keeping_the_last_checkpoint(
    derm, tmp_path, monkeypatch, capsys, code, cause
):
    folder = tmp_path / "run"
    save, calls = checkpoints.torch.save, []

    def refused_after_the_first_epoch(checkpoint, target):
        # epoch 0 writes its half-budget candidate, best.pt and last.pt (last.pt comes last;
        # each through a temporary ".last.pt.<pid>-<id>.tmp")
        if not calls or not Path(calls[-1]).name.startswith(".last.pt."):
            calls.append(target)
            return save(checkpoint, target)
        Path(target).write_bytes(b"PK\x03\x04 half a checkpoint")
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(checkpoints.torch, "save", refused_after_the_first_epoch)
    assert main([*train_args(derm, folder), "--epochs", "2"]) == 2
    monkeypatch.undo()
    err = capsys.readouterr().err  # the progress bar, then the error
    assert "Traceback" not in err
    message = err.splitlines()[-1]
    assert message.startswith(f"umlkit train: cannot write {folder}/")
    assert message.endswith(f".pt: {cause}")
    # the epoch-0 checkpoint is kept whole, no temporary is left, and --resume goes on from it
    assert load_checkpoint(folder / "last.pt")["epoch"] == 0
    assert sorted(path.name for path in folder.iterdir()) == sorted(
        ["best.pt", "config.json", "half", "half.pt", "history.csv", "last.pt", "steps.csv"]
    )
    assert [path.name for path in (folder / "half").iterdir()] == ["epoch_0000.pt"]
    assert main([*train_args(derm, folder), "--epochs", "2", "--resume"]) == 0
    assert load_checkpoint(folder / "last.pt")["epoch"] == 1


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_train_names_an_output_folder_it_cannot_write_before_the_data_load(
    derm, tmp_path, monkeypatch, capsys, code
):
    def refused(*args, **kwargs):
        raise OSError(code, os.strerror(code), str(args[0]))

    monkeypatch.setattr(folders.os, "open", refused)  # the lock file: the first write
    assert main([*train_args(tmp_path / "nowhere", tmp_path / "run"), "--epochs", "1"]) == 2
    monkeypatch.undo()
    err = capsys.readouterr().err
    # the data (a folder that does not exist) were not looked at: the folder came first
    assert err == f"umlkit train: cannot write {tmp_path / 'run'}: {CAUSES[code]}\n"
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(
    getattr(os, "geteuid", lambda: -1)() == 0, reason="root writes into a chmod 0o555 folder anyway"
)
def test_train_names_a_read_only_output_folder(derm, tmp_path, capsys):
    parent = tmp_path / "locked"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        assert main([*train_args(derm, parent / "run"), "--epochs", "1"]) == 2
    finally:
        parent.chmod(0o755)
    err = capsys.readouterr().err
    assert err == f"umlkit train: cannot write {parent / 'run'}: {CAUSES[errno.EACCES]}\n"


def test_synth_on_a_full_disk_is_one_line(tmp_path, monkeypatch, capsys):
    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(synthetic, "_save_pair", full_disk)
    assert main(["synth", str(tmp_path / "derm"), "--n", "8", "--size", "16"]) == 2
    err = capsys.readouterr().err  # the progress bar, then the error
    assert "Traceback" not in err
    assert err.splitlines()[-1] == (
        f"umlkit synth: cannot write {tmp_path / 'derm'}: the disk is full (No space left on "
        "device)"
    )


def test_train_overwrite_replaces_the_run_and_says_so(derm, run, tmp_path, capsys):
    copy = shutil.copytree(run, tmp_path / "run")
    assert main([*train_args(derm, copy), "--epochs", "1", "--overwrite"]) == 0
    assert f"replacing the run in {copy} (--overwrite)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as caught:
        main([*train_args(derm, copy), "--resume", "--overwrite"])
    assert caught.value.code == 2
    assert "not allowed with argument --resume" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--device", "tpu"],
            "--device 'tpu' is not a device umlkit can use: choose cpu, cuda, cuda:<n> or mps "
            "(available here: cpu",
        ),
        (
            ["--image-size", "60"],
            "--image-size 60 is not divisible by 8: a network of depth 4 halves the image 3 "
            "times, so sides must be multiples of 2**(depth-1) = 8 (e.g. 56 or 64)",
        ),
    ],
)
def test_train_checks_device_and_image_size_before_anything(tmp_path, capsys, flags, message):
    # the data folder does not exist: the error is about the flag, so it came first
    args = [*train_args(tmp_path / "no-data", tmp_path / "run"), "--epochs", "1", *flags]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"umlkit train: {message}") and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_train_resume_onto_another_configuration_changes_nothing(derm, run, capsys):
    before = snapshot(run)
    assert main([*train_args(derm, run), "--epochs", "1", "--resume", "--width", "8"]) == 2
    err = capsys.readouterr().err
    assert "it was trained with another configuration (width: 8 != 4)" in err
    assert "use another --output-dir or --overwrite to start over" in err
    assert "=True" not in err and "=False" not in err
    assert snapshot(run) == before


def test_train_resume_without_last_checkpoint_keeps_the_trained_weights(
    derm, run, tmp_path, capsys
):
    folder = tmp_path / "run"
    shutil.copytree(run, folder)
    (folder / "last.pt").unlink()
    before = snapshot(folder)
    assert main([*train_args(derm, folder), "--epochs", "1", "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"umlkit train: --output-dir {folder} holds trained weights (best.pt")
    assert "but no last.pt to resume from: --overwrite replaces that run" in err
    assert err.count("\n") == 1
    assert snapshot(folder) == before


def test_train_resume_without_a_checkpoint_says_so(derm, tmp_path, capsys):
    folder = tmp_path / "fresh"
    assert main([*train_args(derm, folder), "--epochs", "1", "--resume"]) == 0
    assert f"no checkpoint in {folder}: starting a new run" in capsys.readouterr().out
    assert (folder / "last.pt").is_file()


def test_train_resumes_with_the_data_named_by_another_path(derm, run, tmp_path, monkeypatch):
    copy = shutil.copytree(run, tmp_path / "run")
    link = tmp_path / "link"
    link.symlink_to(derm, target_is_directory=True)
    assert main([*train_args(link, copy), "--epochs", "1", "--resume"]) == 0
    monkeypatch.chdir(derm.parent)
    assert main([*train_args(derm.name, copy), "--epochs", "1", "--resume"]) == 0


def test_train_resume_onto_an_empty_checkpoint_is_one_line(derm, run, tmp_path, capsys):
    copy = shutil.copytree(run, tmp_path / "run")
    (copy / "last.pt").write_bytes(b"")
    before = snapshot(copy)
    assert main([*train_args(derm, copy), "--epochs", "1", "--resume"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"umlkit train: checkpoint {copy / 'last.pt'} is empty (0 bytes): its writing was "
        "interrupted or it is not a checkpoint\n"
    )
    assert snapshot(copy) == before


def test_train_on_a_damaged_dataset_suggests_no_python_argument(derm, tmp_path, capsys):
    data = shutil.copytree(derm, tmp_path / "derm")
    next(data.rglob("*Training_Data/*.jpg")).unlink()
    assert main([*train_args(data, tmp_path / "run"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("umlkit train:") and "Fix the files." in err
    assert "on_error" not in err and ".report" not in err


# ------------------------------------------------------------------------------------ evaluate
def test_evaluate_uses_the_checkpoint_image_size_and_says_so(derm, run, capsys):
    args = ["evaluate", str(run / "best.pt"), "--data-root", str(derm), "--device", "cpu"]
    assert main(args) == 0
    assert "image size 32 (the checkpoint's); dataset isic2017 (the checkpoint's)" in (
        capsys.readouterr().out
    )
    assert main([*args, "--image-size", "64"]) == 0
    out = capsys.readouterr().out
    assert "image size 64 (--image-size; the model was trained with image size 32)" in out


def test_evaluate_refuses_data_of_other_classes(run, tmp_path, capsys):
    fundus = tmp_path / "fundus"
    assert main(["synth", str(fundus), "--kind", "fundus", "--n", "8", "--size", "32"]) == 0
    capsys.readouterr()
    table = tmp_path / "table.csv"
    args = ["evaluate", str(run / "best.pt"), "--data-root", str(fundus), "--dataset", "refuge"]
    assert main([*args, "--output", str(table)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"umlkit evaluate: checkpoint {run / 'best.pt'} was trained on classes ['not melanoma', "
        f"'melanoma'] but {fundus} (test split) has ['non-glaucoma', 'glaucoma']; and on "
        f"segmentation classes ['background', 'lesion'] but {fundus} (test split) has "
        "['background', 'rim', 'cup']\n"
    )
    assert not table.exists()


def test_evaluate_output_into_a_folder_and_a_missing_one(derm, run, tmp_path, capsys):
    args = ["evaluate", str(run / "best.pt"), "--data-root", str(derm), "--device", "cpu"]
    assert main([*args, "--output", str(tmp_path)]) == 0
    assert len((tmp_path / "best_test.csv").read_text().splitlines()) == 1 + 3
    assert f"per-image table written to {tmp_path / 'best_test.csv'}" in capsys.readouterr().out
    before = (tmp_path / "best_test.csv").read_bytes()
    assert main([*args, "--output", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"umlkit evaluate: --output {tmp_path}: {tmp_path / 'best_test.csv'} exists: "
        "--overwrite replaces it, or choose another --output\n"
    )
    assert (tmp_path / "best_test.csv").read_bytes() == before
    mine = tmp_path / "mine.csv"
    mine.write_text("my own notes")
    assert main([*args, "--output", str(mine)]) == 2
    assert mine.read_text() == "my own notes"
    assert main([*args, "--output", str(mine), "--overwrite"]) == 0
    assert "(replaced)" in capsys.readouterr().out
    assert len(mine.read_text().splitlines()) == 1 + 3
    missing = tmp_path / "nowhere" / "table.csv"
    assert main([*args, "--output", str(missing)]) == 2
    assert capsys.readouterr().err == (
        f"umlkit evaluate: --output {missing}: folder {missing.parent} does not exist\n"
    )
    assert main([*args, "--output", str(tmp_path / "new") + os.sep]) == 2
    assert "no such folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "is empty (0 bytes)"),
        (b"PK\x03\x04 cut short", "is truncated or corrupt (14 bytes)"),
        (b"epoch,loss\n0,1.0\n", "is not in torch.save's zip format"),
    ],
)
def test_evaluate_a_damaged_checkpoint_is_one_line(derm, tmp_path, capsys, content, problem):
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(content)
    assert main(["evaluate", str(checkpoint), "--data-root", str(derm)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"umlkit evaluate: checkpoint {checkpoint} {problem}")
    assert err.count("\n") == 1


def test_train_that_diverges_is_one_line_and_leaves_no_broken_checkpoint(derm, tmp_path, capsys):
    folder = tmp_path / "run"
    assert main([*train_args(derm, folder), "--lr", "1000", "--epochs", "3"]) == 2
    err = capsys.readouterr().err
    message = err.splitlines()[-1]  # the lines before it are the progress bar's
    assert message.startswith("umlkit train: training diverged at epoch ")
    assert "(learning rate " in message and "; lower --lr and start again" in message
    assert "Traceback" not in err
    for path in folder.glob("*.pt"):  # an epoch before the divergence may have been saved
        state = load_checkpoint(path)["model_state"]
        assert all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())


def test_evaluate_refuses_a_checkpoint_holding_inf_naming_the_tensor(derm, run, tmp_path, capsys):
    checkpoint = load_checkpoint(run / "best.pt")
    name = next(key for key in checkpoint["model_state"] if key.endswith("running_var"))
    checkpoint["model_state"][name][0] = float("inf")
    path = save_checkpoint(tmp_path / "best.pt", checkpoint)
    assert main(["evaluate", str(path), "--data-root", str(derm), "--device", "cpu"]) == 2
    assert capsys.readouterr().err == (
        f"umlkit evaluate: checkpoint {path}: its weight {name} holds inf: the run that wrote it "
        "diverged; train again with a lower learning rate\n"
    )


@pytest.mark.parametrize("size", ["abc", 0, 32.5])
def test_evaluate_names_a_checkpoint_whose_image_size_is_not_a_size(
    derm, run, tmp_path, capsys, size
):
    checkpoint = load_checkpoint(run / "best.pt")
    for record in ("train_config", "data"):
        if isinstance(checkpoint.get(record), dict) and "image_size" in checkpoint[record]:
            checkpoint[record]["image_size"] = size
    path = save_checkpoint(tmp_path / "best.pt", checkpoint)
    assert main(["evaluate", str(path), "--data-root", str(derm), "--device", "cpu"]) == 2
    assert capsys.readouterr().err == (
        f"umlkit evaluate: checkpoint {path} records the image size {size!r}, not a positive "
        "integer: give --image-size\n"
    )
    assert (
        main(
            [
                "evaluate",
                str(path),
                "--data-root",
                str(derm),
                "--device",
                "cpu",
                "--image-size",
                "32",
            ]
        )
        == 0
    )


def test_evaluate_checks_the_device_first(run, tmp_path, capsys):
    args = ["evaluate", str(run / "best.pt"), "--data-root", str(tmp_path), "--device", "tpu"]
    assert main(args) == 2
    assert capsys.readouterr().err.startswith("umlkit evaluate: --device 'tpu' is not a device")


# ------------------------------------------------------------------------------ folder classes
def folder_dataset(root, labels):
    """A ``folder`` dataset without split folders: 8x8 images, empty masks and ``labels``."""
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True)
    for k, image_id in enumerate(labels):
        pixels = np.full((8, 8, 3), 10 * k, dtype=np.uint8)
        Image.fromarray(pixels).save(root / "images" / f"{image_id}.png")
        Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(root / "masks" / f"{image_id}.png")
    rows = "".join(f"{image_id},{label}\n" for image_id, label in labels.items())
    (root / "labels.csv").write_text("id,label\n" + rows)
    return root


#: 10 images of class 0 and 10 of class 1: 7 / 1 / 2 of each in the train / val / test splits.
BINARY = {f"a{k:02d}": k % 2 for k in range(20)}


def test_train_refuses_a_label_typo_in_a_binary_folder_dataset(tmp_path, capsys):
    data = folder_dataset(tmp_path / "data", {**BINARY, "a03": 2})  # a03 is on line 5
    args = [*train_args(data, tmp_path / "run"), "--dataset", "folder"]
    assert main(args) == 2
    assert capsys.readouterr().err == (
        f"umlkit train: {data / 'labels.csv'}: class 2 has 1 training image (line 5), but with "
        "the number of classes inferred from the labels (the largest + 1 = 3) every class needs "
        "at least two: correct the label, or state the classes with --num-classes or a "
        f"classes.txt in {data}\n"
    )
    assert main([*args, "--num-classes", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"umlkit train: folder train split in {data}: 1 problem(s):")
    assert (
        f"{data / 'labels.csv'}: line 5: label 2 of id a03 is not one of the classes 0..1 "
        "(--num-classes=2)" in err
    )
    assert not (tmp_path / "run").exists()


def test_num_classes_is_only_for_folder_datasets(derm, tmp_path, capsys):
    assert main([*train_args(derm, tmp_path / "run"), "--num-classes", "3"]) == 2
    assert capsys.readouterr().err == (
        "umlkit train: --num-classes is for folder datasets; dataset 'isic2017' has its own "
        "classes\n"
    )


def test_evaluate_reads_a_folder_dataset_with_the_classes_the_model_was_trained_on(
    tmp_path, capsys
):
    data = folder_dataset(tmp_path / "data", BINARY)
    run = tmp_path / "run"
    train = [*train_args(data, run), "--dataset", "folder", "--epochs", "1"]
    assert main([*train, "--num-classes", "3"]) == 0  # a class that has no image yet
    assert main(["evaluate", str(run / "best.pt"), "--data-root", str(data)]) == 0
    assert "image size 32 (the checkpoint's); dataset folder" in capsys.readouterr().out


# --------------------------------------------------------------------------------------- synth
def test_synth_refuses_too_few_images_for_every_split(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "derm"), "--n", "2", "--size", "32"]) == 2
    assert capsys.readouterr().err == (
        "umlkit synth: --n 2 is too small for a derm dataset: its train / val / test splits "
        "(70 / 10 / 20 %) would hold 1 / 0 / 1 images; --n must be at least 6\n"
    )
    assert not (tmp_path / "derm").exists()
    assert main(["synth", str(tmp_path / "ood"), "--kind", "ood", "--n", "2", "--size", "16"]) == 0


def test_synth_suggests_its_own_flag(tmp_path, capsys):
    root = tmp_path / "derm"
    assert main(["synth", str(root), "--n", "6", "--size", "16"]) == 0
    (root / MANIFEST_NAME).unlink()  # as if the generation had been interrupted
    assert main(["synth", str(root), "--n", "6", "--size", "16"]) == 2
    err = capsys.readouterr().err
    assert "pass --overwrite to let umlkit delete it" in err and "overwrite=True" not in err


# ------------------------------------------------------------------------------------- figures
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-p", "epoch", "3"], "-p epoch: none of the notebooks to run"),
        (["-p", "epoch", "3"], "did you mean epochs?"),
        (["-p", "epochs", "abc"], "-p epochs 'abc': 03_training expects int | None"),
        (["--only", "03", "-p", "seeds", "0"], "-p seeds 0: 03_training expects list[int] | None"),
        (
            ["--only", "03", "-p", "seeds", "[0.5]"],
            "-p seeds [0.5]: 03_training expects list[int] | None (its default is None), got the "
            "element 0.5 (float) where int is expected",
        ),
        (["-p", "seeds", "[0.5]"], "where int is expected"),  # every notebook that has seeds
        (["-p", "profile", "paper"], "-p profile: choose the profile with --profile"),
        (["--only", ","], "--only names no notebook"),
        (["--only", ""], "--only names no notebook"),
    ],
)
def test_figures_checks_its_parameters_before_any_notebook_runs(capsys, args, message):
    assert main(["figures", "--profile", "smoke", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("umlkit figures: ") and message in err and err.count("\n") == 1


def test_importing_the_entry_point_module_runs_nothing(monkeypatch, capsys):
    # the API reference (sphinx autosummary) imports every module, umlkit.__main__ too, in a
    # process whose command line is sphinx's or pytest's, not umlkit's
    monkeypatch.setattr(sys, "argv", ["sphinx-build", "-b", "html"])
    monkeypatch.delitem(sys.modules, "umlkit.__main__", raising=False)
    importlib.import_module("umlkit.__main__")
    assert capsys.readouterr() == ("", "")


#: The subcommands whose documented examples are checked here (``figures``: tests/test_runner.py).
DOCUMENTED_SUBCOMMANDS = ("synth", "preprocess", "train", "evaluate", "bench", "cache")


def _documented_commands() -> list[tuple[str, list[str]]]:
    """``(page, arguments)`` of every ``umlkit <subcommand> ...`` that the README, docs/ and the
    notebooks show for readers to copy: in code blocks (continued lines joined) and in inline
    code with an option; an example eliding its arguments with ``...`` is left out."""
    # docs/decisions.md is the record of what was measured, not instructions to copy
    guides = sorted(set((ROOT / "docs").glob("*.md")) - {ROOT / "docs" / "decisions.md"})
    pages = [ROOT / "README.md", *guides]
    texts = [(page.name, page.read_text(encoding="utf-8")) for page in pages]
    for notebook in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        markdown = ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "markdown"]
        texts.append((notebook.name, "\n".join(markdown)))
    pattern = rf"umlkit ((?:{'|'.join(DOCUMENTED_SUBCOMMANDS)})\b[^|#\n]*)"
    commands = []
    for name, text in texts:
        blocks = [
            block.replace("\\\n", " ") for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
        ]
        spans = [span for span in re.findall(r"`([^`\n]+)`", text) if " --" in span]
        for chunk in blocks + spans:
            for match in re.finditer(pattern, chunk):
                words = shlex.split(match.group(1))
                if "..." not in words:
                    commands.append((name, words))
    return commands


def test_every_documented_command_is_accepted_by_the_parser(capsys):
    commands = _documented_commands()
    assert len(commands) >= 8  # the README's and the course guide's examples were found
    for page, words in commands:
        try:
            build_parser().parse_args(words)
        except SystemExit as exit_info:  # --help exits 0; a refused argument exits 2
            error = capsys.readouterr().err.strip().splitlines()[-1:]
            assert exit_info.code == 0, f"{page}: umlkit {shlex.join(words)}: {error}"
