"""Sphinx configuration of the umlkit course website (``make docs``).

The site is not built from ``docs/`` directly: ``docs/build_site.py`` first gathers its pages into
``build/site-src/`` (the README as the landing page, the executed notebooks, the pages of
``docs/``) and then runs Sphinx there with this folder as the configuration directory. The notebooks
arrive executed, by ``make figures``; the site only shows their outputs and never runs them again.
"""

from pathlib import Path

from umlkit import __version__

project = "umlkit"
author = "umlkit contributors"
copyright = "umlkit contributors"
release = __version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
]

# The notebooks carry the outputs of `make figures`; executing them here would retrain every model.
nb_execution_mode = "off"
# A failing cell in an executed notebook shows up as a traceback on its page; it must fail the build.
nb_output_stderr = "show"
myst_enable_extensions = ["dollarmath", "amsmath"]
# The README links to its own sections (#timings); MyST resolves those anchors for h1-h3.
myst_heading_anchors = 3

autosummary_generate = True
autosummary_imported_members = False
# A package's __all__ re-exports what its modules define; documenting it twice would make every
# reference to a re-exported name ambiguous, so each object is documented where it is defined.
autodoc_default_options = {"members": True, "show-inheritance": True, "ignore-module-all": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# Absolute: autosummary looks templates up from the source folder, which is the staging folder.
templates_path = [str(Path(__file__).resolve().parent / "_templates")]

# Tables and reports that notebooks print as Markdown start at their own heading level; the
# check for skipped heading levels is meant for hand-written pages.
suppress_warnings = ["myst.header"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
html_theme = "sphinx_book_theme"
html_title = "umlkit: uncertainty-informed mutual learning"
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": True,
    "home_page_in_toc": True,
}
# Without a default, the theme logs "invalid theme mode" to the console on a reader's first visit.
html_context = {"default_mode": "light"}
html_static_path: list[str] = []
