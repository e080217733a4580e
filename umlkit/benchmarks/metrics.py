"""Benchmark of the streaming pixel calibration: wall time and peak memory for 10^8 pixels.

Run ``python -m umlkit.benchmarks.metrics`` (options: ``--help``). Synthetic probability maps are
generated batch by batch (seeded) and streamed through :class:`umlkit.metrics.PixelCalibration`;
nothing but the current batch is ever held. The labels are drawn from the maps' own
probabilities, so the model is calibrated by construction and the ECE must come out near 0: a
check on the numbers as well as on the speed.

How memory is measured: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is the peak resident set
size (RSS) of the process so far. It is read once after all imports and a warm-up batch
(the baseline) and again after streaming; the difference is the peak RSS *increase* the streaming
caused. ``tracemalloc`` would not see torch's allocations, hence RSS. Because ``ru_maxrss`` is a
running maximum, an earlier peak above the baseline's current RSS would hide part of the
increase; the report prints the current RSS at the baseline (from ``/proc/self/status``, Linux
only) next to the baseline peak so that can be checked.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from umlkit.metrics import PixelCalibration


def _peak_rss_mb() -> float:
    """Peak RSS of this process in MiB (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _current_rss_mb() -> float:
    """Current RSS in MiB from ``/proc/self/status``; NaN where that file does not exist."""
    status = Path("/proc/self/status")
    if not status.exists():
        return float("nan")
    for line in status.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 2**10
    return float("nan")


def synthetic_batch(
    generator: torch.Generator, batch: int, num_classes: int, image_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random probability maps ``(B, C, H, W)`` and labels drawn from them (calibrated by design)."""
    logits = 3.0 * torch.randn(batch, num_classes, image_size, image_size, generator=generator)
    probs = torch.softmax(logits, dim=1)
    # Inverse-CDF sampling: the label is the number of cumulative probabilities below a uniform
    # draw (clamped, since float rounding can leave the last cumulative sum just under 1).
    uniform = torch.rand(batch, 1, image_size, image_size, generator=generator)
    mask = (probs.cumsum(dim=1) < uniform).sum(dim=1).clamp_(max=num_classes - 1)
    return probs, mask


def bench_pixel_calibration(
    n_pixels: int = 10**8,
    image_size: int = 256,
    batch: int = 16,
    num_classes: int = 2,
    n_bins: int = 15,
    include_background: bool = True,
    seed: int = 0,
) -> dict[str, float]:
    """Stream ``n_pixels`` synthetic pixels through :class:`PixelCalibration`; time and memory.

    Args:
        n_pixels: pixels to stream (rounded up to whole batches of ``batch`` images).
        image_size: images are ``image_size`` x ``image_size``.
        batch: images per ``update`` call.
        num_classes: classes per pixel.
        n_bins: calibration bins.
        include_background: passed to :class:`PixelCalibration`.
        seed: seeds the generator of the synthetic maps.

    Returns:
        ``n_pixels`` and ``n_images`` streamed, ``seconds_total``, ``seconds_update`` (inside
        ``update``/``compute`` only; the rest is generating the data), ``pixels_per_second`` (of
        ``update``), ``baseline_peak_rss_mb``, ``baseline_rss_mb``, ``peak_rss_increase_mb`` and
        the resulting ``ece_pooled`` and ``ece_per_image_mean`` (near 0 by construction).
    """
    if n_pixels < 1 or image_size < 1 or batch < 1:
        raise ValueError("n_pixels, image_size and batch must be positive")
    generator = torch.Generator().manual_seed(seed)
    calibration = PixelCalibration(n_bins=n_bins, include_background=include_background)
    # Warm-up: lazy initialisation inside torch/numpy belongs to the baseline, not to streaming.
    calibration.update(*synthetic_batch(generator, 1, num_classes, image_size))
    calibration.reset()
    baseline_peak, baseline_current = _peak_rss_mb(), _current_rss_mb()

    pixels_per_batch = batch * image_size * image_size
    n_batches = -(-n_pixels // pixels_per_batch)
    seconds_update = 0.0
    start = time.perf_counter()
    for _ in range(n_batches):
        probs, mask = synthetic_batch(generator, batch, num_classes, image_size)
        tick = time.perf_counter()
        calibration.update(probs, mask)
        seconds_update += time.perf_counter() - tick
    tick = time.perf_counter()
    result = calibration.compute()
    seconds_update += time.perf_counter() - tick
    seconds_total = time.perf_counter() - start
    return {
        "n_pixels": result["n_pixels"],
        "n_images": result["n_images"],
        "seconds_total": seconds_total,
        "seconds_update": seconds_update,
        "pixels_per_second": result["n_pixels"] / seconds_update,
        "baseline_peak_rss_mb": baseline_peak,
        "baseline_rss_mb": baseline_current,
        "peak_rss_increase_mb": _peak_rss_mb() - baseline_peak,
        "ece_pooled": result["ece_pooled"],
        "ece_per_image_mean": result["ece_per_image_mean"],
    }


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Command line: run :func:`bench_pixel_calibration` and print its numbers as a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-pixels", type=float, default=1e8, help="pixels to stream")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16, help="images per update() call")
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--bins", type=int, default=15)
    parser.add_argument("--exclude-background", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = bench_pixel_calibration(
        n_pixels=int(args.n_pixels),
        image_size=args.image_size,
        batch=args.batch,
        num_classes=args.classes,
        n_bins=args.bins,
        include_background=not args.exclude_background,
        seed=args.seed,
    )
    table = pd.Series(result, name="value").to_frame()
    print(f"PixelCalibration streaming benchmark (torch threads: {torch.get_num_threads()})")
    print(table.to_string(float_format=lambda v: f"{v:,.4g}"))
    return result


if __name__ == "__main__":
    main()
