"""Which images carry labels, and batches that always mix labeled and unlabeled images.

Semi-supervised segmentation methods (mean teacher, CAML, BURL) compute a supervised loss on the
labeled part of each mini-batch and a consistency or pseudo-label loss on (at least) the unlabeled
part, so every batch must hold both. :class:`TwoStreamBatchSampler` draws each batch from two
streams of indices into the same dataset:

* the **primary** stream (the labeled indices): shuffled once per epoch and walked through once,
  so **an epoch is one pass over the labeled set** and each labeled image is seen exactly once per
  epoch;
* the **secondary** stream (the unlabeled indices): a fresh permutation is drawn whenever the
  previous one runs out, so unlabeled images are spread evenly but an epoch need not cover them all
  (at 10 % labels with two labeled and two unlabeled images per batch, one epoch sees about a ninth
  of the unlabeled images).

Defining the epoch by the labeled set keeps "epochs" comparable with the supervised-only baseline,
which sees the same labeled images equally often; the number of optimisation steps per epoch is
``ceil(n_labeled / labeled_batch_size)`` and therefore grows with the label fraction.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


def split_labeled(
    n: int, label_fraction: float, seed: int = 0, min_labeled: int = 1
) -> tuple[list[int], list[int]]:
    """Choose which of ``n`` training images keep their masks.

    ``n_labeled = max(min_labeled, round(label_fraction * n))`` images are drawn uniformly without
    replacement with a seeded generator; the rest are treated as unlabeled.

    Args:
        n: number of training images.
        label_fraction: share of images with a mask, in (0, 1].
        seed: the same seed gives the same split.
        min_labeled: the smallest labeled set allowed (e.g. the labeled batch size).

    Returns:
        ``(labeled_indices, unlabeled_indices)``, each sorted.

    Raises:
        ValueError: if ``label_fraction`` is outside (0, 1] or fewer than ``min_labeled`` images exist.
    """
    if not 0 < label_fraction <= 1:
        raise ValueError(f"label_fraction must be in (0, 1], got {label_fraction}")
    if n < min_labeled:
        raise ValueError(f"n={n} images cannot hold min_labeled={min_labeled} labeled images")
    n_labeled = min(n, max(min_labeled, round(label_fraction * n)))
    order = np.random.default_rng(seed).permutation(n)
    return sorted(order[:n_labeled].tolist()), sorted(order[n_labeled:].tolist())


class TwoStreamBatchSampler(Sampler[list[int]]):
    """Batches of ``labeled_batch_size`` labeled then ``unlabeled_batch_size`` unlabeled indices.

    One iteration (``iter(sampler)``) is one epoch: a pass over the labeled indices in a new random
    order. Each batch lists its labeled indices first. With ``drop_last=False`` (default) the last
    batch of an epoch carries the remaining ``n_labeled mod labeled_batch_size`` labeled indices
    (still with a full unlabeled part), so each labeled image is used exactly once per epoch; with
    ``drop_last=True`` those leftovers are skipped for this epoch instead.

    The permutations of epoch ``e`` come from ``numpy.random.default_rng([seed, e])``: the same seed
    gives the same batches, and resuming at epoch ``e`` (:meth:`set_epoch`) reproduces them. The
    epoch counter advances by one after every completed pass.

    Args:
        labeled_indices: dataset indices whose masks may be used (the primary stream).
        unlabeled_indices: dataset indices used without masks (the secondary stream); may be empty
            only when ``unlabeled_batch_size`` is 0 (the supervised-only baseline).
        labeled_batch_size: labeled images per batch (> 0).
        unlabeled_batch_size: unlabeled images per batch (>= 0).
        seed: seeds the permutations.
        drop_last: skip the incomplete last labeled group of each epoch.

    Raises:
        ValueError: on empty or overlapping streams, or batch sizes that do not fit them.
    """

    def __init__(
        self,
        labeled_indices: Sequence[int],
        unlabeled_indices: Sequence[int],
        labeled_batch_size: int,
        unlabeled_batch_size: int,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        self.labeled_indices = np.asarray(labeled_indices, dtype=np.int64)
        self.unlabeled_indices = np.asarray(unlabeled_indices, dtype=np.int64)
        if labeled_batch_size < 1:
            raise ValueError(f"labeled_batch_size must be >= 1, got {labeled_batch_size}")
        if unlabeled_batch_size < 0:
            raise ValueError(f"unlabeled_batch_size must be >= 0, got {unlabeled_batch_size}")
        if len(self.labeled_indices) == 0:
            raise ValueError(
                "labeled_indices is empty: a semi-supervised batch needs labeled images"
            )
        if unlabeled_batch_size > 0 and len(self.unlabeled_indices) == 0:
            raise ValueError(
                f"unlabeled_indices is empty but unlabeled_batch_size={unlabeled_batch_size}"
            )
        if drop_last and len(self.labeled_indices) < labeled_batch_size:
            raise ValueError(
                f"drop_last with {len(self.labeled_indices)} labeled images and "
                f"labeled_batch_size={labeled_batch_size} would give no batch at all"
            )
        overlap = np.intersect1d(self.labeled_indices, self.unlabeled_indices)
        if len(overlap):
            raise ValueError(
                f"labeled and unlabeled indices overlap (e.g. {overlap[:5].tolist()}): "
                "an image is either labeled or not"
            )
        self.labeled_batch_size = labeled_batch_size
        self.unlabeled_batch_size = unlabeled_batch_size
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass produce the batches of ``epoch`` (for resuming a run)."""
        self.epoch = epoch

    def __len__(self) -> int:
        """Batches per epoch: ``ceil`` (or ``floor`` with ``drop_last``) of n_labeled / batch size."""
        n = len(self.labeled_indices)
        rounding = math.floor if self.drop_last else math.ceil
        return rounding(n / self.labeled_batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        labeled = rng.permutation(self.labeled_indices)
        n_batches = len(self)
        needed = n_batches * self.unlabeled_batch_size
        # Whole fresh permutations, so every unlabeled image is used before any is repeated.
        n_perms = math.ceil(needed / len(self.unlabeled_indices)) if needed else 0
        unlabeled = (
            np.concatenate([rng.permutation(self.unlabeled_indices) for _ in range(n_perms)])
            if n_perms
            else np.empty(0, dtype=np.int64)
        )
        self.epoch += 1
        lb, ub = self.labeled_batch_size, self.unlabeled_batch_size
        for b in range(n_batches):
            batch = (
                labeled[b * lb : (b + 1) * lb].tolist() + unlabeled[b * ub : (b + 1) * ub].tolist()
            )
            yield batch


class PartiallyLabeled(Dataset):
    """A training split where only ``labeled_indices`` keep their masks.

    Items gain ``labeled`` (bool) and ``dataset_index`` (their index here); the mask of an
    unlabeled item is replaced by -1 everywhere, so no method can learn from it by accident (a
    loss reading it raises an error).
    """

    def __init__(self, dataset: Dataset, labeled_indices: list[int]) -> None:
        self.dataset = dataset
        self.labeled = set(labeled_indices)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        item = dict(self.dataset[index])
        is_labeled = index in self.labeled
        item["labeled"] = torch.tensor(is_labeled)
        item["dataset_index"] = torch.tensor(index)
        if not is_labeled:
            item["mask"] = torch.full_like(item["mask"], -1)
        return item
