"""umlkit.batches: an epoch's batches are a function of (seed, epoch) alone."""

import torch
from torch.utils.data import Dataset

from umlkit.batches import build_train_loader, epoch_generator
from umlkit.train import TrainConfig


class Numbered(Dataset):
    """Items that are their own index, so a batch shows which items it drew."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        return torch.tensor(index)


def order(loader) -> list[int]:
    return torch.cat(list(loader)).tolist()


def test_the_same_seed_and_epoch_draw_the_same_batches_whatever_ran_before():
    config = TrainConfig(batch_size=4, seed=3)
    first = order(build_train_loader(Numbered(10), config, epoch=2, device="cpu"))
    torch.rand(100)  # the global generator moves; the epoch's own does not depend on it
    again = order(build_train_loader(Numbered(10), config, epoch=2, device="cpu"))
    assert first == again
    other_epoch = order(build_train_loader(Numbered(10), config, epoch=3, device="cpu"))
    assert other_epoch != first


def test_the_last_incomplete_batch_is_dropped_and_no_item_repeats():
    config = TrainConfig(batch_size=4, seed=0)
    drawn = order(build_train_loader(Numbered(10), config, epoch=0, device="cpu"))
    assert len(drawn) == 8 and len(set(drawn)) == 8 and set(drawn) <= set(range(10))
    # fewer items than a batch: one smaller batch rather than none
    small = order(build_train_loader(Numbered(3), config, epoch=0, device="cpu"))
    assert sorted(small) == [0, 1, 2]


def test_shuffling_and_augmentation_draw_from_separate_streams():
    a = torch.rand(5, generator=epoch_generator(seed=1, epoch=4, stream=0))
    b = torch.rand(5, generator=epoch_generator(seed=1, epoch=4, stream=1))
    again = torch.rand(5, generator=epoch_generator(seed=1, epoch=4, stream=0))
    assert torch.equal(a, again) and not torch.equal(a, b)
