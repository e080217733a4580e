"""Benchmarks (not tests): timing and memory of umlkit components, runnable as modules.

This package's own module holds what the ``umlkit bench`` command line needs to check its
arguments, without importing torch (the command's ``--help`` stays instant).
"""

from __future__ import annotations

import argparse

#: The computation paths: the plain code, umlkit's fast paths (:mod:`umlkit.fastpath`), and the
#: model compiled by ``torch.compile`` (the fast paths step aside inside the compiled graph).
PATHS = ("plain", "fast", "compiled")
#: The paths measured unless asked otherwise: compiling takes minutes per model on a small CPU.
DEFAULT_PATHS = ("plain", "fast")


def parse_widths(text: str) -> list[int]:
    """``"8,16,64"`` -> ``[8, 16, 64]``: the ``--width`` of the benchmark's command lines."""
    try:
        widths = [int(part) for part in text.split(",")]
    except ValueError:
        widths = []
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(
            f"expected positive integers separated by commas, e.g. 8,16,64; got {text!r}"
        )
    return widths


def parse_paths(text: str) -> list[str]:
    """``"plain,compiled"`` -> ``["plain", "compiled"]``, each one of :data:`PATHS`."""
    paths = [part.strip() for part in text.split(",")]
    unknown = [path for path in paths if path not in PATHS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown path {unknown[0]!r}: choose some of {','.join(PATHS)}"
        )
    return paths
