"""Run folders and the model cache: where a training run lives, how it starts, resumes and is reused.

A *run folder* holds one training run::

    runs/uml/
        config.json   the configuration, written when the run starts
        last.pt       the latest state: weights, optimizer, epoch, history, random states
        best.pt       the weights of the best validated epoch so far
        half.pt       the half-budget weights (umlkit.convergence): the best epoch among the
                      first half of the epochs trained so far
        half/         while training: the best weights of the second half's improvements,
                      the candidates for half.pt as the run grows (removed when it finishes)
        history.csv   one row per epoch (losses, learning rate, validation metrics)
        steps.csv     (supervised loop) the training loss every few optimisation steps

Both training loops (:func:`umlkit.train.train` and :func:`umlkit.semi.loop.fit_semi`) walk through
the same life of such a folder, with the functions of this module:

0. **Hold** it (:func:`hold_run_folder`; :func:`umlkit.train.train` does, and the model cache
   for both loops) before anything else, for the whole run: one process writes a run folder at a
   time (:func:`umlkit.folders.folder_lock`), and a folder that cannot be written is named
   before any work is done.
1. **Claim** it (:func:`claim_run_folder`): a folder that already holds a run is only continued
   with ``resume`` or replaced with ``overwrite``, so no earlier run is lost by accident.
2. **Check, then prepare** it: a resumed run must have the same configuration
   (:func:`check_resume_configuration`) and data (:func:`umlkit.checkpoints.check_same_data`);
   only when every check has passed are old files removed (:func:`prepare_run_folder`).
3. **Save** every epoch (:func:`save_run_state`): ``best.pt`` before ``last.pt``, then the tables.
   A new run that fails before its first ``last.pt`` removes what it wrote
   (:func:`undone_if_it_fails_early`), so starting it again needs no ``resume``.
4. **Resume** from ``last.pt``: how far the run got (:func:`resume_progress`) and its best weights
   (:func:`best_state_of`).

On top of run folders sits **a cache keyed by the configuration** (:func:`cache_key`): the run of
configuration ``c`` lives in ``<cache>/<hash of c>/``; :func:`get_or_train_cached` loads it when it
is finished (:func:`finished_checkpoints`), resumes it when it was interrupted and trains it when it
is missing or damaged; it holds the entry's lock meanwhile, so two notebooks (or worker processes)
that want one configuration train it once (the second waits, then loads the first one's run).
The key covers the dataset by a fingerprint of the content of its files
(:func:`umlkit.checkpoints.dataset_fingerprint`: a relabelled table or an image edited in place
is new data) and the umlkit version, so new data or new code retrain instead of returning a stale
model, which lets a notebook call "get or train" freely.

The files themselves are written and read by :mod:`umlkit.checkpoints` (atomically, with one-line
errors).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

import torch

import umlkit
from umlkit import distributed
from umlkit.checkpoints import (
    CHECKPOINT_BEST,
    CHECKPOINT_LAST,
    config_differences,
    dataset_fingerprint,
    first_line,
    load_checkpoint,
    save_checkpoint,
    write_table,
)
from umlkit.folders import folder_lock

HISTORY_FILE = "history.csv"
CHECKPOINT_HALF = "half.pt"
HALF_FOLDER = "half"
STEPS_FILE = "steps.csv"
CONFIG_FILE = "config.json"

Result = TypeVar("Result")


# ------------------------------------------------------------------------- a run's lifecycle
def hold_run_folder(
    output_dir: Path | None, what: str, log: Callable[[str], None] | None = None
) -> AbstractContextManager:
    """The lock of ``output_dir`` for a whole run (:func:`umlkit.folders.folder_lock`).

    Use it as ``with hold_run_folder(output_dir, "output_dir"):`` around everything the run
    does: a second run into the folder is refused at once (``FolderInUseError`` naming the
    process), and a folder that cannot be created or written is one ``CannotWriteError`` line.
    No lock without a folder, nor in the processes of a torchrun launch other than the first,
    which never write it.
    """
    launch = distributed.launch_environment()
    if output_dir is None or (launch is not None and launch.rank != 0):
        return nullcontext(output_dir)
    return folder_lock(output_dir, what=what, log=log)


def claim_run_folder(
    output_dir: Path | None,
    run_files: Sequence[str],
    resume: bool,
    overwrite: bool,
    names: Mapping[str, str],
    checkpoint: str | None = None,
    weights: Sequence[str] = (),
) -> list[str]:
    """Check that a run may start in ``output_dir`` and return the ``run_files`` already there.

    A folder holding any of ``run_files`` holds a run: it is only continued with ``resume`` or
    replaced with ``overwrite`` (never both), so no earlier run is lost by accident. A run
    asked to ``resume`` that finds no ``checkpoint`` to resume from starts afresh, deleting the
    earlier run's files (:func:`prepare_run_folder`): that is refused where the folder still
    holds trained weights (any file matching the glob patterns ``weights``), which only
    ``overwrite`` may replace. Nothing is written here; ``names`` says how messages name
    ``output_dir``, ``resume`` and ``overwrite``.

    Raises:
        ValueError: ``resume`` and ``overwrite`` together.
        FileExistsError: ``output_dir`` is a file, holds a run and neither flag is set, or holds
            trained weights but no ``checkpoint`` to resume from.
    """
    if resume and overwrite:
        raise ValueError(
            f"{names['resume']} continues a run and {names['overwrite']} replaces it: choose one"
        )
    if output_dir is None or not output_dir.exists():
        return []
    if not output_dir.is_dir():
        raise FileExistsError(f"{names['output_dir']} {output_dir} is a file, not a folder")
    found = [name for name in run_files if (output_dir / name).exists()]
    if found and not (resume or overwrite):
        raise FileExistsError(
            f"{names['output_dir']} {output_dir} already holds a run ({', '.join(found)}): "
            f"{names['resume']} continues it, {names['overwrite']} replaces it, or choose "
            f"another {names['output_dir']}"
        )
    if resume and checkpoint is not None and checkpoint not in found:
        kept = sorted(
            {
                path.relative_to(output_dir).as_posix()
                for w in weights
                for path in output_dir.glob(w)
            }
        )
        if kept:
            raise FileExistsError(
                f"{names['output_dir']} {output_dir} holds trained weights ({', '.join(kept)}) "
                f"but no {checkpoint} to resume from: {names['overwrite']} replaces that run, or "
                f"choose another {names['output_dir']}"
            )
    return found


def prepare_run_folder(
    output_dir: Path,
    found: Sequence[str],
    resuming: bool,
    resume: bool,
    overwrite: bool,
    names: Mapping[str, str],
) -> list[str]:
    """Create ``output_dir`` and delete the run files ``found`` unless the run is resumed.

    Call it once every check has passed (:func:`claim_run_folder`, the data, the checkpoint).
    No file other than ``found`` is touched.

    Returns:
        The notes to show the user: a replaced run, or a new run where one was to be resumed.
    """
    note = None
    if found and not resuming:
        for name in found:
            (output_dir / name).unlink()
        if overwrite:
            note = f"replacing the run in {output_dir} ({names['overwrite']})"
        else:
            note = f"no checkpoint in {output_dir}: starting a new run"
            stale = [name for name in found if name != CONFIG_FILE]
            if stale:
                note += f" (its {', '.join(stale)} removed)"
    elif resume and not resuming:
        note = f"no checkpoint in {output_dir}: starting a new run"
    output_dir.mkdir(parents=True, exist_ok=True)
    return [] if note is None else [note]


def save_run_state(
    output_dir: Path,
    last: dict[str, Any],
    best: dict[str, Any] | None = None,
    tables: Mapping[str, Any] | None = None,
) -> None:
    """Write one epoch's files of a run folder: ``best.pt`` (when given), ``last.pt``, tables.

    ``best.pt`` is written before ``last.pt``: a crash between the two leaves a ``last.pt`` whose
    best epoch is already on disk, so resuming always finds the weights it refers to.

    Args:
        output_dir: the run folder.
        last: the resumable state (see each loop's ``RESUME_KEYS``).
        best: the best epoch's checkpoint, when this epoch is the best so far.
        tables: file name -> rows (e.g. ``{HISTORY_FILE: history}``), each written as CSV.
    """
    if best is not None:
        save_checkpoint(output_dir / CHECKPOINT_BEST, best)
    save_checkpoint(output_dir / CHECKPOINT_LAST, last)
    for name, rows in (tables or {}).items():
        write_table(output_dir / name, rows)


@contextmanager
def undone_if_it_fails_early(output_dir: Path | None, run_files: Sequence[str]) -> Iterator[None]:
    """Remove the ``run_files`` a new run wrote when it fails before its first ``last.pt``.

    Wrap a new run's epochs in it once :func:`prepare_run_folder` has emptied the folder of run
    files, so that every run file there is this run's. Until ``last.pt`` exists there is nothing
    to resume: a failure in the first epoch (an unreadable image, a loss that is not finite,
    Ctrl-C) would leave ``config.json`` (and maybe ``best.pt``) behind, and starting again would
    be refused as "already holds a run". Those files are removed; the user's own files stay.
    Once ``last.pt`` exists, nothing is removed: ``resume`` continues from there. ``None`` (no
    folder, a resumed run) undoes nothing, nor does a torchrun process other than the first.
    """
    try:
        yield
    except BaseException:
        written = output_dir is not None and distributed.is_main_process()
        if written and not (output_dir / CHECKPOINT_LAST).exists():
            for name in run_files:
                (output_dir / name).unlink(missing_ok=True)
        raise


def check_resume_configuration(
    checkpoint: dict[str, Any],
    key: str,
    current: Mapping[str, Any],
    ignored: Iterable[str],
    path: Path,
    advice: str = "",
) -> None:
    """Refuse to resume a checkpoint trained with another configuration.

    Args:
        checkpoint: the ``last.pt`` read by :func:`load_checkpoint`.
        key: where it stores its configuration (``"train_config"``, ``"semi_config"``).
        current: this run's configuration as a dict.
        ignored: fields that may differ (those that do not change the result).
        path: the checkpoint's file, for the message.
        advice: appended to the message after ``"; "`` (how to go on).

    Raises:
        ValueError: one line listing the differing fields.
    """
    saved = checkpoint[key]
    if not isinstance(saved, dict):
        raise ValueError(f"{path} is not a umlkit checkpoint ({key} is not a mapping)")
    ignored = set(ignored)
    differences = config_differences(
        {k: v for k, v in current.items() if k not in ignored},
        {k: v for k, v in saved.items() if k not in ignored},
    )
    if differences:
        raise ValueError(
            f"cannot resume from {path}: it was trained with another configuration ("
            + "; ".join(differences)
            + ")"
            + (f"; {advice}" if advice else "")
        )


def resume_progress(
    checkpoint: dict[str, Any],
    path: Path,
    lists: Iterable[str] = ("history",),
    counters: Iterable[str] = (),
) -> dict[str, Any]:
    """How far the run of a ``last.pt`` got, read and type-checked.

    Returns:
        ``next_epoch`` (the epoch after the checkpoint's), ``best_epoch`` and ``best_score``,
        each entry of ``lists`` (e.g. ``history``) as a list and of ``counters`` (e.g. ``step``)
        as an int.

    Raises:
        ValueError: one line, when an entry is missing or of the wrong type.
    """
    try:
        best = checkpoint["best"]
        progress = {
            "next_epoch": int(checkpoint["epoch"]) + 1,
            "best_epoch": int(best["epoch"]),
            "best_score": float(best["score"]),
        }
        progress.update({key: list(checkpoint[key]) for key in lists})
        progress.update({key: int(checkpoint[key]) for key in counters})
    except (TypeError, ValueError, KeyError) as error:
        raise ValueError(f"{path} is not a umlkit checkpoint ({first_line(error)})") from None
    return progress


def save_half_budget(output_dir: Path, half: Any, epochs_run: int, finished: bool) -> None:
    """Write the half-budget files of a run folder after ``epochs_run`` epochs.

    ``half`` is the run's :class:`umlkit.convergence.HalfBudget`. Each candidate it holds is
    kept as ``half/epoch_NNNN.pt`` (written once, removed when it can no longer be the half
    budget), so that a resumed run finds them; ``half.pt`` holds the current half budget. When
    the run is ``finished`` the candidates are removed and only ``half.pt`` stays.
    """
    folder = output_dir / HALF_FOLDER
    kept = {f"epoch_{epoch:04d}.pt": (epoch, state) for epoch, state in half.entries}
    current = half.current(epochs_run)
    if current is not None:
        epoch, state = current
        record = {"model_state": state, "epoch": epoch, "epochs_run": epochs_run}
        save_checkpoint(output_dir / CHECKPOINT_HALF, record)
    if not finished:
        folder.mkdir(exist_ok=True)
        for name, (epoch, state) in kept.items():
            if not (folder / name).is_file():
                save_checkpoint(folder / name, {"model_state": state, "epoch": epoch})
    if folder.is_dir():
        for path in folder.glob("epoch_*.pt"):
            if finished or path.name not in kept:
                path.unlink(missing_ok=True)
        if finished:
            folder.rmdir()


def half_budget_entries(output_dir: Path) -> list[tuple[int, dict[str, torch.Tensor]]]:
    """The half-budget candidates a resumed run left in ``half/``, oldest first."""
    folder = output_dir / HALF_FOLDER
    entries = []
    for path in sorted(folder.glob("epoch_*.pt")) if folder.is_dir() else ():
        checkpoint = load_checkpoint(path, require=("model_state", "epoch"))
        entries.append((int(checkpoint["epoch"]), checkpoint["model_state"]))
    return entries


def best_state_of(output_dir: Path, best_epoch: int) -> dict[str, torch.Tensor] | None:
    """The weights in ``best.pt`` of a run being resumed (``None`` before any validation)."""
    if best_epoch < 0:
        return None
    return load_checkpoint(output_dir / CHECKPOINT_BEST)["model_state"]


# ---------------------------------------------------------------------------- the model cache
def cache_key(values: Mapping[str, Any], data_root: str | Path | None) -> str:
    """16 hex digits of SHA-256 over ``values``, the dataset and the umlkit version.

    ``values`` are the configuration fields that change the result (each loop leaves out the
    rest, such as the device) plus the loop's revision number. The dataset enters by its
    fingerprint (:func:`dataset_fingerprint`: the names, sizes and contents of its files) and
    folder name, not its absolute path, so a moved checkout finds its cache; the version makes a
    new umlkit retrain.
    """
    values = dict(values)
    if data_root is not None and Path(data_root).is_dir():
        values["data_fingerprint"] = dataset_fingerprint(data_root)
        values["data_root"] = Path(data_root).name
    values["umlkit_version"] = umlkit.__version__
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def finished_checkpoints(
    folder: Path, epochs: int, files: Iterable[str] = (HISTORY_FILE,)
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """``(last, best)`` checkpoints of a finished run in ``folder``, else ``None``.

    A run is finished when ``last.pt`` is the checkpoint of epoch ``epochs - 1`` (epochs count
    from 0) or says that early stopping ended it (``stopped_early``). Without a ``last.pt``, or with an earlier last epoch (an interrupted run), it is
    not: the caller trains or resumes it.

    Raises:
        ValueError: the run is damaged: ``last.pt`` or ``best.pt`` cannot be read, or a finished
            run lacks ``best.pt`` or one of ``files``; one line naming the file.
    """
    last, best = folder / CHECKPOINT_LAST, folder / CHECKPOINT_BEST
    if not last.is_file():
        return None
    last_checkpoint = load_checkpoint(last, require=("epoch",))
    if int(last_checkpoint["epoch"]) != epochs - 1 and not last_checkpoint.get("stopped_early"):
        return None
    missing = [
        path.name for path in (best, *(folder / name for name in files)) if not path.is_file()
    ]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise ValueError(
            f"{last} is the last epoch of a run but {', '.join(missing)} {verb} missing"
        )
    return last_checkpoint, load_checkpoint(best)


def get_or_train_cached(
    cache_dir: Path,
    key: str,
    epochs: int,
    load_finished: Callable[[Path, dict[str, Any], dict[str, Any]], Result],
    train: Callable[[Path], Result],
    files: Iterable[str] = (HISTORY_FILE,),
    log: Callable[[str], None] = print,
) -> Result:
    """The cache lookup behind ``get_or_train`` and ``get_or_train_semi``.

    The run of a configuration lives in ``cache_dir / key``. If that folder holds a finished run
    (:func:`finished_checkpoints`), ``load_finished(folder, last, best)`` builds the result from
    it; otherwise ``train(folder)`` trains, and is expected to resume an interrupted run there.
    A damaged run (a file deleted or unreadable) is said in one line to ``log`` and trained
    again from the start.

    The entry's lock (:func:`umlkit.folders.folder_lock`) is held throughout: a second process
    that wants the same entry meanwhile waits (``log`` says for whom), then loads the run the
    first one finished, so a configuration is trained once however many notebooks want it. An
    entry this process cannot write (a read-only copy of a cache) is read without the lock.

    Args:
        cache_dir: the cache's folder.
        key: the configuration's hash (built with :func:`cache_key`).
        epochs: how many epochs a finished run has.
        load_finished: builds the loop's result from a finished run.
        train: trains (or resumes) the run in the folder it is given.
        files: the tables a finished run must have besides its checkpoints.
        log: receives the notes (waiting, a damaged entry trained again).
    """
    folder = Path(cache_dir) / key
    wait = f"training the same configuration in {folder}"
    lock = folder_lock(folder, what="model cache entry", wait=wait, log=log)
    if folder.is_dir() and not os.access(folder, os.W_OK):
        # A read-only copy of a cache (a lab room's shared models): nothing can change it, so
        # it is read without a lock; an entry that needs training fails in train(), in one line.
        lock = nullcontext(folder)
    with lock:
        try:
            finished = finished_checkpoints(folder, epochs, files)
        except ValueError as problem:
            # Trained again rather than refused: an entry is rebuilt from its configuration and
            # data alone, so starting over costs only time, while a refusal would leave a
            # student to find and delete a hashed folder by hand.
            log(f"model cache entry {folder} is damaged ({problem}): training it again")
            for name in (CHECKPOINT_LAST, CHECKPOINT_BEST, CONFIG_FILE, *files):
                (folder / name).unlink(missing_ok=True)
            finished = None
        if finished is not None:
            return load_finished(folder, *finished)
        return train(folder)
