"""Session-wide test settings, and how ``make test`` shares the work between two processes.

``make test`` runs pytest with ``pytest-xdist`` (``-n 2 --dist loadscope``): two worker processes,
each given whole units of work: every test module is one unit, so its fixtures (a tiny trained
model, a written dataset) are built once, in one process; the notebooks that share the smoke
data and model cache, and the JupyterLab test, are one unit together, put first because it takes
the longest (``notebooks/conftest.py``).

Each worker computes with one torch thread, and the kernels and processes it starts inherit
``OMP_NUM_THREADS=1``: two workers of one thread use the two cores without oversubscribing them.
Without xdist (``pytest`` alone) the same order holds and torch keeps its own thread count.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from umlkit.runtime import separate_compile_cache

# torch.compile's kernel cache does not tell kernels built under one ATEN_CPU_CAPABILITY from
# another's: make test runs the numeric modules under this machine's own kernels, then under
# another set, and the second run crashed on the first's cached kernels. Each capability set by
# hand gets a cache folder of its own (umlkit.runtime.separate_compile_cache), set here for the
# whole session and the processes it starts, before anything compiles.
separate_compile_cache()

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"  # read by the notebook kernels and spawned processes
    import torch

    torch.set_num_threads(1)


#: The single slowest tests (torch.compile's first compilation, about 30 s of one worker): they run
#: first, so that under ``--dist load`` (the second-kernels pass of ``make test``) the other
#: worker takes the rest instead of waiting for them at the end.
SLOWEST_TESTS = ("tests/test_train.py::test_compiled_training_follows_eager_training",)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """:data:`SLOWEST_TESTS` first (a stable sort; ``notebooks/conftest.py`` then orders the
    units of work of the whole run, which keeps them first within their module)."""
    items.sort(key=lambda item: item.nodeid not in SLOWEST_TESTS)


@pytest.fixture(autouse=True, scope="session")
def _caches_in_a_temporary_folder(tmp_path_factory):
    """Decoded splits and file digests of the tests' fixture datasets go to temporary folders,
    not the checkout's ``data/cache/arrays`` and ``data/cache/fingerprints`` (environment
    variables, so spawned worker processes and commands see them too)."""
    names = {"UMLKIT_ARRAY_CACHE": "arrays", "UMLKIT_FINGERPRINT_CACHE": "fingerprints"}
    previous = {name: os.environ.get(name) for name in names}
    for name, folder in names.items():
        os.environ[name] = str(tmp_path_factory.mktemp(folder))
    yield
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


#: A process that holds the folder argv[1] (as a training run does) until its stdin closes.
_FOLDER_HOLDER = """
import sys
from umlkit.folders import folder_lock

with folder_lock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def start_folder_holder():
    """A function that starts a process holding a folder's lock and returns it once it holds it
    (``tests/test_folders.py``, ``tests/test_train.py``); closing its stdin lets go. Processes
    still running after the test are stopped."""
    import subprocess
    import sys

    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    started = []

    def start(folder):
        holder = subprocess.Popen(
            [sys.executable, "-c", _FOLDER_HOLDER, str(folder)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        started.append(holder)
        assert holder.stdout.readline() == "held\n"
        return holder

    yield start
    for holder in started:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=30)


@pytest.fixture
def plot_theme():
    """umlkit's plotting theme for the test, and no figure left open after it (``tests/test_plots_*``)."""
    import matplotlib.pyplot as plt

    from umlkit.plots import set_theme

    set_theme()
    yield
    plt.close("all")


@pytest.fixture
def render_png():
    """A function that renders a figure to PNG bytes and closes it, to compare two drawings."""
    import io

    import matplotlib.pyplot as plt

    def render(fig) -> bytes:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        plt.close(fig)
        return buffer.getvalue()

    return render


# ------------------------------------------------------- shared by the tests of umlkit.analysis


@pytest.fixture(scope="module")
def analysis_ctx(tmp_path_factory):
    """A smoke-profile context whose data folder is temporary and whose sizes are tiny."""
    from umlkit.profiles import setup_notebook

    folder = tmp_path_factory.mktemp("analysis")
    context = setup_notebook(
        "test_analysis", "smoke", data_dir=folder / "data", figures_dir=folder / "figures"
    )
    context.settings["data"].update(n=20, size=32, n_ood=6)
    context.settings["train"].update(epochs=1, width=4, image_size=16, batch_size=4)
    return context


@pytest.fixture(scope="module")
def derm_data(analysis_ctx):
    """The synthetic derm set of :func:`analysis_ctx`, written on first use."""
    from umlkit.analysis import experiments

    return experiments.prepare_data(analysis_ctx, "derm")


@pytest.fixture(scope="module")
def tiny_models():
    """An untrained UML and U-Net of width 4, in eval mode (seeded, so the numbers repeat)."""
    import torch

    from umlkit.models import build_model

    torch.manual_seed(0)
    return {
        "UML": build_model("uml", width=4).eval(),
        "U-Net": build_model("unet", width=4).eval(),
    }


@pytest.fixture
def fake_evaluation():
    """A builder of hand-made evaluations: ``build(table_columns, **kept_maps)``."""
    import pandas as pd

    from umlkit.evaluate import Evaluation

    def build(table: dict, **maps) -> Evaluation:
        return Evaluation(table=pd.DataFrame(table), summary={}, **maps)

    return build
