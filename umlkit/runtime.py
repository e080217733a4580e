"""The runtime helpers every layer may use: the project root, seeding, the torch device, and
``torch.compile`` with a kernel cache that matches the CPU kernels in use.

Data loaders, training and evaluation import these; the notebook set-up (:mod:`umlkit.profiles`)
sits above them and re-exports them, so nothing below the notebooks imports the profiles.
"""

from __future__ import annotations

import getpass
import os
import random
import re
import tempfile
from pathlib import Path

import numpy as np


def project_root(start: Path | None = None) -> Path:
    """The umlkit checkout: the first folder upward from ``start`` (default: cwd) with a pyproject.

    Notebooks run with their own folder as working directory (Jupyter, nbval) or the project root
    (papermill from the Makefile); both resolve to the same root. Outside a checkout, the working
    directory itself is used.
    """
    start = Path.cwd() if start is None else Path(start)
    for folder in (start, *start.resolve().parents):
        if (folder / "pyproject.toml").is_file() and (folder / "umlkit").is_dir():
            return folder.resolve()
    return start.resolve()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so the same seed and profile give the same numbers on CPU."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def available_devices() -> list[str]:
    """The torch devices this machine offers: ``cpu``, then ``cuda`` and ``cuda:<n>``, ``mps``."""
    import torch

    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += ["cuda", *(f"cuda:{n}" for n in range(torch.cuda.device_count()))]
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def pick_device(name: str | None = None, what: str = "device") -> str:
    """Choose a torch device: ``name`` if given (checked), else CUDA, then MPS, then CPU.

    Args:
        name: ``"cpu"``, ``"cuda"``, ``"cuda:<n>"``, ``"mps"`` or ``None`` (the best available).
        what: how error messages name the argument (the command line passes ``"--device"``).

    Raises:
        ValueError: ``name`` is not a device name umlkit knows, or this machine lacks it; the
            message lists the devices available here.
    """
    import torch

    if name is None:
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    here = ", ".join(available_devices())
    kind, colon, index = str(name).partition(":")
    known = kind in ("cpu", "cuda", "mps") and (not colon or (kind == "cuda" and index.isdigit()))
    if not known:
        raise ValueError(
            f"{what} {name!r} is not a device umlkit can use: choose cpu, cuda, cuda:<n> or mps "
            f"(available here: {here})"
        )
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{what} {name!r} requested but CUDA is not available here ({here})")
    if kind == "cuda" and colon and int(index) >= torch.cuda.device_count():
        raise ValueError(f"{what} {name!r}: this machine has no such CUDA device ({here})")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{what} 'mps' requested but MPS is not available here ({here})")
    return name


def _user_for_file_names() -> str:
    """The user name in torch's default kernel cache folder, by torch's rule (torch 2.13): the
    login name with ``\\ / : * ? " < > |`` replaced by ``_``; ``uid_<number>`` where the uid has no
    name (some containers), ``unknown_user`` where there is neither (Windows without ``USERNAME``)."""
    try:
        user = getpass.getuser()
    except (KeyError, ModuleNotFoundError, OSError):  # getpass falls back on ``pwd``
        getuid = getattr(os, "getuid", None)  # absent on Windows
        user = f"uid_{getuid()}" if callable(getuid) else "unknown_user"
    return re.sub(r'[\\/:*?"<>|]', "_", user)


def separate_compile_cache(environ: dict[str, str] | None = None) -> str | None:
    """Give ``torch.compile`` a kernel cache of its own for the CPU kernels chosen by hand.

    PyTorch picks its CPU kernels by the instruction sets of the machine, or by the
    ``ATEN_CPU_CAPABILITY`` environment variable (``default``, ``avx2``, ``avx512``) where one sets
    it, e.g. to check a result under another CPU's rounding. ``torch.compile`` writes the C++
    kernels it builds to one cache folder, ``$TMPDIR/torchinductor_<user>``, whose keys do not tell
    one capability from another (torch 2.13): a run under ``ATEN_CPU_CAPABILITY=avx2`` after a run
    with the machine's own AVX-512 kernels loads the AVX-512 build and dies of a segmentation
    fault, and one under ``default`` fails to compile (``docs/decisions.md``).

    So where ``ATEN_CPU_CAPABILITY`` is set, the cache goes to a folder named after it,
    ``$TMPDIR/torchinductor_<user>_<capability>``, unless ``TORCHINDUCTOR_CACHE_DIR`` already names
    a folder of someone's choosing (torch itself writes its default there on its first
    compilation; that one is replaced). Without ``ATEN_CPU_CAPABILITY`` nothing changes.

    Args:
        environ: the environment to read and change (default: this process's, ``os.environ``,
            which the processes it starts inherit).

    Returns:
        The cache folder set, or ``None`` where nothing was changed.
    """
    environ = os.environ if environ is None else environ
    capability = environ.get("ATEN_CPU_CAPABILITY", "").strip().lower()
    if not capability:
        return None
    shared = os.path.join(tempfile.gettempdir(), f"torchinductor_{_user_for_file_names()}")
    chosen = environ.get("TORCHINDUCTOR_CACHE_DIR")
    if chosen and os.path.abspath(chosen) != shared:
        return None
    environ["TORCHINDUCTOR_CACHE_DIR"] = folder = f"{shared}_{capability}"
    return folder


def compile_model(model):
    """``torch.compile(model, dynamic=False)``: fixed shapes, as training and the benchmarks use,
    with the kernel cache of :func:`separate_compile_cache`. The model compiles on its first call;
    the returned module shares the model's weights."""
    import torch

    separate_compile_cache()
    return torch.compile(model, dynamic=False)
