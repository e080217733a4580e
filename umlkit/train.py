"""One training loop for every umlkit model: device, AMP, seeding, progress, checkpoints, resume, cache.

>>> config = TrainConfig(model="uml", data_root="data/synthetic/derm-default", epochs=12)
>>> result = train(config, output_dir="runs/uml")          # checkpoints in runs/uml/
>>> result = train(config, output_dir="runs/uml", resume=True)  # continue after an interruption
>>> result = get_or_train(config)   # cached under data/cache/models/<hash>/, trained only once
>>> result.model, result.history    # best model (eval mode) and one row per epoch
>>> result.steps                    # the training loss every config.log_every steps

:func:`train` reads as a list of steps, each its own function:

1. :func:`build_train_loader`: the training split, shuffled by a generator seeded from
   ``(seed, epoch)``, so an epoch's batches do not depend on what ran before it (this is what
   makes resuming exact).
2. :func:`train_one_epoch`: for each batch the learning rate of :func:`learning_rate` is set
   (constant for the first ``constant_fraction`` of the epochs, then poly(0.9) decay floored at
   ``min_lr``, the UML reference schedule stretched to ``epochs``), then forward (bf16 autocast on
   CUDA), :func:`umlkit.losses.official_objective` in float32, backward, Adam step. Every
   ``log_every`` steps the mean loss terms go into the per-step table. A run that diverges stops
   with one line naming the step (:mod:`umlkit.divergence`): a loss term that is NaN, inf or
   below 0, or a weight that is NaN or inf, is never validated, selected or saved.
3. :func:`validate`: :func:`umlkit.evaluate.evaluate` on the ``val`` split: accuracy, Dice, ECE,
   AUC. **Model selection** keeps the epoch with the best validation score ``(accuracy + Dice)
   / 2`` (the mean of those the model has: a U-Net is selected on Dice, a classifier on
   accuracy); ties keep the earlier epoch. The returned model holds the best epoch's weights.
4. **Convergence** (:mod:`umlkit.convergence`): after every epoch the plateau rule is applied
   to the validation scores so far; with ``config.patience`` set the run stops as soon as it
   holds (early stopping, ``epochs`` is then the maximum). Every run also keeps its
   *half-budget* weights (the best epoch among the first half of those it trained), so that a
   conclusion can be checked at two budgets of the same run. :class:`TrainResult` carries both
   (``convergence``, ``half_state``).
5. :func:`save_epoch` (with ``output_dir``): ``last.pt`` every epoch (model, optimizer, epoch,
   history, RNG states, configs, umlkit version, and what the model was trained on: see
   :func:`data_record`), ``best.pt`` when the score improves, ``history.csv`` and
   ``steps.csv``, each written atomically (:mod:`umlkit.checkpoints`).

The output folder is held first, for the whole run: a second run into it is refused at once. Nothing
is written before every argument has been checked: the device, the image size against the network's
downsampling factor, the data, the output folder (one that holds a run is only continued with
``resume=True`` or replaced with ``overwrite=True``) and, when resuming, the checkpoint and its
data. A start that fails, even in its first epoch, leaves the folder as it was.

On CPU the same configuration gives the same numbers run after run (same thread count), and an
interrupted run resumed with ``resume=True`` reproduces the uninterrupted run exactly.
Checkpoints, RNG states, the cache key and lookup live in :mod:`umlkit.checkpoints` (shared with
the semi-supervised loop); ``load_checkpoint``, ``load_model`` and others are re-exported here.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

import umlkit
from umlkit import distributed
from umlkit.batches import build_train_loader as build_train_loader
from umlkit.batches import epoch_generator
from umlkit.checkpoints import (
    CHECKPOINT_BEST,
    CHECKPOINT_LAST,
    check_same_data,
    data_record,
    load_checkpoint,
    load_model_state,
    model_from_checkpoint,
    restore_optimizer_and_rng,
    rng_states,
)
from umlkit.checkpoints import (  # re-exported: notebooks, the CLI and tests import them from here
    check_checkpoint_data as check_checkpoint_data,
)
from umlkit.checkpoints import dataset_fingerprint as dataset_fingerprint
from umlkit.checkpoints import load_model as load_model
from umlkit.checkpoints import save_checkpoint as save_checkpoint
from umlkit.config import (  # re-exported: notebooks, the CLI and tests import them from here
    NOT_HASHED as NOT_HASHED,
)
from umlkit.config import PYTHON_NAMES as PYTHON_NAMES
from umlkit.config import TRAINING_REVISION as TRAINING_REVISION
from umlkit.config import TrainConfig as TrainConfig
from umlkit.config import TrainingState as TrainingState
from umlkit.config import TrainResult as TrainResult
from umlkit.config import check_image_size as check_image_size
from umlkit.config import config_hash as config_hash
from umlkit.config import load_splits as _load_splits
from umlkit.config import model_depth
from umlkit.config import size_factor as size_factor
from umlkit.convergence import HalfBudget
from umlkit.convergence import half_budget_model as half_budget_model
from umlkit.convergence import run_convergence as run_convergence
from umlkit.data.augment import augment_batch
from umlkit.divergence import check_failed_step, check_loss_terms, check_weights, place
from umlkit.evaluate import summary_over_ranks
from umlkit.folders import write_json
from umlkit.losses import official_objective
from umlkit.models import build_model
from umlkit.optim import learning_rate, make_optimizer
from umlkit.runs import (
    CHECKPOINT_HALF,
    CONFIG_FILE,
    HALF_FOLDER,
    HISTORY_FILE,
    STEPS_FILE,
    best_state_of,
    check_resume_configuration,
    claim_run_folder,
    get_or_train_cached,
    half_budget_entries,
    hold_run_folder,
    prepare_run_folder,
    resume_progress,
    save_half_budget,
    save_run_state,
    undone_if_it_fails_early,
)
from umlkit.runtime import compile_model, pick_device, project_root, seed_everything

#: The files of a run: a folder holding any of them holds a run that :func:`train` protects.
RUN_FILES = (
    CHECKPOINT_LAST,
    CHECKPOINT_BEST,
    CHECKPOINT_HALF,
    HISTORY_FILE,
    STEPS_FILE,
    CONFIG_FILE,
)
#: What a ``last.pt`` must hold for :func:`train` to resume from it.
RESUME_KEYS = (
    "train_config",
    "model_config",
    "model_state",
    "optimizer_state",
    "epoch",
    "history",
    "best",
    "rng",
    "steps",
)
#: Validation metrics recorded in the history (prefixed ``val_``).
VAL_METRICS = ("accuracy", "auc", "ece", "dice", "class_uncertainty", "pixel_uncertainty")


def selection_score(metrics: dict[str, float]) -> float:
    """The model-selection score: mean of the validation accuracy and Dice the model has."""
    values = [metrics[k] for k in ("accuracy", "dice") if not np.isnan(metrics.get(k, np.nan))]
    return float(np.mean(values)) if values else float("nan")


# ------------------------------------------------------------------------------ building blocks
def _build_model(config: TrainConfig, train_set) -> nn.Module:
    return build_model(
        config.model,
        num_classes=train_set.num_classes,
        num_seg_classes=train_set.num_seg_classes,
        width=config.width,
        in_channels=int(train_set[0]["image"].shape[0]),
        **config.model_options,
    )


# ------------------------------------------------------------------------------------ training
def train(
    config: TrainConfig,
    output_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    callback: Callable[[dict[str, float]], None] | None = None,
    *,
    overwrite: bool = False,
    log: Callable[[str], None] | None = print,
    argument_names: Mapping[str, str] | None = None,
) -> TrainResult:
    """Train ``config.model`` on ``config.data_root`` and return the best-epoch model.

    Every argument is checked before anything is written (see the module docstring): a start
    that fails raises and leaves ``output_dir`` as it was.

    Args:
        config: the run's configuration.
        output_dir: folder for ``last.pt``, ``best.pt``, ``history.csv``, ``steps.csv`` and
            ``config.json`` (created); ``None`` trains in memory without checkpoints. A folder
            that already holds any of these files is refused unless ``resume`` or ``overwrite``
            says what to do with it.
        resume: continue the run in ``output_dir`` from its ``last.pt``. The configuration must
            be the same (the fields of :data:`NOT_HASHED` aside) and the data the same files
            (by fingerprint, so any path to the same folder will do). Without a ``last.pt`` a
            new run starts, and ``log`` says so.
        progress: show a tqdm bar with the running loss and the last validation metrics.
        callback: called after every epoch with that epoch's history row (a dict); an exception
            it raises stops training after the epoch's checkpoint was written.
        overwrite: replace the run in ``output_dir``: its run files are deleted (no other file
            is touched) once every check has passed, and ``log`` says so.
        log: receives one line for each such note; ``None`` keeps quiet.
        argument_names: how messages name the arguments, by key of :data:`PYTHON_NAMES`
            (the command line passes its flags, e.g. ``{"resume": "--resume"}``).

    Returns:
        A :class:`TrainResult` (model in eval mode with the best epoch's weights).

    Raises:
        ValueError: a bad configuration, device or image size; ``resume`` together with
            ``overwrite``; ``resume`` onto a checkpoint of another configuration or other data,
            or onto an unreadable checkpoint.
        FileExistsError: ``output_dir`` holds a run and neither ``resume`` nor ``overwrite`` is
            set, or it is a file.
        FileNotFoundError: the dataset folder does not exist.
        FolderInUseError: another process is writing ``output_dir`` (the message names it).
        CannotWriteError: ``output_dir`` cannot be written: disk full, no permission, read-only.
        TrainingDiverged: a ``ValueError`` naming the step where the run diverged
            (:mod:`umlkit.divergence`); the folder keeps the last good epoch's checkpoints.
    """
    names = {**PYTHON_NAMES, **(argument_names or {})}
    output_dir = None if output_dir is None else Path(output_dir)
    with hold_run_folder(output_dir, names["output_dir"], log):  # before anything else
        device, found = _check_start(config, output_dir, resume, overwrite, names)
        joined = distributed.launch_environment() is not None and not distributed.is_distributed()
        env = distributed.init(device)  # None unless launched by torchrun
        start = {"found": found, "env": env, "device": device if env is None else env.device}
        try:
            return _train(
                config, output_dir, start, resume, overwrite, names, progress, callback, log
            )
        finally:
            if joined:
                distributed.shutdown()


def _train(config, output_dir, start, resume, overwrite, names, progress, callback, log):
    """:func:`train` once the checks that need no data have passed: load the data, build the
    model (wrapped for data-parallel training under torchrun), resume, run the epochs."""
    device, found = start["device"], start["found"]
    distributed.check_global_batch(config.batch_size)
    train_set, val_set = _load_splits(config, names)
    data = None if output_dir is None else data_record(config, train_set)
    seed_everything(config.seed)
    model = _build_model(config, train_set).to(device)
    # What the optimisation steps run: the model itself, or its data-parallel wrapper (which
    # may swap the batch norms for synchronised ones: before the optimiser sees the parameters).
    trained = distributed.wrap_model(model, start["env"])
    if config.compile:  # compiles on the first step; the weights stay the model's own
        trained = compile_model(trained)
    optimizer = make_optimizer(model, device, lr=config.lr, weight_decay=config.weight_decay)
    state = TrainingState()
    resuming = resume and CHECKPOINT_LAST in found
    if resuming:
        state = _resume(output_dir, config, model, optimizer, data, names)
    distributed.barrier()  # every rank has read the folder before the first process writes it
    # Every check has passed: from here on the output folder is written (by the first process).
    if output_dir is not None and distributed.is_main_process():
        notes = prepare_run_folder(output_dir, found, resuming, resume, overwrite, names)
        for note in notes if log is not None else ():
            log(note)
        if not resuming:  # the candidates of a run that was replaced
            for path in (output_dir / HALF_FOLDER).glob("epoch_*.pt"):
                path.unlink()
        write_json(output_dir / CONFIG_FILE, config.to_dict())
    run = {"config": config, "model": model, "optimizer": optimizer, "device": device}
    run["trained"], run["lr_name"] = trained, names["lr"]
    with undone_if_it_fails_early(None if resuming else output_dir, RUN_FILES):
        _run_epochs(run, train_set, val_set, state, output_dir, data, progress, callback)
    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    half = state.half.current(state.next_epoch)
    return TrainResult(
        model=model.eval(),
        history=pd.DataFrame(state.history),
        config=config,
        best_epoch=int(state.best_epoch),
        best_score=float(state.best_score),
        output_dir=output_dir,
        steps=pd.DataFrame(state.steps),
        convergence=run_convergence(state.history, state.best_epoch, config),
        half_state=None if half is None else half[1],
        half_epoch=-1 if half is None else half[0],
    )


def _check_start(config, output_dir, resume, overwrite, names) -> tuple[str, list[str]]:
    """The checks that need no data: the arguments, the device, the image size, the folder.

    Returns the device and the run files already in ``output_dir``.
    """
    device = pick_device(config.device, what=names["device"])
    depth = model_depth(config)
    if depth is not None:
        check_image_size(config.image_size, depth, names["image_size"])
    weights = (CHECKPOINT_BEST, CHECKPOINT_HALF, f"{HALF_FOLDER}/epoch_*.pt")  # never lost
    return device, claim_run_folder(
        output_dir, RUN_FILES, resume, overwrite, names, CHECKPOINT_LAST, weights
    )


def _stops_early(state: TrainingState, config: TrainConfig, epoch: int) -> bool:
    """Whether early stopping (``config.patience``) ends the run after ``epoch``: its validation
    score has plateaued, its last epoch is not its best (that run is still improving), and
    epochs remain to be skipped."""
    if config.patience is None:
        return False
    report = run_convergence(state.history, state.best_epoch, config)
    stop = report.plateaued and not report.still_improving
    return bool(stop) and epoch + 1 < config.epochs


def _run_epochs(run, train_set, val_set, state, output_dir, data, progress, callback) -> None:
    """Train, validate and (with ``output_dir``) save each epoch from ``state.next_epoch`` on."""
    config, model = run["config"], run["model"]
    objective = _objective(config)
    steps = max(len(train_set) // config.batch_size, 1)
    bar = tqdm(
        total=config.epochs * steps,
        initial=state.next_epoch * steps,
        desc=f"train {config.model}",
        disable=not distributed.show_progress(progress),
    )
    try:
        for epoch in range(state.next_epoch, config.epochs):
            if state.stopped:
                break
            started, started_cpu = time.perf_counter(), time.process_time()
            loader = build_train_loader(train_set, config, epoch, run["device"])
            sums, step_rows = train_one_epoch(
                run["trained"],
                loader,
                run["optimizer"],
                objective,
                config,
                epoch,
                run["device"],
                bar,
                run["lr_name"],
            )
            try:  # finite weights can still overflow with batch norm's running statistics
                metrics = validate(model, val_set, config, run["device"])
            except ValueError as error:
                last_lr = learning_rate(config, epoch + (steps - 1) / steps)
                where = place(epoch, steps, steps, last_lr, validation=True)
                check_failed_step(model, error, where, run["lr_name"])
                raise
            row = {"epoch": epoch, "lr": learning_rate(config, epoch), **sums}
            row.update({f"val_{k}": metrics[k] for k in VAL_METRICS})
            row["val_score"] = selection_score(metrics)
            row["seconds"] = time.perf_counter() - started
            # CPU time of this process (all threads): unlike wall time, it hardly depends on
            # what else the machine is doing.
            row["cpu_seconds"] = time.process_time() - started_cpu
            state.finish_epoch(row, step_rows, model)
            state.stopped = _stops_early(state, config, epoch)
            if output_dir is not None and distributed.is_main_process():
                save_epoch(output_dir, run, state, data)
            distributed.barrier()  # no process moves on before the epoch's checkpoint exists
            bar.set_postfix(
                loss=f"{sums['loss']:.3f}",
                acc=f"{metrics['accuracy']:.3f}",
                dice=f"{metrics['dice']:.3f}",
            )
            if callback is not None:
                callback(dict(row))
            if state.stopped:
                bar.total = bar.n  # the bar ends where training ended
                break
    finally:
        bar.close()


def _objective(config: TrainConfig):
    """The model's official objective with the configuration's weights, annealing and loss."""
    extra = {} if config.seg_ce_weight is None else {"seg_ce_weight": config.seg_ce_weight}
    return official_objective(
        config.model,
        weights=config.loss_weights,
        anneal_epochs=config.kl_anneal_epochs,
        kind=config.loss_kind,
        **extra,
    )


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    objective: Callable,
    config: TrainConfig,
    epoch: int,
    device: str,
    bar=None,
    lr_name: str = PYTHON_NAMES["lr"],
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """One pass over ``loader``: set the learning rate, forward, loss, backward, Adam step.

    A diverged step raises :class:`~umlkit.divergence.TrainingDiverged` (see
    :mod:`umlkit.divergence`); its message names the learning rate as ``lr_name``.

    Returns:
        The epoch's mean loss terms (``loss``, ``loss_cls``, ...), and the per-step rows: one
        every ``config.log_every`` steps and one at the end of the epoch, each holding
        ``step`` (optimisation steps done since the run began), ``epoch`` (fractional: 1.5 is
        half-way through the second epoch), ``lr`` and the mean loss terms since the row before.
    """
    use_amp = config.amp and device.startswith("cuda")
    augmentation = epoch_generator(config.seed, epoch, stream=1)
    model.train()
    totals: dict[str, float] = {}
    window: dict[str, float] = {}
    rows: list[dict[str, float]] = []
    steps = len(loader)
    for step, batch in enumerate(loader):
        lr = learning_rate(config, epoch + step / steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        images, masks = augment_batch(batch["image"], batch["mask"], config.augment, augmentation)
        images = images.to(device, non_blocking=True)
        masks = masks.to(device, non_blocking=True)
        labels = batch["label"].to(device, non_blocking=True)
        where = place(epoch, step + 1, steps, lr)
        try:
            with torch.autocast(
                device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=use_amp
            ):
                output = model(images)
            loss, components = objective(output.float(), masks, labels, epoch)
        except ValueError as error:  # e.g. "evidence contains NaN or inf": say why, and where
            check_failed_step(model, error, where, lr_name)
            raise
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        components = distributed.mean_over_ranks(components)  # the global batch's loss terms
        check_loss_terms(components, where, lr_name)
        for name, value in components.items():
            key = "loss" if name == "total" else f"loss_{name}"
            totals[key] = totals.get(key, 0.0) + value
            window[key] = window.get(key, 0.0) + value
        if (step + 1) % config.log_every == 0 or step + 1 == steps:
            check_weights(model, where, lr_name)  # the last step's before validation or saving
            rows.append(_step_row(epoch, step, steps, lr, window, config.log_every))
            window = {}
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{totals['loss'] / (step + 1):.3f}", refresh=False)
    return {name: value / max(steps, 1) for name, value in totals.items()}, rows


def _step_row(epoch, step, steps, lr, window, log_every) -> dict[str, float]:
    """The per-step row after step ``step`` (0-based) of ``epoch``: means over ``window``."""
    count = step % log_every + 1  # the steps summed into the window since the last row
    return {
        "step": epoch * steps + step + 1,
        "epoch": epoch + (step + 1) / steps,
        "lr": lr,
        **{name: value / count for name, value in window.items()},
    }


def validate(
    model: nn.Module, val_set: Dataset, config: TrainConfig, device: str
) -> dict[str, float]:
    """The validation metrics of ``model`` (accuracy, AUC, ECE, Dice, mean uncertainties); in
    data-parallel training, shared out over the processes (:func:`umlkit.evaluate.summary_over_ranks`)."""
    return summary_over_ranks(
        model, val_set, device=device, batch_size=2 * config.batch_size, surface_metrics=False
    )


def save_epoch(
    output_dir: Path, run: Mapping[str, Any], state: TrainingState, data: dict[str, Any]
) -> None:
    """Write the run folder after an epoch: ``best.pt`` if it improved, ``last.pt``, the tables.

    Args:
        output_dir: the run folder.
        run: ``config``, ``model``, ``optimizer`` and ``device`` of the run.
        state: the run's state after :meth:`TrainingState.finish_epoch`.
        data: :func:`data_record` of the training data.
    """
    config, model = run["config"], run["model"]
    epoch = state.next_epoch - 1
    common = {
        "umlkit_version": umlkit.__version__,
        "train_config": config.to_dict(),
        "model_config": model.config.to_dict(),
        "data": data,
    }
    best = None
    if state.best_epoch == epoch:
        best = {**common, "model_state": state.best_state, "epoch": epoch}
        best["score"] = state.best_score
    last = {
        **common,
        "model_state": model.state_dict(),
        "optimizer_state": run["optimizer"].state_dict(),
        "epoch": epoch,
        "history": state.history,
        "best": {"epoch": state.best_epoch, "score": state.best_score},
        "rng": rng_states(run["device"]),
        "steps": state.steps,
        "stopped_early": state.stopped,
    }
    tables = {HISTORY_FILE: state.history, STEPS_FILE: state.steps}
    finished = state.stopped or state.next_epoch == config.epochs
    # the half budget's files first: a last.pt on disk always finds the candidates it needs
    save_half_budget(output_dir, state.half, state.next_epoch, finished)
    save_run_state(output_dir, last, best, tables)


def _resume(output_dir: Path, config: TrainConfig, model, optimizer, data, names) -> TrainingState:
    """Restore model, optimizer, history, steps, best epoch and RNG states from ``last.pt``,
    after checking that it is readable, of this configuration and of these data."""
    path = output_dir / CHECKPOINT_LAST
    checkpoint = load_checkpoint(path, require=RESUME_KEYS)
    check_resume_configuration(
        checkpoint,
        "train_config",
        config.to_dict(),
        ignored=(*NOT_HASHED, "data_root"),  # the data are compared by their fingerprint
        path=path,
        advice=f"use another {names['output_dir']} or {names['overwrite']} to start over",
    )
    check_same_data(checkpoint, config.data_root, data["fingerprint"], path, names)
    state = TrainingState(**resume_progress(checkpoint, path, lists=("history", "steps")))
    state.best_state = best_state_of(output_dir, state.best_epoch)
    state.stopped = bool(checkpoint.get("stopped_early", False))
    state.half = HalfBudget(half_budget_entries(output_dir))
    load_model_state(model, checkpoint, path)
    restore_optimizer_and_rng(optimizer, checkpoint, path)
    return state


# ------------------------------------------------------------------------------------- cache
def default_cache_dir() -> Path:
    """``<project root>/data/cache/models``."""
    return project_root() / "data" / "cache" / "models"


def get_or_train(
    config: TrainConfig,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    callback: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Return the trained model of ``config``, training it only if no finished run is cached.

    Runs live in ``<cache_dir>/<config_hash(config)>/``; a finished one (all epochs done, or
    ended by early stopping) is loaded, an interrupted one is resumed, a missing one is trained
    (:func:`umlkit.runs.get_or_train_cached`). Later notebooks call this with the same
    configuration and get the model the first one trained.

    Args:
        config: the configuration.
        cache_dir: default ``<project root>/data/cache/models``.
        progress: progress bar while training.
        callback: as in :func:`train` (only called when training happens).

    Returns:
        A :class:`TrainResult`; ``from_cache`` tells whether training was skipped.
    """
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)

    def load_finished(folder: Path, last: dict, best: dict) -> TrainResult:
        history = pd.read_csv(folder / HISTORY_FILE)
        half = load_checkpoint(folder / CHECKPOINT_HALF, require=("model_state", "epoch"))
        return TrainResult(
            model=model_from_checkpoint(best, folder / CHECKPOINT_BEST, device=config.device),
            history=history,
            config=copy.deepcopy(config),
            best_epoch=int(best["epoch"]),
            best_score=float(best["score"]),
            output_dir=folder,
            from_cache=True,
            steps=pd.read_csv(folder / STEPS_FILE),
            convergence=run_convergence(history, int(best["epoch"]), config),
            half_state=half["model_state"],
            half_epoch=int(half["epoch"]),
        )

    def train_in(folder: Path) -> TrainResult:
        return train(
            config, output_dir=folder, resume=True, progress=progress, callback=callback, log=None
        )

    return get_or_train_cached(
        cache_dir,
        config_hash(config),
        config.epochs,
        load_finished,
        train_in,
        files=(HISTORY_FILE, STEPS_FILE, CHECKPOINT_HALF),
    )
