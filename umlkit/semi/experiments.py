"""The comparison notebook 09 runs: methods x datasets x label fractions x seeds, cached.

>>> configs = comparison_configs(
...     {"fundus": "data/synthetic/fundus-default"}, label_fractions=[0.1],
...     methods=["supervised", "caml"], seeds=[0, 1, 2], steps=200)
>>> scores = run_comparison(configs, workers=2)   # one row per test image and run
>>> summary_table(scores)                          # mean ± std over seeds
>>> paired_differences(scores)                     # each method minus supervised-only, per seed

Every run goes through :func:`umlkit.semi.loop.get_or_train_semi` (trained once, cached by a hash
of its configuration) and its per-image test scores are stored next to its checkpoints
(``test_scores.csv``), so running the notebook again only reads files.

**Equal budgets across label fractions.** An epoch is one pass over the labeled images, so at a
fixed number of epochs a 20 %-label run would take four times the steps of a 5 %-label run and the
Dice-versus-fraction curve would mix "more labels" with "more training". :func:`epochs_for_steps`
instead gives every run about the same number of optimisation steps (``steps``), rounded up to
whole epochs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import fields, replace
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from umlkit.analysis.verdicts import (
    Verdict,
    paired_reading,
    settled_sentences,
    summary_reading,
    two_budget,
)
from umlkit.checkpoints import write_table
from umlkit.data import base as data_base
from umlkit.evaluate import evaluate
from umlkit.semi.base import SemiSupervisedMethod
from umlkit.semi.loop import (
    SemiConfig,
    SemiResult,
    default_semi_cache_dir,
    get_or_train_semi,
    half_budget_method,
    load_splits,
    semi_config_hash,
)
from umlkit.semi.methods import METHODS
from umlkit.semi.sampler import split_labeled

SCORES_FILE = "test_scores.csv"
#: The per-image scores of each budget (:mod:`umlkit.convergence`): the final weights, and the
#: half-budget ones (the best validated epoch in the first half of the run's epochs).
BUDGET_FILES = {"final": SCORES_FILE, "half": "test_scores_half.csv"}
#: The per-image metrics of the comparison table (means over the foreground classes).
METRICS = ("dice", "iou", "hd95", "assd")


def epochs_for_steps(
    n_train: int, label_fraction: float, labeled_batch_size: int, steps: int
) -> int:
    """Whole epochs (passes over the labeled images) that give at least ``steps`` steps.

    ``n_labeled`` is computed as :func:`umlkit.semi.sampler.split_labeled` does, and an epoch has
    ``ceil(n_labeled / labeled_batch_size)`` steps.

    Raises:
        ValueError: a non-positive ``steps``.
    """
    if steps < 1:
        raise ValueError(f"steps must be positive, got {steps}")
    labeled, _ = split_labeled(n_train, label_fraction, min_labeled=labeled_batch_size)
    steps_per_epoch = math.ceil(len(labeled) / labeled_batch_size)
    return max(1, math.ceil(steps / steps_per_epoch))


def comparison_configs(
    data_roots: Mapping[str, str | Path],
    label_fractions: Sequence[float],
    methods: Sequence[str],
    seeds: Sequence[int] | Mapping[float, Sequence[int]],
    steps: int,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    validations: int | None = None,
    **common: Any,
) -> list[SemiConfig]:
    """One :class:`SemiConfig` per (dataset, label fraction, method, seed).

    Args:
        data_roots: dataset kind (``"fundus"``, ``"derm"``, ...) -> its folder.
        label_fractions: e.g. ``[0.05, 0.1, 0.2]``.
        methods: names from :data:`umlkit.semi.methods.METHODS`.
        seeds: one run per seed (the seed also draws the labeled subset); a mapping gives each
            label fraction its own seeds (see :func:`seeds_by_fraction`).
        steps: optimisation steps per run (see :func:`epochs_for_steps`).
        method_options: method name -> keyword arguments of that method (e.g.
            ``{"caml": {"feature_dropout": 0.0}}``); methods not named get their defaults.
        validations: validate each run about this many times (``validate_every`` =
            ``ceil(epochs / validations)``, so that runs of every label fraction are judged by
            the plateau rule on as many points); ``None``: :class:`SemiConfig`'s default (~8).
        **common: any other :class:`SemiConfig` field (``image_size``, ``width``, ``lr``...).

    Raises:
        ValueError: an unknown method, or a field :class:`SemiConfig` does not have.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}: choose from {list(METHODS)}")
    not_fields = sorted(set(common) - {f.name for f in fields(SemiConfig)})
    if not_fields:
        raise ValueError(f"SemiConfig has no field(s) {not_fields}")
    if isinstance(seeds, Mapping):
        missing = [f for f in label_fractions if f not in seeds]
        if missing:
            raise ValueError(f"seeds names no seeds for the label fraction(s) {missing}")
        fraction_seeds = {f: list(seeds[f]) for f in label_fractions}
    else:
        fraction_seeds = {f: list(seeds) for f in label_fractions}
    configs = []
    # Decoded splits are stored once and read by every worker process (not part of the hash).
    common.setdefault("array_cache", str(data_base.default_array_cache_dir()))
    for kind, root in data_roots.items():
        base = SemiConfig(dataset=kind, data_root=str(root), **common)
        n_train = len(load_splits(base, ("train",))[0])
        for fraction in label_fractions:
            epochs = epochs_for_steps(n_train, fraction, base.labeled_batch_size, steps)
            for method in methods:
                for seed in fraction_seeds[fraction]:
                    configs.append(
                        replace(
                            base,
                            method=method,
                            method_options=dict((method_options or {}).get(method, {})),
                            label_fraction=fraction,
                            seed=seed,
                            epochs=epochs,
                            validate_every=(
                                base.validate_every
                                if validations is None
                                else math.ceil(epochs / validations)
                            ),
                        )
                    )
    return configs


def seeds_by_fraction(
    label_fractions: Sequence[float],
    seeds: Sequence[int],
    other_seeds: Sequence[int] | None = None,
) -> dict[float, list[int]]:
    """Seeds per label fraction: all of ``seeds`` at the middle fraction, ``other_seeds`` at the rest.

    The middle fraction (``sorted(label_fractions)[len // 2]``, 10 % of 5 / 10 / 20 %) is the one
    notebook 09 reads its main comparison from; the outer ones only draw the curve against the
    label fraction, so on a small budget they can do with fewer seeds. ``other_seeds=None`` gives
    every fraction all of ``seeds``.

    >>> seeds_by_fraction([0.05, 0.1, 0.2], [0, 1, 2], [0, 1])
    {0.05: [0, 1], 0.1: [0, 1, 2], 0.2: [0, 1]}
    """
    if not label_fractions:
        raise ValueError("label_fractions is empty")
    middle = sorted(label_fractions)[len(label_fractions) // 2]
    outer = list(seeds) if other_seeds is None else list(other_seeds)
    return {f: list(seeds) if f == middle else outer for f in label_fractions}


@lru_cache(maxsize=4)
def _splits(dataset: str, data_root: str, image_size: int, array_cache: str | None) -> tuple:
    """The train / val / test splits of one dataset, read once per process."""
    config = SemiConfig(
        dataset=dataset, data_root=data_root, image_size=image_size, array_cache=array_cache
    )
    return tuple(load_splits(config, ("train", "val", "test")))


def _run_folder(config: SemiConfig, cache_dir: Path) -> Path:
    return cache_dir / semi_config_hash(config)


def _check_budget(budget: str) -> str:
    if budget not in BUDGET_FILES:
        raise ValueError(f"budget must be one of {', '.join(BUDGET_FILES)}, got {budget!r}")
    return budget


def run_and_score(
    config: SemiConfig,
    cache_dir: str | Path | None = None,
    progress: bool = False,
    budget: str = "final",
) -> pd.DataFrame:
    """Train (or load) one run and score its test model on the test split, both cached.

    ``budget="half"`` scores the half-budget weights of the same run instead
    (:func:`umlkit.semi.loop.half_budget_method`); both tables are written when either is asked
    for, since the run and the test split are loaded anyway.

    Returns:
        One row per test image: ``id``, the per-image metrics of :func:`umlkit.evaluate.evaluate`
        (``dice``, ``iou``, ``hd95``, ``assd`` and per-class columns), plus the run's ``method``,
        ``dataset``, ``label_fraction``, ``seed``, ``epochs`` and ``best_epoch``.
    """
    cache_dir = default_semi_cache_dir() if cache_dir is None else Path(cache_dir)
    folder = _run_folder(config, cache_dir)
    paths = {name: folder / file for name, file in BUDGET_FILES.items()}
    if paths[_check_budget(budget)].is_file():
        return pd.read_csv(paths[budget])
    train_set, val_set, test_set = _splits(
        config.dataset, config.data_root, config.image_size, config.array_cache
    )
    result = get_or_train_semi(
        config, cache_dir=cache_dir, progress=progress, data=(train_set, val_set)
    )
    methods = {"final": result.method, "half": half_budget_method(result)}
    tables = {}
    for name, method in methods.items():
        table = evaluate(method.test_model, test_set, device=config.device, keep_maps=0).table
        table = table[["id", *[c for c in table.columns if c.startswith(METRICS)]]].copy()
        for column, value in _run_columns(config, result).items():
            table[column] = value
        table["budget"] = name
        table["budget_epoch"] = result.best_epoch if name == "final" else result.half_epoch
        write_table(paths[name], table)
        tables[name] = table
    return tables[budget]


def _run_columns(config: SemiConfig, result: SemiResult) -> dict[str, Any]:
    return {
        "method": config.method,
        "dataset": config.dataset,
        "label_fraction": config.label_fraction,
        "seed": config.seed,
        "epochs": config.epochs,
        "best_epoch": result.best_epoch,
        "plateaued": bool(result.convergence is not None and result.convergence.plateaued),
        "still_improving": bool(
            result.convergence is not None and result.convergence.still_improving
        ),
    }


def _score_in_worker(config: SemiConfig, cache_dir: Path, budget: str) -> pd.DataFrame:
    # One thread per worker process: the processes, not the threads, share the cores.
    torch.set_num_threads(1)
    return run_and_score(config, cache_dir, budget=budget)


def run_comparison(
    configs: Iterable[SemiConfig],
    cache_dir: str | Path | None = None,
    workers: int = 1,
    progress: bool = True,
    budget: str = "final",
) -> pd.DataFrame:
    """Run (or load) every configuration and gather the per-image test scores.

    Args:
        configs: from :func:`comparison_configs`.
        cache_dir: default ``<project root>/data/cache/semi``.
        workers: parallel worker processes for the runs not cached yet (each with one torch
            thread; small networks use two processes far better than two threads). Results do
            not depend on it.
        progress: a tqdm bar over the runs.
        budget: ``"final"`` (the runs' returned weights) or ``"half"`` (their half-budget
            weights, :mod:`umlkit.convergence`).

    Returns:
        All runs' rows (see :func:`run_and_score`) in one table.
    """
    configs = list(configs)
    _check_budget(budget)
    cache_dir = default_semi_cache_dir() if cache_dir is None else Path(cache_dir)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    bar = tqdm(total=len(configs), desc="semi-supervised runs", disable=not progress)
    tables: dict[int, pd.DataFrame] = {}
    pending = []
    for index, config in enumerate(configs):
        if (_run_folder(config, cache_dir) / BUDGET_FILES[budget]).is_file():
            tables[index] = run_and_score(config, cache_dir, budget=budget)
            bar.update(1)
        else:
            pending.append(index)
    try:
        if workers == 1 or len(pending) <= 1:
            for index in pending:
                tables[index] = run_and_score(
                    configs[index], cache_dir, progress=progress, budget=budget
                )
                bar.update(1)
        else:
            # "spawn": forking a process that already runs torch threads can deadlock.
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
                futures = {
                    index: pool.submit(_score_in_worker, configs[index], cache_dir, budget)
                    for index in pending
                }
                for index, future in futures.items():
                    tables[index] = future.result()
                    bar.update(1)
    finally:
        bar.close()
    return pd.concat([tables[i] for i in range(len(configs))], ignore_index=True)


def run_means(scores: pd.DataFrame, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """One row per run: each metric averaged over the run's test images (NaN HD95/ASD skipped).

    Raises:
        ValueError: ``scores`` lacks a run key or a metric column.
    """
    keys = ["dataset", "label_fraction", "method", "seed"]
    missing = [c for c in [*keys, *metrics] if c not in scores]
    if missing:
        raise ValueError(f"scores lack the column(s) {missing}; pass run_comparison's table")
    return scores.groupby(keys, sort=False)[list(metrics)].mean().reset_index()


def _same_runs(scores: pd.DataFrame, half: pd.DataFrame) -> None:
    """Raise unless both budgets' scores hold the same runs (dataset, fraction, method, seed)."""
    keys = ["dataset", "label_fraction", "method", "seed"]
    runs = [sorted(map(tuple, run_means(t, [])[keys].values.tolist())) for t in (scores, half)]
    if runs[0] != runs[1]:
        raise ValueError("the half-budget scores hold other runs than the final ones")


def label_effect(
    scores: pd.DataFrame,
    method: str = "supervised",
    metric: str = "dice",
    half: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Does ``method``'s score rise with the label fraction by more than its seed spread?

    For each dataset and each pair of consecutive label fractions: the mean over seeds at both,
    the gain, and the larger of the two seed standard deviations (ddof=1). A gain larger than that
    spread is a rise the comparison can resolve; a smaller one (or a fall) says the budget cannot
    tell the label fractions apart, and then no method comparison across fractions can be read.

    With ``half`` (``run_comparison(..., budget="half")`` of the same runs), each sentence carries
    its two-budget verdict (:mod:`umlkit.analysis.verdicts`: the gain's sign and whether
    ``|gain|`` exceeds the spread agree at both budgets) and the table a ``settled`` column.

    Returns:
        ``(table, sentences)``: one row per (dataset, lower fraction, higher fraction) with the
        columns ``dataset``, ``from``, ``to`` (the two label fractions), ``low``, ``high`` (the
        method's mean score at each), ``gain``, ``spread``, ``resolved``; and one generated
        sentence per row.

    Raises:
        ValueError: ``scores`` lacks a column, ``method`` has no runs, or ``half`` other runs.
    """
    means = run_means(scores, [metric])
    means = means[means["method"] == method]
    if means.empty:
        raise ValueError(f"no runs of method {method!r} in the scores")
    rows, sentences = [], []
    for dataset, runs in means.groupby("dataset", sort=False):
        stats = runs.groupby("label_fraction")[metric].agg(["mean", "std"]).sort_index()
        fractions = list(stats.index)
        for low, high in zip(fractions[:-1], fractions[1:], strict=True):
            gain = stats.loc[high, "mean"] - stats.loc[low, "mean"]
            spread = np.nanmax([stats.loc[low, "std"], stats.loc[high, "std"]])
            resolved = bool(gain > spread) if not np.isnan(spread) else None
            rows.append(
                {
                    "dataset": dataset,
                    "from": low,
                    "to": high,
                    "low": stats.loc[low, "mean"],
                    "high": stats.loc[high, "mean"],
                    "gain": gain,
                    "spread": spread,
                    "resolved": resolved,
                }
            )
            verdict = {
                True: "rises by more than the seed spread",
                False: "does not rise by more than the seed spread",
                None: "cannot be judged (one seed: no spread)",
            }[resolved]
            sentences.append(
                f"{dataset}: {method} {metric} {verdict} from {low:.0%} to {high:.0%} labels "
                f"({stats.loc[low, 'mean']:.3f} -> {stats.loc[high, 'mean']:.3f}, "
                f"gain {gain:+.3f}, spread {spread:.3f})."
            )
    table = pd.DataFrame(rows)
    if half is None:
        return table, sentences
    _same_runs(scores, half)
    other, _ = label_effect(half, method, metric)
    verdicts = [
        Verdict(sentence, summary_reading(a.gain, a.spread), summary_reading(b.gain, b.spread))
        for sentence, a, b in zip(sentences, table.itertuples(), other.itertuples(), strict=True)
    ]
    table["settled"] = [verdict.settled for verdict in verdicts]
    return table, settled_sentences(verdicts)


def summary_table(
    scores: pd.DataFrame,
    metrics: Sequence[str] = METRICS,
    formatted: bool = True,
    half: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Mean ± standard deviation over seeds of each run's mean test score.

    Each run (seed) is first averaged over its test images; the table then gives the mean and the
    sample standard deviation (ddof=1; 0 for one seed) of those per-seed means, so the ± is the
    seed-to-seed spread, not the image-to-image one. A row of one seed has no spread: formatted,
    it shows the mean alone.

    Args:
        scores: :func:`run_comparison` output.
        metrics: columns to summarise.
        formatted: strings ``"0.812 ± 0.011"``; ``False`` gives numeric ``<metric>_mean`` and
            ``<metric>_std`` columns.
        half: the half-budget scores of the same runs; each metric column then gets a
            ``"<column> (half)"`` column beside it.

    Returns:
        One row per (dataset, label fraction, method), plus the number of seeds.
    """
    per_seed = run_means(scores, metrics)
    grouped = per_seed.groupby(["dataset", "label_fraction", "method"], sort=False)
    table = grouped[list(metrics)].agg(["mean", "std"])
    table.columns = [f"{metric}_{stat}" for metric, stat in table.columns]
    table = table.fillna({f"{m}_std": 0.0 for m in metrics})
    table["seeds"] = grouped.size()
    if formatted:
        for metric in metrics:
            digits = 3 if metric in ("dice", "iou") else 2
            table[metric] = [
                f"{mean:.{digits}f} ± {std:.{digits}f}" if seeds > 1 else f"{mean:.{digits}f}"
                for mean, std, seeds in zip(
                    table[f"{metric}_mean"], table[f"{metric}_std"], table["seeds"], strict=True
                )
            ]
        table = table[[*metrics, "seeds"]]
    if half is None:
        return table.reset_index()
    _same_runs(scores, half)
    other = summary_table(half, metrics, formatted).set_index(table.index.names)
    columns = [c for c in table.columns if c != "seeds"]
    for column in columns:
        table.insert(table.columns.get_loc(column) + 1, f"{column} (half)", other[column])
    return table.reset_index()


def _seed_differences(scores: pd.DataFrame, metric: str, baseline: str) -> pd.DataFrame:
    """Each non-baseline run's ``metric`` minus the baseline's of the same seed (``difference``)."""
    per_seed = run_means(scores, [metric])
    if baseline not in set(per_seed["method"]):
        raise ValueError(f"baseline {baseline!r} not among the methods {sorted(per_seed.method)}")
    keys = ["dataset", "label_fraction", "seed"]
    base = per_seed[per_seed["method"] == baseline].set_index(keys)[metric]
    others = per_seed[per_seed["method"] != baseline].copy()
    others["difference"] = (
        others[metric].to_numpy()
        - base.loc[list(others[keys].itertuples(index=False, name=None))].to_numpy()
    )
    return others


def paired_differences(
    scores: pd.DataFrame,
    metric: str = "dice",
    baseline: str = "supervised",
    half: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Each method's ``metric`` minus the baseline's, paired by seed (same labeled subset).

    Runs with the same seed share the labeled images and the initialisation seed, so the paired
    difference removes the variation that comes from which images happened to be labeled.

    Returns:
        One row per (dataset, label fraction, method other than the baseline): the mean
        difference, its standard deviation over seeds, the number of seeds where the method beat
        the baseline, and the number of seeds. With ``half`` (the half-budget scores of the same
        runs): also ``half_difference``, ``half_std`` and ``settled`` (the verdict of
        :func:`describe_differences`).

    Raises:
        ValueError: the baseline is not among the methods, or ``half`` holds other runs.
    """
    others = _seed_differences(scores, metric, baseline)
    grouped = others.groupby(["dataset", "label_fraction", "method"], sort=False)["difference"]
    table = pd.DataFrame(
        {
            f"{metric}_difference": grouped.mean(),
            "std": grouped.std(),  # NaN for one seed: no spread, shown blank
            "wins": grouped.apply(lambda d: int(np.sum(d > 0))),
            "seeds": grouped.size(),
        }
    )
    if half is not None:
        verdicts = _difference_verdicts(scores, metric, baseline, half)
        table["half_difference"] = [v.half.difference for v in verdicts.values()]
        table["half_std"] = [v.half.spread for v in verdicts.values()]
        table["settled"] = [v.settled for v in verdicts.values()]
    return table.reset_index()


def _difference_verdicts(
    scores: pd.DataFrame, metric: str, baseline: str, half: pd.DataFrame
) -> dict[tuple, Verdict]:
    """The two-budget verdict of each (dataset, fraction, method) against the baseline."""
    _same_runs(scores, half)
    final, other = (_seed_differences(t, metric, baseline) for t in (scores, half))
    keys = ["dataset", "label_fraction", "method"]
    halves = {key: runs.set_index("seed")["difference"] for key, runs in other.groupby(keys)}
    verdicts = {}
    for key, runs in final.groupby(keys, sort=False):
        reading = paired_reading(runs["difference"])
        dataset, fraction, method = key
        side = {1: "beats", -1: "trails", 0: "ties with"}[reading.sign]
        by = f" by {abs(reading.difference):.3f}" if reading.sign else ""
        claim = (
            f"{dataset}, {fraction:.0%} labels: {method} {side} {baseline} on {metric}{by} "
            f"(better in {int((runs['difference'] > 0).sum())} of {len(runs)} seeds)."
        )
        verdicts[key] = two_budget(runs.set_index("seed")["difference"], halves[key], claim)
    return verdicts


def describe_differences(
    scores: pd.DataFrame,
    half: pd.DataFrame,
    metric: str = "dice",
    baseline: str = "supervised",
) -> list[str]:
    """One sentence per method, dataset and label fraction: does it beat ``baseline``, paired by
    seed, at both budgets? A finding only where the mean difference has the same sign at the
    final and the half-budget weights and is beyond its seed spread (``|mean| > std``) at both
    or at neither (:func:`umlkit.analysis.verdicts.two_budget`).

    Args:
        scores: :func:`run_comparison` of the final weights.
        half: ``run_comparison(..., budget="half")`` of the same runs.
        metric, baseline: as :func:`paired_differences`.
    """
    return settled_sentences(list(_difference_verdicts(scores, metric, baseline, half).values()))


def trust_cases(
    methods: Mapping[str, SemiSupervisedMethod], dataset: Dataset, index: int
) -> list[dict[str, Any]]:
    """What each trained method predicts and trusts on one image, ready for a trust gallery.

    Args:
        methods: display name -> a trained method (e.g. ``result.method`` of each run).
        dataset: items with ``image`` and ``mask`` (pick an image that was unlabeled in training).
        index: the item to show.

    Returns:
        One dict per method with ``title``, ``image`` (C, H, W), ``mask``, ``prediction`` (the
        test model's argmax), ``uncertainty`` (normalised entropy, or K/S for an evidential head)
        and ``trusted`` (the maps of :meth:`~umlkit.semi.base.SemiSupervisedMethod.trusted_regions`),
        all numpy arrays (:func:`umlkit.plots.trust_gallery` draws them).
    """
    item = dataset[index]
    rows = []
    for title, method in methods.items():
        device = next(method.parameters()).device
        images = item["image"][None].to(device)
        was_training = method.training
        method.eval()
        try:
            with torch.no_grad():
                prediction = method.predict(images)
                trusted = method.trusted_regions(images)
        finally:
            method.train(was_training)
        rows.append(
            {
                "title": title,
                "image": item["image"].numpy(),
                "mask": item["mask"].numpy(),
                "prediction": prediction.prob.argmax(dim=1)[0].cpu().numpy(),
                "uncertainty": prediction.uncertainty[0, 0].cpu().numpy(),
                "trusted": {name: values[0].cpu().numpy() for name, values in trusted.items()},
            }
        )
    return rows
