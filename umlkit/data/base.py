"""What every umlkit dataset shares: the item format, validation with clear errors, resizing, caching.

An item is a dict ``{"image": float32 (C, H, W) in [0, 1], "mask": int64 (H, W), "label": int64
scalar, "id": str}``. A dataset is built from a list of :class:`Record` (id, label, paths) and a
``read`` function that turns one record into arrays; :class:`SegmentationClassificationDataset`
does the rest.

Items resized to a fixed ``size`` are kept in memory after their first read (``cache``); with
``cache=<folder>`` the decoded, resized split is also stored there as one ``.npz`` file, so the next
process that loads the same split at the same size reads one file instead of decoding every image
again (see :func:`array_cache_key` for what a stored split is tied to).

Validation happens in two stages. Cheap checks (files exist, every image has a label) run when the
dataset is built; content checks (the file decodes, the mask has the image's size and only the
expected values: :mod:`umlkit.data.images`) run when an item is read. With ``on_error="raise"`` the first bad item raises an
error naming its file; with ``on_error="skip"`` every item is checked when the dataset is built,
the bad ones are left out and listed in ``dataset.report`` as ``(path, problem)`` pairs.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from umlkit.checkpoints import first_line, save_npz_atomic

ON_ERROR = ("raise", "skip")
#: Datasets whose resized images take at most this many bytes are kept in memory by default.
CACHE_LIMIT_BYTES = 1 << 30
#: Version of the stored-split format (:func:`array_cache_key`); a new one ignores older files.
#: Raised whenever decoding changes (2: images of every bit depth, :func:`umlkit.data.images.decode_image`).
ARRAY_CACHE_VERSION = 2


class DatasetItemError(ValueError):
    """A problem with one file of a dataset; ``path`` and ``problem`` are kept separately."""

    def __init__(self, path: str | Path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


class MissingFileError(DatasetItemError, FileNotFoundError):
    """A file the dataset's layout requires is missing (both a ValueError and a FileNotFoundError)."""


@dataclass
class Record:
    """One item before it is read: its id, its label and what the ``read`` function needs."""

    id: str
    label: int | None
    image: Path | None = None
    mask: Path | None = None
    problems: list[DatasetItemError] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise a ValueError listing them."""
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not valid; choose one of {', '.join(choices)}")
    return value


def _is_positive_int(value: Any) -> bool:
    """True for a Python or numpy integer above 0; False for bools, floats and anything else."""
    return (
        isinstance(value, (int, np.integer))
        and not isinstance(value, (bool, np.bool_))
        and value > 0
    )


def parse_size(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """``None`` (keep native size), ``s`` -> ``(s, s)`` or ``(h, w)``; positive integers only.

    Raises:
        ValueError: anything else, e.g. ``32.0``, ``True``, ``0`` or ``(32, -1)``, naming it.
    """
    if size is None:
        return None
    if isinstance(size, np.ndarray) and size.ndim == 0:
        size = size.item()
    if isinstance(size, (int, float, np.number, np.bool_)):  # bool is an int
        if not _is_positive_int(size):
            raise ValueError(f"size must be a positive integer, got {size!r}")
        return int(size), int(size)
    if isinstance(size, (str, bytes)) or not isinstance(size, (Sequence, np.ndarray)):
        raise ValueError(
            f"size must be a positive integer, a pair (H, W) of them or None, got {size!r}"
        )
    pair = tuple(size)
    if len(pair) != 2 or not all(_is_positive_int(s) for s in pair):
        raise ValueError(f"size must be a pair (H, W) of positive integers, got {size!r}")
    return int(pair[0]), int(pair[1])


def stratified_split(
    labels: Sequence[int], fractions: Sequence[float], seed: int
) -> dict[str, np.ndarray]:
    """Split positions 0..n-1 into train / val / test, stratified by label, reproducibly.

    Within each class the positions are shuffled by ``numpy.random.default_rng(seed)`` and cut at
    the cumulative fractions times the class size, rounded half up, so every class is spread over the splits in proportion
    (scikit-learn's ``train_test_split`` refuses classes with fewer members than splits, which
    tiny datasets such as I-SPY1's 43 pCR cases hit in three-way splits).

    Returns:
        ``{"train": positions, "val": positions, "test": positions}``, each sorted.
    """
    fractions = np.asarray(fractions, dtype=float)
    if fractions.shape != (3,) or (fractions < 0).any() or abs(fractions.sum() - 1) > 1e-6:
        raise ValueError(
            f"split fractions must be three non-negative numbers summing to 1, got {fractions}"
        )
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        # Round half up (np.round rounds half to even, which would make 2.5 -> 2 but 3.5 -> 4).
        cuts = np.floor(np.cumsum(fractions)[:2] * len(members) + 0.5).astype(int)
        for name, chunk in zip(parts, np.split(members, cuts), strict=True):
            parts[name].append(chunk)
    return {
        name: np.sort(np.concatenate(chunks)) if chunks else np.zeros(0, dtype=np.int64)
        for name, chunks in parts.items()
    }


def resize_item(
    image: torch.Tensor, mask: torch.Tensor, size: tuple[int, int] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize an image bilinearly (antialiased when shrinking) and its mask by nearest neighbour.

    Nearest neighbour keeps the mask's values valid class indices; interpolating a mask
    bilinearly (as the UML reference code does for REFUGE) invents classes along boundaries.
    ``nearest-exact`` samples each output pixel's centre, so the mask stays aligned with the
    image.
    """
    if size is None or tuple(image.shape[-2:]) == size:
        return image, mask
    image = F.interpolate(
        image[None], size=size, mode="bilinear", align_corners=False, antialias=True
    )[0].clamp_(0.0, 1.0)
    mask = F.interpolate(mask[None, None].float(), size=size, mode="nearest-exact")[0, 0]
    return image, mask.long()


class SegmentationClassificationDataset(Dataset):
    """A dataset of (image, mask, label) items, built by :func:`umlkit.data.load_dataset`.

    Attributes:
        kind, root, split: what was loaded.
        ids: the item ids (list of str), in item order.
        labels: the image labels (int64 numpy array), in item order.
        metadata: the synthetic metadata rows of these items (pandas DataFrame) when the root
            holds ``umlkit_metadata.csv``, else ``None``.
        report: the ``(path, problem)`` pairs of the items left out (``on_error="skip"``).
        class_names, seg_class_names: names of the image classes and of the mask classes.
        num_classes, num_seg_classes: their numbers.
        groups: the patient of each item where several items come from one patient (I-SPY1),
            else the ids themselves.
    """

    def __init__(
        self,
        *,
        kind: str,
        root: Path,
        split: str,
        records: list[Record],
        read: Callable[[Record], tuple[np.ndarray, np.ndarray]],
        class_names: Sequence[str],
        seg_class_names: Sequence[str],
        size: tuple[int, int] | None = None,
        on_error: str = "raise",
        cache: bool | str | os.PathLike | None = None,
        transform: Callable[[dict], dict] | None = None,
        channels: int = 3,
        groups: Sequence[str] | None = None,
    ):
        self.kind, self.root, self.split = kind, Path(root), split
        self.size = size
        self.on_error = check_choice("on_error", on_error, ON_ERROR)
        self.transform = transform
        self.class_names = tuple(class_names)
        self.seg_class_names = tuple(seg_class_names)
        self.num_classes = len(self.class_names)
        self.num_seg_classes = len(self.seg_class_names)
        self._read = read
        self.report: list[tuple[str, str]] = []
        group_of = dict(zip((r.id for r in records), groups, strict=True)) if groups else {}

        good = []
        for record in records:
            if record.problems:
                self.report.extend((p.path, p.problem) for p in record.problems)
            else:
                good.append(record)
        if self.report and self.on_error == "raise":
            raise _summary_error(f"{kind} {split} split in {root}", self.report, records)
        self._records = good
        self._cache: dict[int, dict] | None = None
        store = None
        if isinstance(cache, (str, os.PathLike)):
            store, cache = Path(cache), True
        if cache is None:
            per_item = channels * (size[0] * size[1] if size else 0) * 4
            cache = size is not None and per_item * len(good) <= CACHE_LIMIT_BYTES
        if cache:
            self._cache = {}
        if self.on_error == "skip":
            self._validate_all()
        elif store is not None and size is not None and good:
            self._use_array_store(store)
        if not self._records:
            detail = (
                f": every item has a problem ({len(self.report)} listed in .report)"
                if self.report
                else " (the split is empty; check the split fractions)"
            )
            raise ValueError(f"{kind} {split} split in {root} holds no usable items{detail}")
        self.ids = [r.id for r in self._records]
        self.labels = np.array([r.label for r in self._records], dtype=np.int64)
        self.groups = [group_of.get(r.id, r.id) for r in self._records]
        self.metadata = _synthetic_metadata(self.root, self.ids)

    def _validate_all(self) -> None:
        """Read every item once (skip mode) so that ``report`` is complete from the start."""
        kept = []
        for record in self._records:
            try:
                item = self._load(record)
            except DatasetItemError as error:
                self.report.append((error.path, error.problem))
                continue
            if self._cache is not None:
                self._cache[len(kept)] = item
            kept.append(record)
        self._records = kept

    def _use_array_store(self, folder: Path) -> None:
        """Fill the memory cache from ``folder``'s stored copy of this split, or store one.

        Without a stored copy every item is read now (so a bad file raises here, naming it) and
        the split is written as one ``.npz`` (a temporary file renamed into place, so two
        processes storing the same split at once cannot leave a half-written file). The file is
        named ``<kind>-<split>-<identity>-<key>.npz``: the identity hashes the kind, folder, split
        and size, the key also the files' contents (:func:`array_cache_key`). Storing a new copy
        deletes the older copies of the same identity — the same split of a dataset whose files
        have changed since — so the store keeps one copy per split and size.
        """
        prefix = array_store_prefix(self.kind, self.root, self.split, self.size)
        path = folder / f"{prefix}{array_cache_key(self)}.npz"
        if path.is_file():
            try:
                with np.load(path) as stored:
                    images, masks, ids = stored["images"], stored["masks"], stored["ids"]
            except (OSError, ValueError, KeyError):
                images = None  # unreadable (e.g. truncated by a full disk): store it again
            if images is not None and ids.tolist() == [r.id for r in self._records]:
                for index, record in enumerate(self._records):
                    self._cache[index] = {
                        "image": torch.from_numpy(images[index]),
                        "mask": torch.from_numpy(masks[index].astype(np.int64)),
                        "label": torch.tensor(record.label, dtype=torch.int64),
                        "id": record.id,
                    }
                return
        items = [self._load(record) for record in self._records]  # all of self.size
        for index, item in enumerate(items):
            self._cache[index] = item
        masks = torch.stack([item["mask"] for item in items])
        if masks.min() < 0 or masks.max() > 255:
            return  # masks are stored as uint8 class indices
        save_npz_atomic(
            path,
            images=torch.stack([item["image"] for item in items]).numpy(),
            masks=masks.to(torch.uint8).numpy(),
            ids=np.array([r.id for r in self._records]),
        )
        for stale in folder.glob(f"{prefix}*.npz"):
            if stale != path:
                stale.unlink(missing_ok=True)

    def _load(self, record: Record) -> dict:
        image, mask = self._read(record)
        image_t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
        if image.dtype == np.uint8:  # read_image and the I-SPY1 slices give floats in [0, 1]
            image_t = image_t / 255.0
        mask_t = torch.from_numpy(np.ascontiguousarray(mask)).long()
        image_t, mask_t = resize_item(image_t, mask_t, self.size)
        return {
            "image": image_t,
            "mask": mask_t,
            "label": torch.tensor(record.label, dtype=torch.int64),
            "id": record.id,
        }

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> dict:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} items")
        if self._cache is not None and index in self._cache:
            cached = self._cache[index]
            # Copies, so that a transform working in place cannot alter the cache.
            item = {**cached, "image": cached["image"].clone(), "mask": cached["mask"].clone()}
        else:
            item = self._load(self._records[index])
            if self._cache is not None:
                self._cache[index] = {
                    **item,
                    "image": item["image"].clone(),
                    "mask": item["mask"].clone(),
                }
        return self.transform(item) if self.transform is not None else item

    def __repr__(self) -> str:
        size = "native" if self.size is None else f"{self.size[0]}x{self.size[1]}"
        return (
            f"{type(self).__name__}(kind={self.kind!r}, split={self.split!r}, items={len(self)}, "
            f"size={size}, classes={self.class_names}, left_out={len(self.report)})"
        )


def default_array_cache_dir() -> Path:
    """Where the notebooks, the trainer and the semi-supervised loop store decoded, resized
    splits (``load_dataset(..., cache=<folder>)``): ``$UMLKIT_ARRAY_CACHE`` if set (the tests
    point it at a temporary folder), else ``<project root>/data/cache/arrays``."""
    from umlkit.runtime import project_root

    folder = os.environ.get("UMLKIT_ARRAY_CACHE")
    return Path(folder) if folder else project_root() / "data" / "cache" / "arrays"


def array_store_prefix(kind: str, root: str | Path, split: str, size: Sequence[int] | None) -> str:
    """The start of the names of a split's stored copies: ``<kind>-<split>-<identity>-``.

    The identity is 8 hex digits of a hash of the kind, the dataset folder (resolved), the split
    and the size ``(H, W)``: the copies of one split at one size share it, whatever the state of
    its files (that is :func:`array_cache_key`, the rest of the name). ``umlkit cache import``
    (:mod:`umlkit.cache`) uses it to name the copies it brings into another checkout.
    """
    size = None if size is None else [int(side) for side in size]
    text = json.dumps([kind, str(Path(root).resolve()), split, size], default=str)
    return f"{kind}-{split}-{hashlib.sha256(text.encode()).hexdigest()[:8]}-"


def array_cache_key(dataset: SegmentationClassificationDataset) -> str:
    """The key of a split's stored copy: 16 hex digits of a hash of everything its items depend on.

    That is the dataset kind, its folder (resolved), the split, the output size, the stored-split
    format version, and every item's id, label, file paths, sizes, modification times and change
    times — so rewriting, adding or removing a file, or relabelling an image, makes the next load
    decode the split again instead of reading a stale copy. The change time (ctime) is set by
    the system on every write and no program can set it back, so a file edited in place whose
    size and modification time were restored (``os.utime``, ``cp -p``) is still seen as new.
    """
    files = []
    for record in dataset._records:
        stats = []
        for path in (record.image, record.mask):
            if path is not None and Path(path).is_file():
                stat = Path(path).stat()
                stats.append([str(path), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns])
        files.append([record.id, record.label, stats, repr(sorted(record.extra.items()))])
    values = {
        "version": ARRAY_CACHE_VERSION,
        "kind": dataset.kind,
        "root": str(dataset.root.resolve()),
        "split": dataset.split,
        "size": list(dataset.size) if dataset.size is not None else None,
        "files": files,
    }
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _summary_error(where: str, report: list[tuple[str, str]], records: list[Record]) -> Exception:
    """One error for all problems found while building: the first few listed, the type of the first."""
    first = next(p for r in records for p in r.problems)
    lines = [f"  {path}: {problem}" for path, problem in report[:5]]
    more = f"\n  ... and {len(report) - 5} more" if len(report) > 5 else ""
    message = (
        f"{where}: {len(report)} problem(s):\n" + "\n".join(lines) + more + "\n"
        "Fix the files, or pass on_error='skip' to leave these items out (listed in .report)."
    )
    error_type = MissingFileError if isinstance(first, MissingFileError) else DatasetItemError
    error = error_type(first.path, first.problem)
    error.args = (message,)
    return error


def _synthetic_metadata(root: Path, ids: list[str]) -> pd.DataFrame | None:
    """The rows of ``umlkit_metadata.csv`` for ``ids`` (in that order), or None without the file."""
    from umlkit.data.synthetic import METADATA_NAME

    path = root / METADATA_NAME
    if not path.is_file():
        return None
    try:
        table = pd.read_csv(path, dtype={"id": str})
    except ValueError as error:  # pandas' EmptyDataError and ParserError, UnicodeDecodeError
        raise DatasetItemError(path, f"not a readable CSV table ({first_line(error)})") from None
    if "id" not in table.columns:
        raise DatasetItemError(path, "no 'id' column: regenerate the data with umlkit synth")
    if table["id"].duplicated().any():
        repeated = table.loc[table["id"].duplicated(), "id"].iloc[0]
        raise DatasetItemError(path, f"id {repeated} is listed twice")
    return table.set_index("id").reindex(ids).reset_index()
