"""The two-stream batch sampler and the labeled/unlabeled split."""

from collections import Counter

import pytest

from umlkit.semi.sampler import TwoStreamBatchSampler, split_labeled


def test_split_is_seeded_disjoint_and_sized():
    labeled, unlabeled = split_labeled(50, 0.1, seed=3)
    assert len(labeled) == 5 and len(unlabeled) == 45
    assert set(labeled).isdisjoint(unlabeled) and set(labeled) | set(unlabeled) == set(range(50))
    assert split_labeled(50, 0.1, seed=3) == (labeled, unlabeled)
    assert split_labeled(50, 0.1, seed=4)[0] != labeled


def test_split_respects_min_labeled():
    assert len(split_labeled(20, 0.01, min_labeled=2)[0]) == 2


def test_split_rejects_bad_fraction():
    with pytest.raises(ValueError, match="label_fraction"):
        split_labeled(10, 0.0)


def test_every_batch_has_the_labeled_unlabeled_split():
    labeled, unlabeled = list(range(0, 12)), list(range(12, 40))
    sampler = TwoStreamBatchSampler(labeled, unlabeled, 3, 2, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 4
    for batch in batches:
        assert len(batch) == 5
        assert all(i in labeled for i in batch[:3])
        assert all(i in unlabeled for i in batch[3:])


@pytest.mark.parametrize("drop_last", [False, True])
def test_each_labeled_item_exactly_once_per_pass(drop_last):
    labeled, unlabeled = list(range(100, 111)), list(range(20))  # 11 labeled, batch of 4
    sampler = TwoStreamBatchSampler(labeled, unlabeled, 4, 2, seed=1, drop_last=drop_last)
    for _ in range(3):  # three epochs
        batches = list(sampler)
        counts = Counter(i for batch in batches for i in batch if i >= 100)
        if drop_last:
            assert len(batches) == 2 and set(counts.values()) == {1} and len(counts) == 8
        else:
            assert len(batches) == 3 and counts == Counter(labeled)
            assert [len(b) for b in batches] == [6, 6, 5]  # last: 3 labeled + 2 unlabeled


def test_unlabeled_stream_uses_every_item_before_repeating():
    sampler = TwoStreamBatchSampler(list(range(10)), list(range(10, 16)), 2, 3, seed=0)
    unlabeled_seen = [i for batch in sampler for i in batch[2:]]  # 5 batches x 3 = 15 draws
    assert sorted(unlabeled_seen[:6]) == list(range(10, 16))
    assert sorted(unlabeled_seen[6:12]) == list(range(10, 16))


def test_same_seed_same_batches_and_epochs_differ():
    def make():
        return TwoStreamBatchSampler(list(range(8)), list(range(8, 30)), 2, 2, seed=7)

    first, second = make(), make()
    epoch0, epoch1 = list(first), list(first)
    assert epoch0 == list(second)
    assert epoch0 != epoch1
    resumed = make()
    resumed.set_epoch(1)
    assert list(resumed) == epoch1


def test_supervised_only_batches_need_no_unlabeled_stream():
    sampler = TwoStreamBatchSampler([0, 1, 2], [], 2, 0)
    assert sorted(i for batch in sampler for i in batch) == [0, 1, 2]


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="overlap"):
        TwoStreamBatchSampler([0, 1], [1, 2], 1, 1)
    with pytest.raises(ValueError, match="unlabeled_indices is empty"):
        TwoStreamBatchSampler([0, 1], [], 1, 1)
    with pytest.raises(ValueError, match="labeled_batch_size"):
        TwoStreamBatchSampler([0, 1], [2], 0, 1)
