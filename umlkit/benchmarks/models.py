"""Cost of UML against the multi-task baseline: a training step, an inference pass, peak memory.

Run ``umlkit bench`` or ``python -m umlkit.benchmarks.models`` (options: ``--width``,
``--image-size``, ``--batch-size``, ``--steps``, ``--device``, ``--threads``, ``--paths``). It
prints one row per model and computation path — ``plain`` (the model and loss code as written,
:func:`umlkit.fastpath.disabled`), ``fast`` (umlkit's fast paths on, the default) and, on request,
``compiled`` (``torch.compile``) — with the GFLOP/s each training step reaches and the
ratio of each row's cost to the multi-task baseline's on the same path; umlkit's target is a UML
training step at most 2.5x the baseline's at equal width.

How it measures:

- **Time.** Every model and path gets ``warmup`` untimed steps, then they take turns, one timed
  step each per round, for ``steps`` rounds; the median is reported. Taking turns means a burst
  of load from another process on a shared machine hits all models and paths alike. A training step is
  forward + :func:`umlkit.losses.uml_objective` + backward + Adam step (fused, as in
  :mod:`umlkit.train`) on a fixed random batch; inference is a forward pass under
  ``torch.no_grad`` in eval mode. On CPU the process CPU time of each step is reported too:
  unlike wall time it hardly changes when other processes compete for the cores.
- **Memory.** On CUDA, ``torch.cuda.max_memory_allocated`` over one training step. On CPU, each
  model runs in a fresh process and the growth of its peak resident set size over two training
  steps is reported (above the baseline after imports, before the model is built). The peak is
  the kernel's high-water mark ``VmHWM`` of ``/proc/self/status`` where it exists (Linux), else
  ``resource.getrusage(...).ru_maxrss``. On Linux ``ru_maxrss`` cannot be used in the child: a
  spawned process inherits the high-water mark of the parent it was forked from before its
  ``exec``, so a child of a big benchmark process would report no growth at all.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from umlkit import fastpath
from umlkit.benchmarks import DEFAULT_PATHS, PATHS, parse_paths, parse_widths
from umlkit.losses import official_objective
from umlkit.models import build_model
from umlkit.runtime import compile_model, pick_device
from umlkit.train import make_optimizer

#: The model every other one is compared with.
REFERENCE = "multitask"
#: umlkit's cost target: UML's training step at most this many times the reference's.
TARGET_RATIO = 2.5


def _batch(batch_size: int, image_size: int, device: str, seed: int = 0):
    """A fixed random batch: images in [0, 1], disc-shaped masks, random labels."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(batch_size, 3, image_size, image_size, generator=generator)
    coords = torch.linspace(-1, 1, image_size)
    radius = torch.hypot(coords[None, :, None], coords[None, None, :])
    sizes = 0.3 + 0.4 * torch.rand(batch_size, 1, 1, generator=generator)
    masks = (radius < sizes).long()
    labels = torch.randint(0, 2, (batch_size,), generator=generator)
    return images.to(device), masks.to(device), labels.to(device)


def _step_functions(name: str, width: int, batch, device: str, compiled: bool = False):
    """A model's (train step, inference pass) closures and its parameter count.

    The step is what :func:`umlkit.train.train` runs: channels-last model, fused Adam, and on CUDA
    bf16 autocast around the forward pass and the loss. ``compiled`` runs the model through
    ``torch.compile`` (its first call compiles; the loss and the optimiser stay eager).
    """
    torch.manual_seed(0)
    model = build_model(name, width=width).to(device)
    optimizer = make_optimizer(model, device, lr=1e-4)
    objective = official_objective(name)
    forward = compile_model(model) if compiled else model
    images, masks, labels = batch
    autocast = device.startswith("cuda")

    def train_step() -> None:
        model.train()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            output = forward(images)
            loss, _ = objective(output, masks, labels, epoch=1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def inference() -> None:
        model.eval()
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            forward(images)

    return train_step, inference, sum(p.numel() for p in model.parameters())


def _on_path(function, path: str):
    """``function`` run with the fast paths off (``"plain"``) or on (``"fast"``, ``"compiled"``)."""

    def run() -> None:
        with fastpath.use(path != "plain"):
            function()

    return run


def _train_flops(name: str, width: int, batch, device: str) -> float:
    """Floating-point operations of one training step (forward + backward), counted by
    ``torch.utils.flop_counter.FlopCounterMode``: convolutions and matrix products, the operations
    that dominate the arithmetic (element-wise operations are not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    train_step = _step_functions(name, width, batch, device)[0]
    with fastpath.disabled(), FlopCounterMode(display=False) as counter:
        train_step()
    return float(counter.get_total_flops())


def _timed(function, device: str) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call, synchronising CUDA around it."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def _peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (see the module docstring)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # reported in kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in kilobytes on Linux, bytes on macOS.
    return peak / (2**20 if sys.platform == "darwin" else 1024)


def _peak_memory_mb(
    name: str, width: int, image_size: int, batch_size: int, device: str, path: str = "fast"
) -> float:
    """Peak memory of one training step: CUDA allocator peak, or peak-RSS growth of this process."""
    batch = _batch(batch_size, image_size, device)
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        train_step = _on_path(_step_functions(name, width, batch, device)[0], path)
        train_step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    baseline = _peak_rss_mb()
    train_step = _on_path(_step_functions(name, width, batch, device)[0], path)
    train_step()
    train_step()
    return _peak_rss_mb() - baseline


def _peak_memory_isolated(
    name: str, width: int, image_size: int, batch_size: int, device: str, threads: int, path: str
) -> float:
    """:func:`_peak_memory_mb` in a fresh process (CPU: the RSS high-water mark is per process)."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1, initializer=torch.set_num_threads, initargs=(threads,)) as pool:
        return pool.apply(_peak_memory_mb, (name, width, image_size, batch_size, device, path))


def _take_turns(functions: dict, steps: int, warmup: int, device: str) -> dict:
    """Warm every (model, path) up, then time them in turns; every measurement of each in lists.

    The first warm-up training step is timed on its own (``"first"``): for a compiled model it
    includes the compilation, the cost paid once per training run.
    """
    timings = {key: {"train": [], "train_cpu": [], "inference": []} for key in functions}
    for key, (train_step, inference, _) in functions.items():
        for round_ in range(warmup):
            wall, _ = _timed(train_step, device)
            if round_ == 0:
                timings[key]["first"] = [wall]
            _timed(inference, device)
    for _ in range(steps):
        for key, (train_step, inference, _) in functions.items():
            wall, cpu = _timed(train_step, device)
            timings[key]["train"].append(wall)
            timings[key]["train_cpu"].append(cpu)
            timings[key]["inference"].append(_timed(inference, device)[0])
    return timings


def _with_ratios(table: pd.DataFrame) -> pd.DataFrame:
    """Add each row's cost relative to the reference model's on the same path."""
    reference = table[table["model"] == REFERENCE].set_index("path")
    for column, ratio in (
        ("train_ms", "train_ratio"),
        ("train_cpu_ms", "train_cpu_ratio"),
        ("inference_ms", "inference_ratio"),
    ):
        table[ratio] = table[column] / table["path"].map(reference[column])
    return table


def bench_models(
    width: int = 16,
    image_size: int = 64,
    batch_size: int = 16,
    steps: int = 10,
    warmup: int = 2,
    device: str | None = None,
    models: tuple[str, ...] = ("uml", REFERENCE),
    threads: int | None = None,
    memory: bool = True,
    paths: tuple[str, ...] = DEFAULT_PATHS,
) -> pd.DataFrame:
    """Time a training step and an inference pass of each model and path, and measure peak memory.

    Args:
        width: the models' width (equal for all).
        image_size: square image side.
        batch_size: images per step.
        steps: timed rounds (median reported).
        warmup: untimed steps per model and path first.
        device: default: the best available.
        models: model names; :data:`REFERENCE` is added if missing (the ratios need it).
        threads: torch CPU threads (default: torch's current setting).
        memory: also measure peak memory (on CPU this spawns one process per model and path).
        paths: some of :data:`PATHS`: ``"plain"`` (fast paths off), ``"fast"`` (see
            :mod:`umlkit.fastpath`), ``"compiled"`` (``torch.compile``; needs ``warmup >= 1``).

    Returns:
        One row per model and path: ``model``, ``path``, ``params``, ``train_ms`` and
        ``inference_ms`` (median wall time), ``train_cpu_ms`` (median process CPU time),
        ``first_step_s`` (the first training step, compilation included), ``gflop_per_step``
        (:func:`_train_flops`) and ``train_gflops`` (GFLOP per second of a training step),
        ``peak_memory_mb``, and ``train_ratio``, ``train_cpu_ratio``, ``inference_ratio``
        relative to the reference model on the same path.

    Raises:
        ValueError: ``steps`` or ``warmup`` out of range, an unknown path or model name.
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"need steps >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    if not paths or set(paths) - set(PATHS):
        raise ValueError(f"paths must be some of {PATHS}, got {paths!r}")
    if "compiled" in paths and warmup < 1:
        raise ValueError("the compiled path needs warmup >= 1 (its first step compiles)")
    device = pick_device(device)
    if threads is not None:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    models = tuple(models) if REFERENCE in models else (*models, REFERENCE)
    batch = _batch(batch_size, image_size, device)
    functions = {}
    for name in models:
        for path in paths:
            train_step, inference, params = _step_functions(
                name, width, batch, device, compiled=path == "compiled"
            )
            functions[name, path] = (_on_path(train_step, path), _on_path(inference, path), params)
    timings = _take_turns(functions, steps, warmup, device)
    flops = {name: _train_flops(name, width, batch, device) for name in models}
    rows = []
    for (name, path), (_, _, params) in functions.items():
        median = {
            key: 1000 * statistics.median(values) for key, values in timings[name, path].items()
        }
        row = {
            "model": name,
            "path": path,
            "params": params,
            "train_ms": median["train"],
            "train_cpu_ms": median["train_cpu"],
            "inference_ms": median["inference"],
            "first_step_s": median.get("first", float("nan")) / 1000,
            "gflop_per_step": flops[name] / 1e9,
            "train_gflops": flops[name] / 1e6 / median["train"],
            "peak_memory_mb": float("nan"),
        }
        if memory and path != "compiled":  # compiling again in a fresh process costs minutes
            row["peak_memory_mb"] = (
                _peak_memory_mb(name, width, image_size, batch_size, device, path)
                if device.startswith("cuda")
                else _peak_memory_isolated(
                    name, width, image_size, batch_size, device, threads, path
                )
            )
        rows.append(row)
    table = _with_ratios(pd.DataFrame(rows))
    table.attrs.update(
        width=width, image_size=image_size, batch_size=batch_size, device=device, threads=threads
    )
    return table


def _print_verdicts(table: pd.DataFrame) -> None:
    """Print, for UML on every path, whether its training step meets :data:`TARGET_RATIO`."""
    measures = [("wall time", "train_ratio")]
    if not table.attrs["device"].startswith("cuda"):
        # On a shared CPU, wall time also counts the waiting for the cores; CPU time does not.
        measures.append(("CPU time", "train_cpu_ratio"))
    for _, row in table[table["model"] == "uml"].iterrows():
        for measure, column in measures:
            ratio = row[column]
            verdict = "meets" if ratio <= TARGET_RATIO else "misses"
            print(
                f"UML training step = {ratio:.2f}x {REFERENCE} ({measure}, {row['path']} path): "
                f"{verdict} the target of {TARGET_RATIO}x"
            )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: print the benchmark table and whether the target is met."""
    parser = argparse.ArgumentParser(
        prog="python -m umlkit.benchmarks.models",
        description="Training-step and inference cost of UML versus the multi-task baseline.",
    )
    parser.add_argument(
        "--width",
        type=parse_widths,
        default=[16],
        help="width of every model; several: 8,16,64 (16)",
    )
    parser.add_argument("--image-size", type=int, default=64, help="square image side (64)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per step (16)")
    parser.add_argument("--steps", type=int, default=10, help="timed rounds, median kept (10)")
    parser.add_argument("--device", default=None, help="cpu, cuda or mps (default: best)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--models", default="uml,uml2024,multitask", help="comma-separated")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    parser.add_argument(
        "--paths",
        type=parse_paths,
        default=list(DEFAULT_PATHS),
        help=f"some of {','.join(PATHS)} (default {','.join(DEFAULT_PATHS)}; compiled takes minutes)",
    )
    args = parser.parse_args(argv)
    for width in args.width:
        table = bench_models(
            width=width,
            image_size=args.image_size,
            batch_size=args.batch_size,
            steps=args.steps,
            device=args.device,
            models=tuple(args.models.split(",")),
            threads=args.threads,
            memory=not args.no_memory,
            paths=tuple(args.paths),
        )
        info = table.attrs
        print(
            f"\nwidth {info['width']}, {info['image_size']}x{info['image_size']} images, batch "
            f"{info['batch_size']}, device {info['device']}, {info['threads']} thread(s)"
        )
        print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
        _print_verdicts(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
