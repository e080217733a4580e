"""What a training run depends on, where it stands and what it returns: :class:`TrainConfig`,
:class:`TrainingState`, :class:`TrainResult`.

A :class:`TrainConfig` is a plain dataclass: every field a run depends on, checked when it is
created, turned into a dict for ``config.json`` and the checkpoints, and hashed
(:func:`config_hash`) into the key of the model cache. :func:`umlkit.train.train` takes one and
returns a :class:`TrainResult`; :mod:`umlkit.train` re-exports both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from umlkit.checkpoints import state_copy
from umlkit.convergence import Convergence, HalfBudget
from umlkit.data.augment import AUGMENTATIONS
from umlkit.models import ModelConfig
from umlkit.runs import cache_key

#: Fields of :class:`TrainConfig` that do not change the trained weights; they are left out of
#: the cache key (a model trained on a GPU is reused on a CPU) and may differ when resuming.
NOT_HASHED = ("device", "num_workers", "array_cache", "log_every", "compile")
#: How :func:`train`'s messages name its arguments; the command line passes its flags instead
#: (``argument_names``), so that no message suggests an argument its user cannot type.
PYTHON_NAMES = {
    "output_dir": "output_dir",
    "resume": "resume=True",
    "overwrite": "overwrite=True",
    "data_root": "TrainConfig.data_root",
    "image_size": "TrainConfig.image_size",
    "device": "TrainConfig.device",
    "lr": "TrainConfig.lr",
}
#: Part of the cache key: raised whenever an unchanged configuration would give other numbers
#: or other run files (a new network structure, loss or table), so that no run written by
#: older code is loaded from the cache. 8: a finished run also holds its half-budget weights
#: (``half.pt``, :mod:`umlkit.convergence`), which earlier runs lack.
TRAINING_REVISION = 8


@dataclass
class TrainConfig:
    """Everything a training run depends on (hashed for the model cache)."""

    model: str = "uml"  # model name for build_model: uml, uml2024, unet, classifier, multitask
    model_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"navigator": False}
    width: int = 16  # channels of the first encoder level
    dataset: str = "isic2017"  # loader kind for umlkit.data.load_dataset
    data_root: str | None = None  # the dataset folder (required)
    num_classes: int | None = None  # folder datasets' classes (None: classes.txt, or inferred)
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
    log_every: int = 10  # optimisation steps per row of the per-step loss table
    compile: bool = (
        False  # run the training steps through torch.compile (same model, fused kernels)
    )
    # Early stopping (umlkit.convergence): stop once `patience` epochs raised the best running
    # mean (over `plateau_window` epochs) of the validation score by at most `plateau_tolerance`;
    # `epochs` is then the maximum. None: train all epochs (the rule is still reported).
    patience: int | None = None
    plateau_window: int = 3
    plateau_tolerance: float = 0.005

    def __post_init__(self) -> None:
        self.loss_weights = tuple(float(w) for w in self.loss_weights)
        self.model_options = dict(self.model_options)
        for name in ("width", "image_size", "epochs", "batch_size", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {value!r}")
        for name in ("patience", "plateau_window"):
            value = getattr(self, name)
            if value is None and name == "patience":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {value!r}")
        if not self.plateau_tolerance >= 0:
            raise ValueError(
                f"TrainConfig.plateau_tolerance must be >= 0, got {self.plateau_tolerance!r}"
            )
        if self.anneal_epochs is not None and self.anneal_epochs < 1:
            raise ValueError(f"anneal_epochs must be positive or None, got {self.anneal_epochs}")
        if not self.lr > 0 or not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"need lr > 0 and 0 <= min_lr <= lr, got {self.lr}, {self.min_lr}")
        if not 0 <= self.constant_fraction <= 1:
            raise ValueError(f"constant_fraction must lie in [0, 1], got {self.constant_fraction}")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {self.augment!r}")
        if not isinstance(self.compile, bool):
            raise ValueError(f"TrainConfig.compile must be True or False, got {self.compile!r}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.num_classes is not None and self.dataset != "folder":
            raise ValueError(
                f"num_classes is for folder datasets; dataset {self.dataset!r} has its own classes"
            )

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
    steps: pd.DataFrame = field(default_factory=pd.DataFrame)  # loss every log_every steps
    convergence: Convergence | None = None  # plateaued? stopped early? (umlkit.convergence)
    half_state: dict[str, torch.Tensor] | None = None  # the half-budget weights (None: none)
    half_epoch: int = -1  # 0-based epoch of the half-budget weights


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


def model_depth(config: TrainConfig) -> int | None:
    """The encoder depth ``config`` builds (None: an invalid one, left to build_model's error)."""
    depth = config.model_options.get("depth", ModelConfig.depth)
    valid = isinstance(depth, int) and not isinstance(depth, bool) and depth >= 2
    return depth if valid else None


def config_hash(config: TrainConfig) -> str:
    """The cache key of a configuration: its fields (less :data:`NOT_HASHED`), the dataset's
    fingerprint, the umlkit version and :data:`TRAINING_REVISION`, hashed to 16 hex digits
    (:func:`umlkit.runs.cache_key`)."""
    values = {k: v for k, v in config.to_dict().items() if k not in NOT_HASHED}
    values["training_revision"] = TRAINING_REVISION
    return cache_key(values, config.data_root)


@dataclass
class TrainingState:
    """Where a run stands: what each epoch updates and what resuming restores."""

    next_epoch: int = 0  # the first epoch still to train
    history: list[dict[str, float]] = field(default_factory=list)  # one row per epoch
    steps: list[dict[str, float]] = field(default_factory=list)  # one row per log_every steps
    best_epoch: int = -1  # -1: no epoch validated yet
    best_score: float = -np.inf
    best_state: dict[str, torch.Tensor] | None = None  # the best epoch's weights
    stopped: bool = False  # early stopping ended the run before its last epoch
    half: HalfBudget = field(default_factory=HalfBudget)  # the half-budget candidates

    def finish_epoch(self, row: dict[str, float], steps: list[dict], model: nn.Module) -> bool:
        """Record a finished epoch's history row and step rows; keep its weights if it is the
        best so far (a strictly higher ``val_score``), also as a half-budget candidate.
        Returns whether it was."""
        self.history.append(row)
        self.steps.extend(steps)
        self.next_epoch = int(row["epoch"]) + 1
        if row["val_score"] > self.best_score:
            self.best_epoch, self.best_score = int(row["epoch"]), row["val_score"]
            self.best_state = state_copy(model)
            self.half.improved(self.best_epoch, self.best_state, self.next_epoch)
            return True
        self.half.drop_stale(self.next_epoch)
        return False


def load_splits(config: TrainConfig, names: Mapping[str, str] = PYTHON_NAMES):
    """The training and validation splits of ``config``'s dataset, at its image size."""
    from umlkit.data import load_dataset

    root = data_root(config, names)
    options = {"size": config.image_size}
    if config.num_classes is not None:  # folder datasets only (checked by TrainConfig)
        options["num_classes"] = config.num_classes
    if config.array_cache is not None:
        options["cache"] = Path(config.array_cache)
    return (
        load_dataset(config.dataset, root, split="train", **options),
        load_dataset(config.dataset, root, split="val", **options),
    )


def data_root(config: TrainConfig, names: Mapping[str, str] = PYTHON_NAMES) -> Path:
    """``config.data_root`` as a path, checked to be a folder."""
    if config.data_root is None:
        raise ValueError(f"{names['data_root']} is not set: point it at a dataset folder")
    root = Path(config.data_root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} not found ({names['data_root']})")
    return root
