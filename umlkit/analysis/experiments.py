"""The experiment set-up every notebook 03-08 shares: its dataset, its models, their evaluation.

Models always come from :func:`umlkit.train.get_or_train` with the profile's ``train`` settings
(:func:`train_config`), so a model trained by one notebook is loaded, not retrained, by the next:
notebook 04 trains the ablation set over the profile's seeds, notebooks 05-08 reuse seed 0.

* data: :class:`DataSpec`, :func:`prepare_data` (the synthetic set of the profile, generated if
  missing, or a real one), :func:`prepare_ood` (the matching out-of-distribution set)
* models: :data:`VARIANTS` (the ablation set), :data:`COMPARED` (the models of notebooks 05-08),
  :func:`train_config`, :func:`train_variants`
* convergence: :func:`convergence_table`, :func:`describe_convergence` (how long each run
  trained, whether it plateaued, which ones were still improving)
* evaluation: :func:`evaluate_models` (:func:`umlkit.evaluate.evaluate` plus each model's image
  uncertainty, :func:`umlkit.analysis.uncertainty_maps.image_uncertainty`)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from umlkit.analysis.uncertainty_maps import image_uncertainty
from umlkit.data import base as data_base
from umlkit.evaluate import Evaluation, evaluate
from umlkit.train import TrainConfig, TrainResult, get_or_train

# ------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class DataSpec:
    """Where a notebook's dataset lives and how to read it."""

    loader_kind: str  # kind for umlkit.data.load_dataset: isic2017, refuge, ispy1, folder
    root: Path  # the dataset folder
    synthetic: str | None  # "derm" / "fundus" for umlkit's synthetic sets, None for real data
    image_size: int  # images and masks are resized to image_size x image_size

    def load(self, split: str = "test") -> Dataset:
        """The split ``"train"``, ``"val"`` or ``"test"`` at :attr:`image_size` (stored decoded
        in ``data/cache/arrays`` after the first load, so later notebooks read one file)."""
        from umlkit.data import load_dataset

        return load_dataset(
            self.loader_kind,
            self.root,
            split=split,
            size=self.image_size,
            cache=data_base.default_array_cache_dir(),
        )


def prepare_data(
    ctx: Any, kind: str = "derm", data_root: str | Path | None = None, seed: int = 0
) -> DataSpec:
    """The dataset of a notebook: the profile's synthetic set (written if missing) or a real one.

    Args:
        ctx: the notebook context of :func:`umlkit.profiles.setup_notebook`.
        kind: a synthetic kind (``"derm"``, ``"fundus"``) or a loader kind for real data
            (``"isic2017"``, ``"refuge"``, ``"ispy1"``, ``"folder"``).
        data_root: ``None``: ``data/synthetic/<kind>-<folder>`` (``folder``: the profile's
            ``data["folder"]``, else its name; the reference profile reads the default's),
            generated with the profile's
            ``data`` sizes exactly as notebook 01 does; else the dataset folder (relative paths are
            read from the project root).
        seed: the synthetic dataset's seed (notebook 01's default is 0).

    Returns:
        A :class:`DataSpec`.

    Raises:
        ValueError: ``kind`` is ``"ood"`` (not a training set) or unknown, or no ``data_root``
            for a real kind.
    """
    from umlkit.data import LOADER_KIND, make_synthetic
    from umlkit.data.loaders import KINDS

    image_size = int(ctx.settings["train"]["image_size"])
    if kind == "ood":
        raise ValueError("kind='ood' is the out-of-distribution test set, not a training set")
    if kind in LOADER_KIND:
        root = ctx.synthetic_root(kind) if data_root is None else _resolve(ctx, data_root)
        if data_root is None:
            data = ctx.settings["data"]
            make_synthetic(
                root,
                kind=kind,
                n=data["n"],
                size=data["size"],
                seed=seed,
                progress=False,
                workers=data.get("workers", 1),
            )
        return DataSpec(LOADER_KIND[kind], Path(root), kind, image_size)
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}: choose derm, fundus or one of {KINDS}")
    if data_root is None:
        raise ValueError(f"kind={kind!r} is real data: pass its folder as data_root")
    return DataSpec(kind, _resolve(ctx, data_root), None, image_size)


def prepare_ood(ctx: Any, data: DataSpec, seed: int = 0) -> DataSpec | None:
    """The synthetic out-of-distribution set of the profile (written if missing), or ``None``.

    Only for synthetic in-distribution data: with a real dataset there is no matching OOD set.
    Its size is the profile's ``data["n_ood"]``; all of it is the ``test`` split.
    """
    from umlkit.data import make_synthetic

    if data.synthetic is None:
        return None
    sizes = ctx.settings["data"]
    root = ctx.synthetic_root("ood")
    make_synthetic(
        root,
        kind="ood",
        n=sizes["n_ood"],
        size=sizes["size"],
        seed=seed,
        progress=False,
        workers=sizes.get("workers", 1),
    )
    return DataSpec("isic2017", Path(root), "ood", data.image_size)


def _resolve(ctx: Any, path: str | Path) -> Path:
    path = Path(path)
    return path if path.is_absolute() else Path(ctx.root) / path


# ----------------------------------------------------------------------------------------- models

#: The ablation set of notebook 04: display name -> build_model name and its options. "UML" is
#: the official structure; the "UML +" row is umlkit's option (docs/fidelity.md), measured
#: against it.
VARIANTS: dict[str, dict[str, Any]] = {
    "UML": {"model": "uml", "options": {}},
    "UML w/o navigator": {"model": "uml", "options": {"navigator": False}},
    "UML w/o instructor": {"model": "uml", "options": {"instructor": False}},
    "UML softmax head": {"model": "uml", "options": {"head": "softmax"}},
    "UML + navigated output": {"model": "uml", "options": {"navigate_final": True}},
    "multitask": {"model": "multitask", "options": {}},
    "segmentation only": {"model": "unet", "options": {}},
    "classification only": {"model": "classifier", "options": {}},
}

#: The models notebooks 05-08 compare (seed 0 of the ablation set).
COMPARED = ("UML", "UML softmax head", "multitask", "segmentation only", "classification only")

#: Loader kinds whose labels do not survive a 90-degree turn: :func:`train_config` uses flips only.
#: ``folder`` holds a user's own images, whose orientation may matter (an X-ray's left and right).
ROTATION_SENSITIVE = frozenset({"refuge", "folder"})


def train_config(
    settings: Mapping[str, Any], data: DataSpec, variant: str = "UML", seed: int = 0
) -> TrainConfig:
    """The training configuration of ``variant`` under a profile's ``train`` settings.

    The settings' ``lr`` (if present) becomes :attr:`TrainConfig.lr`, and ``augment`` (default
    ``"none"``) becomes :attr:`TrainConfig.augment`, except that
    ``"dihedral"`` falls back to ``"flip"`` on the loader kinds of :data:`ROTATION_SENSITIVE`, whose
    labels a quarter turn can change (a vertical cup-to-disc ratio becomes a horizontal one).
    ``uml_options`` (if present) are model options added to every UML variant (``"uml"``,
    ``"uml2024"``), e.g. a profile's smaller ``mixer_width``; the baselines do not have them.
    ``patience`` (if present) turns on early stopping (:mod:`umlkit.convergence`): ``epochs`` is
    then the maximum.

    Every notebook builds its configurations here, so the same variant and seed give the same
    :func:`umlkit.train.config_hash` and :func:`~umlkit.train.get_or_train` finds the cached model.

    Args:
        settings: ``ctx.settings`` of the notebook (its ``"train"`` entry is used).
        data: the dataset (:func:`prepare_data`).
        variant: a key of :data:`VARIANTS`.
        seed: the training seed.

    Raises:
        ValueError: an unknown variant.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {list(VARIANTS)}")
    train = settings["train"]
    spec = VARIANTS[variant]
    augment = str(train.get("augment", "none"))
    if augment == "dihedral" and data.loader_kind in ROTATION_SENSITIVE:
        augment = "flip"
    options = dict(spec["options"])
    if spec["model"] in ("uml", "uml2024"):
        options = {**train.get("uml_options", {}), **options}
    return TrainConfig(
        model=spec["model"],
        model_options=options,
        width=int(train["width"]),
        dataset=data.loader_kind,
        data_root=str(data.root),
        image_size=int(train["image_size"]),
        epochs=int(train["epochs"]),
        batch_size=int(train["batch_size"]),
        augment=augment,
        seed=int(seed),
        # TrainConfig's default rate where the profile names none
        lr=float(train.get("lr", TrainConfig.lr)),
        # early stopping where a profile asks for it (none does today); None: all epochs
        patience=train.get("patience"),
        array_cache=str(data_base.default_array_cache_dir()),
    )


def train_variants(
    settings: Mapping[str, Any],
    data: DataSpec,
    variants: Iterable[str] = tuple(VARIANTS),
    seeds: Iterable[int] = (0,),
    progress: bool = True,
    cache_dir: str | Path | None = None,
    workers: int = 1,
) -> dict[tuple[str, int], TrainResult]:
    """Train (or load from the cache) every variant for every seed.

    Args:
        settings: the notebook's ``ctx.settings``.
        data: the dataset.
        variants: keys of :data:`VARIANTS`.
        seeds: training seeds (notebook 04: ``settings["train"]["seeds"]``).
        progress: one bar over the runs (the runs themselves train silently).
        cache_dir: the model cache (default: ``data/cache/models`` of the project).
        workers: parallel processes for the runs (each with one torch thread). On a CPU, small
            networks use two processes far better than two threads of one process; on a GPU
            keep 1. A run's numbers can differ in the last digits between thread counts, but not
            between repetitions with the same count.

    Returns:
        ``(variant, seed) -> TrainResult``; ``result.from_cache`` says whether it was loaded
        rather than trained by this call.

    Raises:
        ValueError: ``workers < 1`` or an unknown variant.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    configs = {
        (variant, int(seed)): train_config(settings, data, variant, seed)
        for variant in variants
        for seed in seeds
    }
    trained_here: dict[tuple[str, int], bool] = {}
    if workers > 1 and len(configs) > 1:
        # "spawn": forking a process that already runs torch threads can deadlock.
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = {
                key: pool.submit(_train_in_worker, config, cache_dir)
                for key, config in configs.items()
            }
            bar = tqdm(futures.items(), desc="models", unit="model", disable=not progress)
            for key, future in bar:
                bar.set_postfix_str(f"{key[0]}, seed {key[1]}")
                trained_here[key] = future.result()
    results = {}
    bar = tqdm(
        configs.items(), desc="models", unit="model", disable=not progress or bool(trained_here)
    )
    for key, config in bar:
        bar.set_postfix_str(f"{key[0]}, seed {key[1]}")
        result = get_or_train(config, cache_dir=cache_dir, progress=False)
        if key in trained_here:
            result.from_cache = not trained_here[key]
        results[key] = result
    return results


def _train_in_worker(config: TrainConfig, cache_dir: str | Path | None) -> bool:
    """Train ``config`` into the cache in a worker process; True if it was trained, not loaded."""
    # One thread per worker process: the processes, not the threads, share the cores.
    torch.set_num_threads(1)
    return not get_or_train(config, cache_dir=cache_dir, progress=False).from_cache


def evaluate_models(
    models: Mapping[Any, torch.nn.Module],
    dataset: Dataset,
    keep_maps: int | None = None,
    surface_metrics: bool = True,
    device: str | None = None,
) -> dict[Any, Evaluation]:
    """:func:`umlkit.evaluate.evaluate` for each model, with an ``uncertainty`` column added.

    The column is :func:`image_uncertainty` (evidential u = K/S, or the normalised entropy of
    softmax probabilities); its kind is in ``evaluation.table.attrs["uncertainty_kind"]``.
    """
    evaluations = {}
    for name, model in models.items():
        evaluation = evaluate(
            model, dataset, device=device, keep_maps=keep_maps, surface_metrics=surface_metrics
        )
        uncertainty, kind = image_uncertainty(evaluation)
        evaluation.table["uncertainty"] = uncertainty
        evaluation.table.attrs["uncertainty_kind"] = kind
        evaluations[name] = evaluation
    return evaluations


def convergence_table(results: Mapping[tuple[str, int], TrainResult]) -> pd.DataFrame:
    """One row per run: how long it trained and whether it converged (:mod:`umlkit.convergence`).

    Columns: ``variant``, ``seed``, ``epochs`` (trained), ``max epochs``, ``best epoch``
    (1-based), ``half-budget epoch`` (1-based), ``plateaued``, ``stopped early`` and
    ``still improving`` (its best epoch is its last: the run ended while it was improving).
    """
    rows = []
    for (variant, seed), result in results.items():
        report = result.convergence
        rows.append(
            {
                "variant": variant,
                "seed": seed,
                "epochs": len(result.history),
                "max epochs": result.config.epochs,
                "best epoch": result.best_epoch + 1,
                "half-budget epoch": result.half_epoch + 1 if result.half_epoch >= 0 else None,
                "plateaued": bool(report is not None and report.plateaued),
                "stopped early": bool(report is not None and report.stopped_early),
                "still improving": bool(report is not None and report.still_improving),
            }
        )
    return pd.DataFrame(rows)


def describe_convergence(table: pd.DataFrame) -> list[str]:
    """Sentences on :func:`convergence_table`: how many runs plateaued, and every run that was
    still improving when it ended (named, because its numbers are a stopping time)."""
    if table.empty:
        return ["no runs"]
    lines = [
        f"{int(table['plateaued'].sum())} of {len(table)} runs plateaued by the rule "
        f"({int(table['stopped early'].sum())} stopped early); "
        f"{int(table['still improving'].sum())} ended with their best epoch as their last."
    ]
    for row in table[table["still improving"]].itertuples(index=False):
        lines.append(
            f"  still improving: {row.variant}, seed {row.seed} (best epoch {row.epochs} of "
            f"{row.epochs} trained): more training would likely change its numbers"
        )
    return lines
