"""umlkit.benchmarks.models: the cost table of UML against the multi-task baseline."""

import pytest

from umlkit.benchmarks.models import REFERENCE, bench_models, main


def test_bench_models_times_every_model_against_the_reference():
    table = bench_models(width=2, image_size=16, batch_size=2, steps=1, warmup=0, memory=False)
    assert table["model"].tolist() == ["uml", REFERENCE]
    assert (table[["train_ms", "train_cpu_ms", "inference_ms"]] > 0).all().all()
    reference = table.set_index("model").loc[REFERENCE]
    assert reference["train_ratio"] == 1.0 and reference["inference_ratio"] == 1.0
    uml = table.set_index("model").loc["uml"]
    assert uml["train_ratio"] == pytest.approx(uml["train_ms"] / reference["train_ms"])
    assert uml["params"] > reference["params"]


def test_peak_memory_is_measured_in_a_separate_process():
    table = bench_models(
        width=2, image_size=16, batch_size=2, steps=1, warmup=0, models=("multitask",)
    )
    assert table["peak_memory_mb"].iloc[0] >= 0


def test_main_prints_the_table_and_the_verdict(capsys):
    argv = ["--width", "2", "--image-size", "16", "--batch-size", "2", "--steps", "1"]
    assert main([*argv, "--no-memory", "--models", "uml,multitask"]) == 0
    out = capsys.readouterr().out
    assert "train_ratio" in out and "UML training step =" in out and "target of 2.5x" in out


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="need steps >= 1"):
        bench_models(steps=0)
    with pytest.raises(ValueError, match="unknown model name"):
        bench_models(models=("resnet",), steps=1, warmup=0, memory=False, image_size=16)
