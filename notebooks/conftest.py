"""nbval runs every notebook here under the smoke profile unless told otherwise.

The notebooks' ``parameters`` cells default to ``profile = None``, which reads ``UMLKIT_PROFILE``;
the kernels nbval starts inherit this process's environment.

Under pytest-xdist (``make test``: ``-n 2 --dist loadscope``) :func:`pytest_xdist_make_scheduler`
keeps the notebooks that share the smoke profile's derm data and model cache in the checkout, and
the JupyterLab browser test that opens 06, in one unit of work: they run in one process, in order
(01 writes the data 03-08 read, 04 trains the models that 05-08 and the JupyterLab test read).
00 (reads the notebooks), 02 (toy data in memory) and 09 (its own fundus data and cache) share
nothing with them, so each is a unit of its own, like every test module. A notebook's cells always
stay together: they share one kernel.
"""

import os
import types
from pathlib import Path

import nbformat
import nbval.plugin

from umlkit.checked_outputs import with_stored_outputs

os.environ.setdefault("UMLKIT_PROFILE", "smoke")


def _read_with_stored_outputs(path, *args, **kwargs):
    """nbval's reader of a notebook, with the checked cells' outputs put back from
    ``notebooks/checked/`` (the notebooks themselves are committed without outputs)."""
    return with_stored_outputs(nbformat.read(path, *args, **kwargs), Path(path))


# nbval reads each notebook with ``nbformat.read`` of its own module: that one name is replaced
nbval.plugin.nbformat = types.SimpleNamespace(
    **{name: getattr(nbformat, name) for name in dir(nbformat) if not name.startswith("__")},
)
nbval.plugin.nbformat.read = _read_with_stored_outputs

NOTEBOOKS_GROUP = "notebooks"


#: Notebooks that read or write nothing the others share (see the module docstring).
ON_THEIR_OWN = ("00_overview.ipynb", "02_evidential_primer.ipynb", "09_semi_supervised.ipynb")


def work_unit(nodeid: str, default: str) -> str:
    """The unit of work of a test id under xdist: ``notebooks`` or ``default`` (its file)."""
    path = nodeid.split("::", 1)[0]
    if path.endswith("browser/test_jupyterlab.py"):
        return NOTEBOOKS_GROUP
    if path.endswith(".ipynb") and not path.endswith(ON_THEIR_OWN):
        return NOTEBOOKS_GROUP
    return default


#: The units of work that take longest after the notebooks, longest first (seconds of one worker
#: in a fresh-clone ``make test`` on 2 cores: the site about 80, test_train 50 of which 35 are
#: torch.compile's, the cache's lab path 23, the exercises 17, the two-process training 16).
#: They start first, so that no long unit starts when the other worker is nearly done.
LONGEST_FIRST = (
    "tests/browser/test_site.py",
    "tests/test_train.py",
    "tests/test_cache.py",
    "tests/test_assignments.py",
    "tests/test_train_distributed.py",
)


def pytest_xdist_make_scheduler(config, log):
    """xdist's ``loadscope`` scheduler with the notebooks as one scope (see the module docstring),
    handing out the units in the order of :func:`pytest_collection_modifyitems`.

    pytest 9.2 ids tests in a way that xdist's ``xdist_group`` marks no longer reach its
    scheduler, so the grouping is done here, on the ids the scheduler sees. xdist would
    otherwise reorder the units by their number of tests, which says nothing of their time: the
    website's four tests, about a hundred seconds, started last and ran while the other worker
    sat idle.
    """
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False

    class NotebooksInOneProcess(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid, super()._split_scope(nodeid))

    return NotebooksInOneProcess(config, log)


def pytest_collection_modifyitems(config, items):
    """The longest units first: the ``notebooks`` unit (its JupyterLab test after its
    notebooks), then :data:`LONGEST_FIRST`, then every other test in its order (a stable sort)."""

    def place(item):
        in_unit = work_unit(item.nodeid, "") == NOTEBOOKS_GROUP
        path = item.nodeid.split("::", 1)[0]
        rank = LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)
        return (not in_unit, rank, in_unit and item.path.suffix != ".ipynb")

    items.sort(key=place)
