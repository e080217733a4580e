r"""One semi-supervised training loop for every method: supervised-only, mean teacher, CAML, BURL.

>>> config = SemiConfig(method="caml", dataset="fundus", data_root="data/synthetic/fundus-default",
...                     label_fraction=0.1, epochs=12)
>>> result = fit_semi(config, output_dir="runs/caml")   # checkpoints in runs/caml/
>>> result = get_or_train_semi(config)  # cached under data/cache/semi/<hash>/, trained only once
>>> result.method.test_model, result.history

It mirrors the supervised trainer (:mod:`umlkit.train`) and shares its pieces (device, Adam and
its schedule, atomic checkpoints and RNG states for exact resuming, the configuration check on
resume, the cache) with best-epoch selection on validation Dice; the methods are built by name
(:mod:`umlkit.semi.methods`). What is different:

* **Which images are labeled**: :func:`umlkit.semi.sampler.split_labeled` draws
  ``label_fraction`` of the training split with the run's seed; the other training images lose
  their masks (:class:`umlkit.semi.sampler.PartiallyLabeled` replaces them by -1, so a method that read one by mistake
  would fail loudly instead of silently learning from it).
* **Batches**: :class:`umlkit.semi.sampler.TwoStreamBatchSampler`, ``labeled_batch_size`` labeled
  then ``unlabeled_batch_size`` unlabeled images; **an epoch is one pass over the labeled
  images**, so the number of steps per epoch grows with the label fraction. The supervised-only
  baseline gets the same labeled batches and no unlabeled part.
* **Ramp-up**: the unsupervised terms are weighted by
  :math:`r(t) = \exp(-5(1 - \min(t, L)/L)^2)` with :math:`t` in fractional epochs and
  :math:`L` = ``rampup_epochs`` (default: half the epochs, as in the mean-teacher family, where
  the ramp spans a large part of training).
* **Validation and checkpoints every few epochs** (``validate_every``; about eight per run by
  default, and always after the last epoch), because epochs over a few labeled images are short;
  convergence and the half-budget weights (:mod:`umlkit.convergence`) are judged over them.
* **After each step** the method's :meth:`~umlkit.semi.base.SemiSupervisedMethod.after_step`
  runs (EMA teacher updates, :math:`\alpha = \min(1 - 1/(\text{step} + 1), 0.99)`).
"""

from __future__ import annotations

import copy
import inspect
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

import umlkit
from umlkit.checkpoints import (
    CHECKPOINT_BEST,
    CHECKPOINT_LAST,
    dataset_fingerprint,
    load_checkpoint,
    load_module_state,
    restore_optimizer_and_rng,
    rng_states,
    state_copy,
)
from umlkit.convergence import (
    Convergence,
    HalfBudget,
    half_budget_copy,
    validated_convergence,
)
from umlkit.evaluate import evaluate
from umlkit.evidential import annealing_coefficient
from umlkit.folders import write_json
from umlkit.optim import learning_rate, make_optimizer
from umlkit.runs import (
    CHECKPOINT_HALF,
    CONFIG_FILE,
    HISTORY_FILE,
    best_state_of,
    cache_key,
    check_resume_configuration,
    get_or_train_cached,
    half_budget_entries,
    resume_progress,
    save_half_budget,
    save_run_state,
)
from umlkit.runtime import pick_device, project_root, seed_everything
from umlkit.semi.base import Progress, SemiSupervisedMethod
from umlkit.semi.ema import sigmoid_rampup
from umlkit.semi.methods import METHODS, build_method, method_from_checkpoint
from umlkit.semi.sampler import PartiallyLabeled, TwoStreamBatchSampler, split_labeled

#: Fields of :class:`SemiConfig` left out of the cache key (they do not change the result).
NOT_HASHED = ("device", "num_workers", "array_cache")
#: Part of the cache key, raised whenever an unchanged configuration's run changes (5: it keeps
#: its half-budget weights, half.pt), so that no run of older loop code is loaded.
SEMI_REVISION = 5
#: What a ``last.pt`` must hold for :func:`fit_semi` to resume from it.
RESUME_KEYS = (
    "semi_config",
    "model_config",
    "model_state",
    "optimizer_state",
    "epoch",
    "step",
    "history",
    "best",
    "rng",
)


@dataclass
class SemiConfig:
    """Everything a semi-supervised run depends on (hashed for the cache)."""

    method: str = "caml"  # supervised, mean_teacher, caml or burl
    method_options: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the method
    dataset: str = "fundus"  # loader kind for umlkit.data.load_dataset (derm, fundus, isic2017...)
    data_root: str | None = None  # the dataset folder (required)
    label_fraction: float = 0.1  # share of the training split that keeps its masks
    image_size: int = 32  # images and masks are resized to image_size x image_size
    width: int = 8  # U-Net width (channels of the first level)
    epochs: int = 12  # passes over the *labeled* images
    labeled_batch_size: int = 4  # labeled images per batch
    unlabeled_batch_size: int = 4  # unlabeled images per batch (0 for supervised-only)
    lr: float = 1e-3  # Adam learning rate
    weight_decay: float = 1e-5  # Adam weight decay
    constant_fraction: float = 0.3  # lr constant for this fraction of epochs, then poly(0.9)
    min_lr: float = 1e-5  # floor of the poly decay
    rampup_epochs: float | None = None  # L of the ramp r(t); None: half the epochs
    anneal_epochs: int | None = None  # KL annealing of evidential heads; None: half the epochs
    ce_weight: float = 1.0  # cross-entropy in every method's supervised loss (0: Dice only)
    validate_every: int | None = None  # epochs between validations/checkpoints; None: ~8 per run
    seed: int = 0  # seeds the labeled split, initialisation, batches and noise
    device: str | None = None  # cpu, cuda, mps; None: the best available
    num_workers: int = 0  # DataLoader worker processes
    array_cache: str | None = None  # folder for decoded, resized splits (load_dataset's cache)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(
                f"unknown semi-supervised method {self.method!r}: choose one of "
                f"{', '.join(METHODS)}"
            )
        self.method_options = dict(self.method_options)
        if self.validate_every is not None and self.validate_every < 1:
            raise ValueError(f"validate_every must be positive or None, got {self.validate_every}")
        for name in ("image_size", "width", "epochs", "labeled_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SemiConfig.{name} must be a positive integer, got {value!r}")
        if self.unlabeled_batch_size < 0:
            raise ValueError(f"unlabeled_batch_size must be >= 0, got {self.unlabeled_batch_size}")
        if not 0 < self.label_fraction <= 1:
            raise ValueError(f"label_fraction must be in (0, 1], got {self.label_fraction}")
        if self.rampup_epochs is not None and self.rampup_epochs < 0:
            raise ValueError(f"rampup_epochs must be >= 0 or None, got {self.rampup_epochs}")
        if not self.lr > 0 or not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"need lr > 0 and 0 <= min_lr <= lr, got {self.lr}, {self.min_lr}")

    @property
    def rampup_length(self) -> float:
        """L of the ramp-up in epochs: ``rampup_epochs`` or half the epochs."""
        return self.epochs / 2 if self.rampup_epochs is None else float(self.rampup_epochs)

    @property
    def validation_interval(self) -> int:
        """Epochs between validations (and checkpoints): ``validate_every`` or ``ceil(epochs/8)``.

        Epochs over a small labeled set are short (9 steps at 5 % of 700 images), so validating
        after each one would cost more than the training; the last epoch is always validated.
        """
        return self.validate_every or math.ceil(self.epochs / 8)

    @property
    def kl_anneal_epochs(self) -> int:
        """T of the KL annealing of evidential heads: ``anneal_epochs`` or half the epochs."""
        return self.anneal_epochs or max(1, self.epochs // 2)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-friendly dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SemiConfig:
        """Rebuild from :meth:`to_dict` output; unknown fields raise a ``ValueError``."""
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown SemiConfig fields {unknown}")
        return cls(**values)


@dataclass
class SemiResult:
    """What :func:`fit_semi` and :func:`get_or_train_semi` return."""

    method: SemiSupervisedMethod  # the best epoch's weights, eval mode; .test_model is scored
    history: pd.DataFrame  # one row per epoch: loss terms, ramp, lr, val Dice (NaN if skipped)
    config: SemiConfig  # the configuration that was trained
    labeled_ids: list[str]  # ids of the training images whose masks were used
    best_epoch: int  # 0-based epoch whose weights the method holds
    best_score: float  # its validation Dice
    output_dir: Path | None = None  # where the checkpoints are (None: trained in memory)
    from_cache: bool = False  # True when get_or_train_semi found a finished run
    convergence: Convergence | None = None  # plateaued? (umlkit.convergence, over validations)
    half_state: dict | None = None  # the half-budget weights (half_epoch: their 0-based epoch)
    half_epoch: int = -1


def load_splits(config: SemiConfig, splits: tuple[str, ...] = ("train", "val")) -> list[Dataset]:
    """The requested splits of ``config.data_root`` at ``config.image_size`` (cached in memory,
    and in ``config.array_cache`` when set).

    Raises:
        ValueError: ``data_root`` is not set.
        FileNotFoundError: the folder does not exist.
    """
    from umlkit.data import load_dataset

    if config.data_root is None:
        raise ValueError("SemiConfig.data_root is not set: point it at a dataset folder")
    root = Path(config.data_root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} not found (SemiConfig.data_root)")
    cache = True if config.array_cache is None else Path(config.array_cache)
    return [
        load_dataset(config.dataset, root, split=split, size=config.image_size, cache=cache)
        for split in splits
    ]


def fit_semi(
    config: SemiConfig,
    output_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    data: tuple[Dataset, Dataset] | None = None,
) -> SemiResult:
    """Train ``config.method`` with ``config.label_fraction`` of the training masks.

    Args:
        config: the run's configuration.
        output_dir: folder for ``last.pt``, ``best.pt``, ``history.csv``, ``config.json``
            (created); ``None`` trains in memory.
        resume: continue from ``output_dir/last.pt`` if it exists (same configuration required).
        progress: show a tqdm bar.
        data: ``(train_set, val_set)`` already loaded (saves reading the files again when many
            runs share them); default: :func:`load_splits`.

    Returns:
        A :class:`SemiResult` holding the best epoch's weights (validation Dice).

    Raises:
        ValueError: a bad configuration or a resume onto another configuration's checkpoint.
        FileNotFoundError: the dataset folder does not exist.
    """
    device = pick_device(config.device)
    train_set, val_set = load_splits(config) if data is None else data
    run = _build_run(config, train_set, device)
    output_dir = None if output_dir is None else Path(output_dir)
    state = {"epoch": 0, "step": 0, "history": [], "best_epoch": -1, "best_score": -np.inf}
    state["half"] = HalfBudget()
    best_state = None
    if output_dir is not None:
        run["data_record"] = {
            "dataset": config.dataset,
            "image_size": config.image_size,
            "fingerprint": _data_fingerprint(config),
        }
        if resume and (output_dir / CHECKPOINT_LAST).is_file():
            state, best_state = _resume(output_dir, config, run)
        output_dir.mkdir(parents=True, exist_ok=True)
        write_json(output_dir / CONFIG_FILE, config.to_dict())
    best_state = _run_epochs(run, val_set, state, best_state, output_dir, progress)
    method = run["method"]
    if best_state is not None:
        method.load_state_dict(best_state)
    half = state["half"].current(state["epoch"])
    history = pd.DataFrame(state["history"])
    return SemiResult(
        method=method.eval(),
        history=history,
        config=config,
        labeled_ids=run["labeled_ids"],
        best_epoch=int(state["best_epoch"]),
        best_score=float(state["best_score"]),
        output_dir=output_dir,
        convergence=semi_convergence(history, int(state["best_epoch"]), config),
        half_state=None if half is None else half[1],
        half_epoch=-1 if half is None else half[0],
    )


def semi_convergence(history: pd.DataFrame, best_epoch: int, config: SemiConfig):
    """The run's :class:`~umlkit.convergence.Convergence`, judged over its validations
    (:func:`umlkit.convergence.validated_convergence`)."""
    return validated_convergence(
        history, "val_dice", best_epoch, config.epochs, config.validation_interval
    )


def half_budget_method(result: SemiResult) -> SemiSupervisedMethod:
    """A copy of ``result.method`` holding the half-budget weights (eval mode): the best
    validated epoch among the first half of the run's epochs (:mod:`umlkit.convergence`)."""
    return half_budget_copy(result.method, result.half_state, f"the {result.config.method} run")


def _build_run(config: SemiConfig, train_set: Dataset, device: str) -> dict[str, Any]:
    """The labeled split, the seeded method, its optimizer and the two-stream batches."""
    labeled_indices, unlabeled_indices = split_labeled(
        len(train_set), config.label_fraction, config.seed, min_labeled=config.labeled_batch_size
    )
    seed_everything(config.seed)
    method = build_method(
        config.method,
        in_channels=int(train_set[0]["image"].shape[0]),
        num_classes=int(train_set.num_seg_classes),
        width=config.width,
        **_method_options(config),
    ).to(device, memory_format=torch.channels_last)  # as umlkit.models.build_model does
    optimizer = make_optimizer(
        method.trainable_parameters(), device, lr=config.lr, weight_decay=config.weight_decay
    )
    sampler = TwoStreamBatchSampler(
        labeled_indices,
        unlabeled_indices if method.uses_unlabeled else [],
        config.labeled_batch_size,
        config.unlabeled_batch_size if method.uses_unlabeled else 0,
        seed=config.seed,
    )
    loader = DataLoader(
        PartiallyLabeled(train_set, labeled_indices),
        batch_sampler=sampler,
        num_workers=config.num_workers,
    )
    return {
        "config": config,
        "device": device,
        "method": method,
        "optimizer": optimizer,
        "sampler": sampler,
        "loader": loader,
        "labeled_ids": [train_set.ids[i] for i in labeled_indices],
        "data_record": None,
    }


def _run_epochs(run, val_set, state, best_state, output_dir, progress):
    """Train from ``state["epoch"]`` on, validating and saving every ``validation_interval``
    epochs; updates ``state`` in place and returns the best epoch's weights."""
    config, method, sampler = run["config"], run["method"], run["sampler"]
    bar = tqdm(
        total=config.epochs * len(sampler),
        initial=state["epoch"] * len(sampler),
        desc=f"{config.method} {config.dataset} {config.label_fraction:.0%} seed {config.seed}",
        disable=not progress,
        leave=False,
    )
    try:
        for epoch in range(state["epoch"], config.epochs):
            started = time.perf_counter()
            lr = learning_rate(config, epoch)
            for group in run["optimizer"].param_groups:
                group["lr"] = lr
            sampler.set_epoch(epoch)
            sums, state["step"] = _train_epoch(
                method,
                run["loader"],
                run["optimizer"],
                config,
                epoch,
                state["step"],
                run["device"],
                bar,
            )
            validate = (epoch + 1) % config.validation_interval == 0 or epoch + 1 == config.epochs
            dice = _validation_dice(method, val_set, run["device"]) if validate else float("nan")
            row = {"epoch": epoch, "step": state["step"], "lr": lr, **sums, "val_dice": dice}
            row["seconds"] = time.perf_counter() - started
            state["history"].append(row)
            if dice > state["best_score"]:
                state["best_epoch"], state["best_score"] = epoch, dice
                best_state = state_copy(method)
                state["half"].improved(epoch, best_state, epoch + 1)
            else:
                state["half"].drop_stale(epoch + 1)
            state["epoch"] = epoch + 1
            if validate and output_dir is not None:
                _save_epoch(output_dir, run, state, best_state)
            bar.set_postfix(loss=f"{sums['loss']:.3f}", val_dice=f"{dice:.3f}")
    finally:
        bar.close()
    return best_state


def _validation_dice(method: SemiSupervisedMethod, val_set: Dataset, device: str) -> float:
    """The mean Dice of the method's test model on the validation split."""
    return evaluate(
        method.test_model, val_set, device=device, batch_size=32, keep_maps=0, surface_metrics=False
    ).summary["dice"]


def _method_options(config: SemiConfig) -> dict[str, Any]:
    """The method's keyword arguments: the loop-wide ``ce_weight`` unless the options set it."""
    return {"ce_weight": config.ce_weight, **config.method_options}


def resolved_method_options(config: SemiConfig) -> dict[str, Any]:
    """Every keyword argument the method is built with, its defaults included.

    Part of the cache key, so that changing a method's default (say, BURL's region rule) retrains
    instead of silently reusing a run made with the old default.
    """
    parameters = inspect.signature(METHODS[config.method].__init__).parameters
    defaults = {
        name: p.default
        for name, p in parameters.items()
        if p.default is not inspect.Parameter.empty
        and name not in ("in_channels", "num_classes", "width")
    }
    return {**defaults, **_method_options(config)}


def _train_epoch(method, loader, optimizer, config, epoch, step, device, bar):
    """One pass over the labeled images; returns the mean loss terms and the next step."""
    method.train()
    totals: dict[str, float] = {}
    steps_per_epoch = len(loader)
    for index, batch in enumerate(loader):
        images = batch["image"].to(device)
        masks = batch["mask"].to(device)
        labeled = batch["labeled"].to(device)
        progress = Progress(
            step=step,
            epoch=epoch,
            # t in fractional epochs, so the ramp does not jump at epoch boundaries.
            ramp=sigmoid_rampup(epoch + index / steps_per_epoch, config.rampup_length),
            kl_weight=annealing_coefficient(epoch, config.kl_anneal_epochs),
        )
        extra = {"indices": batch["dataset_index"]} if method.needs_image_indices else {}
        loss, terms = method.training_loss(images, masks, labeled, progress, **extra)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        method.after_step(step)
        step += 1
        for name, value in {"loss": loss.item(), **terms, "ramp": progress.ramp}.items():
            totals[name] = totals.get(name, 0.0) + value
        bar.update(1)
        bar.set_postfix(loss=f"{totals['loss'] / (index + 1):.3f}", refresh=False)
    return {name: value / max(steps_per_epoch, 1) for name, value in totals.items()}, step


def _model_config(config: SemiConfig, method: SemiSupervisedMethod) -> dict[str, Any]:
    """What rebuilds the method's architecture (stored as the checkpoint's ``model_config``)."""
    return {
        "method": config.method,
        "in_channels": method.in_channels,
        "num_classes": method.num_classes,
        "width": config.width,
        "options": _method_options(config),
    }


def _save_epoch(output_dir: Path, run: dict[str, Any], state: dict, best_state) -> None:
    """Write ``best.pt`` (when this epoch is the best), ``last.pt`` and ``history.csv``."""
    config, method = run["config"], run["method"]
    common = {
        "umlkit_version": umlkit.__version__,
        "semi_config": config.to_dict(),
        "model_config": _model_config(config, method),
        "labeled_ids": run["labeled_ids"],
        "data": run["data_record"],
    }
    epoch = state["epoch"] - 1
    best = None
    if state["best_epoch"] == epoch:
        best = {**common, "model_state": best_state, "epoch": epoch, "score": state["best_score"]}
    last = {
        **common,
        "model_state": method.state_dict(),
        "optimizer_state": run["optimizer"].state_dict(),
        "epoch": epoch,
        "step": state["step"],
        "history": state["history"],
        "best": {"epoch": state["best_epoch"], "score": state["best_score"]},
        "rng": rng_states(run["device"]),
    }
    finished = state["epoch"] == config.epochs
    save_half_budget(output_dir, state["half"], state["epoch"], finished)
    save_run_state(output_dir, last, best, {HISTORY_FILE: state["history"]})


def _data_fingerprint(config: SemiConfig) -> str | None:
    """The fingerprint of ``config.data_root`` (names, sizes and contents of its files:
    :func:`~umlkit.checkpoints.dataset_fingerprint`), or ``None`` when the data were passed in
    memory without a folder."""
    if config.data_root is None or not Path(config.data_root).is_dir():
        return None
    return dataset_fingerprint(config.data_root)


def _resume(output_dir: Path, config: SemiConfig, run: dict[str, Any]):
    """Restore method, optimizer, history, best epoch and RNG states from ``last.pt``.

    The checkpoint is read by :func:`umlkit.checkpoints.load_checkpoint` (an unreadable file is
    one ``ValueError`` line). Where both it and this run know their data's fingerprint, the data
    are compared by it and ``data_root`` may name the folder by any path; otherwise
    ``data_root`` must be the same string.
    """
    path = output_dir / CHECKPOINT_LAST
    checkpoint = load_checkpoint(path, require=RESUME_KEYS)
    fingerprint = run["data_record"]["fingerprint"]
    saved_record = checkpoint.get("data")
    saved_fingerprint = saved_record.get("fingerprint") if isinstance(saved_record, dict) else None
    by_fingerprint = saved_fingerprint is not None and fingerprint is not None
    ignored = (*NOT_HASHED, "data_root") if by_fingerprint else NOT_HASHED
    check_resume_configuration(checkpoint, "semi_config", config.to_dict(), ignored, path)
    if by_fingerprint and saved_fingerprint != fingerprint:
        raise ValueError(
            f"cannot resume from {path}: the data in {config.data_root} are not the run's (files "
            "were added, removed or rewritten, or it is another dataset)"
        )
    progress = resume_progress(checkpoint, path, counters=("step",))
    state = {
        "epoch": progress["next_epoch"],
        "step": progress["step"],
        "history": progress["history"],
        "best_epoch": progress["best_epoch"],
        "best_score": progress["best_score"],
    }
    state["half"] = HalfBudget(half_budget_entries(output_dir))
    best_state = best_state_of(output_dir, state["best_epoch"])
    load_module_state(run["method"], checkpoint["model_state"], path)
    restore_optimizer_and_rng(run["optimizer"], checkpoint, path)
    return state, best_state


# ------------------------------------------------------------------------------------- cache
def semi_config_hash(config: SemiConfig) -> str:
    """The cache key: the configuration (less :data:`NOT_HASHED`) with the method's options
    resolved (:func:`resolved_method_options`), :data:`SEMI_REVISION`, the dataset's fingerprint
    and the umlkit version (:func:`umlkit.runs.cache_key`)."""
    values = {k: v for k, v in config.to_dict().items() if k not in NOT_HASHED}
    values["method_options"] = resolved_method_options(config)
    values["semi_revision"] = SEMI_REVISION
    return cache_key(values, config.data_root)


def default_semi_cache_dir() -> Path:
    """``<project root>/data/cache/semi``."""
    return project_root() / "data" / "cache" / "semi"


def get_or_train_semi(
    config: SemiConfig,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    data: tuple[Dataset, Dataset] | None = None,
) -> SemiResult:
    """The trained method of ``config``, training only if no finished run is cached.

    Runs live in ``<cache_dir>/<semi_config_hash(config)>/``; a finished run is loaded, an
    interrupted one resumed, a missing one trained.

    Args:
        config: the configuration.
        cache_dir: default ``<project root>/data/cache/semi``.
        progress: progress bar while training.
        data: ``(train_set, val_set)``, as in :func:`fit_semi`.

    Returns:
        A :class:`SemiResult`; ``from_cache`` tells whether training was skipped.
    """
    cache_dir = default_semi_cache_dir() if cache_dir is None else Path(cache_dir)

    def load_finished(folder: Path, last: dict, best: dict) -> SemiResult:
        history = pd.read_csv(folder / HISTORY_FILE)
        half = load_checkpoint(folder / CHECKPOINT_HALF, require=("model_state", "epoch"))
        return SemiResult(
            method=method_from_checkpoint(best, folder / CHECKPOINT_BEST, config.device),
            history=history,
            config=copy.deepcopy(config),
            labeled_ids=list(last["labeled_ids"]),
            best_epoch=int(best["epoch"]),
            best_score=float(best["score"]),
            output_dir=folder,
            from_cache=True,
            convergence=semi_convergence(history, int(best["epoch"]), config),
            half_state=half["model_state"],
            half_epoch=int(half["epoch"]),
        )

    def train_in(folder: Path) -> SemiResult:
        return fit_semi(config, output_dir=folder, resume=True, progress=progress, data=data)

    return get_or_train_cached(
        cache_dir,
        semi_config_hash(config),
        config.epochs,
        load_finished,
        train_in,
        files=(HISTORY_FILE, CHECKPOINT_HALF),
    )
