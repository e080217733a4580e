"""Tests of umlkit.distributed: two real gloo processes on the CPU, against one process.

Each multi-process test spawns two ranks once (``torch.multiprocessing.spawn``) on a free port;
the ranks write what they computed to a temporary folder and the test compares it there with a
single-process run computed in the test's own process.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from umlkit import distributed

WORLD = 2
STEPS_PER_EPOCH = 3
EPOCHS = 2
GLOBAL_BATCH = 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tiny_net() -> nn.Module:
    """Two convolutions with batch norm and a linear head: enough to feel batch statistics."""
    torch.manual_seed(0)
    return nn.Sequential(
        # no bias before batch norm: its gradient is zero up to rounding, and Adam would turn
        # that rounding into full-size steps that differ between runs
        nn.Conv2d(2, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )


def tiny_data(n: int = GLOBAL_BATCH * STEPS_PER_EPOCH) -> TensorDataset:
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(n, 2, 6, 6, generator=generator)
    labels = torch.randint(0, 3, (n,), generator=generator)
    return TensorDataset(images, labels)


def train_losses(model: nn.Module, data: Dataset, global_batch: int) -> list[float]:
    """A few Adam steps, each rank on its part of every global batch; the loss of every step
    (mean over the ranks). In one process the parts are the whole global batches."""
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    world = distributed.world_size()
    losses = []
    for epoch in range(EPOCHS):
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(3 + epoch))
        sampler = distributed.EpochShardSampler(order, global_batch, distributed.rank(), world)
        for images, labels in DataLoader(data, batch_size=global_batch // world, sampler=sampler):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(images), labels)
            loss.backward()
            optimizer.step()
            losses.append(distributed.mean_over_ranks({"loss": loss.item()})["loss"])
    return losses


def _join(rank: int, port: int) -> distributed.DistributedEnv:
    """What torchrun does for a rank: set its variables; then join as train() will."""
    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    env = distributed.init("cpu")
    assert env is not None and env.rank == rank and distributed.world_size() == WORLD
    return env


#: Not a multiple of the world size: the two ranks' validation parts differ in size (4 and 3).
N_VALIDATION = 7


def _worker(rank: int, port: int, folder: str) -> None:
    """Everything the tests below check, in one pair of processes (spawning is slow)."""
    env = _join(rank, port)
    out = Path(folder)
    try:
        # (a) training with synchronised batch norm, and the control without it
        model = distributed.wrap_model(tiny_net(), env)
        losses = train_losses(model, tiny_data(), GLOBAL_BATCH)
        assert all(key.startswith("module.") for key in model.state_dict())
        state = distributed.plain_state_dict(model)
        unsynced = distributed.wrap_model(tiny_net(), env, sync_batchnorm=False)
        unsynced_losses = train_losses(unsynced, tiny_data(), GLOBAL_BATCH)

        # (c) a checkpoint written by rank 0 only, and the ranks' outputs to compare it with
        save = distributed.main_process_only(torch.save)
        save(state, out / "checkpoint.pt")
        model.eval()
        with torch.no_grad():
            probe = torch.randn(3, 2, 6, 6, generator=torch.Generator().manual_seed(5))
            outputs = model(probe)

        @distributed.main_process_only
        def write_marker() -> str:
            (out / f"written_by_{rank}").write_text("")
            return "written"

        marker = write_marker()

        # (b) per-image validation scores of uneven parts, gathered
        scores = torch.arange(N_VALIDATION, dtype=torch.float64) ** 2  # image i scores i**2
        gathered = torch.cat(distributed.gather_objects(scores[rank::WORLD]))
        decision = distributed.broadcast_object({"best": rank == 0, "rank": rank})
        torch.save(
            {
                "losses": losses,
                "state": state,
                "unsynced_losses": unsynced_losses,
                "outputs": outputs,
                "marker": marker,
                "gathered": gathered,
                "decision": decision,
            },
            out / f"rank{rank}.pt",
        )
        distributed.barrier()
    finally:
        distributed.shutdown()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> tuple[Path, list[dict]]:
    """Spawn two gloo ranks once; their results and the folder they wrote to."""
    folder = tmp_path_factory.mktemp("ranks")
    # the ranks import this file by the name pytest gave it, which is found from the checkout
    root = str(Path(__file__).resolve().parents[1])
    added = root not in sys.path
    if added:
        sys.path.insert(0, root)
    try:
        mp.spawn(_worker, args=(free_port(), str(folder)), nprocs=WORLD, join=True)
    finally:
        if added:
            sys.path.remove(root)
    return folder, [torch.load(folder / f"rank{r}.pt") for r in range(WORLD)]


@pytest.fixture(scope="module")
def single() -> tuple[nn.Module, list[float]]:
    """One process, no group, on the global batches: the reference."""
    model = tiny_net()
    return model, train_losses(model, tiny_data(), GLOBAL_BATCH)


def test_two_ranks_train_like_one_process_on_the_same_global_batches(ranks, single):
    folder, results = ranks
    model, single_losses = single
    # both ranks hold the same weights (DDP averaged the gradients; the sync BN buffers agree)
    for key, value in results[0]["state"].items():
        torch.testing.assert_close(results[1]["state"][key], value, rtol=0, atol=0)
    # ... and those of one process that saw the same global batches, step by step
    assert len(results[0]["losses"]) == len(single_losses) == EPOCHS * STEPS_PER_EPOCH
    for result in results:
        torch.testing.assert_close(result["losses"], single_losses, rtol=1e-5, atol=1e-5)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(results[0]["state"][key], value, rtol=1e-4, atol=1e-5)
    # the checkpoint keys are the plain model's: no "module." prefix
    assert set(results[0]["state"]) == set(model.state_dict())
    # only rank 0 wrote through the guard
    assert [r["marker"] for r in results] == ["written", None]
    assert sorted(p.name for p in folder.glob("written_by_*")) == ["written_by_0"]


def test_unsynchronised_batch_norm_would_not_match(ranks, single):
    """The control of the test above: without synchronised batch norm each rank normalises
    with the statistics of its own two images, and the curve leaves the single process's."""
    _, results = ranks
    gap = max(abs(a - b) for a, b in zip(results[0]["unsynced_losses"], single[1], strict=True))
    assert gap > 1e-3


def test_gathered_validation_parts_count_every_image_once(ranks):
    _, results = ranks
    expected = torch.arange(N_VALIDATION, dtype=torch.float64) ** 2
    for result in results:
        assert len(result["gathered"]) == N_VALIDATION
        torch.testing.assert_close(result["gathered"].sort().values, expected)
        torch.testing.assert_close(result["gathered"].mean(), expected.mean())
        # every rank took rank 0's decision
        assert result["decision"] == {"best": True, "rank": 0}


def test_checkpoint_saved_on_rank_0_loads_into_a_plain_model(ranks):
    folder, results = ranks
    plain = tiny_net()
    plain.load_state_dict(torch.load(folder / "checkpoint.pt"), strict=True)
    plain.eval()
    with torch.no_grad():
        probe = torch.randn(3, 2, 6, 6, generator=torch.Generator().manual_seed(5))
        outputs = plain(probe)
    for result in results:
        torch.testing.assert_close(outputs, result["outputs"])


# ---- single-process behaviour (no group) ----


def test_launch_environment_reads_torchrun_variables():
    assert distributed.launch_environment({}) is None
    env = distributed.launch_environment(
        {
            "RANK": "3",
            "WORLD_SIZE": "4",
            "LOCAL_RANK": "1",
            "MASTER_ADDR": "node0",
            "MASTER_PORT": "29500",
        }
    )
    assert (env.rank, env.world_size, env.local_rank, env.master_port) == (3, 4, 1, 29500)
    assert not env.is_main
    with pytest.raises(ValueError, match="MASTER_ADDR"):
        distributed.launch_environment({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"})
    with pytest.raises(ValueError, match="outside"):
        distributed.launch_environment(
            {
                "RANK": "2",
                "WORLD_SIZE": "2",
                "LOCAL_RANK": "0",
                "MASTER_ADDR": "a",
                "MASTER_PORT": "1",
            }
        )


def test_single_process_defaults_and_backend_choice(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.init("cpu") is None
    assert (distributed.rank(), distributed.world_size()) == (0, 1)
    assert distributed.is_main_process() and not distributed.is_distributed()
    assert distributed.show_progress(True) and not distributed.show_progress(False)
    assert distributed.backend_for("cpu") == "gloo"
    assert distributed.backend_for("cuda:1") == "nccl"
    model = tiny_net()
    assert distributed.wrap_model(model, None) is model
    assert not distributed.needs_sync_batchnorm(model)
    assert distributed.broadcast_object([1, 2]) == [1, 2]


def test_plain_state_dict_strips_wrapper_prefixes():
    model = tiny_net()
    wrapped = nn.DataParallel(model)
    assert set(distributed.plain_state_dict(wrapped)) == set(model.state_dict())
    assert distributed.strip_prefixes({"module._orig_mod.0.weight": 1}) == {"0.weight": 1}


def test_epoch_shards_are_the_parts_of_the_global_batches():
    order = torch.tensor([5, 2, 7, 0, 3, 6, 1, 4, 8])  # 9 images: 2 global batches of 4, 1 left
    shards = [list(distributed.EpochShardSampler(order, 4, r, 2)) for r in range(2)]
    assert shards == [[5, 2, 3, 6], [7, 0, 1, 4]]
    with pytest.raises(ValueError, match="must be a multiple of the 3 processes"):
        distributed.EpochShardSampler(order, 4, 0, 3)


def test_gloo_sync_batchnorm_is_plain_batchnorm_outside_a_group():
    torch.manual_seed(0)
    plain = nn.BatchNorm2d(3)
    synced = distributed.convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(3)))[0]
    assert isinstance(synced, distributed.GlooSyncBatchNorm)
    x = torch.randn(4, 3, 5, 5)
    torch.testing.assert_close(synced(x), plain(x))
    torch.testing.assert_close(synced.running_var, plain.running_var)
