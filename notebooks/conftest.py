"""nbval runs every notebook here under the smoke profile unless told otherwise.

The notebooks' ``parameters`` cells default to ``profile = None``, which reads ``UMLKIT_PROFILE``;
the kernels nbval starts inherit this process's environment.

Under pytest-xdist (``make test``: ``-n 2 --dist loadscope``) :func:`pytest_xdist_make_scheduler`
keeps every notebook, and the JupyterLab browser test that opens two of them, in one unit of work:
they run in one process, in order. A notebook's cells must share one kernel, and the notebooks share
the smoke profile's data and model cache in the checkout (notebook 04 trains the models that 05-08
and the JupyterLab test read). Every other test module is a unit of its own (``loadscope``).
"""

import os

os.environ.setdefault("UMLKIT_PROFILE", "smoke")

NOTEBOOKS_GROUP = "notebooks"


def work_unit(nodeid: str, default: str) -> str:
    """The unit of work of a test id under xdist: ``notebooks`` or ``default`` (its module)."""
    path = nodeid.split("::", 1)[0]
    if path.endswith(".ipynb") or path.endswith("browser/test_jupyterlab.py"):
        return NOTEBOOKS_GROUP
    return default


def pytest_xdist_make_scheduler(config, log):
    """xdist's ``loadscope`` scheduler with the notebooks as one scope (see the module docstring).

    pytest 9.2 ids tests in a way that xdist's ``xdist_group`` marks no longer reach its
    scheduler, so the grouping is done here, on the ids the scheduler sees.
    """
    from xdist.scheduler import LoadScopeScheduling

    class NotebooksInOneProcess(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid, super()._split_scope(nodeid))

    return NotebooksInOneProcess(config, log)
