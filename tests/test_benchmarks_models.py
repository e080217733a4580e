"""umlkit.benchmarks.models: the cost table of UML against the multi-task baseline."""

import argparse

import pytest

from umlkit import fastpath
from umlkit.benchmarks import models as bench
from umlkit.benchmarks.models import REFERENCE, bench_models, main


def test_bench_models_times_every_model_and_path_against_the_reference():
    table = bench_models(width=2, image_size=16, batch_size=2, steps=1, warmup=0, memory=False)
    assert list(zip(table["model"], table["path"], strict=True)) == [
        ("uml", "plain"),
        ("uml", "fast"),
        (REFERENCE, "plain"),
        (REFERENCE, "fast"),
    ]
    assert (table[["train_ms", "train_cpu_ms", "inference_ms"]] > 0).all().all()
    rows = table.set_index(["model", "path"])
    for path in ("plain", "fast"):
        reference = rows.loc[(REFERENCE, path)]
        assert reference["train_ratio"] == 1.0 and reference["inference_ratio"] == 1.0
        uml = rows.loc[("uml", path)]
        assert uml["train_ratio"] == pytest.approx(uml["train_ms"] / reference["train_ms"])
        assert uml["params"] > reference["params"]


def test_bench_models_runs_each_path_with_the_fast_paths_switched_accordingly(monkeypatch):
    seen = []
    original = bench.official_objective

    def recording_objective(name):
        objective = original(name)

        def record(*args, **kwargs):
            seen.append(fastpath.enabled())
            return objective(*args, **kwargs)

        return record

    monkeypatch.setattr(bench, "official_objective", recording_objective)
    bench_models(
        width=2, image_size=16, batch_size=2, steps=2, warmup=1, memory=False,
        models=(REFERENCE,), paths=("plain", "fast"),
    )  # fmt: skip
    # one warm-up and two rounds, taking turns; then one plain step whose FLOPs are counted
    assert seen == [False, True] * 3 + [False]
    assert fastpath.enabled()


def test_peak_memory_is_measured_in_a_separate_process():
    table = bench_models(
        width=2,
        image_size=16,
        batch_size=2,
        steps=1,
        warmup=0,
        models=("multitask",),
        paths=("fast",),
    )
    assert table["peak_memory_mb"].iloc[0] >= 0


def test_main_prints_the_table_and_the_verdict(capsys):
    argv = ["--width", "2", "--image-size", "16", "--batch-size", "2", "--steps", "1"]
    assert main([*argv, "--no-memory", "--models", "uml,multitask"]) == 0
    out = capsys.readouterr().out
    assert "train_ratio" in out and "UML training step =" in out and "target of 2.5x" in out
    assert "plain path" in out and "fast path" in out


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="need steps >= 1"):
        bench_models(steps=0)
    with pytest.raises(ValueError, match="paths must be some of"):
        bench_models(paths=("turbo",), steps=1)
    with pytest.raises(ValueError, match="unknown model name"):
        bench_models(models=("resnet",), steps=1, warmup=0, memory=False, image_size=16)


def test_flops_grow_with_the_square_of_the_width_and_give_a_rate():
    small = bench_models(width=2, image_size=16, batch_size=2, steps=1, warmup=1, memory=False,
                         models=(REFERENCE,), paths=("fast",))  # fmt: skip
    large = bench_models(width=4, image_size=16, batch_size=2, steps=1, warmup=1, memory=False,
                         models=(REFERENCE,), paths=("fast",))  # fmt: skip
    ratio = large["gflop_per_step"].iloc[0] / small["gflop_per_step"].iloc[0]
    assert 3.0 < ratio < 4.5  # convolutions: channels in x channels out, both doubled
    row = small.iloc[0]
    assert row["train_gflops"] == pytest.approx(row["gflop_per_step"] / (row["train_ms"] / 1000))
    assert row["first_step_s"] > 0


def test_the_compiled_path_needs_a_warm_up_step():
    with pytest.raises(ValueError, match="compiled path needs warmup >= 1"):
        bench_models(width=2, image_size=16, batch_size=2, steps=1, warmup=0, memory=False,
                     paths=("compiled",))  # fmt: skip


def test_widths_and_paths_of_the_command_lines_are_parsed_and_checked():
    from umlkit.benchmarks import parse_paths, parse_widths

    assert parse_widths("8,16,64") == [8, 16, 64]
    assert parse_widths("16") == [16]
    assert parse_paths("plain,compiled") == ["plain", "compiled"]
    for bad in ("", "8,", "8.5", "-8", "0,16"):
        with pytest.raises(argparse.ArgumentTypeError, match="positive integers"):
            parse_widths(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="unknown path 'turbo'"):
        parse_paths("fast,turbo")
    with pytest.raises(SystemExit):
        main(["--width", "8,x"])
