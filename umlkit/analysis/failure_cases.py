"""The experiments behind notebooks 04-08: ablations, calibration, uncertainty, robustness, failures.

The notebooks narrate, set parameters and plot; what they compute lives here, so it is tested and
every notebook computes it the same way. Models always come from
:func:`umlkit.train.get_or_train` with the profile's ``train`` settings (:func:`train_config`), so
a model trained by one notebook is loaded, not retrained, by the next: notebook 04 trains the
ablation set over the profile's seeds, notebooks 05-08 reuse seed 0.

Sections:

* data: :func:`prepare_data` (the synthetic set of the profile, generated if missing, or a real one)
* models: :data:`VARIANTS`, :func:`train_config`, :func:`train_variants`, :func:`evaluate_models`
* ablation tables: :func:`runs_table`, :func:`summarise_runs`, :func:`compare_variants`,
  :func:`paired_differences`, :func:`describe_comparison`
* calibration: :func:`reliability_panels`, :func:`calibration_table`, :func:`pixel_calibration`,
  :func:`pixel_calibration_study`, :func:`truth_calibration`
* uncertainty maps: :func:`image_uncertainty`, :func:`pixel_uncertainty_maps`,
  :func:`with_entropy_uncertainty`, :func:`mean_pixel_uncertainty`, :func:`map_cases`,
  :func:`pick_spread`,
  :func:`factor_correlations`, :func:`pixel_error_detection`
* robustness and OOD: :func:`robustness_grid`, :func:`robustness_sweep`,
  :func:`robustness_summary`, :func:`describe_robustness`, :func:`ood_scores`
* failure cases: :func:`add_failure_columns`, :func:`select_cases`, :func:`risk_coverage_curves`,
  :func:`failure_factors`, :func:`factor_regression`, :func:`describe_effects`, :func:`flag_rates`

Uncertainty scores, one per model: evidential heads give u = K / S; softmax heads have no such
mass, and umlkit scores them by the normalised entropy H(p) / log K of their probabilities (0 for a
one-hot prediction, 1 for a uniform one). Both lie in [0, 1] but are different quantities, so
compare how each *ranks* images (AUROC, risk-coverage), not their raw values across models.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from umlkit import metrics
from umlkit.data import base as data_base
from umlkit.evaluate import Evaluation, evaluate
from umlkit.evidential import dirichlet_from_alpha
from umlkit.semi.base import normalized_entropy
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
        data_root: ``None``: ``data/synthetic/<kind>-<profile>``, generated with the profile's
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

#: Summary metrics of the ablation table: evaluation summary key -> display name.
ABLATION_METRICS = {
    "accuracy": "ACC",
    "f1": "F1",
    "auc": "AUC",
    "dice": "Dice",
    "hd95": "HD95",
    "ece": "ECE",
}
#: Display names of the metrics where lower is better.
LOWER_IS_BETTER = ("HD95", "ECE")


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


# -------------------------------------------------------------------------------- ablation tables


def runs_table(
    evaluations: Mapping[tuple[str, int], Evaluation],
    metric_names: Mapping[str, str] = ABLATION_METRICS,
) -> pd.DataFrame:
    """One row per (variant, seed) with the summary metrics under their display names.

    A metric the variant cannot have (Dice of the classifier, accuracy of the U-Net) is NaN.
    """
    rows = []
    for (variant, seed), evaluation in evaluations.items():
        row = {"variant": variant, "seed": seed}
        row.update(
            {name: evaluation.summary.get(key, np.nan) for key, name in metric_names.items()}
        )
        rows.append(row)
    return pd.DataFrame(rows)


def summarise_runs(
    runs: pd.DataFrame, metric_columns: Sequence[str], by: str = "variant"
) -> pd.DataFrame:
    """Mean and standard deviation over seeds per variant.

    Returns:
        Index: the variants (in order of appearance); columns: ``(metric, "mean")``,
        ``(metric, "std")`` (sample std, ddof = 1; NaN for a single seed) and ``("seeds", "n")``.
    """
    _require(runs, (by, *metric_columns), "runs")
    order = list(dict.fromkeys(runs[by]))
    grouped = runs.groupby(by, sort=False)[list(metric_columns)]
    summary = pd.concat({"mean": grouped.mean(), "std": grouped.std(ddof=1)}, axis=1)
    summary = summary.swaplevel(axis=1)[[(m, s) for m in metric_columns for s in ("mean", "std")]]
    summary[("seeds", "n")] = runs.groupby(by, sort=False).size()
    return summary.loc[order]


def format_summary(summary: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """The summary of :func:`summarise_runs` as ``"mean ± std"`` strings ("—" where undefined)."""
    metric_columns = [m for m in summary.columns.get_level_values(0).unique() if m != "seeds"]
    table = pd.DataFrame(index=summary.index)
    for metric in metric_columns:
        mean, std = summary[(metric, "mean")], summary[(metric, "std")]
        table[metric] = [
            "—"
            if np.isnan(m)
            else (f"{m:.{digits}f}" if np.isnan(s) else f"{m:.{digits}f} ± {s:.{digits}f}")
            for m, s in zip(mean, std, strict=True)
        ]
    table["seeds"] = summary[("seeds", "n")]
    return table


def compare_variants(
    runs: pd.DataFrame,
    metric_columns: Sequence[str],
    reference: str = "UML",
    lower_is_better: Sequence[str] = LOWER_IS_BETTER,
    by: str = "variant",
) -> pd.DataFrame:
    """Per metric: which variant is best, where the reference ranks, and whether the gap is noise.

    The gap between the reference and the best other variant counts as *within seed noise* when
    it is smaller than the larger of their two standard deviations over seeds (undecidable with a
    single seed, then reported as NaN).

    Returns:
        One row per metric: ``metric``, ``direction`` ("higher"/"lower" is better), ``best``
        (variant), ``best_mean``, ``reference_mean``, ``reference_rank`` (1 = best, among variants
        that have the metric), ``n_variants``, ``runner_up`` (the best variant other than the
        reference), ``gap`` (reference minus runner-up, signed so that > 0 means the reference is
        better) and ``within_noise`` (bool or NaN).

    Raises:
        ValueError: the reference is not among the variants, or a column is missing.
    """
    _require(runs, (by, *metric_columns), "runs")
    if reference not in set(runs[by]):
        raise ValueError(
            f"reference variant {reference!r} is not in the runs: {sorted(set(runs[by]))}"
        )
    summary = summarise_runs(runs, metric_columns, by)
    rows = []
    for metric in metric_columns:
        mean = summary[(metric, "mean")].dropna()
        std = summary[(metric, "std")]
        if reference not in mean.index:
            continue
        lower = metric in lower_is_better
        ordered = mean.sort_values(ascending=lower, kind="stable")
        others = ordered.drop(reference)
        runner_up = others.index[0] if len(others) else None
        gap = np.nan
        within_noise = np.nan
        if runner_up is not None:
            gap = (
                (mean[runner_up] - mean[reference])
                if lower
                else (mean[reference] - mean[runner_up])
            )
            noise = (
                np.nanmax([std[reference], std[runner_up]])
                if not (np.isnan(std[reference]) and np.isnan(std[runner_up]))
                else np.nan
            )
            within_noise = bool(abs(gap) < noise) if not np.isnan(noise) else np.nan
        rows.append(
            {
                "metric": metric,
                "direction": "lower" if lower else "higher",
                "best": ordered.index[0],
                "best_mean": float(ordered.iloc[0]),
                "reference_mean": float(mean[reference]),
                # ties share a rank: 1 + the number of variants strictly better
                "reference_rank": 1
                + int(((mean < mean[reference]) if lower else (mean > mean[reference])).sum()),
                "n_variants": int(len(ordered)),
                "runner_up": runner_up,
                "gap": float(gap),
                "within_noise": within_noise,
            }
        )
    return pd.DataFrame(rows)


def paired_differences(
    runs: pd.DataFrame,
    metric_columns: Sequence[str],
    reference: str = "UML",
    lower_is_better: Sequence[str] = LOWER_IS_BETTER,
) -> pd.DataFrame:
    """What each variant loses against the reference, paired by seed.

    For every seed s the difference d_s = reference_s - variant_s is taken (sign flipped for
    lower-is-better metrics, so d > 0 always means "the reference is better"); pairing by seed
    removes the part of the seed-to-seed spread that both runs share (the same data order).

    Returns:
        Index: the variants other than the reference; columns ``(metric, "mean")``,
        ``(metric, "std")`` of d over the seeds both have (NaN where a variant lacks the metric).
    """
    _require(runs, ("variant", "seed", *metric_columns), "runs")
    if reference not in set(runs["variant"]):
        raise ValueError(f"reference variant {reference!r} is not in the runs")
    by_seed = runs.set_index(["variant", "seed"])
    rows = {}
    for variant in dict.fromkeys(runs["variant"]):
        if variant == reference:
            continue
        row = {}
        for metric in metric_columns:
            sign = -1.0 if metric in lower_is_better else 1.0
            difference = sign * (by_seed.loc[reference, metric] - by_seed.loc[variant, metric])
            row[(metric, "mean")] = difference.mean()
            row[(metric, "std")] = difference.std(ddof=1)
        rows[variant] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def describe_options(differences: pd.DataFrame, options: Sequence[str]) -> list[str]:
    """One sentence per umlkit option: where it beats the official structure, paired by seed.

    Reads :func:`paired_differences` (``d = official - option``, positive when the official
    structure is better). An option *helps* on a metric when the mean of ``-d`` is positive and
    larger than the standard deviation of ``d`` over the seeds, *hurts* when ``d`` is, and is
    otherwise within the noise. Nothing in the sentences is written by hand.
    """
    sentences = []
    metrics = list(dict.fromkeys(metric for metric, _ in differences.columns))
    for option in options:
        if option not in differences.index:
            continue
        helps, hurts = [], []
        for metric in metrics:
            mean, std = (
                differences.loc[option, (metric, "mean")],
                differences.loc[option, (metric, "std")],
            )
            if pd.isna(mean) or pd.isna(std):
                continue
            if -mean > std:
                helps.append(f"{metric} ({-mean:+.3f})")
            elif mean > std:
                hurts.append(f"{metric} ({-mean:+.3f})")
        verdict = (
            f"helps on {', '.join(helps)}" if helps else "helps on no metric beyond the spread"
        )
        harm = f"; hurts {', '.join(hurts)}" if hurts else ""
        sentences.append(f"{option} against the official UML: {verdict}{harm}.")
    return sentences


def describe_comparison(comparison: pd.DataFrame, reference: str = "UML") -> list[str]:
    """Sentences that say, from the numbers of :func:`compare_variants`, where the reference wins.

    One sentence per metric, then a closing count; nothing in them is written by hand.
    """
    sentences = []
    for row in comparison.itertuples():
        if row.runner_up is None:
            sentences.append(f"{row.metric}: only {reference} has this metric.")
            continue
        noise = {
            True: " (the gap is within the seed-to-seed spread)",
            False: " (larger than the seed-to-seed spread)",
        }.get(row.within_noise, " (one seed: no spread to judge the gap by)")
        if row.reference_rank == 1 and row.gap == 0:
            sentences.append(
                f"{row.metric} ({row.direction} is better): {reference} ties for best with "
                f"{row.runner_up} at {row.reference_mean:.3f}."
            )
        elif row.reference_rank == 1:
            sentences.append(
                f"{row.metric} ({row.direction} is better): {reference} is best with "
                f"{row.reference_mean:.3f}, ahead of {row.runner_up} by {row.gap:.3f}{noise}."
            )
        else:
            sentences.append(
                f"{row.metric} ({row.direction} is better): {reference} does NOT win — "
                f"{row.best} is best with {row.best_mean:.3f}; {reference} has "
                f"{row.reference_mean:.3f}, rank {row.reference_rank} of {row.n_variants}"
                f"{noise}."
            )
    outright = comparison["gap"] > 0
    clear = outright & comparison["within_noise"].eq(False)
    sentences.append(
        f"{reference} is best on {int(outright.sum())} of {len(comparison)} metrics (ties not "
        f"counted); on {int(clear.sum())} of them by more than the seed-to-seed spread."
    )
    return sentences


# ------------------------------------------------------------------------------------ calibration


def reliability_panels(
    probs: Mapping[str, np.ndarray],
    labels: np.ndarray,
    n_bins: int = 15,
    strategy: str = "uniform",
    mode: str = "top_label",
) -> dict[str, pd.DataFrame]:
    """Reliability tables of several models, keyed by a title that carries their ECE.

    Args:
        probs: model name -> ``(N, K)`` class probabilities (alpha/S or softmax).
        labels: ``(N,)`` true classes.
        n_bins, strategy, mode: as :func:`umlkit.metrics.reliability_bins`.

    Returns:
        ``"<model> (ECE 0.034)" -> reliability table``, the input of
        :func:`umlkit.plots.reliability_diagrams`.
    """
    panels = {}
    for name, p in probs.items():
        ece = metrics.expected_calibration_error(p, labels, n_bins, strategy=strategy, mode=mode)
        panels[f"{name} (ECE {ece:.3f})"] = metrics.reliability_bins(
            p, labels, n_bins, strategy, mode
        )
    return panels


def calibration_table(
    probs: Mapping[str, np.ndarray], labels: np.ndarray, n_bins: int = 15
) -> pd.DataFrame:
    """The calibration metrics of :mod:`umlkit.metrics` side by side, one row per model.

    Columns: ``accuracy``, ``ECE`` (top-label, equal-width bins), ``MCE``, ``aECE`` (equal-mass
    bins), ``average calibration error`` (unweighted over bins), ``ECE positive class`` (binary
    only), ``Brier`` (summed over classes) and ``NLL``.
    """
    rows = {}
    for name, p in probs.items():
        p = np.asarray(p)
        row = {
            "accuracy": metrics.accuracy(p, labels),
            "ECE": metrics.expected_calibration_error(p, labels, n_bins),
            "MCE": metrics.maximum_calibration_error(p, labels, n_bins),
            "aECE": metrics.aece(p, labels, n_bins),
            "average calibration error": metrics.average_calibration_error(p, labels, n_bins),
        }
        if p.shape[1] == 2:
            row["ECE positive class"] = metrics.expected_calibration_error(
                p, labels, n_bins, mode="positive_class"
            )
        row["Brier"] = metrics.brier_score(p, labels)
        row["NLL"] = metrics.negative_log_likelihood(p, labels)
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")


#: Pixel probabilities :func:`pixel_calibration` can read from a model's output.
PIXEL_SOURCES = ("segmentation", "mutual")


def pixel_calibration(
    model: torch.nn.Module,
    dataset: Dataset,
    source: str = "segmentation",
    n_bins: int = 15,
    include_background: bool = True,
    per_class: bool = False,
    batch_size: int = 32,
    device: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Pixel calibration streamed over a dataset (memory independent of the pixel count).

    Args:
        model: a model with a segmentation output.
        dataset: items with ``image`` and ``mask``.
        source: ``"segmentation"``: the final segmentation's softmax (what the prediction is made
            of); ``"mutual"``: the mutual decoder's Dirichlet expectation alpha^m / S (UML only).
        n_bins: equal-width bins.
        include_background: see :class:`umlkit.metrics.PixelCalibration`.
        per_class: also one-vs-rest reliability of every foreground class c: confidence p_c,
            outcome "the pixel is c" (the positive-class diagram of that class).
        batch_size, device: of the forward passes.

    Returns:
        ``{"pooled": result}`` plus ``{"class <c>": result}`` per foreground class when
        ``per_class``; each result is :meth:`umlkit.metrics.PixelCalibration.compute`'s dict
        (``ece_pooled``, ``ece_per_image_mean``, ``bins``, ...).

    Raises:
        ValueError: an unknown source, or a model without that output.
    """
    from umlkit.runtime import pick_device

    if source not in PIXEL_SOURCES:
        raise ValueError(f"source must be one of {PIXEL_SOURCES}, got {source!r}")
    device = pick_device(device)
    pooled = metrics.PixelCalibration(n_bins, include_background=include_background)
    classwise: dict[int, metrics.PixelCalibration] = {}
    was_training = model.training
    model.to(device).eval()
    try:
        with torch.no_grad():
            for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
                output = model(batch["image"].to(device))
                probs = _pixel_probs(output, source)
                mask = batch["mask"].to(device)
                pooled.update(probs, mask)
                if per_class:
                    for c in range(1, probs.shape[1]):
                        one_vs_rest = torch.stack([1 - probs[:, c], probs[:, c]], dim=1)
                        calibration = classwise.setdefault(
                            c, metrics.PixelCalibration(n_bins, mode="positive_class")
                        )
                        calibration.update(one_vs_rest.clamp(0, 1), (mask == c).long())
    finally:
        model.train(was_training)
    results = {"pooled": pooled.compute()}
    results.update({f"class {c}": calibration.compute() for c, calibration in classwise.items()})
    return results


def pixel_calibration_study(
    sources: Mapping[str, tuple[torch.nn.Module, str]],
    dataset: Dataset,
    n_bins: int = 15,
    device: str | None = None,
) -> tuple[dict[str, dict[str, dict[str, Any]]], pd.DataFrame]:
    """:func:`pixel_calibration` of several models, with and without the background pixels.

    Args:
        sources: label -> ``(model, source)`` with source ``"segmentation"`` or ``"mutual"``.
        dataset, n_bins, device: as :func:`pixel_calibration`.

    Returns:
        ``(results, table)``: ``results[label]`` is :func:`pixel_calibration`'s dict (all pixels,
        with the per-class one-vs-rest results); ``table`` one row per label with the pooled and
        per-image-mean ECE of all pixels and of the foreground union (``include_background=False``).
    """
    results, rows = {}, {}
    for label, (model, source) in sources.items():
        everything = pixel_calibration(
            model, dataset, source, n_bins, per_class=True, device=device
        )
        foreground = pixel_calibration(
            model, dataset, source, n_bins, include_background=False, device=device
        )["pooled"]
        results[label] = everything
        rows[label] = {
            "ECE pooled": everything["pooled"]["ece_pooled"],
            "ECE per-image mean": everything["pooled"]["ece_per_image_mean"],
            "ECE pooled, foreground": foreground["ece_pooled"],
            "ECE per-image mean, foreground": foreground["ece_per_image_mean"],
            "pixels": everything["pooled"]["n_pixels"],
            "foreground pixels": foreground["n_pixels"],
        }
    return results, pd.DataFrame.from_dict(rows, orient="index")


def _pixel_probs(output: Any, source: str) -> torch.Tensor:
    if source == "segmentation":
        if output.seg_prob is None:
            raise ValueError("the model has no segmentation output (seg_prob is None)")
        return output.seg_prob.float()
    if output.pixel_alpha is None:
        raise ValueError("source='mutual' needs a UML model (pixel_alpha is None)")
    return dirichlet_from_alpha(output.pixel_alpha.float()).prob


def truth_calibration(
    evaluations: Mapping[str, Evaluation], n_bins: int = 10
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predicted probabilities against the generator's true probabilities ``p_true``.

    On synthetic data the Bayes probability of every image is known, so a model's calibration can
    be measured against the truth instead of against the noisy labels:

    * ``mae_to_truth`` = mean |p - p_true| (0 for the Bayes-optimal model);
    * ``ece_to_truth`` = sum_b (n_b / N) |mean_b p - mean_b p_true| over equal-width bins of p
      (the ECE with the drawn labels replaced by their expectation, so the binning noise of the
      labels drops out);
    * ``brier`` of the model and ``bayes_brier`` of p_true (both positive-class, as
      :func:`umlkit.data.bayes_optimal_scores`), ``excess_brier`` = their difference.

    Args:
        evaluations: model -> evaluation whose table has ``prob`` (positive-class probability),
            ``label`` and ``p_true`` (synthetic metadata) columns.
        n_bins: bins of ``ece_to_truth``.

    Returns:
        ``(frame, scores)``: one row per image and model (``model, id, predicted, p_true,
        label``) and one row of scores per model.

    Raises:
        ValueError: no ``p_true`` column (real data) or NaN in it.
    """
    frames, rows = [], []
    for name, evaluation in evaluations.items():
        table = evaluation.table
        _require(table, ("prob", "label", "p_true"), f"evaluation table of {name!r}")
        if table["p_true"].isna().any() or table["prob"].isna().any():
            raise ValueError(f"{name!r}: p_true or prob has NaN (no class head, or not synthetic)")
        predicted = table["prob"].to_numpy(float)
        truth = table["p_true"].to_numpy(float)
        label = table["label"].to_numpy(int)
        frames.append(
            pd.DataFrame(
                {
                    "model": name,
                    "id": table["id"],
                    "predicted": predicted,
                    "p_true": truth,
                    "label": label,
                }
            )
        )
        edges = np.linspace(0, 1, n_bins + 1)
        index = np.clip(np.searchsorted(edges, predicted, side="right") - 1, 0, n_bins - 1)
        gap = sum(abs(predicted[index == b].sum() - truth[index == b].sum()) for b in range(n_bins))
        brier = float(((predicted - label) ** 2).mean())
        bayes_brier = float(((truth - label) ** 2).mean())
        rows.append(
            {
                "model": name,
                "mae_to_truth": float(np.abs(predicted - truth).mean()),
                "ece_to_truth": float(gap / len(predicted)),
                "brier": brier,
                "bayes_brier": bayes_brier,
                "excess_brier": brier - bayes_brier,
            }
        )
    return pd.concat(frames, ignore_index=True), pd.DataFrame(rows).set_index("model")


# ------------------------------------------------------------------------------ uncertainty maps


def image_uncertainty(evaluation: Evaluation) -> tuple[np.ndarray, str]:
    """Each image's uncertainty: evidential u = K/S, else the normalised entropy of class_prob.

    Returns:
        ``(values, kind)`` with kind ``"evidential"`` or ``"entropy"``; NaN values and kind
        ``"none"`` for a model without a class head.
    """
    table = evaluation.table
    if table["class_uncertainty"].notna().all():
        return table["class_uncertainty"].to_numpy(float), "evidential"
    if evaluation.class_prob is None:
        return np.full(len(table), np.nan), "none"
    probs = torch.as_tensor(evaluation.class_prob, dtype=torch.float64)
    return normalized_entropy(probs, dim=1)[:, 0].numpy(), "entropy"


def pixel_uncertainty_maps(evaluation: Evaluation) -> tuple[np.ndarray, str]:
    """The kept images' pixel uncertainty: UML's U^s = C/S, else the normalised entropy of seg_prob.

    Returns:
        ``(maps (n, H, W), kind)`` with kind ``"evidential"`` or ``"entropy"``.

    Raises:
        ValueError: the evaluation kept no segmentation maps.
    """
    if evaluation.pixel_uncertainty is not None:
        return evaluation.pixel_uncertainty, "evidential"
    if evaluation.seg_prob is None:
        raise ValueError("the evaluation holds no segmentation maps (no seg head, or keep_maps=0)")
    probs = torch.as_tensor(evaluation.seg_prob, dtype=torch.float32)
    return normalized_entropy(probs, dim=1)[:, 0].numpy(), "entropy"


def map_cases(
    evaluation: Evaluation, ids: Sequence[str] | None = None, titles: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Cases for :func:`umlkit.plots.uncertainty_gallery` and the explorer of :mod:`umlkit.widgets`.

    Args:
        evaluation: an evaluation that kept the maps of the wanted images.
        ids: the images (default: every kept image, in order).
        titles: one title per case (default: the id with its Dice and class uncertainty).

    Raises:
        ValueError: an id whose maps were not kept.
    """
    uncertainty, _ = pixel_uncertainty_maps(evaluation)
    position = {image_id: i for i, image_id in enumerate(evaluation.ids)}
    ids = list(evaluation.ids) if ids is None else list(ids)
    missing = [i for i in ids if i not in position]
    if missing:
        raise ValueError(f"no maps kept for {missing[:3]}; evaluate with keep_maps=None")
    table = evaluation.table.set_index("id")
    cases = []
    for k, image_id in enumerate(ids):
        i = position[image_id]
        row = table.loc[image_id]
        default = f"{image_id}\nDice {row['dice']:.2f}, u {row.get('uncertainty', np.nan):.2f}"
        cases.append(
            {
                "id": image_id,
                "image": evaluation.images[i],
                "mask": evaluation.masks[i],
                "prediction": evaluation.pred_masks[i],
                "uncertainty": uncertainty[i],
                "title": default if titles is None else titles[k],
            }
        )
    return cases


def with_entropy_uncertainty(evaluation: Evaluation) -> Evaluation:
    """A view of ``evaluation`` whose pixel uncertainty is the entropy of its segmentation softmax.

    UML has two pixel uncertainties: the mutual decoder's U^s = C/S (what the navigator uses) and
    the normalised entropy of its final segmentation (what a softmax segmenter would report). This
    copy drops U^s so that :func:`pixel_uncertainty_maps` (and everything built on it) scores the
    second; the arrays are shared, not copied.
    """
    return dataclasses.replace(evaluation, pixel_uncertainty=None)


def mean_pixel_uncertainty(evaluation: Evaluation) -> np.ndarray:
    """Each image's mean pixel uncertainty (:func:`pixel_uncertainty_maps`), ``(n,)``."""
    maps, _ = pixel_uncertainty_maps(evaluation)
    return maps.reshape(len(maps), -1).mean(axis=1)


def pick_spread(table: pd.DataFrame, column: str, n: int) -> list[str]:
    """The ids of ``n`` images evenly spread over the ranks of ``column`` (worst to best).

    A gallery of them shows the typical range of a model rather than only its extremes.
    """
    _require(table, ("id", column), "table")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    ordered = table.dropna(subset=[column]).sort_values(column, kind="stable")
    if ordered.empty:
        raise ValueError(f"column {column!r} has no values")
    positions = np.unique(
        np.linspace(0, len(ordered) - 1, min(n, len(ordered))).round().astype(int)
    )
    return ordered["id"].iloc[positions].tolist()


def factor_correlations(
    table: pd.DataFrame, columns: Sequence[str], targets: Sequence[str] = ("uncertainty",)
) -> pd.DataFrame:
    """Spearman rank correlations of each target (e.g. the image uncertainty) with each factor.

    Rank correlation, because the question is monotone ("does uncertainty rise with border
    irregularity?") and neither side need be linear.

    Returns:
        Index: the factor columns; one column per target.
    """
    _require(table, (*columns, *targets), "table")
    correlation = table[list(columns) + list(targets)].corr(method="spearman")
    return correlation.loc[list(columns), list(targets)]


def pixel_error_detection(
    evaluations: Mapping[str, Evaluation], thresholds: np.ndarray | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """How well each model's pixel uncertainty finds its segmentation errors (pooled over images).

    Returns:
        ``(scores, curves)``: ``scores`` one row per model with ``uncertainty_kind``,
        ``error_rate``, ``auroc``, ``auprc`` (:func:`umlkit.metrics.uncertainty_error_auroc` /
        ``_auprc``), ``best_threshold`` and ``best_ueo`` (the maximum of the UEO curve, chosen
        once for the dataset); ``curves`` the UEO curves (``model, threshold, ueo``).
    """
    thresholds = np.linspace(0, 1, 101) if thresholds is None else np.asarray(thresholds)
    rows, curves = [], []
    for name, evaluation in evaluations.items():
        uncertainty, kind = pixel_uncertainty_maps(evaluation)
        error = evaluation.error_maps
        curve = metrics.ueo_curve(uncertainty, error, thresholds)
        best = curve.loc[curve["ueo"].idxmax()]
        rows.append(
            {
                "model": name,
                "uncertainty_kind": kind,
                "error_rate": float(error.mean()),
                "auroc": metrics.uncertainty_error_auroc(uncertainty, error),
                "auprc": metrics.uncertainty_error_auprc(uncertainty, error),
                "best_threshold": float(best["threshold"]),
                "best_ueo": float(best["ueo"]),
            }
        )
        curves.append(curve.assign(model=name))
    return pd.DataFrame(rows).set_index("model"), pd.concat(curves, ignore_index=True)


# ------------------------------------------------------------------------- robustness and OOD

#: The corruptions of notebook 07 (contrast is in umlkit.data too, left out to keep the run short).
ROBUSTNESS_CORRUPTIONS = ("gaussian_noise", "salt_and_pepper", "gaussian_blur")


def robustness_grid(
    profile: str, corruptions: Sequence[str] = ROBUSTNESS_CORRUPTIONS
) -> dict[str, tuple[float, ...]]:
    """Severities per corruption: the full grids of ``umlkit.data.DEFAULT_SEVERITIES``, or for the
    ``smoke`` profile only clean, a middle and the strongest level (fast in CI)."""
    from umlkit.data import DEFAULT_SEVERITIES

    unknown = [c for c in corruptions if c not in DEFAULT_SEVERITIES]
    if unknown:
        raise ValueError(f"unknown corruption(s) {unknown}; choose from {list(DEFAULT_SEVERITIES)}")
    grid = {}
    for name in corruptions:
        levels = DEFAULT_SEVERITIES[name]
        grid[name] = (
            (levels[0], levels[len(levels) // 2], levels[-1])
            if profile == "smoke"
            else tuple(levels)
        )
    return grid


def robustness_sweep(
    models: Mapping[str, torch.nn.Module],
    dataset: Dataset,
    grid: Mapping[str, Sequence[float]],
    seed: int = 0,
    device: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Evaluate every model on corrupted copies of ``dataset``, one per corruption and severity.

    Each image gets its own corruption draw, seeded by ``seed`` and its id
    (:class:`umlkit.data.Corruption` as the dataset transform), so every model sees exactly the same
    corrupted images.

    Returns:
        One row per (corruption, severity, model) with ``accuracy``, ``dice``, ``ece``,
        ``uncertainty`` (mean image uncertainty, :func:`image_uncertainty`) and
        ``pixel_uncertainty`` (mean pixel uncertainty, :func:`pixel_uncertainty_maps`); NaN where
        the model lacks the output.
    """
    from umlkit.data import Corruption

    conditions = [(name, float(level)) for name, levels in grid.items() for level in levels]
    rows = []
    clean = None  # severity 0 is the identity for every corruption: evaluated once
    bar = tqdm(conditions, desc="corruptions", disable=not progress)
    for name, severity in bar:
        bar.set_postfix_str(f"{name} {severity:g}")
        corrupted = copy.copy(dataset)
        corrupted.transform = Corruption(name, severity, seed=seed)
        if severity == 0 and clean is not None:
            evaluations = clean
        else:
            evaluations = evaluate_models(
                models, corrupted, keep_maps=None, surface_metrics=False, device=device
            )
        if severity == 0:
            clean = evaluations
        for model_name, evaluation in evaluations.items():
            summary = evaluation.summary
            try:
                pixel_uncertainty = float(pixel_uncertainty_maps(evaluation)[0].mean())
            except ValueError:
                pixel_uncertainty = np.nan
            rows.append(
                {
                    "corruption": name,
                    "severity": severity,
                    "model": model_name,
                    "accuracy": summary["accuracy"],
                    "dice": summary["dice"],
                    "ece": summary["ece"],
                    "uncertainty": float(np.nanmean(evaluation.table["uncertainty"]))
                    if evaluation.table["uncertainty"].notna().any()
                    else np.nan,
                    "pixel_uncertainty": pixel_uncertainty,
                }
            )
    return pd.DataFrame(rows)


def robustness_summary(
    frame: pd.DataFrame, metric_columns: Sequence[str] = ("accuracy", "dice", "ece")
) -> pd.DataFrame:
    """Per corruption and model: each metric on clean images, at the strongest level, and averaged.

    ``mean`` is the metric averaged over the severity grid (the clean level included), a summary
    of the whole curve; ``drop`` = clean - strongest (for ECE a negative drop is a rise).

    Returns:
        Index ``(corruption, model)``; columns ``(metric, "clean" | "strongest" | "drop" | "mean")``.
    """
    _require(frame, ("corruption", "severity", "model", *metric_columns), "robustness frame")
    rows = {}
    for (corruption, model), group in frame.groupby(["corruption", "model"], sort=False):
        by_level = group.groupby("severity")[list(metric_columns)].mean().sort_index()
        row = {}
        for metric in metric_columns:
            clean, strongest = by_level[metric].iloc[0], by_level[metric].iloc[-1]
            row[(metric, "clean")] = clean
            row[(metric, "strongest")] = strongest
            row[(metric, "drop")] = clean - strongest
            row[(metric, "mean")] = by_level[metric].mean()
        rows[(corruption, model)] = row
    summary = pd.DataFrame.from_dict(rows, orient="index")
    summary.index.names = ["corruption", "model"]
    return summary


def describe_robustness(
    summary: pd.DataFrame,
    metric_columns: Sequence[str] = ("accuracy", "dice"),
    uncertainty_columns: Sequence[str] = (),
) -> list[str]:
    """Sentences, computed from :func:`robustness_summary`, naming the most robust model.

    For each corruption and (higher-is-better) metric: the model with the highest mean over the
    severity grid, and the one whose value drops least from clean to the strongest level. For each
    uncertainty column: how much it rises from clean to the strongest level per model (a model
    whose uncertainty does not rise does not notice the corruption).
    """
    sentences = []
    for corruption, table in summary.groupby(level="corruption", sort=False):
        table = table.droplevel("corruption")
        for metric in metric_columns:
            mean = table[(metric, "mean")].dropna()
            drop = table[(metric, "drop")].dropna()
            if mean.empty:
                continue
            sentences.append(
                f"{corruption}, {metric}: best over the grid {mean.idxmax()} "
                f"({mean.max():.3f} on average); smallest drop {drop.idxmin()} "
                f"({drop.min():+.3f} from clean to the strongest level, "
                f"largest {drop.idxmax()} {drop.max():+.3f})."
            )
        for column in uncertainty_columns:
            rise = (0.0 - table[(column, "drop")].dropna()).sort_values(ascending=False)
            if rise.empty:
                continue
            listed = ", ".join(f"{model} {value:+.3f}" for model, value in rise.items())
            sentences.append(f"{corruption}, {column} from clean to the strongest level: {listed}.")
    return sentences


def ood_scores(
    in_distribution: Mapping[str, Evaluation], out_of_distribution: Mapping[str, Evaluation]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Uncertainty of in-distribution and OOD images per model, and the OOD-detection AUROC.

    Returns:
        ``(frame, scores)``: ``frame`` one row per image and model (``model``, ``dataset``
        "in-distribution"/"OOD", ``uncertainty``, ``pixel_uncertainty``); ``scores`` one row per
        model with ``auroc_image`` (image uncertainty) and ``auroc_pixel`` (mean pixel uncertainty
        of the image), :func:`umlkit.metrics.ood_auroc`, NaN where the model lacks the score.
    """
    frames, rows = [], []
    for name, evaluation_in in in_distribution.items():
        evaluation_out = out_of_distribution[name]
        parts = {}
        for label, evaluation in (("in-distribution", evaluation_in), ("OOD", evaluation_out)):
            try:
                maps, _ = pixel_uncertainty_maps(evaluation)
                pixel = maps.reshape(len(maps), -1).mean(axis=1)
            except ValueError:
                pixel = np.full(len(evaluation.table), np.nan)
            if len(pixel) != len(evaluation.table):
                raise ValueError(f"{name!r}: evaluate with keep_maps=None to score every image")
            parts[label] = pd.DataFrame(
                {
                    "model": name,
                    "dataset": label,
                    "uncertainty": evaluation.table["uncertainty"].to_numpy(float),
                    "pixel_uncertainty": pixel,
                }
            )
        frames.extend(parts.values())
        row = {"model": name}
        for column, key in (("uncertainty", "auroc_image"), ("pixel_uncertainty", "auroc_pixel")):
            inside, outside = parts["in-distribution"][column], parts["OOD"][column]
            defined = inside.notna().all() and outside.notna().all()
            row[key] = metrics.ood_auroc(inside, outside) if defined else np.nan
        rows.append(row)
    return pd.concat(frames, ignore_index=True), pd.DataFrame(rows).set_index("model")


# ---------------------------------------------------------------------------------- failure cases


def select_cases(
    table: pd.DataFrame,
    n: int = 6,
    uncertainty: str = "uncertainty",
    correct: str = "correct",
) -> dict[str, pd.DataFrame]:
    """The three galleries of notebook 08, each sorted by the image uncertainty.

    * ``most uncertain``: the ``n`` images with the highest uncertainty, right or wrong;
    * ``confidently wrong``: wrong predictions with the *lowest* uncertainty (the dangerous ones);
    * ``uncertain but right``: right predictions with the highest uncertainty (needless alarms).

    A gallery holds fewer than ``n`` rows when there are not enough such images.

    Raises:
        ValueError: missing columns, NaN uncertainty or ``n < 1``.
    """
    _require(table, (uncertainty, correct), "table")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if table[uncertainty].isna().any():
        raise ValueError(f"column {uncertainty!r} has NaN: the model has no such uncertainty")
    right = table[correct].astype(bool)
    return {
        "most uncertain": table.sort_values(uncertainty, ascending=False, kind="stable").head(n),
        "confidently wrong": table[~right].sort_values(uncertainty, kind="stable").head(n),
        "uncertain but right": table[right]
        .sort_values(uncertainty, ascending=False, kind="stable")
        .head(n),
    }


def add_failure_columns(table: pd.DataFrame, dice_threshold: float = 0.7) -> pd.DataFrame:
    """The evaluation table with the outcomes and the difficulty notebook 08 studies.

    Adds ``error`` = 1 - correct (a wrong image label; NaN without a class head),
    ``segmentation_failure`` = 1[Dice < dice_threshold] (NaN without a segmentation) and, on
    synthetic data, ``bayes_error`` = min(p_true, 1 - p_true): the error probability of the
    Bayes-optimal classifier on that image, i.e. how ambiguous its label is *by construction*.

    Returns:
        A copy of ``table`` with the new columns.
    """
    _require(table, ("correct", "dice"), "table")
    if not 0 <= dice_threshold <= 1:
        raise ValueError(f"dice_threshold must lie in [0, 1], got {dice_threshold}")
    table = table.copy()
    table["error"] = 1 - table["correct"]
    table["segmentation_failure"] = (
        (table["dice"] < dice_threshold).astype(float).where(table["dice"].notna())
    )
    if "p_true" in table:
        table["bayes_error"] = np.minimum(table["p_true"], 1 - table["p_true"])
    return table


def risk_coverage_curves(
    scores: Mapping[str, tuple[np.ndarray, np.ndarray, str]],
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], pd.DataFrame]:
    """Risk-coverage curves and AURC of several scores (:mod:`umlkit.metrics.uncertainty`).

    Args:
        scores: label -> ``(score, correct, kind)`` with kind ``"confidence"`` or
            ``"uncertainty"`` (how to read the score).

    Returns:
        ``(curves, table)``: ``"label (AURC 0.123)" -> (coverage, risk)`` for
        :func:`umlkit.plots.risk_coverage`, and one row per label with ``aurc``, ``risk`` at full
        coverage (the error rate) and ``optimal_aurc`` = r + (1 - r) ln(1 - r), the AURC of a
        perfect ranking at error rate r.
    """
    curves, rows = {}, []
    for label, (score, correct, kind) in scores.items():
        curve = metrics.risk_coverage_curve(score, correct, kind)
        area = metrics.aurc(score, correct, kind)
        rate = float(1 - np.mean(np.asarray(correct, dtype=float)))
        optimal = rate + (1 - rate) * np.log(1 - rate) if rate < 1 else 1.0
        curves[f"{label} (AURC {area:.3f})"] = (
            curve["coverage"].to_numpy(),
            curve["risk"].to_numpy(),
        )
        rows.append({"score": label, "aurc": area, "error_rate": rate, "optimal_aurc": optimal})
    return curves, pd.DataFrame(rows).set_index("score")


#: Metadata columns that are bookkeeping or the answer itself, never an explanatory factor.
_NOT_FACTORS = ("id", "index", "split", "label", "p_true", "risk_logit", "image", "mask", "family")


def failure_factors(table: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The generator's continuous factors and binary nuisance flags present in an evaluation table.

    Returns:
        ``(factors, flags)``: numeric metadata columns with more than two values, and those with
        values in {0, 1}; the model's own columns (predictions, scores) and columns that are
        constant on these images are left out.
    """
    from umlkit.evaluate import TABLE_COLUMNS

    skip = set(_NOT_FACTORS) | set(TABLE_COLUMNS)
    skip |= {"uncertainty", "error", "segmentation_failure", "bayes_error"}
    skip |= {c for c in table.columns if c.startswith(("dice_", "iou_", "hd95_", "assd_"))}
    factors, flags = [], []
    for column in table.columns:
        if column in skip or not pd.api.types.is_numeric_dtype(table[column]):
            continue
        values = table[column].dropna().unique()
        if len(values) < 2:
            continue  # constant on these images: it cannot explain anything here
        (flags if set(values) <= {0, 1} else factors).append(column)
    return factors, flags


def factor_regression(
    table: pd.DataFrame,
    columns: Sequence[str],
    target: str = "error",
    n_bootstrap: int = 200,
    seed: int = 0,
    C: float = 10.0,
    min_events: int = 10,
) -> pd.DataFrame:
    """Which factors explain the failures: a logistic regression of ``target`` on ``columns``.

    Each column is standardised (z = (x - mean) / sd), so a coefficient is the change in the
    log-odds of a failure per standard deviation of the factor (for a 0/1 flag, per sd of the flag).
    The model is scikit-learn's ``LogisticRegression`` with a mild L2 penalty (``C``) that keeps
    the fit finite when a factor separates the classes. The interval is the 2.5-97.5 % range of
    ``n_bootstrap`` refits on images resampled with replacement (resamples with one class only
    are skipped).

    With a handful of failures the fit (and its bootstrap) is driven by single images and the
    intervals look sharp while meaning nothing, so at least ``min_events`` failures *and*
    successes are required.

    Returns:
        One row per column: ``factor``, ``coefficient``, ``lower``, ``upper``, sorted by
        ``|coefficient|``, largest first.

    Raises:
        ValueError: missing columns, NaN, a non-binary target, or fewer than ``min_events``
            images in either class of it.
    """
    from sklearn.linear_model import LogisticRegression

    _require(table, (target, *columns), "table")
    if not columns:
        raise ValueError("factor_regression needs at least one column")
    data = table[[target, *columns]]
    if data.isna().any().any():
        raise ValueError(f"NaN in {list(data.columns[data.isna().any()])}")
    y = data[target].to_numpy()
    if not set(np.unique(y)) <= {0, 1}:
        raise ValueError(f"target {target!r} must be 0/1")
    events = int(min((y == 1).sum(), (y == 0).sum()))
    if events < min_events:
        raise ValueError(
            f"target {target!r} has only {events} images in its smaller class; a regression "
            f"needs at least min_events={min_events}"
        )
    x = data[list(columns)].to_numpy(float)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    z = (x - x.mean(axis=0)) / scale

    def fit(rows: np.ndarray) -> np.ndarray:
        return LogisticRegression(C=C, max_iter=1000).fit(z[rows], y[rows]).coef_[0]

    coefficient = fit(np.arange(len(y)))
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_bootstrap):
        rows = rng.integers(0, len(y), len(y))
        if len(np.unique(y[rows])) == 2:
            draws.append(fit(rows))
    draws = np.array(draws) if draws else np.full((1, len(columns)), np.nan)
    result = pd.DataFrame(
        {
            "factor": list(columns),
            "coefficient": coefficient,
            "lower": np.percentile(draws, 2.5, axis=0),
            "upper": np.percentile(draws, 97.5, axis=0),
        }
    )
    return result.reindex(
        result["coefficient"].abs().sort_values(ascending=False).index
    ).reset_index(drop=True)


def factor_weights(
    table: pd.DataFrame,
    factors: Sequence[str] | None = None,
    true_weights: Sequence[float] | None = None,
    prob: str = "prob",
    eps: float = 1e-4,
) -> pd.DataFrame:
    r"""Which generator factors a classifier uses: a linear fit of its log-odds on the factors.

    On synthetic derm data the true log-odds are linear in the factors,
    :math:`\mathrm{logit}\,p_{true} = b_0 + \sum_j w_j (f_j - 1/2)`. Fitting the model's own
    log-odds :math:`\log(p / (1 - p))` the same way (least squares, scikit-learn's
    ``LinearRegression``) shows what it learned to read: a factor with a weight near 0 is one the
    network ignores, however well it classifies overall. Evidential models are shrunk towards
    p = 1/2, so compare the *shares* (each weight over the sum of the absolute weights) rather
    than the raw weights.

    Args:
        table: one row per image with the probability column ``prob`` (α/S of the positive
            class, as in :attr:`umlkit.evaluate.Evaluation.table`) and the factor columns.
        factors: the factor columns; default the derm factors of :mod:`umlkit.data.scenes`.
        true_weights: the generator's weights in the same order; default the derm risk weights
            when ``factors`` is the default, else none (the ``true_*`` columns are then NaN).
        prob: the probability column.
        eps: probabilities are clipped to [eps, 1 - eps] so that a certain prediction has a
            finite log-odds.

    Returns:
        One row per factor: ``factor``, ``weight`` (log-odds per unit of the factor), ``share``,
        ``true_weight``, ``true_share``; ``table.attrs["r2"]`` holds the fit's R².

    Raises:
        ValueError: missing columns, NaN, probabilities outside [0, 1], fewer images than
            factors + 2, or true weights of the wrong length.
    """
    from scipy.special import logit
    from sklearn.linear_model import LinearRegression

    from umlkit.data.scenes import DERM_FACTORS, DERM_RISK_WEIGHTS

    if factors is None:
        factors = DERM_FACTORS
        if true_weights is None:
            true_weights = DERM_RISK_WEIGHTS
    factors = list(factors)
    _require(table, (prob, *factors), "table")
    data = table[[prob, *factors]]
    if data.isna().any().any():
        raise ValueError(f"NaN in {list(data.columns[data.isna().any()])}")
    p = data[prob].to_numpy(float)
    if ((p < 0) | (p > 1)).any():
        raise ValueError(f"column {prob!r} must hold probabilities in [0, 1]")
    if len(data) < len(factors) + 2:
        raise ValueError(f"need at least {len(factors) + 2} images to fit {len(factors)} weights")
    if true_weights is not None and len(true_weights) != len(factors):
        raise ValueError(f"{len(true_weights)} true weights for {len(factors)} factors")
    log_odds = logit(np.clip(p, eps, 1.0 - eps))
    x = data[factors].to_numpy(float)
    fit = LinearRegression().fit(x, log_odds)
    weight = fit.coef_
    truth = np.full(len(factors), np.nan) if true_weights is None else np.asarray(true_weights)
    result = pd.DataFrame(
        {
            "factor": factors,
            "weight": weight,
            "share": weight / np.abs(weight).sum(),
            "true_weight": truth.astype(float),
            "true_share": truth / np.abs(truth).sum(),
        }
    )
    result.attrs["r2"] = float(fit.score(x, log_odds))
    return result


def describe_effects(effects: pd.DataFrame, outcome: str) -> list[str]:
    """Sentences naming the factors whose bootstrap interval excludes 0 (:func:`factor_regression`).

    Returns:
        One sentence per such factor (largest effect first), or one saying none was found.
    """
    _require(effects, ("factor", "coefficient", "lower", "upper"), "effects")
    clear = effects[(effects["lower"] > 0) | (effects["upper"] < 0)]
    if clear.empty:
        return [
            f"No factor changes the odds of {outcome} clearly: every 95 % bootstrap interval "
            "contains 0 (too few failures, or failures that the recorded factors do not explain)."
        ]
    sentences = []
    for row in clear.itertuples():
        direction = "raises" if row.coefficient > 0 else "lowers"
        sentences.append(
            f"{row.factor} {direction} the odds of {outcome}: {row.coefficient:+.2f} log-odds per "
            f"sd (95 % interval {row.lower:+.2f} to {row.upper:+.2f}, "
            f"odds x{np.exp(row.coefficient):.2f})."
        )
    return sentences


def flag_rates(table: pd.DataFrame, flags: Sequence[str], target: str = "error") -> pd.DataFrame:
    """The failure rate with and without each binary flag.

    Returns:
        One row per flag: ``flag``, ``n_present``, ``rate_present``, ``rate_absent`` and
        ``difference`` = present - absent (NaN when one group is empty).
    """
    _require(table, (target, *flags), "table")
    rows = []
    for flag in flags:
        present = table[flag].astype(bool)
        rate_present = float(table.loc[present, target].mean()) if present.any() else np.nan
        rate_absent = float(table.loc[~present, target].mean()) if (~present).any() else np.nan
        rows.append(
            {
                "flag": flag,
                "n_present": int(present.sum()),
                "rate_present": rate_present,
                "rate_absent": rate_absent,
                "difference": rate_present - rate_absent,
            }
        )
    return pd.DataFrame(rows)


def _require(frame: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks the column(s) {missing}; it has {list(frame.columns)}")
