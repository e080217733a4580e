"""The batches of one training epoch, a function of ``(seed, epoch)`` alone (:mod:`umlkit.train`).

An epoch's shuffling and augmentation are drawn from generators seeded by the run's seed and the
epoch number only, so an epoch draws the same batches whether the run went straight through or
was resumed, and data-parallel processes can each take their share of the same global batches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader, Dataset

from umlkit import distributed

if TYPE_CHECKING:  # the configuration's module imports the models; only its type is needed
    from umlkit.config import TrainConfig


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """A generator of one epoch (stream 0: shuffling, 1: augmentation), a function of its
    arguments only, so an epoch draws the same numbers whether or not the run was resumed."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 2 + stream)


def build_train_loader(
    train_set: Dataset, config: TrainConfig, epoch: int, device: str
) -> DataLoader:
    """The batches of epoch ``epoch``: shuffled by a generator of ``(seed, epoch)`` alone.

    In data-parallel training every process takes its equal part of each of these batches
    (:class:`umlkit.distributed.EpochShardSampler`), so ``config.batch_size`` is the global batch
    and the processes together see what one process would.
    """
    if distributed.is_distributed():
        # The order one process would draw, drawn the same way (a DataLoader over the indices).
        one_process = DataLoader(
            range(len(train_set)),
            batch_size=config.batch_size,
            shuffle=True,
            generator=epoch_generator(config.seed, epoch),
            drop_last=True,
        )
        order = torch.cat(list(one_process))
        world = distributed.world_size()
        return DataLoader(
            train_set,
            batch_size=config.batch_size // world,
            sampler=distributed.EpochShardSampler(
                order, config.batch_size, distributed.rank(), world
            ),
            num_workers=config.num_workers,
            pin_memory=device.startswith("cuda"),
        )
    return DataLoader(
        train_set,
        batch_size=config.batch_size,
        shuffle=True,
        generator=epoch_generator(config.seed, epoch),
        num_workers=config.num_workers,
        pin_memory=device.startswith("cuda"),
        # A last batch of one image would break BatchNorm; dropping the remainder costs nothing
        # over epochs, since the shuffle leaves out different images each time.
        drop_last=len(train_set) >= config.batch_size,
    )
