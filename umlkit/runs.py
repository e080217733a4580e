"""Run folders and the model cache: where a training run lives, how it starts, resumes and is reused.

A *run folder* holds one training run::

    runs/uml/
        config.json   the configuration, written when the run starts
        last.pt       the latest state: weights, optimizer, epoch, history, random states
        best.pt       the weights of the best validated epoch so far
        history.csv   one row per epoch (losses, learning rate, validation metrics)
        steps.csv     (supervised loop) the training loss every few optimisation steps

Both training loops (:func:`umlkit.train.train` and :func:`umlkit.semi.loop.fit_semi`) walk through
the same life of such a folder, with the functions of this module:

1. **Claim** it (:func:`claim_run_folder`): a folder that already holds a run is only continued
   with ``resume`` or replaced with ``overwrite``, so no earlier run is lost by accident.
2. **Check, then prepare** it: a resumed run must have the same configuration
   (:func:`check_resume_configuration`) and data (:func:`umlkit.checkpoints.check_same_data`);
   only when every check has passed are old files removed (:func:`prepare_run_folder`).
3. **Save** every epoch (:func:`save_run_state`): ``best.pt`` before ``last.pt``, then the tables.
4. **Resume** from ``last.pt``: how far the run got (:func:`resume_progress`) and its best weights
   (:func:`best_state_of`).

On top of run folders sits **a cache keyed by the configuration** (:func:`cache_key`): the run of
configuration ``c`` lives in ``<cache>/<hash of c>/``; :func:`get_or_train_cached` loads it when it
is finished (:func:`finished_checkpoints`), resumes it when it was interrupted and trains it when it
is missing. The key covers the dataset by a fingerprint of the content of its files
(:func:`umlkit.checkpoints.dataset_fingerprint`: a relabelled table or an image edited in place
is new data) and the umlkit version, so new data or new code retrain instead of returning a stale
model, which lets a notebook call "get or train" freely.

The files themselves are written and read by :mod:`umlkit.checkpoints` (atomically, with one-line
errors).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch

import umlkit
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

HISTORY_FILE = "history.csv"
STEPS_FILE = "steps.csv"
CONFIG_FILE = "config.json"

Result = TypeVar("Result")


# ------------------------------------------------------------------------- a run's lifecycle
def claim_run_folder(
    output_dir: Path | None,
    run_files: Sequence[str],
    resume: bool,
    overwrite: bool,
    names: Mapping[str, str],
) -> list[str]:
    """Check that a run may start in ``output_dir`` and return the ``run_files`` already there.

    A folder holding any of ``run_files`` holds a run: it is only continued with ``resume`` or
    replaced with ``overwrite`` (never both), so no earlier run is lost by accident. Nothing is
    written here; ``names`` says how messages name ``output_dir``, ``resume`` and ``overwrite``.

    Raises:
        ValueError: ``resume`` and ``overwrite`` together.
        FileExistsError: ``output_dir`` is a file, or holds a run and neither flag is set.
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

    A run is finished when ``last.pt``, ``best.pt`` and every one of ``files`` exist and
    ``last.pt`` is the checkpoint of epoch ``epochs - 1`` (epochs count from 0). An
    interrupted run (an earlier last epoch) is not finished: the caller resumes it.
    """
    last, best = folder / CHECKPOINT_LAST, folder / CHECKPOINT_BEST
    needed = [last, best, *(folder / name for name in files)]
    if not all(path.is_file() for path in needed):
        return None
    last_checkpoint = load_checkpoint(last)
    if int(last_checkpoint["epoch"]) != epochs - 1:
        return None
    return last_checkpoint, load_checkpoint(best)


def get_or_train_cached(
    cache_dir: Path,
    key: str,
    epochs: int,
    load_finished: Callable[[Path, dict[str, Any], dict[str, Any]], Result],
    train: Callable[[Path], Result],
    files: Iterable[str] = (HISTORY_FILE,),
) -> Result:
    """The cache lookup behind ``get_or_train`` and ``get_or_train_semi``.

    The run of a configuration lives in ``cache_dir / key``. If that folder holds a finished run
    (:func:`finished_checkpoints`), ``load_finished(folder, last, best)`` builds the result from
    it; otherwise ``train(folder)`` trains, and is expected to resume an interrupted run there.

    Args:
        cache_dir: the cache's folder.
        key: the configuration's hash (built with :func:`cache_key`).
        epochs: how many epochs a finished run has.
        load_finished: builds the loop's result from a finished run.
        train: trains (or resumes) the run in the folder it is given.
        files: the tables a finished run must have besides its checkpoints.
    """
    folder = Path(cache_dir) / key
    finished = finished_checkpoints(folder, epochs, files)
    if finished is not None:
        return load_finished(folder, *finished)
    return train(folder)
