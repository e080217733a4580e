"""One training loop for every umlkit model: device, AMP, seeding, progress, checkpoints, resume, cache.

>>> config = TrainConfig(model="uml", data_root="data/synthetic/derm-default", epochs=12)
>>> result = train(config, output_dir="runs/uml")          # checkpoints in runs/uml/
>>> result = train(config, output_dir="runs/uml", resume=True)  # continue after an interruption
>>> result = get_or_train(config)   # cached under data/cache/models/<hash>/, trained only once
>>> result.model, result.history    # best model (eval mode) and one row per epoch

What happens in an epoch:

1. The learning rate follows :func:`learning_rate`, set before every step: constant for the
   first ``constant_fraction`` of the epochs, then poly(0.9) decay floored at ``min_lr`` — the
   UML reference schedule (constant 30 of 100 epochs, then poly), stretched to ``epochs``.
2. The training split is shuffled by a generator seeded from ``(seed, epoch)``, so an epoch's
   batches do not depend on what ran before it (this is what makes resuming exact).
3. Each batch: forward (bf16 autocast on CUDA), :func:`umlkit.losses.uml_objective` in float32,
   backward, Adam step. The objective computes the terms the model has outputs for.
4. Validation (:func:`umlkit.evaluate.evaluate` on the ``val`` split): accuracy, Dice, ECE, AUC.
5. **Model selection**: the epoch with the best validation score ``(accuracy + Dice) / 2`` (the
   mean of those the model has: a U-Net is selected on Dice, a classifier on accuracy) is kept;
   ties keep the earlier epoch. The returned model holds the best epoch's weights.
6. Checkpoints (with ``output_dir``): ``last.pt`` every epoch (model, optimizer, epoch, history,
   RNG states, configs, umlkit version, and what the model was trained on: see
   :func:`data_record`) and ``best.pt`` when the score improves, each written to a temporary file
   first and moved into place with ``os.replace`` so a crash never leaves a torn file;
   ``history.csv`` likewise.

Nothing is written before every argument has been checked: the device, the image size against
the network's downsampling factor, the data, the output folder (a folder that holds a run is only
continued with ``resume=True`` or replaced with ``overwrite=True``) and, when resuming, the
checkpoint and its data. A start that fails leaves the output folder as it was.

On CPU the same configuration gives the same numbers run after run (same thread count), and an
interrupted run resumed with ``resume=True`` reproduces the uninterrupted run exactly.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import pickle
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

import umlkit
from umlkit.evaluate import evaluate
from umlkit.losses import official_objective
from umlkit.models import ModelConfig, build_model, model_from_config
from umlkit.runtime import pick_device, project_root, seed_everything

#: Fields of :class:`TrainConfig` that do not change the trained weights' meaning; they are left
#: out of the cache key (a model trained on a GPU is reused on a CPU).
NOT_HASHED = ("device", "num_workers", "array_cache")
#: Label-preserving augmentations :func:`augment_batch` knows.
AUGMENTATIONS = ("none", "flip", "dihedral")
CHECKPOINT_LAST = "last.pt"
CHECKPOINT_BEST = "best.pt"
HISTORY_FILE = "history.csv"
CONFIG_FILE = "config.json"
#: The files of a run: a folder holding any of them holds a run that :func:`train` protects.
RUN_FILES = (CHECKPOINT_LAST, CHECKPOINT_BEST, HISTORY_FILE, CONFIG_FILE)
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
)
#: How :func:`train`'s messages name its arguments; the command line passes its flags instead
#: (``argument_names``), so that no message suggests an argument its user cannot type.
PYTHON_NAMES = {
    "output_dir": "output_dir",
    "resume": "resume=True",
    "overwrite": "overwrite=True",
    "data_root": "TrainConfig.data_root",
    "image_size": "TrainConfig.image_size",
    "device": "TrainConfig.device",
}


@dataclass
class TrainConfig:
    """Everything a training run depends on (hashed for the model cache)."""

    model: str = "uml"  # model name for build_model: uml, uml2024, unet, classifier, multitask
    model_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"navigator": False}
    width: int = 16  # channels of the first encoder level
    dataset: str = "isic2017"  # loader kind for umlkit.data.load_dataset
    data_root: str | None = None  # the dataset folder (required)
    image_size: int = 64  # images and masks are resized to image_size x image_size
    epochs: int = 12  # passes over the training split
    batch_size: int = 16  # images per optimisation step
    lr: float = 1e-3  # Adam learning rate; paper 1e-4 over 100 epochs, 1e-3 for short CPU runs
    weight_decay: float = 1e-5  # Adam weight decay (paper)
    constant_fraction: float = 0.3  # lr constant for this fraction of epochs, then poly(0.9)
    min_lr: float = 1e-5  # floor of the poly decay (paper)
    loss_weights: tuple[float, float, float] = (0.5, 0.4, 0.1)  # (w_cls, w_seg, w_mutual)
    anneal_epochs: int | None = None  # KL annealing T; None: half the epochs (paper 50 of 100)
    loss_kind: str = "digamma"  # evidential loss: digamma, log or mse
    seg_ce_weight: float | None = None  # cross-entropy in L_seg; None: the model's official value
    augment: str = "none"  # random "flip" (h/v), "dihedral" (flips + 90-degree turns) or "none"
    seed: int = 0  # seeds model initialisation and the shuffling
    device: str | None = None  # cpu, cuda, mps; None: CUDA, then MPS, then CPU
    amp: bool = True  # bf16 autocast on CUDA only (every device runs channels_last)
    num_workers: int = 0  # DataLoader worker processes
    array_cache: str | None = None  # folder for decoded, resized splits (load_dataset's cache)

    def __post_init__(self) -> None:
        self.loss_weights = tuple(float(w) for w in self.loss_weights)
        self.model_options = dict(self.model_options)
        for name in ("width", "image_size", "epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {value!r}")
        if self.anneal_epochs is not None and self.anneal_epochs < 1:
            raise ValueError(f"anneal_epochs must be positive or None, got {self.anneal_epochs}")
        if not self.lr > 0 or not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"need lr > 0 and 0 <= min_lr <= lr, got {self.lr}, {self.min_lr}")
        if not 0 <= self.constant_fraction <= 1:
            raise ValueError(f"constant_fraction must lie in [0, 1], got {self.constant_fraction}")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {self.augment!r}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")

    @property
    def kl_anneal_epochs(self) -> int:
        """T of the KL annealing: ``anneal_epochs``, or half the epochs (at least 1)."""
        return self.anneal_epochs or max(1, self.epochs // 2)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-friendly dict."""
        values = asdict(self)
        values["loss_weights"] = list(self.loss_weights)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Rebuild from :meth:`to_dict` output; unknown fields raise a ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}")
        return cls(**values)


@dataclass
class TrainResult:
    """What :func:`train` and :func:`get_or_train` return."""

    model: nn.Module  # the best epoch's weights, in eval mode
    history: pd.DataFrame  # one row per epoch: losses, learning rate, validation metrics
    config: TrainConfig  # the configuration that was trained
    best_epoch: int  # 0-based epoch whose weights the model holds
    best_score: float  # its validation score, (accuracy + Dice) / 2
    output_dir: Path | None = None  # where the checkpoints are (None: trained in memory)
    from_cache: bool = False  # True when get_or_train found a finished run


def learning_rate(config: TrainConfig, epoch: float) -> float:
    r"""The learning rate at training time ``epoch``: constant, then poly(0.9) decay with a floor.

    .. math::
        \mathrm{lr}_t = \begin{cases} \mathrm{lr} & t < t_0 \\
        \max\big(\mathrm{lr}_{min},\ \mathrm{lr}\,(1 - \frac{t - t_0}{T - t_0})^{0.9}\big)
        & t \ge t_0 \end{cases}, \qquad t_0 = \lfloor f\,T \rfloor

    with T = ``epochs`` and f = ``constant_fraction`` (UML reference: 30 of 100 epochs, floor
    1e-5). ``epoch`` is 0-based and may be fractional: the loop sets the rate before every
    optimisation step, at ``t = epoch + step / steps_per_epoch``, so the decay is smooth and the
    last steps run at nearly ``min_lr``. (Set once per epoch, a 4-epoch run would spend its
    whole last epoch at 37 % of the peak rate, and where it stops would depend on the last few
    noisy steps: see notebook 03.)
    """
    start = int(config.constant_fraction * config.epochs)
    if epoch < start:
        return config.lr
    progress = min((epoch - start) / max(config.epochs - start, 1), 1.0)
    return max(config.min_lr, config.lr * (1.0 - progress) ** 0.9)


def selection_score(metrics: dict[str, float]) -> float:
    """The model-selection score: mean of the validation accuracy and Dice the model has."""
    values = [metrics[k] for k in ("accuracy", "dice") if not np.isnan(metrics.get(k, np.nan))]
    return float(np.mean(values)) if values else float("nan")


# ------------------------------------------------------------------------------- checkpoints
def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write via ``write(temporary)`` then ``os.replace``: readers see the old or the new file."""
    temporary = path.with_name(f".{path.name}.tmp")
    write(temporary)
    os.replace(temporary, path)


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> Path:
    """Save a checkpoint dict atomically (temporary file, then ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, lambda target: torch.save(checkpoint, target))
    return path


#: The first bytes of every file ``torch.save`` writes (a zip archive).
_TORCH_ZIP_MAGIC = b"PK\x03\x04"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def load_checkpoint(
    path: str | Path, require: Iterable[str] = ("model_config", "model_state")
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`train` (tensors land on the CPU).

    The one reader of umlkit checkpoints (evaluation, resuming, the model cache and the
    semi-supervised loop use it): whatever is wrong with the file, the error is one line naming
    the file and the problem.

    Args:
        path: the checkpoint file.
        require: the entries the checkpoint must hold (resuming needs :data:`RESUME_KEYS`).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is empty, truncated or corrupt, not a file ``torch.save`` wrote, not
            a umlkit checkpoint, or lacks an entry of ``require``.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"checkpoint {path} is a folder; name a file such as {CHECKPOINT_BEST}")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        size = path.stat().st_size
        with path.open("rb") as stream:
            head = stream.read(len(_TORCH_ZIP_MAGIC))
    except OSError as error:
        raise ValueError(f"checkpoint {path} cannot be read: {error.strerror or error}") from None
    if size == 0:
        raise ValueError(
            f"checkpoint {path} is empty (0 bytes): its writing was interrupted or it is not a "
            "checkpoint"
        )
    if head != _TORCH_ZIP_MAGIC:
        raise ValueError(
            f"checkpoint {path} is not a file torch.save wrote (no zip header): not a umlkit "
            "checkpoint"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only" in str(error).lower():
            raise ValueError(
                f"checkpoint {path} holds Python objects umlkit never writes (torch's safe loader "
                "refuses them): not a umlkit checkpoint"
            ) from None
        raise ValueError(
            f"checkpoint {path} is corrupt ({size} bytes): {_first_line(error)}"
        ) from None
    except (RuntimeError, EOFError, OSError, KeyError, ValueError, AttributeError) as error:
        raise ValueError(
            f"checkpoint {path} is truncated or corrupt ({size} bytes): {_first_line(error)}"
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


def _config_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    keys = sorted(set(a) | set(b))
    return [f"{k}: {a.get(k)!r} != {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]


def _load_state(module: nn.Module, state: Any, path: str | Path | None) -> None:
    """``module.load_state_dict(state)``, a mismatch reported as one ``ValueError`` line."""
    where = "checkpoint" if path is None else f"checkpoint {path}"
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
    differences = _config_differences(model.config.to_dict(), checkpoint["model_config"])
    if differences:
        raise ValueError(
            "checkpoint was saved from a different model configuration: " + "; ".join(differences)
        )
    _load_state(model, checkpoint["model_state"], path)
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
            f"checkpoint {path}: its model configuration is invalid ({_first_line(error)})"
        ) from None
    _load_state(model, checkpoint["model_state"], path)
    return model.to(pick_device(device)).eval()


def load_model(
    path: str | Path, device: str | None = "cpu", expected: ModelConfig | None = None
) -> nn.Module:
    """Rebuild a model from a checkpoint (its stored :class:`ModelConfig`) and load its weights.

    Args:
        path: a ``best.pt`` / ``last.pt`` written by :func:`train`.
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
        differences = _config_differences(expected.to_dict(), checkpoint["model_config"])
        if differences:
            raise ValueError(
                f"checkpoint {path} holds a different model: " + "; ".join(differences)
            )
    return model_from_checkpoint(checkpoint, path, device)


def data_record(config: TrainConfig, train_set) -> dict[str, Any]:
    """What a checkpoint records of the data its model was trained on.

    ``dataset`` (the loader kind), ``class_names`` and ``seg_class_names`` (the image and pixel
    classes, in label order), ``image_size``, and ``fingerprint`` / ``files``: a hash of the
    relative names, sizes and modification times of every file under ``data_root``, and how
    many there are (:func:`dataset_fingerprint`). Resuming compares the fingerprint, so the same
    folder is accepted by any path; evaluation compares the classes.
    """
    fingerprint, files = _fingerprint(config.data_root, mtimes=True)
    return {
        "dataset": config.dataset,
        "class_names": [str(name) for name in train_set.class_names],
        "seg_class_names": [str(name) for name in train_set.seg_class_names],
        "image_size": config.image_size,
        "fingerprint": fingerprint,
        "files": files,
    }


def check_checkpoint_data(checkpoint: dict[str, Any], dataset, path: str | Path) -> None:
    """Refuse a dataset whose image or pixel classes are not those the checkpoint was trained on.

    Compares the class names the checkpoint records (:func:`data_record`); a checkpoint without
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


def _rng_states(device: str) -> dict[str, Any]:
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
    if device.startswith("cuda"):
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _restore_rng_states(states: dict[str, Any]) -> None:
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


def restore_optimizer_and_rng(optimizer: torch.optim.Optimizer, checkpoint: dict, path) -> None:
    """Restore a checkpoint's optimizer state and random-number states (every resumed loop).

    Raises:
        ValueError: one line naming ``path`` when either cannot be restored.
    """
    try:
        optimizer.load_state_dict(checkpoint["optimizer_state"])
        _restore_rng_states(checkpoint["rng"])
    except (ValueError, TypeError, KeyError, RuntimeError, AttributeError) as error:
        raise ValueError(
            f"checkpoint {path}: its optimizer or random states cannot be restored "
            f"({_first_line(error)})"
        ) from None


# ------------------------------------------------------------------------------------ training
def _load_splits(config: TrainConfig, names: Mapping[str, str] = PYTHON_NAMES):
    from umlkit.data import load_dataset

    root = _data_root(config, names)
    options = {"size": config.image_size}
    if config.array_cache is not None:
        options["cache"] = Path(config.array_cache)
    return (
        load_dataset(config.dataset, root, split="train", **options),
        load_dataset(config.dataset, root, split="val", **options),
    )


def _data_root(config: TrainConfig, names: Mapping[str, str] = PYTHON_NAMES) -> Path:
    """``config.data_root`` as a path, checked to be a folder."""
    if config.data_root is None:
        raise ValueError(f"{names['data_root']} is not set: point it at a dataset folder")
    root = Path(config.data_root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} not found ({names['data_root']})")
    return root


def size_factor(depth: int) -> int:
    """What image sides must be divisible by: an encoder of ``depth`` levels halves the image
    ``depth - 1`` times, so the factor is ``2**(depth-1)`` (8 at umlkit's default depth 4)."""
    return 2 ** (depth - 1)


def check_image_size(size: int, depth: int, name: str = "image_size") -> None:
    """Raise a ``ValueError`` naming ``name`` when ``size`` is not a multiple of
    :func:`size_factor` (``depth``), with the nearest sizes that are."""
    factor = size_factor(depth)
    if size % factor:
        below = size // factor * factor
        nearest = f"{below} or {below + factor}" if below else f"{factor}"
        raise ValueError(
            f"{name} {size} is not divisible by {factor}: a network of depth {depth} halves the "
            f"image {depth - 1} times, so sides must be multiples of 2**(depth-1) = {factor} "
            f"(e.g. {nearest})"
        )


def _model_depth(config: TrainConfig) -> int | None:
    """The encoder depth ``config`` builds (None: an invalid one, left to build_model's error)."""
    depth = config.model_options.get("depth", ModelConfig.depth)
    valid = isinstance(depth, int) and not isinstance(depth, bool) and depth >= 2
    return depth if valid else None


def _build(config: TrainConfig, train_set) -> nn.Module:
    return build_model(
        config.model,
        num_classes=train_set.num_classes,
        num_seg_classes=train_set.num_seg_classes,
        width=config.width,
        in_channels=int(train_set[0]["image"].shape[0]),
        **config.model_options,
    )


def _epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """A generator of one epoch (stream 0: shuffling, 1: augmentation), a function of its
    arguments only, so an epoch draws the same numbers whether or not the run was resumed."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 2 + stream)


def augment_batch(
    images: torch.Tensor, masks: torch.Tensor, kind: str, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply one random symmetry per image to images (B,C,H,W) and masks (B,H,W) alike.

    ``"flip"``: horizontal and vertical flips, each with probability 1/2. ``"dihedral"``: those
    and a rotation by a random multiple of 90 degrees (the 8 symmetries of the square; square
    images only). Both keep the synthetic derm labels (border, asymmetry, colours and size do
    not change under them); a vertical cup-to-disc ratio (fundus) survives flips but not
    rotations. The paper trains without augmentation (``"none"``).
    """
    if kind == "none":
        return images, masks
    flips = torch.randint(0, 2, (len(images), 2), generator=generator).tolist()
    turns = torch.randint(0, 4, (len(images),), generator=generator).tolist()
    out_images, out_masks = [], []
    for image, mask, (flip_h, flip_v), turn in zip(images, masks, flips, turns, strict=True):
        dims = [d for d, flip in ((-1, flip_h), (-2, flip_v)) if flip]
        if dims:
            image, mask = image.flip(dims), mask.flip(dims)
        if kind == "dihedral" and turn:
            image, mask = image.rot90(turn, (-2, -1)), mask.rot90(turn, (-2, -1))
        out_images.append(image)
        out_masks.append(mask)
    return torch.stack(out_images), torch.stack(out_masks)


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
        output_dir: folder for ``last.pt``, ``best.pt``, ``history.csv`` and ``config.json``
            (created); ``None`` trains in memory without checkpoints. A folder that already
            holds any of these files is refused unless ``resume`` or ``overwrite`` says what to
            do with it.
        resume: continue the run in ``output_dir`` from its ``last.pt``. The configuration must
            be the same (device, workers and array cache aside) and the data the same files
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
    """
    names = {**PYTHON_NAMES, **(argument_names or {})}
    if resume and overwrite:
        raise ValueError(
            f"{names['resume']} continues a run and {names['overwrite']} replaces it: choose one"
        )
    device = pick_device(config.device, what=names["device"])
    depth = _model_depth(config)
    if depth is not None:
        check_image_size(config.image_size, depth, names["image_size"])
    output_dir = None if output_dir is None else Path(output_dir)
    found = _run_files(output_dir, names)
    if found and not (resume or overwrite):
        raise FileExistsError(
            f"{names['output_dir']} {output_dir} already holds a run ({', '.join(found)}): "
            f"{names['resume']} continues it, {names['overwrite']} replaces it, or choose "
            f"another {names['output_dir']}"
        )
    train_set, val_set = _load_splits(config, names)
    data = None if output_dir is None else data_record(config, train_set)
    seed_everything(config.seed)
    model = _build(config, train_set).to(device)
    optimizer = make_optimizer(model, device, lr=config.lr, weight_decay=config.weight_decay)
    extra = {} if config.seg_ce_weight is None else {"seg_ce_weight": config.seg_ce_weight}
    objective = official_objective(
        config.model,
        weights=config.loss_weights,
        anneal_epochs=config.kl_anneal_epochs,
        kind=config.loss_kind,
        **extra,
    )
    history: list[dict[str, float]] = []
    best = {"epoch": -1, "score": -np.inf, "state": None}
    start_epoch = 0
    resuming = resume and CHECKPOINT_LAST in found
    if resuming:
        start_epoch, history, best = _resume(output_dir, config, model, optimizer, data, names)
    # Every check has passed: from here on the output folder is written.
    if output_dir is not None:
        if found and not resuming:
            _remove_run(output_dir, found)
            if overwrite:
                note = f"replacing the run in {output_dir} ({names['overwrite']})"
            else:
                note = f"no checkpoint in {output_dir}: starting a new run"
                stale = [name for name in found if name != CONFIG_FILE]
                if stale:
                    note += f" (its {', '.join(stale)} removed)"
            if log is not None:
                log(note)
        elif resume and not resuming and log is not None:
            log(f"no checkpoint in {output_dir}: starting a new run")
        output_dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(
            output_dir / CONFIG_FILE,
            lambda target: target.write_text(json.dumps(config.to_dict(), indent=1) + "\n"),
        )

    steps = max(len(train_set) // config.batch_size, 1)
    bar = tqdm(
        total=config.epochs * steps,
        initial=start_epoch * steps,
        desc=f"train {config.model}",
        disable=not progress,
    )
    try:
        for epoch in range(start_epoch, config.epochs):
            started, started_cpu = time.perf_counter(), time.process_time()
            lr = learning_rate(config, epoch)  # at the epoch's first step (then set per step)
            sums = _train_epoch(model, train_set, optimizer, objective, config, epoch, device, bar)
            metrics = evaluate(
                model,
                val_set,
                device=device,
                batch_size=2 * config.batch_size,
                keep_maps=0,
                surface_metrics=False,
            ).summary
            score = selection_score(metrics)
            row = {"epoch": epoch, "lr": lr, **sums}
            row.update({f"val_{k}": metrics[k] for k in _VAL_METRICS})
            row["val_score"] = score
            row["seconds"] = time.perf_counter() - started
            # CPU time of this process (all threads): unlike wall time, it hardly depends on
            # what else the machine is doing.
            row["cpu_seconds"] = time.process_time() - started_cpu
            history.append(row)
            if score > best["score"]:
                best = {"epoch": epoch, "score": score, "state": _state_copy(model)}
            if output_dir is not None:
                _save_epoch(
                    output_dir, config, model, optimizer, epoch, history, best, device, data
                )
            bar.set_postfix(
                loss=f"{sums['loss']:.3f}",
                acc=f"{metrics['accuracy']:.3f}",
                dice=f"{metrics['dice']:.3f}",
            )
            if callback is not None:
                callback(dict(row))
    finally:
        bar.close()
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    return TrainResult(
        model=model.eval(),
        history=pd.DataFrame(history),
        config=config,
        best_epoch=int(best["epoch"]),
        best_score=float(best["score"]),
        output_dir=output_dir,
    )


def _run_files(output_dir: Path | None, names: Mapping[str, str]) -> list[str]:
    """The :data:`RUN_FILES` present in ``output_dir`` (none when it does not exist)."""
    if output_dir is None or not output_dir.exists():
        return []
    if not output_dir.is_dir():
        raise FileExistsError(f"{names['output_dir']} {output_dir} is a file, not a folder")
    return [name for name in RUN_FILES if (output_dir / name).exists()]


def _remove_run(output_dir: Path, found: list[str]) -> None:
    """Delete the run files ``found`` in ``output_dir``, and nothing else."""
    for name in found:
        (output_dir / name).unlink()


#: Validation metrics recorded in the history (prefixed ``val_``).
_VAL_METRICS = ("accuracy", "auc", "ece", "dice", "class_uncertainty", "pixel_uncertainty")


def _state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _train_epoch(model, train_set, optimizer, objective, config, epoch, device, bar) -> dict:
    """One pass over the training split; returns the mean loss and mean loss components."""
    use_amp = config.amp and device.startswith("cuda")
    loader = DataLoader(
        train_set,
        batch_size=config.batch_size,
        shuffle=True,
        generator=_epoch_generator(config.seed, epoch),
        num_workers=config.num_workers,
        pin_memory=device.startswith("cuda"),
        # A last batch of one image would break BatchNorm; dropping the remainder costs nothing
        # over epochs, since the shuffle leaves out different images each time.
        drop_last=len(train_set) >= config.batch_size,
    )
    augmentation = _epoch_generator(config.seed, epoch, stream=1)
    model.train()
    totals: dict[str, float] = {}
    batches = 0
    steps = len(loader)
    for step, batch in enumerate(loader):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, epoch + step / steps)
        images, masks = augment_batch(batch["image"], batch["mask"], config.augment, augmentation)
        images = images.to(device, non_blocking=True)
        masks = masks.to(device, non_blocking=True)
        labels = batch["label"].to(device, non_blocking=True)
        with torch.autocast(
            device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=use_amp
        ):
            output = model(images)
        loss, components = objective(output.float(), masks, labels, epoch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        batches += 1
        for name, value in components.items():
            key = "loss" if name == "total" else f"loss_{name}"
            totals[key] = totals.get(key, 0.0) + value
        bar.update(1)
        bar.set_postfix(loss=f"{totals['loss'] / batches:.3f}", refresh=False)
    return {name: value / max(batches, 1) for name, value in totals.items()}


def _save_epoch(output_dir, config, model, optimizer, epoch, history, best, device, data) -> None:
    common = {
        "umlkit_version": umlkit.__version__,
        "train_config": config.to_dict(),
        "model_config": model.config.to_dict(),
        "data": data,
    }
    if best["epoch"] == epoch:
        save_checkpoint(
            output_dir / CHECKPOINT_BEST,
            {**common, "model_state": best["state"], "epoch": epoch, "score": best["score"]},
        )
    save_checkpoint(
        output_dir / CHECKPOINT_LAST,
        {
            **common,
            "model_state": model.state_dict(),
            "optimizer_state": optimizer.state_dict(),
            "epoch": epoch,
            "history": history,
            "best": {"epoch": best["epoch"], "score": best["score"]},
            "rng": _rng_states(device),
        },
    )
    _atomic_write(
        output_dir / HISTORY_FILE, lambda target: pd.DataFrame(history).to_csv(target, index=False)
    )


def check_same_data(
    checkpoint: dict[str, Any],
    data_root: str | Path,
    fingerprint: str,
    path: Path,
    names: Mapping[str, str] = PYTHON_NAMES,
) -> None:
    """Refuse to resume ``checkpoint`` (read from ``path``) on data other than its own.

    The data are compared by their fingerprint (:func:`data_record`), not by the path string, so
    the same folder is accepted by a relative, absolute or symlinked path. A checkpoint without a
    fingerprint (an older umlkit's) is compared by the folder it names.

    Raises:
        ValueError: other data; the message says how to go on.
    """
    way_out = f"point {names['data_root']} at the run's data, or use another {names['output_dir']}"
    way_out += f" or {names['overwrite']} to start over"
    record = checkpoint.get("data")
    if isinstance(record, dict) and "fingerprint" in record:
        if record["fingerprint"] != fingerprint:
            now = _fingerprint(data_root, mtimes=True)[1]
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


def _resume(output_dir: Path, config: TrainConfig, model, optimizer, data, names):
    """Restore model, optimizer, history, best epoch and RNG states from ``last.pt``, after
    checking that it is readable, of this configuration and of these data."""
    path = output_dir / CHECKPOINT_LAST
    checkpoint = load_checkpoint(path, require=RESUME_KEYS)
    ignored = (*NOT_HASHED, "data_root")  # the data are compared by their fingerprint
    saved_config = checkpoint["train_config"]
    if not isinstance(saved_config, dict):
        raise ValueError(f"{path} is not a umlkit checkpoint (train_config is not a mapping)")
    differences = _config_differences(
        {k: v for k, v in config.to_dict().items() if k not in ignored},
        {k: v for k, v in saved_config.items() if k not in ignored},
    )
    if differences:
        raise ValueError(
            f"cannot resume from {path}: it was trained with another configuration ("
            + "; ".join(differences)
            + f"); use another {names['output_dir']} or {names['overwrite']} to start over"
        )
    check_same_data(checkpoint, config.data_root, data["fingerprint"], path, names)
    best = checkpoint["best"]
    best_state = None
    try:
        epoch, best_epoch, best_score = int(checkpoint["epoch"]), int(best["epoch"]), best["score"]
        history = list(checkpoint["history"])
    except (TypeError, ValueError, KeyError) as error:
        raise ValueError(f"{path} is not a umlkit checkpoint ({_first_line(error)})") from None
    if best_epoch >= 0:
        best_state = load_checkpoint(output_dir / CHECKPOINT_BEST)["model_state"]
    load_model_state(model, checkpoint, path)
    restore_optimizer_and_rng(optimizer, checkpoint, path)
    return (
        epoch + 1,
        history,
        {"epoch": best_epoch, "score": float(best_score), "state": best_state},
    )


# ------------------------------------------------------------------------------------- cache
def _fingerprint(root: str | Path, mtimes: bool) -> tuple[str, int]:
    """The fingerprint of :func:`dataset_fingerprint` and the number of files it covers."""
    root = Path(root)
    entries = []
    for path in root.rglob("*"):
        if path.is_file():
            stat = path.stat()
            entry = [path.relative_to(root).as_posix(), stat.st_size]
            if mtimes:
                entry.append(stat.st_mtime_ns)
            entries.append(entry)
    entries.sort()
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:16], len(entries)


def dataset_fingerprint(root: str | Path, mtimes: bool = False) -> str:
    """A hash of the relative paths and sizes (and with ``mtimes``, modification times) of every
    file under ``root``.

    Cheap (no file is read) and independent of the path ``root`` is reached by. Without
    ``mtimes`` it tells a regenerated or different dataset from the one a cached model was
    trained on (the model cache's key, which a copied dataset still matches); with ``mtimes`` it
    also catches a file rewritten in place with the same size (what a checkpoint records).
    """
    return _fingerprint(root, mtimes)[0]


def make_optimizer(
    model: torch.nn.Module | Iterable[torch.nn.Parameter],
    device: str | torch.device,
    lr: float,
    weight_decay: float = 0.0,
) -> torch.optim.Adam:
    """The Adam optimiser every umlkit training uses: fused where the kernel exists (CPU, CUDA).

    Fused Adam updates every parameter in one kernel instead of a handful of small ops per
    tensor: UML has 178 parameter tensors, and at width 16 the per-tensor loop cost 4.9 ms of a
    215-ms CPU step against 1.6 ms fused (on a CPU PyTorch's default is that per-tensor loop).
    Elsewhere (e.g. MPS) the default implementation runs.

    Args:
        model: a module (all its parameters) or the parameters themselves.
    """
    parameters = model.parameters() if isinstance(model, torch.nn.Module) else model
    return torch.optim.Adam(
        parameters,
        lr=lr,
        weight_decay=weight_decay,
        fused=torch.device(device).type in ("cpu", "cuda"),
    )


#: Raised whenever the numbers of an unchanged configuration change (a new network structure or
#: loss), so that no model trained by older code is loaded from the cache.
TRAINING_REVISION = 4


def config_hash(config: TrainConfig) -> str:
    """The cache key of a configuration: its fields (less :data:`NOT_HASHED`), the dataset's
    fingerprint, the umlkit version and :data:`TRAINING_REVISION`, hashed to 16 hex digits."""
    values = {k: v for k, v in config.to_dict().items() if k not in NOT_HASHED}
    values["training_revision"] = TRAINING_REVISION
    return cache_key(values, config.data_root)


def cache_key(values: dict[str, Any], data_root: str | Path | None) -> str:
    """16 hex digits of SHA-256 over ``values``, the dataset and the umlkit version.

    The dataset enters by its fingerprint (:func:`dataset_fingerprint`) and folder name, not its
    absolute path, so a moved checkout finds its cache; the version makes a new umlkit retrain.
    Shared by the supervised and the semi-supervised caches.
    """
    values = dict(values)
    if data_root is not None and Path(data_root).is_dir():
        values["data_fingerprint"] = dataset_fingerprint(data_root)
        values["data_root"] = Path(data_root).name
    values["umlkit_version"] = umlkit.__version__
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


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

    Runs live in ``<cache_dir>/<config_hash(config)>/``; a finished one (all epochs done) is
    loaded, an interrupted one is resumed, a missing one is trained. Later notebooks call this
    with the same configuration and get the model the first one trained.

    Args:
        config: the configuration.
        cache_dir: default ``<project root>/data/cache/models``.
        progress: progress bar while training.
        callback: as in :func:`train` (only called when training happens).

    Returns:
        A :class:`TrainResult`; ``from_cache`` tells whether training was skipped.
    """
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    folder = cache_dir / config_hash(config)
    finished = _finished_run(folder, config)
    if finished is not None:
        return finished
    return train(
        config, output_dir=folder, resume=True, progress=progress, callback=callback, log=None
    )


def _finished_run(folder: Path, config: TrainConfig) -> TrainResult | None:
    last, best = folder / CHECKPOINT_LAST, folder / CHECKPOINT_BEST
    if not (last.is_file() and best.is_file() and (folder / HISTORY_FILE).is_file()):
        return None
    checkpoint = load_checkpoint(last)
    if int(checkpoint["epoch"]) != config.epochs - 1:
        return None
    best_checkpoint = load_checkpoint(best)
    model = load_model(best, device=config.device)
    return TrainResult(
        model=model,
        history=pd.read_csv(folder / HISTORY_FILE),
        config=copy.deepcopy(config),
        best_epoch=int(best_checkpoint["epoch"]),
        best_score=float(best_checkpoint["score"]),
        output_dir=folder,
        from_cache=True,
    )
