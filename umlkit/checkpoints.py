"""Checkpoints: atomic writes, reading and writing checkpoint files, random states, data identity.

A checkpoint is a dict saved with ``torch.save``: the model's configuration and weights, and for
a resumable ``last.pt`` also the optimizer, the epoch, the history and the random states. How the
files of a run are laid out in its folder, and the model cache built on them, live in
:mod:`umlkit.runs`; this module is what those folders are made of. Four ideas:

* **Atomic writes**: every file goes through :func:`umlkit.folders.atomic_write`, so a reader (or
  a resumed run after a crash) sees the old file or the new one, never half of one.
  :func:`save_checkpoint`, :func:`write_table` and :func:`save_npz_atomic` are that function for
  checkpoints, tables and arrays.
* **One-line errors**: reading a checkpoint (:func:`load_checkpoint`) never shows a traceback of
  torch's internals: whatever is wrong with the file, the error is one line that names the file
  and the problem. Loading its weights (:func:`load_module_state`) reports a mismatch the same way.
* **Exact resuming**: ``last.pt`` stores the random-number states of torch, numpy and Python
  (:func:`rng_states`) next to the weights and optimizer, so that a resumed run draws the same
  numbers the uninterrupted run would have drawn.
* **Data identity**: a checkpoint records the data it was trained on (:func:`data_record`): its
  classes, and a fingerprint of the content of its files (:func:`dataset_fingerprint`; each
  file's digest is cached, so an unchanged dataset is not read again).
  Resuming refuses other data (:func:`check_same_data`), evaluation other classes
  (:func:`check_checkpoint_data`).
"""

from __future__ import annotations

import pickle
import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from umlkit.divergence import first_nonfinite
from umlkit.fingerprints import dataset_fingerprint as dataset_fingerprint
from umlkit.fingerprints import fingerprint_files
from umlkit.folders import atomic_write
from umlkit.models import ModelConfig, model_from_config
from umlkit.runtime import pick_device

CHECKPOINT_LAST = "last.pt"
CHECKPOINT_BEST = "best.pt"

#: How :func:`check_same_data` names the arguments a user can change to go on.
ARGUMENT_NAMES = {
    "data_root": "data_root",
    "output_dir": "output_dir",
    "overwrite": "overwrite=True",
}
#: The first bytes of every file ``torch.save`` writes (a zip archive).
TORCH_ZIP_MAGIC = b"PK\x03\x04"


def write_table(path: str | Path, rows: pd.DataFrame | Sequence[Mapping[str, Any]]) -> Path:
    """Write a table (a DataFrame or a list of row dicts) as CSV without its index, atomically."""
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    return atomic_write(path, lambda target: frame.to_csv(target, index=False))


def save_npz_atomic(path: Path, **arrays: np.ndarray) -> None:
    """``np.savez`` into ``path`` through :func:`~umlkit.folders.atomic_write`: an interrupted
    write, or two processes writing at once, never leave a truncated file (the stored splits of
    the data loaders use it)."""

    def write(target: Path) -> None:
        with target.open("wb") as stream:  # a stream: np.savez would append ".npz" to a name
            np.savez(stream, **arrays)

    atomic_write(path, write)


# -------------------------------------------------------------------------- checkpoint files
def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> Path:
    """Save a checkpoint dict with ``torch.save``, atomically
    (:func:`umlkit.folders.atomic_write`)."""
    return atomic_write(path, lambda target: torch.save(checkpoint, target))


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type's name when the message is empty)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def load_checkpoint(
    path: str | Path, require: Iterable[str] = ("model_config", "model_state")
) -> dict[str, Any]:
    """Read a umlkit checkpoint (tensors land on the CPU).

    The one reader of umlkit checkpoints (evaluation, resuming, the model cache and the
    semi-supervised loop use it). ``torch.load`` runs with ``weights_only=True``: a checkpoint
    holds tensors, numbers, strings and containers only, so a file that would need arbitrary
    Python objects (which unpickling could run code for) is refused.

    Args:
        path: the checkpoint file.
        require: the entries the checkpoint must hold (resuming needs more than loading).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is empty, truncated or corrupt, not a file ``torch.save`` wrote, not
            a umlkit checkpoint, or lacks an entry of ``require``; always one line.
    """
    path = Path(path)
    size = _checked_checkpoint_size(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only" in str(error).lower():
            raise ValueError(
                f"checkpoint {path} holds Python objects umlkit never writes (torch's safe loader "
                "refuses them): not a umlkit checkpoint"
            ) from None
        raise ValueError(
            f"checkpoint {path} is corrupt ({size} bytes): {first_line(error)}"
        ) from None
    except (RuntimeError, EOFError, OSError, KeyError, ValueError, AttributeError) as error:
        raise ValueError(
            f"checkpoint {path} is truncated or corrupt ({size} bytes): {first_line(error)}"
        ) from None
    if not isinstance(checkpoint, dict):
        raise ValueError(
            f"{path} is not a umlkit checkpoint (it holds a {type(checkpoint).__name__}, "
            "not a dict)"
        )
    missing = [key for key in require if key not in checkpoint]
    if missing:
        raise ValueError(f"{path} is not a umlkit checkpoint (no {', '.join(missing)})")
    return checkpoint


def _checked_checkpoint_size(path: Path) -> int:
    """The size of the file at ``path`` after checking it is a non-empty ``torch.save`` file."""
    if path.is_dir():
        raise ValueError(f"checkpoint {path} is a folder; name a file such as {CHECKPOINT_BEST}")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        size = path.stat().st_size
        with path.open("rb") as stream:
            head = stream.read(len(TORCH_ZIP_MAGIC))
    except OSError as error:
        raise ValueError(f"checkpoint {path} cannot be read: {error.strerror or error}") from None
    if size == 0:
        raise ValueError(
            f"checkpoint {path} is empty (0 bytes): its writing was interrupted or it is not a "
            "checkpoint"
        )
    if head != TORCH_ZIP_MAGIC:
        raise ValueError(
            f"checkpoint {path} is not in torch.save's zip format (no zip header), which every "
            "umlkit checkpoint is: not a umlkit checkpoint"
        )
    return size


def config_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """``"key: a_value != b_value"`` for every key whose values differ (missing counts as None)."""
    keys = sorted(set(a) | set(b))
    return [f"{k}: {a.get(k)!r} != {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]


# ------------------------------------------------------------------------------- weights
def load_module_state(module: nn.Module, state: Any, path: str | Path | None = None) -> None:
    """``module.load_state_dict(state)``, strictly, a mismatch reported as one ``ValueError`` line.

    Raises:
        ValueError: weights missing from ``state``, unexpected ones, or shapes that do not fit
            (the message counts them and names the first; it names ``path`` when given); or a
            weight that holds NaN or inf (a diverged run's; the message names it).
    """
    where = "checkpoint" if path is None else f"checkpoint {path}"
    broken = first_nonfinite(state) if isinstance(state, Mapping) else None
    if broken is not None:
        raise ValueError(
            f"{where}: its weight {broken[0]} holds {broken[1]}: the run that wrote it diverged; "
            "train again with a lower learning rate"
        )
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except (RuntimeError, TypeError, AttributeError, KeyError) as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        # torch's message starts with a header line; the first problem follows it
        detail = lines[1] if len(lines) > 1 else (lines[0] if lines else type(error).__name__)
        raise ValueError(f"{where}: its weights do not fit its model ({detail})") from None
    if missing or unexpected:
        problems = [
            f"{len(keys)} {kind} (e.g. {keys[0]})"
            for kind, keys in (("missing", missing), ("unexpected", unexpected))
            if keys
        ]
        raise ValueError(
            f"{where}: its weights do not fit its model ({' and '.join(problems)} weights)"
        )


def load_model_state(
    model: nn.Module, checkpoint: dict[str, Any], path: str | Path | None = None
) -> nn.Module:
    """Load a checkpoint's weights into ``model`` after checking that the architectures agree.

    Args:
        model: a model whose ``config`` must equal the checkpoint's model configuration.
        checkpoint: what :func:`load_checkpoint` returned.
        path: the checkpoint's file, named in error messages.

    Raises:
        ValueError: ``model.config`` differs from the checkpoint's model configuration (the
            message lists the differing fields), or the weights do not fit the model.
    """
    differences = config_differences(model.config.to_dict(), checkpoint["model_config"])
    if differences:
        raise ValueError(
            "checkpoint was saved from a different model configuration: " + "; ".join(differences)
        )
    load_module_state(model, checkpoint["model_state"], path)
    return model


def model_from_checkpoint(
    checkpoint: dict[str, Any], path: str | Path, device: str | None = "cpu"
) -> nn.Module:
    """Rebuild the model of a checkpoint :func:`load_checkpoint` read, in eval mode.

    Raises:
        ValueError: the stored model configuration is invalid or the weights do not fit it (the
            message names ``path``).
    """
    try:
        model = model_from_config(checkpoint["model_config"], load_weights=False)
    except (ValueError, TypeError, AttributeError, KeyError) as error:
        raise ValueError(
            f"checkpoint {path}: its model configuration is invalid ({first_line(error)})"
        ) from None
    load_module_state(model, checkpoint["model_state"], path)
    return model.to(pick_device(device)).eval()


def load_model(
    path: str | Path, device: str | None = "cpu", expected: ModelConfig | None = None
) -> nn.Module:
    """Rebuild a model from a checkpoint (its stored :class:`ModelConfig`) and load its weights.

    Args:
        path: a ``best.pt`` / ``last.pt`` written by :func:`umlkit.train.train`.
        device: where to put the model (``None``: the best available).
        expected: if given, the configuration the checkpoint must have been saved from.

    Returns:
        The model in eval mode.

    Raises:
        FileNotFoundError: no checkpoint at ``path``.
        ValueError: not a readable umlkit checkpoint, or a configuration other than ``expected``.
    """
    checkpoint = load_checkpoint(path)
    if expected is not None:
        differences = config_differences(expected.to_dict(), checkpoint["model_config"])
        if differences:
            raise ValueError(
                f"checkpoint {path} holds a different model: " + "; ".join(differences)
            )
    return model_from_checkpoint(checkpoint, path, device)


def check_checkpoint_data(checkpoint: dict[str, Any], dataset, path: str | Path) -> None:
    """Refuse a dataset whose image or pixel classes are not those the checkpoint was trained on.

    Compares the class names the checkpoint records in its ``data`` entry; a checkpoint without
    them (written by an older umlkit) is compared by the numbers of classes of its model.

    Raises:
        ValueError: the classes differ; the message names both.
    """
    record = checkpoint.get("data")
    where = f"{dataset.root} ({dataset.split} split)"
    problems = []
    if isinstance(record, dict) and "class_names" in record:
        for key, label in (("class_names", "classes"), ("seg_class_names", "segmentation classes")):
            trained = tuple(str(name) for name in record.get(key, ()))
            found = tuple(str(name) for name in getattr(dataset, key))
            if trained != found:
                problems.append(f"{label} {list(trained)} but {where} has {list(found)}")
    else:
        model_config = checkpoint["model_config"]
        for key, label in (("num_classes", "classes"), ("num_seg_classes", "segmentation classes")):
            trained, found = model_config.get(key), getattr(dataset, key)
            if trained != found:
                problems.append(f"{trained} {label} but {where} has {found}")
    if problems:
        raise ValueError(f"checkpoint {path} was trained on " + "; and on ".join(problems))


def state_copy(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of ``module``'s weights (what ``best.pt`` keeps while training goes on)."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# ---------------------------------------------------------------------------- random states
def rng_states(device: str | torch.device) -> dict[str, Any]:
    """The states of torch's, numpy's and Python's random generators (and CUDA's on a GPU).

    numpy's state is stored as tensors and numbers rather than its own tuple of arrays, so
    that the checkpoint stays loadable with ``torch.load(weights_only=True)``.
    """
    numpy_state = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(numpy_state[1].astype(np.int64)),
            "pos": int(numpy_state[2]),
            "has_gauss": int(numpy_state[3]),
            "cached_gaussian": float(numpy_state[4]),
        },
        "python": random.getstate(),
    }
    if str(device).startswith("cuda"):
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Set the random generators to what :func:`rng_states` captured."""
    torch.set_rng_state(states["torch"])
    numpy_state = states["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def restore_optimizer_and_rng(
    optimizer: torch.optim.Optimizer, checkpoint: dict[str, Any], path: str | Path
) -> None:
    """Restore a checkpoint's optimizer state and random-number states (every resumed loop).

    Raises:
        ValueError: one line naming ``path`` when either cannot be restored.
    """
    try:
        optimizer.load_state_dict(checkpoint["optimizer_state"])
        restore_rng_states(checkpoint["rng"])
    except (ValueError, TypeError, KeyError, RuntimeError, AttributeError) as error:
        raise ValueError(
            f"checkpoint {path}: its optimizer or random states cannot be restored "
            f"({first_line(error)})"
        ) from None


# ------------------------------------------------------------------------------ data identity
def data_record(config: Any, train_set) -> dict[str, Any]:
    """What a checkpoint records of the data its model was trained on.

    ``config`` is the run's configuration (its ``dataset``, ``data_root`` and ``image_size``).

    ``dataset`` (the loader kind), ``class_names`` and ``seg_class_names`` (the image and pixel
    classes, in label order), ``image_size``, and ``fingerprint`` / ``files``: a hash of the
    relative names, sizes and contents of every file under ``data_root``, and how many there
    are (:func:`dataset_fingerprint`). Resuming compares the fingerprint, so the same files are
    accepted by any path; evaluation compares the classes.
    """
    fingerprint, files = fingerprint_files(config.data_root)
    return {
        "dataset": config.dataset,
        "class_names": [str(name) for name in train_set.class_names],
        "seg_class_names": [str(name) for name in train_set.seg_class_names],
        "image_size": config.image_size,
        "fingerprint": fingerprint,
        "files": files,
    }


def check_same_data(
    checkpoint: dict[str, Any],
    data_root: str | Path,
    fingerprint: str,
    path: Path,
    names: Mapping[str, str] = ARGUMENT_NAMES,
) -> None:
    """Refuse to resume ``checkpoint`` (read from ``path``) on data other than its own.

    The data are compared by their fingerprint (:func:`data_record`), not by the path string, so
    the same folder is accepted by a relative, absolute or symlinked path. A checkpoint without a
    fingerprint (an older umlkit's) is compared by the folder it names.

    ``names`` says how the message names the arguments ``data_root``, ``output_dir`` and
    ``overwrite`` (the command line passes its flags).

    Raises:
        ValueError: other data; the message says how to go on.
    """
    way_out = f"point {names['data_root']} at the run's data, or use another {names['output_dir']}"
    way_out += f" or {names['overwrite']} to start over"
    record = checkpoint.get("data")
    if isinstance(record, dict) and "fingerprint" in record:
        if record["fingerprint"] != fingerprint:
            now = fingerprint_files(data_root)[1]
            raise ValueError(
                f"cannot resume from {path}: the data in {data_root} are not the run's "
                f"({now} files now, {record.get('files', '?')} when it started; files were added, "
                f"removed or rewritten, or it is another dataset); {way_out}"
            )
        return
    saved_root = checkpoint.get("train_config", {}).get("data_root")
    same = saved_root is not None and Path(saved_root).is_dir()
    if not (same and Path(saved_root).samefile(data_root)):
        raise ValueError(f"cannot resume from {path}: it was trained on {saved_root}; {way_out}")
