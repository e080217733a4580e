"""umlkit.results: recording the numbers notebooks state, the file they go to, and the reference."""

import json
import math
import os
import shutil
import subprocess

import numpy as np
import pytest

from umlkit.profiles import NotebookContext
from umlkit.results import (
    ABSOLUTE_FLOOR,
    ResultsFileError,
    agrees,
    beside_reference,
    format_value,
    load_results,
    main,
    print_beside_reference,
    record,
    record_if_defined,
    reference_results,
    reference_value,
    write_markdown,
)


def context(root, name="04_ablations", profile="default", figures_dir=None):
    """A notebook context in a temporary project ``root`` (no git there: commit "unknown")."""
    figures_dir = root / "build" / f"figures-{profile}" if figures_dir is None else figures_dir
    return NotebookContext(
        name=name,
        profile=profile,
        root=root,
        data_dir=root / "data",
        figures_dir=figures_dir,
        settings={},
    )


def write_reference(root, results):
    """A committed reference ``figures/results.json`` holding ``{key: (value, spread)}``."""
    entries = {
        key: {"value": value, "spread": spread, "text": format_value(value, spread), "digits": 3}
        for key, (value, spread) in results.items()
    }
    path = root / "figures" / "results.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"profile": "reference", "results": entries}))
    return path


# ------------------------------------------------------------------------------------ formatting
def test_format_value_prints_as_the_notebooks_do():
    assert format_value(0.80512, 0.0123) == "0.805 ± 0.012"
    assert format_value(0.80512) == "0.805"
    assert format_value(-0.0174, 0.006, digits=3) == "-0.017 ± 0.006"
    assert format_value(95.2, digits=0) == "95"


# ------------------------------------------------------------------------------------- recording
def test_record_writes_the_file_and_returns_the_text(tmp_path):
    ctx = context(tmp_path)
    text = record(ctx, "04.UML.ACC", 0.8051, spread=0.0121, label="UML accuracy, mean ± sd")
    assert text == "0.805 ± 0.012"
    data = load_results(ctx.figures_dir / "results.json")
    assert data["profile"] == "default"
    assert data["commit"] == "unknown" and data["dirty"] is False  # no git in tmp_path
    assert data["date"].endswith("+00:00")  # UTC
    entry = data["results"]["04.UML.ACC"]
    assert entry["value"] == pytest.approx(0.8051) and entry["spread"] == pytest.approx(0.0121)
    assert entry["text"] == "0.805 ± 0.012" and entry["notebook"] == "04_ablations"
    assert entry["label"] == "UML accuracy, mean ± sd" and entry["unit"] == ""


def test_record_accepts_numpy_numbers_and_labels_default_to_the_key(tmp_path):
    ctx = context(tmp_path)
    assert record(ctx, "04.N", np.float32(0.5), spread=np.float64(0.25)) == "0.500 ± 0.250"
    assert record(ctx, "04.COUNT", np.int64(7), digits=0) == "7"
    entries = load_results(ctx.figures_dir / "results.json")["results"]
    assert entries["04.N"]["label"] == "04.N"


@pytest.mark.parametrize(
    ("value", "spread", "what"),
    [
        (math.nan, None, "value"),
        (math.inf, None, "value"),
        ("0.8", None, "value"),
        (True, None, "value"),
        (None, None, "value"),
        (0.8, math.nan, "spread"),
        (0.8, -0.1, "spread"),
    ],
)
def test_bad_numbers_are_refused_in_one_line_naming_the_key(tmp_path, value, spread, what):
    ctx = context(tmp_path)
    with pytest.raises(ValueError, match=f"'04.BAD'.*{what}") as caught:
        record(ctx, "04.BAD", value, spread=spread)
    assert "\n" not in str(caught.value)
    assert not (ctx.figures_dir / "results.json").exists()  # nothing written


def test_record_if_defined_skips_undefined_values_and_single_seed_spreads(tmp_path):
    ctx = context(tmp_path)
    assert record_if_defined(ctx, "04.U-Net.ACC", np.float64(np.nan), spread=np.nan) is None
    assert record_if_defined(ctx, "04.NONE", None) is None
    assert not (ctx.figures_dir / "results.json").exists()  # nothing recorded yet
    assert record_if_defined(ctx, "04.ONE", np.float64(0.8), spread=np.nan) == "0.800"
    text = record_if_defined(ctx, "04.HD95", 3.25, spread=0.5, unit="px", digits=1, headline=True)
    assert text == "3.2 ± 0.5"
    entries = load_results(ctx.figures_dir / "results.json")["results"]
    assert set(entries) == {"04.ONE", "04.HD95"}
    assert entries["04.ONE"]["spread"] is None and type(entries["04.ONE"]["value"]) is float
    assert entries["04.HD95"]["unit"] == "px" and entries["04.HD95"]["headline"] is True
    with pytest.raises(ValueError, match="'04.INF'"):
        record_if_defined(ctx, "04.INF", math.inf)  # infinite is an error, not "undefined"


def test_two_notebooks_merge_and_a_rerun_replaces_only_its_own_keys(tmp_path):
    first_04, ctx_05 = context(tmp_path, "04_ablations"), context(tmp_path, "05_reliability")
    record(first_04, "04.UML.ACC", 0.75)
    record(first_04, "04.OLD", 0.5)  # a number the next run of 04 no longer states
    record(ctx_05, "05.ECE", 0.061)
    path = first_04.figures_dir / "results.json"
    assert set(load_results(path)["results"]) == {"04.UML.ACC", "04.OLD", "05.ECE"}

    rerun_04 = context(tmp_path, "04_ablations")  # a new run: a new context
    record(rerun_04, "04.UML.ACC", 0.80)
    entries = load_results(path)["results"]
    assert set(entries) == {"04.UML.ACC", "05.ECE"}  # 04.OLD went with 04's earlier run
    assert entries["04.UML.ACC"]["value"] == pytest.approx(0.80)
    assert entries["05.ECE"]["value"] == pytest.approx(0.061)  # 05 untouched

    record(rerun_04, "04.MORE", 0.9)  # the same run adds, and keeps what it recorded
    assert set(load_results(path)["results"]) == {"04.UML.ACC", "04.MORE", "05.ECE"}


def test_recording_one_key_again_in_a_run_replaces_it(tmp_path):
    ctx = context(tmp_path)
    record(ctx, "04.A", 0.1)
    record(ctx, "04.A", 0.2)
    entries = load_results(ctx.figures_dir / "results.json")["results"]
    assert list(entries) == ["04.A"] and entries["04.A"]["value"] == pytest.approx(0.2)


def test_a_folder_of_another_profile_is_refused(tmp_path):
    shared = tmp_path / "shared"
    record(context(tmp_path, profile="default", figures_dir=shared), "04.A", 0.1)
    with pytest.raises(ValueError, match="'default' profile, not 'smoke'"):
        record(context(tmp_path, profile="smoke", figures_dir=shared), "04.A", 0.1)


def test_a_damaged_file_is_named_and_not_overwritten(tmp_path):
    ctx = context(tmp_path)
    path = ctx.figures_dir / "results.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(ResultsFileError, match="results.json: not valid JSON") as caught:
        record(ctx, "04.A", 0.1)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)
    assert path.read_text() == "{not json"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    ctx = context(tmp_path)
    record(ctx, "04.A", 0.1)
    path = ctx.figures_dir / "results.json"
    before = path.read_text()

    def refuse(source, target):
        raise OSError("the rename fails")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="the rename fails"):
        record(ctx, "04.B", 0.2)
    assert path.read_text() == before
    assert sorted(os.listdir(ctx.figures_dir)) == ["results.json", "results.md"]  # no .tmp, .lock


# ------------------------------------------------------------------------------ reading the file
def test_load_results_names_the_file_in_one_line(tmp_path):
    missing = tmp_path / "results.json"
    with pytest.raises(ResultsFileError, match="no such results file") as caught:
        load_results(missing)
    assert str(missing) in str(caught.value)
    missing.write_text('{"results": {"04.A": {"value": "high"}}}')
    with pytest.raises(ResultsFileError, match="'04.A' has no numeric 'value'"):
        load_results(missing)
    missing.write_text("[1, 2]")
    with pytest.raises(ResultsFileError, match="not a results file"):
        load_results(missing)


# ------------------------------------------------------------------------------------- markdown
def test_record_keeps_the_markdown_in_step(tmp_path):
    ctx, ctx_05 = context(tmp_path), context(tmp_path, "05_reliability")
    record(ctx, "04.HD95", 4.25, spread=0.5, unit="px", label="HD95 | pixels", digits=2)
    record(ctx_05, "05.ECE", 0.061)
    text = (ctx.figures_dir / "results.md").read_text()
    assert "Commit `unknown`, profile `default`" in text
    assert text.index("## 04_ablations") < text.index("## 05_reliability")
    assert "| 04.HD95 | HD95 \\| pixels | 4.25 ± 0.50 | px |" in text
    assert "| 05.ECE | 05.ECE | 0.061 |  |" in text


def test_write_markdown_of_a_missing_file_names_it(tmp_path):
    with pytest.raises(ResultsFileError, match="absent.json: no such results file"):
        write_markdown(tmp_path / "absent.json")


def test_the_command_line_rewrites_the_markdown(tmp_path, capsys):
    path = write_reference(tmp_path, {"04.A": (0.5, None)})
    assert main(["--markdown", "--results", str(path)]) == 0
    assert "| 04.A | 04.A | 0.500 |" in (path.parent / "results.md").read_text()
    assert main(["--markdown", "--results", str(tmp_path / "none.json")]) == 1
    assert "none.json: no such results file" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ reference
def test_no_reference_file_gives_none_without_an_error(tmp_path):
    assert reference_results(tmp_path) == {}
    assert reference_value("04.UML.ACC", tmp_path) is None


def test_reference_values_are_read_from_figures(tmp_path):
    write_reference(tmp_path, {"04.UML.ACC": (0.805, 0.012)})
    assert reference_value("04.UML.ACC", tmp_path) == pytest.approx(0.805)
    assert reference_value("04.OTHER", tmp_path) is None
    assert reference_results(tmp_path)["04.UML.ACC"]["text"] == "0.805 ± 0.012"


def test_agrees_within_twice_the_spread_or_the_floor():
    # reference 0.805 ± 0.012: tolerance 2 × 0.012 = 0.024
    assert agrees(0.790, 0.805, reference_spread=0.012)  # 0.015 away
    assert not agrees(0.751, 0.805, spread=0.010, reference_spread=0.012)  # 0.054 away
    # this run's spread widens it: 2 × 0.030 = 0.060
    assert agrees(0.751, 0.805, spread=0.030, reference_spread=0.012)
    # no spread at all: the floor
    assert agrees(0.805 + ABSOLUTE_FLOOR / 2, 0.805)
    assert not agrees(0.805 + 2 * ABSOLUTE_FLOOR, 0.805)


def test_agrees_needs_the_side_of_a_settled_difference():
    # CAML − supervised = +0.010 ± 0.003 in the reference: beyond 2 × its spread from zero
    assert not agrees(-0.004, 0.010, spread=0.010, reference_spread=0.003)  # close, other side
    assert agrees(0.002, 0.010, spread=0.010, reference_spread=0.003)
    # +0.004 ± 0.008 is not settled: the side does not count
    assert agrees(-0.004, 0.004, spread=0.002, reference_spread=0.008)


def test_beside_reference_flags_the_disagreement(tmp_path, capsys):
    write_reference(tmp_path, {"04.UML.ACC": (0.805, 0.012), "04.UML.DICE": (0.946, 0.004)})
    ctx = context(tmp_path)
    record(ctx, "04.UML.ACC", 0.751, spread=0.010, label="UML accuracy")
    record(ctx, "04.UML.DICE", 0.940, spread=0.004)
    record(ctx, "04.NEW", 0.5)
    frame = beside_reference(ctx, "04.UML")
    assert list(frame["key"]) == ["04.UML.ACC", "04.UML.DICE"]
    assert list(frame["agrees"]) == [False, True]
    assert frame["difference"].tolist() == pytest.approx([0.751 - 0.805, 0.940 - 0.946])
    assert frame["tolerance"].tolist() == pytest.approx([0.024, max(0.008, ABSOLUTE_FLOOR)])

    print_beside_reference(ctx, "04.")
    out = capsys.readouterr().out
    assert (
        "04.UML.ACC (UML accuracy): differs from the converged reference: "
        "this run 0.751 ± 0.010, reference 0.805 ± 0.012"
    ) in out
    assert "04.UML.DICE (" not in out  # agrees: no line
    assert "not in the reference" in out  # 04.NEW


def test_beside_reference_takes_keys_or_records(tmp_path):
    write_reference(tmp_path, {"04.A": (0.5, 0.01)})
    ctx = context(tmp_path)
    frame = beside_reference(ctx, {"04.A": 0.55, "04.B": {"value": 0.1, "spread": 0.02}})
    assert frame["agrees"].tolist() == [False, None]
    assert frame["reference_text"].tolist() == ["0.500 ± 0.010", "not in the reference"]
    record(ctx, "04.A", 0.505)
    assert beside_reference(ctx, ["04.A"])["agrees"].tolist() == [True]
    with pytest.raises(ValueError, match="no result '04.B'"):
        beside_reference(ctx, ["04.B"])


def test_the_reference_run_is_not_compared_with_itself(tmp_path, capsys):
    write_reference(tmp_path, {"04.A": (0.5, 0.01)})
    for ctx in (
        context(tmp_path, profile="reference"),
        context(tmp_path, figures_dir=tmp_path / "figures"),  # a run writing the reference file
    ):
        frame = beside_reference(ctx, {"04.A": 0.9})
        assert frame.empty and "is the converged reference" in frame.attrs["note"]
    print_beside_reference(context(tmp_path, profile="reference"), "04.")
    assert "this run is the converged reference" in capsys.readouterr().out


def test_without_a_reference_the_run_says_so(tmp_path, capsys):
    ctx = context(tmp_path)
    record(ctx, "04.A", 0.5)
    assert beside_reference(ctx, "04.").empty
    print_beside_reference(ctx, "04.")
    assert "no converged reference yet" in capsys.readouterr().out


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed here")
def test_the_commit_is_recorded_and_the_results_folder_does_not_make_it_dirty(tmp_path):
    def git(*arguments):
        subprocess.run(["git", *arguments], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "old.png").write_text("drawn")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first")
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=tmp_path, capture_output=True, text=True
    ).stdout.strip()
    ctx = context(tmp_path, profile="reference", figures_dir=tmp_path / "figures")
    (tmp_path / "figures" / "old.png").write_text("drawn again")  # the run redraws a figure
    record(ctx, "04.A", 0.5)
    data = load_results(tmp_path / "figures" / "results.json")
    assert data["commit"] == head and data["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")  # the code differs from the commit
    record(ctx, "04.A", 0.5)
    assert load_results(tmp_path / "figures" / "results.json")["dirty"] is True
