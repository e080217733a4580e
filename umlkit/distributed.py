"""Data-parallel training over several processes: the pieces ``train()`` needs under ``torchrun``.

umlkit does not start processes itself. PyTorch's launcher ``torchrun`` starts one process per
device (``--nproc_per_node``) on each machine (``--nnodes``) and tells every process who it is
through environment variables; this module reads them and wraps ``torch.distributed`` so that the
training loop stays the same code in one process and in many::

    env = distributed.init(device)               # None when not launched by torchrun
    model = distributed.wrap_model(model, env)   # DistributedDataParallel (+ synchronised BN)
    for epoch in range(epochs):
        sampler = distributed.EpochShardSampler(order, global_batch, distributed.rank(), world)
        ...
        if distributed.is_main_process():        # one process writes checkpoints and logs
            torch.save(plain_model.state_dict(), "last.pt")
    distributed.shutdown()

How data parallelism works, in four sentences. Every process (a *rank*) holds a full copy of the
model and reads its part of each global batch (:class:`EpochShardSampler`). Each rank computes
the loss and gradients on its part; ``DistributedDataParallel`` then averages the gradients over
all ranks during ``backward()`` (an *all-reduce*), so every rank applies the same update and the
copies never drift apart. If the loss is a mean over images, the averaged gradient equals the
gradient of one process on the whole global batch, which is why the same global batch gives the
same training curve with 1 or N processes (``tests/test_train_distributed.py``).

Three things break that equivalence unless handled, and this module handles them:

* **Batch norm** normalises with the statistics of the batch it sees. Under DDP a rank sees only
  its part, so each rank would normalise with different, noisier statistics than one process on
  the global batch (:func:`wrap_model` synchronises them; see :func:`needs_sync_batchnorm`).
* **Losses that are not means over images**, such as the soft Dice of a batch, are computed from
  sums added over the ranks (:func:`sum_over_ranks`).
* **Validation** must count every image once: each rank evaluates a disjoint part and the
  per-image results are gathered without padding (:func:`gather_objects`).

Backends: NCCL moves tensors between GPUs directly and is the one to use on CUDA; gloo works on
CPU tensors (and is what the tests use). :func:`backend_for` picks by device.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

#: The variables ``torchrun`` sets in every process it starts (and that ``init_process_group``'s
#: ``env://`` rendezvous reads).
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
#: Prefixes that wrappers add to parameter names: ``DistributedDataParallel`` (and
#: ``DataParallel``) keep the model as ``.module``, ``torch.compile`` as ``._orig_mod``.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")

T = TypeVar("T")


@dataclass(frozen=True)
class DistributedEnv:
    """Who this process is in a ``torchrun`` launch.

    ``rank`` numbers the processes of the whole job (0 .. ``world_size`` - 1, over all
    machines); ``local_rank`` numbers them on this machine and so picks this process's GPU.
    """

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0


def launch_environment(environ: Mapping[str, str] | None = None) -> DistributedEnv | None:
    """Read a ``torchrun`` launch from the environment; ``None`` in a plain single process.

    A launch is recognised by ``WORLD_SIZE``; then every variable of :data:`TORCHRUN_VARIABLES`
    must be present (a hand-made launch that forgets one fails here, with its name, rather than
    hanging in the rendezvous).

    Raises:
        ValueError: ``WORLD_SIZE`` is set but another variable is missing or not a number.
    """
    environ = os.environ if environ is None else environ
    if "WORLD_SIZE" not in environ:
        return None
    missing = [name for name in TORCHRUN_VARIABLES if not environ.get(name)]
    if missing:
        raise ValueError(
            f"WORLD_SIZE is set but {', '.join(missing)} is not: start the processes with "
            "torchrun (it sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT)"
        )
    try:
        env = DistributedEnv(
            rank=int(environ["RANK"]),
            world_size=int(environ["WORLD_SIZE"]),
            local_rank=int(environ["LOCAL_RANK"]),
            master_addr=environ["MASTER_ADDR"],
            master_port=int(environ["MASTER_PORT"]),
        )
    except ValueError:
        values = {name: environ[name] for name in TORCHRUN_VARIABLES}
        raise ValueError(f"torchrun variables that are not numbers: {values}") from None
    if not 0 <= env.rank < env.world_size:
        raise ValueError(f"RANK {env.rank} is outside 0..WORLD_SIZE-1 ({env.world_size})")
    return env


def backend_for(device: str | torch.device) -> str:
    """The collective backend for ``device``: ``"nccl"`` on CUDA, ``"gloo"`` otherwise."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def init(
    device: str | torch.device = "cpu", timeout: timedelta | None = None
) -> DistributedEnv | None:
    """Join the process group of a ``torchrun`` launch; ``None`` (and nothing done) otherwise.

    On CUDA every rank uses the GPU ``cuda:<LOCAL_RANK>``: the processes of one machine must not
    share a GPU (NCCL refuses it, and they would compete for its memory). The returned
    :class:`DistributedEnv` carries that device; train on ``env.device``.

    A launch with ``WORLD_SIZE=1`` still initialises a group of one, so the same code path is
    exercised by ``torchrun --nproc_per_node=1``.

    Args:
        device: ``"cpu"`` or ``"cuda"`` (an index is replaced by ``LOCAL_RANK``).
        timeout: how long collectives wait for the other ranks (PyTorch's default if ``None``).
    """
    env = launch_environment()
    if env is None:
        return None
    kind = torch.device(device).type
    if kind == "cuda":
        torch.cuda.set_device(env.local_rank)
        device = f"cuda:{env.local_rank}"
    else:
        device = kind
    env = replace(env, device=device)
    if not dist.is_initialized():
        options = {} if timeout is None else {"timeout": timeout}
        # The default init_method "env://" reads the variables torchrun set; under torchrun it
        # joins the store torchrun's agent already serves at MASTER_ADDR:MASTER_PORT (a
        # "tcp://" address would try to open a second one there and fail).
        dist.init_process_group(
            backend_for(kind), rank=env.rank, world_size=env.world_size, **options
        )
    return env


def shutdown() -> None:
    """Leave the process group (a no-op in a single process); call it once, at the end."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    """Whether a process group with more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 in a single process)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """How many processes train together (1 in a single process)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def check_global_batch(batch_size: int) -> None:
    """In data-parallel training, the global batch must split evenly over the processes.

    Raises:
        ValueError: ``batch_size`` is not a multiple of :func:`world_size`.
    """
    world = world_size()
    if world > 1 and batch_size % world:
        raise ValueError(
            f"batch_size {batch_size} is the global batch of the {world} processes "
            f"and must be a multiple of {world}"
        )


def is_main_process() -> bool:
    """True on rank 0, and in a single process: the one that writes files and shows progress."""
    return rank() == 0


def main_process_only(function: Callable[..., T]) -> Callable[..., T | None]:
    """Decorate a function that writes (a checkpoint, the history, a log line) to run on rank 0.

    The other ranks skip the call and get ``None``. Without this guard N processes would write
    the same file at once and could leave it torn. Ranks that later *read* what rank 0 wrote
    must wait for it with :func:`barrier`.
    """

    @wraps(function)
    def guarded(*args, **kwargs):
        return function(*args, **kwargs) if is_main_process() else None

    return guarded


def show_progress(progress: bool = True) -> bool:
    """Whether to draw a progress bar: ``progress`` on rank 0, never on the others."""
    return bool(progress) and is_main_process()


def barrier() -> None:
    """Wait until every rank reaches this line (a no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def gather_objects(obj: T) -> list[T]:
    """Every rank's ``obj``, in rank order, on every rank (``[obj]`` in one process).

    For results of uneven size that every rank needs whole, such as the per-image table of a
    validation shard: unlike a tensor all-gather it needs no padding, so no image is counted twice.
    """
    if not is_distributed():
        return [obj]
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: T, src: int = 0) -> T:
    """Rank ``src``'s ``obj`` on every rank (any picklable object; ``obj`` in one process).

    Use it for a decision only one rank can take, so that all ranks act alike: "stop early",
    "this epoch is the best", or the resumed epoch read from a checkpoint. Ranks that decided
    differently would stop calling the collectives in step and hang.
    """
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside ``DistributedDataParallel`` / ``DataParallel`` / ``torch.compile``."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def strip_prefixes(
    state: Mapping[str, Any], prefixes: tuple[str, ...] = WRAPPER_PREFIXES
) -> dict[str, Any]:
    """``state`` with the wrappers' prefixes (``module.``, ``_orig_mod.``) taken off every key."""
    clean = {}
    for key, value in state.items():
        stripped = True
        while stripped:
            stripped = False
            for prefix in prefixes:
                if key.startswith(prefix):
                    key, stripped = key[len(prefix) :], True
        clean[key] = value
    return clean


def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights of the plain model, keyed as a single-process model names them.

    ``DistributedDataParallel(model).state_dict()`` prefixes every key with ``module.``; saving
    this instead makes a checkpoint the same from any world size, so it loads into a plain model
    (evaluation, a notebook) and resumes under another number of processes. The synchronised
    batch norm of :func:`wrap_model` keeps batch norm's parameter and buffer names.
    """
    return strip_prefixes(unwrap(model).state_dict())


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` holds a batch-norm layer (``BatchNorm1d/2d/3d`` or a synchronised one)."""
    return any(isinstance(module, _BatchNorm) for module in model.modules())


def needs_sync_batchnorm(model: nn.Module) -> bool:
    """Whether batch-norm statistics would differ across ranks: more than one rank and BN layers.

    In training mode batch norm normalises each channel with the mean and variance of the batch
    it is given. Under DDP that batch is one rank's shard, ``batch_size`` images instead of the
    global ``N * batch_size``: each rank normalises differently, the outputs and gradients are
    not those of one process on the global batch, and each rank's running statistics (used at
    evaluation) drift apart. It matters most when the per-rank batch is small — the paper's
    batch of 8 over 2-3 GPUs leaves 2-4 images per rank, and with one image per rank a 1x1
    feature map cannot be normalised at all. It does not matter for evaluation (running
    statistics, no batch statistics) or for models without batch norm (group norm, layer norm).
    Synchronising costs two all-reduces of a few numbers per channel per layer and step.
    """
    return world_size() > 1 and has_batchnorm(model)


class _SumOverRanks(torch.autograd.Function):
    """The sum of a tensor over the ranks, differentiable: the gradient of a sum that every
    rank uses is the sum of every rank's gradient, so the backward pass all-reduces as well."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total


def sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over the ranks of a running group, differentiably; ``tensor`` itself in
    a single process. A loss that is not a mean over images (the soft Dice of a batch sums over
    all its pixels) uses it to see the global batch rather than this rank's shard."""
    return _SumOverRanks.apply(tensor) if is_distributed() else tensor


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """The mean over the ranks of every value of ``values`` (one all-reduce for all of them);
    ``values`` itself in a single process. Used for the loss terms a training run logs."""
    if not is_distributed():
        return values
    totals = torch.tensor(list(values.values()), dtype=torch.float64)
    dist.all_reduce(totals, op=dist.ReduceOp.SUM)
    return dict(zip(values, (totals / world_size()).tolist(), strict=True))


class EpochShardSampler(torch.utils.data.Sampler[int]):
    """This rank's images of one epoch, cut from the permutation a single process would use.

    The global batch ``k`` of the single process holds ``order[k*B : (k+1)*B]``; here rank ``r``
    of ``W`` takes the ``r``-th of its ``W`` equal parts (``B / W`` images), for every full global
    batch (the last partial one is dropped, as the single process drops it). The ranks' batches
    together are therefore the single process's batches, whatever the number of ranks — the
    property that makes a run resumable with another world size and comparable with one process.

    Args:
        order: the epoch's permutation of the dataset indices (the single process's shuffle).
        global_batch: ``B``, a multiple of ``world``.
        rank, world: this rank and the number of ranks.
    """

    def __init__(self, order: torch.Tensor, global_batch: int, rank: int, world: int) -> None:
        if global_batch % world:
            raise ValueError(
                f"the batch size {global_batch} must be a multiple of the {world} processes"
            )
        part = global_batch // world
        full = len(order) // global_batch * global_batch
        batches = order[:full].view(-1, world, part)  # (batches, ranks, images of one rank)
        self.indices = batches[:, rank].reshape(-1).tolist()

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class GlooSyncBatchNorm(_BatchNorm):
    """Batch norm whose training statistics are computed over all ranks, for CPU tensors.

    ``torch.nn.SyncBatchNorm`` runs only on GPUs (its kernels are CUDA ones), so on CPU umlkit
    uses this layer: per channel, the sum of the inputs and the pixel count are summed over the
    ranks (a differentiable all-reduce, so the backward pass sums the gradients of the
    statistics over the ranks too), giving the global mean; the same for the squared deviations
    gives the global (biased) variance. Normalising with them is what one process would do on
    the global batch. Running statistics use the unbiased variance as ``nn.BatchNorm`` does.
    Outside a group, or in eval mode, it is plain batch norm. Its parameters and buffers have
    batch norm's names, so state dicts are interchangeable with the plain model's.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {input.dim()}-D")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        if not (self.training and is_distributed()):
            return super().forward(input)
        all_reduce = _SumOverRanks.apply
        factor = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked)
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        count = all_reduce(torch.tensor([input.numel() / input.shape[1]], dtype=input.dtype))
        mean = all_reduce(input.sum(dims)) / count
        centred = input - mean.reshape(shape)
        var = all_reduce((centred * centred).sum(dims)) / count
        if self.track_running_stats:
            with torch.no_grad():
                unbiased = var * count / (count - 1).clamp(min=1)
                self.running_mean.mul_(1 - factor).add_(factor * mean.detach())
                self.running_var.mul_(1 - factor).add_(factor * unbiased.detach())
        out = centred * torch.rsqrt(var + self.eps).reshape(shape)
        if self.affine:
            out = out * self.weight.reshape(shape) + self.bias.reshape(shape)
        return out


def convert_sync_batchnorm(model: nn.Module, device: str | torch.device = "cpu") -> nn.Module:
    """Replace every batch-norm layer of ``model`` by a synchronised one (weights kept).

    On CUDA: ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``; elsewhere
    :class:`GlooSyncBatchNorm`. Either keeps the state-dict keys of the plain model.
    """
    if torch.device(device).type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _convert_to_gloo(model)


def _convert_to_gloo(module: nn.Module) -> nn.Module:
    if isinstance(module, _BatchNorm) and not isinstance(module, GlooSyncBatchNorm):
        synced = GlooSyncBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine,
            module.track_running_stats,
        )  # fmt: skip
        tensors = list(module.state_dict().values())
        if tensors:
            synced.to(tensors[0].device)
        synced.load_state_dict(module.state_dict())
        synced.train(module.training)
        return synced
    for name, child in module.named_children():
        module.add_module(name, _convert_to_gloo(child))
    return module


def wrap_model(
    model: nn.Module,
    env: DistributedEnv | None,
    *,
    sync_batchnorm: bool | None = None,
    find_unused_parameters: bool = False,
) -> nn.Module:
    """``model`` ready for data-parallel training: synchronised batch norm, then DDP.

    Args:
        model: the plain model, already on ``env.device``.
        env: what :func:`init` returned; ``None`` (a single process) returns ``model`` as is.
        sync_batchnorm: synchronise batch-norm statistics across ranks; ``None`` decides by
            :func:`needs_sync_batchnorm`.
        find_unused_parameters: let DDP tolerate parameters that get no gradient in a step
            (an ablation that switches a branch off); it costs a graph traversal per step.

    Returns:
        ``DistributedDataParallel(model)``; save :func:`plain_state_dict` of it, not its own
        ``state_dict``.
    """
    if env is None or not dist.is_initialized():
        return model
    if sync_batchnorm is None:
        sync_batchnorm = needs_sync_batchnorm(model)
    if sync_batchnorm:
        model = convert_sync_batchnorm(model, env.device)
    cuda = torch.device(env.device).type == "cuda"
    return nn.parallel.DistributedDataParallel(
        model,
        device_ids=[env.local_rank] if cuda else None,
        output_device=env.local_rank if cuda else None,
        find_unused_parameters=find_unused_parameters,
    )
