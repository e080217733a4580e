"""The comparison runner, its tables and its pictures."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from umlkit import plots
from umlkit.data import load_dataset, make_synthetic
from umlkit.semi.experiments import (
    comparison_configs,
    describe_differences,
    epochs_for_steps,
    label_effect,
    paired_differences,
    run_comparison,
    run_means,
    seeds_by_fraction,
    summary_table,
    trust_cases,
)
from umlkit.semi.loop import get_or_train_semi


def test_epochs_for_steps_hand_computed():
    # 700 images, 10 % -> 70 labeled, batches of 4 -> 18 steps per epoch; 200 steps -> 12 epochs
    assert epochs_for_steps(700, 0.1, 4, 200) == 12
    # 5 % -> 35 labeled -> 9 steps per epoch -> 23 epochs
    assert epochs_for_steps(700, 0.05, 4, 200) == 23
    with pytest.raises(ValueError, match="steps"):
        epochs_for_steps(700, 0.1, 4, 0)


def hand_scores() -> pd.DataFrame:
    rows = []
    # Two seeds, two test images each; caml beats supervised by 0.1 on seed 0, loses 0.05 on seed 1.
    for method, seed, dices in [
        ("supervised", 0, (0.6, 0.8)),
        ("supervised", 1, (0.7, 0.7)),
        ("caml", 0, (0.7, 0.9)),
        ("caml", 1, (0.6, 0.7)),
    ]:
        for image, value in enumerate(dices):
            rows.append(
                {
                    "dataset": "fundus",
                    "label_fraction": 0.1,
                    "method": method,
                    "seed": seed,
                    "id": image,
                    "dice": value,
                    "iou": value / 2,
                    "hd95": 1.0,
                    "assd": 0.5,
                }
            )
    return pd.DataFrame(rows)


def test_run_means_and_summary_hand_computed():
    runs = run_means(hand_scores())
    assert runs.set_index(["method", "seed"])["dice"].to_dict() == pytest.approx(
        {("supervised", 0): 0.7, ("supervised", 1): 0.7, ("caml", 0): 0.8, ("caml", 1): 0.65}
    )
    table = summary_table(hand_scores(), formatted=False).set_index("method")
    assert table.loc["caml", "dice_mean"] == pytest.approx(0.725)
    assert table.loc["caml", "dice_std"] == pytest.approx(0.10606601717798213)  # sd of 0.8, 0.65
    assert table.loc["supervised", "dice_std"] == pytest.approx(0.0)
    assert summary_table(hand_scores()).set_index("method").loc["caml", "dice"] == "0.725 ± 0.106"
    one_seed = summary_table(hand_scores().query("seed == 0")).set_index("method")
    assert one_seed.loc["caml", "dice"] == "0.800"  # no spread to show for a single seed
    assert one_seed.loc["caml", "seeds"] == 1


def test_label_effect_hand_computed():
    rows = []
    # supervised Dice per seed: 5 %: 0.80, 0.82; 10 %: 0.86, 0.88; 20 %: 0.87, 0.85
    for fraction, dice in ((0.05, (0.80, 0.82)), (0.1, (0.86, 0.88)), (0.2, (0.87, 0.85))):
        for seed, value in enumerate(dice):
            for image in range(2):  # two test images with the same score
                rows.append(
                    {
                        "dataset": "fundus",
                        "label_fraction": fraction,
                        "method": "supervised",
                        "seed": seed,
                        "image": image,
                        "dice": value,
                    }
                )
    table, sentences = label_effect(pd.DataFrame(rows))
    spread = 0.02 / 2**0.5  # sd of two values 0.02 apart
    assert table["gain"].tolist() == pytest.approx([0.06, -0.01])
    assert table["spread"].tolist() == pytest.approx([spread, spread])
    assert table["resolved"].tolist() == [True, False]
    assert sentences[0] == (
        "fundus: supervised dice rises by more than the seed spread from 5% to 10% labels "
        "(0.810 -> 0.870, gain +0.060, spread 0.014)."
    )
    assert "does not rise" in sentences[1]
    with pytest.raises(ValueError, match="no runs of method 'caml'"):
        label_effect(pd.DataFrame(rows), method="caml")


def test_paired_differences_hand_computed():
    table = paired_differences(hand_scores()).set_index("method")
    assert list(table.index) == ["caml"]
    assert table.loc["caml", "dice_difference"] == pytest.approx(0.025)  # (0.1 - 0.05) / 2
    assert table.loc["caml", "wins"] == 1 and table.loc["caml", "seeds"] == 2
    one_seed = paired_differences(hand_scores().query("seed == 0")).set_index("method")
    assert one_seed.loc["caml", "seeds"] == 1 and np.isnan(one_seed.loc["caml", "std"])
    with pytest.raises(ValueError, match="baseline 'mean_teacher'"):
        paired_differences(hand_scores(), baseline="mean_teacher")
    with pytest.raises(ValueError, match="lack the column"):
        summary_table(hand_scores().drop(columns="seed"))


def raised(scores: pd.DataFrame, method: str, by: float) -> pd.DataFrame:
    """The scores with ``method``'s Dice raised by ``by`` on every image."""
    return scores.assign(dice=scores.dice + np.where(scores.method == method, by, 0.0))


def test_method_against_supervised_at_two_budgets():
    final = hand_scores()  # caml - supervised per seed: +0.1, -0.05 -> +0.025 ± 0.106, within
    half = raised(final, "caml", 0.1)  # +0.2, +0.05 -> +0.125 ± 0.106, beyond
    (line,) = describe_differences(final, half)[:1]
    assert line.startswith(
        "Not settled at this budget: fundus, 10% labels: caml beats supervised on dice by 0.025 "
        "(better in 1 of 2 seeds) — beyond the spread at one budget only"
    )
    settled = describe_differences(half, raised(final, "caml", 0.2))  # +0.225 ± 0.106 at half
    assert settled[0].startswith(
        "Finding: fundus, 10% labels: caml beats supervised on dice by 0.125"
    )
    assert settled[1].startswith("1 of 1 comparisons hold at both budgets")
    table = paired_differences(final, half=half).set_index("method")
    assert table.loc["caml", "half_difference"] == pytest.approx(0.125)
    assert table.loc["caml", "half_std"] == pytest.approx(np.std([0.2, 0.05], ddof=1))
    assert not table.loc["caml", "settled"]
    with pytest.raises(ValueError, match="other runs than the final ones"):
        describe_differences(final, half.query("seed == 0"))


def test_summary_table_and_label_effect_with_half():
    half = raised(hand_scores(), "caml", 0.1)
    table = summary_table(hand_scores(), ["dice"], half=half).set_index("method")
    assert list(table.columns) == ["dataset", "label_fraction", "dice", "dice (half)", "seeds"]
    assert table.loc["caml", "dice (half)"] == "0.825 ± 0.106"
    fractions = pd.concat(
        [hand_scores(), raised(hand_scores(), "supervised", 0.2).assign(label_fraction=0.2)]
    )
    # supervised gains +0.2 from 10 % to 20 % at the final budget (spread 0), loses 0.05 at half
    at_20 = np.where(fractions.label_fraction == 0.2, 0.25, 0.0)
    effect, sentences = label_effect(fractions, half=fractions.assign(dice=fractions.dice - at_20))
    assert effect["settled"].tolist() == [False]
    assert sentences[0].startswith("Not settled at this budget: fundus: supervised dice rises")
    assert "the sign flips between the budgets" in sentences[0]


def test_seeds_by_fraction_gives_the_middle_fraction_all_seeds():
    assert seeds_by_fraction([0.2, 0.05, 0.1], [0, 1, 2], [0]) == {
        0.2: [0],
        0.05: [0],
        0.1: [0, 1, 2],
    }
    assert seeds_by_fraction([0.1, 0.2], [3, 4], None) == {0.1: [3, 4], 0.2: [3, 4]}
    with pytest.raises(ValueError, match="empty"):
        seeds_by_fraction([], [0])


def test_comparison_configs_take_seeds_per_fraction(tmp_path):
    root = make_synthetic(tmp_path / "derm", kind="derm", n=30, size=32, seed=0, progress=False)
    common = dict(methods=["supervised"], steps=4, image_size=16, width=4)
    configs = comparison_configs(
        {"derm": root},
        label_fractions=[0.1, 0.2],
        seeds={0.1: [0, 1, 2], 0.2: [5]},
        **common,
    )
    assert [(c.label_fraction, c.seed) for c in configs] == [
        (0.1, 0),
        (0.1, 1),
        (0.1, 2),
        (0.2, 5),
    ]
    with pytest.raises(ValueError, match=r"no seeds for the label fraction\(s\) \[0.2\]"):
        comparison_configs({"derm": root}, label_fractions=[0.1, 0.2], seeds={0.1: [0]}, **common)
    # a misspelt field is named, as the docstring promises (a bare TypeError before)
    with pytest.raises(ValueError, match=r"SemiConfig has no field\(s\) \['widht'\]"):
        comparison_configs({"derm": root}, [0.1], ["supervised"], [0], steps=4, widht=4)
    per_method = comparison_configs(
        {"derm": root},
        label_fractions=[0.1],
        seeds=[0],
        methods=["supervised", "caml"],
        steps=4,
        method_options={"caml": {"feature_dropout": 0.0}},
    )
    assert [(c.method, c.method_options) for c in per_method] == [
        ("supervised", {}),
        ("caml", {"feature_dropout": 0.0}),
    ]


def test_comparison_runs_once_then_reads_the_cache(tmp_path):
    torch.set_num_threads(1)
    root = make_synthetic(tmp_path / "fundus", kind="fundus", n=30, size=32, seed=0, progress=False)
    configs = comparison_configs(
        {"fundus": root},
        label_fractions=[0.2],
        methods=["supervised", "burl"],
        seeds=[0],
        steps=4,
        image_size=16,
        width=4,
        labeled_batch_size=2,
        unlabeled_batch_size=2,
    )
    # 21 train images, 20 % -> 4 labeled -> 2 steps per epoch -> 4 steps in 2 epochs
    assert [c.epochs for c in configs] == [2, 2]
    cache = tmp_path / "cache"
    scores = run_comparison(configs, cache_dir=cache, progress=False)
    assert set(scores["method"]) == {"supervised", "burl"}
    assert len(scores) == 2 * 6  # two runs x six test images
    assert {"dice", "iou", "hd95", "assd", "dice_1", "dice_2"} <= set(scores.columns)
    again = run_comparison(configs, cache_dir=cache, progress=False)
    pd.testing.assert_frame_equal(scores, again)

    train = load_dataset("fundus", root, split="train", size=16)
    methods = {c.method: get_or_train_semi(c, cache_dir=cache).method for c in configs}
    rows = trust_cases(methods, train, index=0)
    assert [r["title"] for r in rows] == ["supervised", "burl"]
    assert rows[0]["trusted"] == {} and set(rows[1]["trusted"]) == {
        "teacher confidence",
        "pseudo-label region",
    }
    assert rows[1]["uncertainty"].shape == (16, 16)
    figure = plots.trust_gallery(rows, num_classes=3)
    assert len(figure.axes) >= 2 * 6
    curves = plots.label_fraction_curves(run_means(scores))
    assert len(curves.axes) == 2  # the Dice, and burl's difference to supervised under it
    plt.close("all")


def test_describe_differences_of_a_tie_names_no_margin():
    scores = hand_scores()
    supervised = scores[scores.method == "supervised"]
    tied = pd.concat([supervised, supervised.assign(method="caml")], ignore_index=True)
    (line, _) = describe_differences(tied, tied)
    assert "caml ties with supervised on dice (better in 0 of 2 seeds)" in line
