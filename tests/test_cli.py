"""The ``umlkit`` console command."""

import pytest

from umlkit.cli import build_parser, main


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    for command in ("synth", "preprocess", "train", "evaluate", "bench", "figures"):
        assert command in out


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
    assert main(["synth", str(tmp_path), "--n", "4", "--size", "32"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("umlkit synth:") and "notes.txt" in err


def test_train_names_a_bad_augmentation(tmp_path, capsys):
    main(["synth", str(tmp_path / "derm"), "--n", "16", "--size", "32"])
    args = ["train", "--data-root", str(tmp_path / "derm"), "--output-dir", str(tmp_path / "run")]
    assert main([*args, "--augment", "mixup"]) == 2
    assert "augment must be one of" in capsys.readouterr().err


def test_evaluate_a_missing_checkpoint(tmp_path, capsys):
    args = ["evaluate", str(tmp_path / "nope.pt"), "--data-root", str(tmp_path)]
    assert main(args) == 2
    assert "nope.pt not found" in capsys.readouterr().err
