"""Which training recipe reaches the plateau in the fewest CPU-minutes: a sweep, not a test.

Run ``python -m umlkit.benchmarks.recipe --lr 3e-3 6e-3 --epochs 20 --seeds 0 1``. Each recipe
(learning rate x batch size x epoch budget) trains the official UML network on the default
profile's synthetic derm data at the settings notebook 04 compares with (32 px, width 8, mixer
width 8, dihedral augmentation), one process of one thread per run, ``--workers`` runs at a time.
It prints, per recipe and seed, the validation score ``(ACC + Dice) / 2`` after each epoch, the
best epoch, the epoch at which the run's smoothed curve came within ``--tolerance`` of its best
(where a plateau rule would have called it converged), and the CPU-minutes spent until then.
Every epoch's row goes to ``<out>/recipe.csv`` so that a sweep can be read again later.

The numbers that chose the reference recipe are in ``docs/decisions.md``.
"""

from __future__ import annotations

import argparse
import itertools
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pandas as pd
import torch

from umlkit.profiles import get_settings
from umlkit.runtime import project_root


def _run(recipe: dict, seed: int, data_root: str) -> pd.DataFrame:
    """Train one recipe and seed in memory; its history with the recipe's columns added."""
    torch.set_num_threads(1)
    from umlkit.train import TrainConfig, train

    settings = get_settings("default")
    train_settings = {**settings["train"], **settings["compare"]}
    config = TrainConfig(
        model="uml",
        model_options=dict(train_settings["uml_options"]),
        width=int(train_settings["width"]),
        dataset="isic2017",
        data_root=data_root,
        image_size=int(train_settings["image_size"]),
        epochs=int(recipe["epochs"]),
        batch_size=int(recipe["batch_size"]),
        lr=float(recipe["lr"]),
        augment="dihedral",
        seed=seed,
    )
    history = train(config, progress=False, log=None).history
    for key, value in recipe.items():
        history[key] = value
    history["seed"] = seed
    return history


def plateau_epoch(scores: pd.Series, tolerance: float, window: int = 3) -> int:
    """The first epoch whose running mean over ``window`` epochs comes within ``tolerance`` of
    the best running mean of the run: where a plateau rule would have called it converged."""
    smoothed = scores.rolling(window, min_periods=1).mean().to_numpy()
    return int((smoothed >= smoothed.max() - tolerance).argmax())


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lr", type=float, nargs="+", default=[3e-3])
    parser.add_argument("--batch-size", type=int, nargs="+", default=[32])
    parser.add_argument("--epochs", type=int, nargs="+", default=[20])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tolerance", type=float, default=0.005)
    parser.add_argument("--out", type=Path, default=project_root() / "build" / "recipe")
    args = parser.parse_args(argv)
    data_root = project_root() / "data" / "synthetic" / "derm-default"
    if not data_root.is_dir():
        raise SystemExit(f"{data_root} not found: run notebook 01 (make figures) first")
    recipes = [
        {"lr": lr, "batch_size": batch, "epochs": epochs}
        for lr, batch, epochs in itertools.product(args.lr, args.batch_size, args.epochs)
    ]
    jobs = [(recipe, seed) for recipe in recipes for seed in args.seeds]
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_run, recipe, seed, str(data_root)) for recipe, seed in jobs]
        table = pd.concat([future.result() for future in futures], ignore_index=True)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "recipe.csv"
    if path.exists():  # a sweep adds to the earlier ones; a repeated recipe replaces its rows
        old = pd.read_csv(path)
        keys = ["lr", "batch_size", "epochs", "seed"]
        new_keys = set(map(tuple, table[keys].to_numpy().tolist()))
        old = old[[tuple(row) not in new_keys for row in old[keys].to_numpy().tolist()]]
        table = pd.concat([old, table], ignore_index=True)
    table.to_csv(path, index=False)
    rows = []
    for (lr, batch, epochs, seed), run in table.groupby(["lr", "batch_size", "epochs", "seed"]):
        run = run.sort_values("epoch")
        scores = run["val_score"].reset_index(drop=True)
        reached = plateau_epoch(scores, args.tolerance)
        rows.append(
            {
                "lr": lr,
                "batch": batch,
                "epochs": epochs,
                "seed": seed,
                "curve": " ".join(f"{s:.3f}" for s in scores),
                "best epoch": int(scores.idxmax()) + 1,
                "best": scores.max(),
                "plateau epoch": reached + 1,
                "CPU-min to plateau": run["cpu_seconds"].iloc[: reached + 1].sum() / 60,
                "CPU-min total": run["cpu_seconds"].sum() / 60,
            }
        )
    summary = pd.DataFrame(rows)
    with pd.option_context("display.width", 250, "display.max_colwidth", 200):
        print(summary.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    return summary


if __name__ == "__main__":
    main()
