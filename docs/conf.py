"""Sphinx configuration of the umlkit course website (``make docs``).

The site is not built from ``docs/`` directly: ``docs/build_site.py`` first gathers its pages into
``build/site-src/`` (the README as the landing page, the executed notebooks, the pages of
``docs/``) and then runs Sphinx there with this folder as the configuration directory. The notebooks
arrive executed, by ``make figures``; the site only shows their outputs and never runs them again.

The site works without a network (a lab room without internet): MathJax, which renders the
formulas, is served from the site itself rather than from a CDN (:func:`copy_mathjax`), and the
only other scripts that would come from a CDN, the widget manager of myst-nb, are not loaded
(``nb_ipywidgets_js``). The browser test ``tests/browser/test_site.py`` blocks every request
outside the site and checks that a formula still renders.
"""

import shutil
from importlib.metadata import PackageNotFoundError, distribution
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

#: The distribution that ships MathJax's browser build; the docs extra pins its version
#: (pyproject.toml). It is packaged as a Django app but needs no Django: umlkit only copies its files.
MATHJAX_DISTRIBUTION = "django-static-mathjax"
#: The MathJax component the pages load: TeX and MathML input, HTML-CSS output (CHTML).
MATHJAX_ENTRY = "tex-mml-chtml.js"
# Relative to the site's _static/ folder (Sphinx's rule for a path that is not a URL).
mathjax_path = f"mathjax/{MATHJAX_ENTRY}"

# The notebooks carry the outputs of `make figures`; executing them here would retrain every model.
nb_execution_mode = "off"
# The only widgets in the executed notebooks are tqdm's progress bars of the training loops.
# Rendering them would take require.js and the widget manager from a CDN, and a finished bar
# says nothing on a page: they stay unrendered and the site requests nothing from elsewhere.
nb_ipywidgets_js: dict[str, dict[str, str]] = {}
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
    # No top bar: pydata-sphinx-theme 0.20 (which sphinx-book-theme 1.4 requires) puts a
    # second search field there, above the sidebar's own, and the bar hides the sidebar's top
    # as it scrolls.
    "navbar_persistent": [],
}
# Without a default, the theme logs "invalid theme mode" to the console on a reader's first visit.
html_context = {"default_mode": "light"}
# Without an icon, every browser asks the server for /favicon.ico and logs the 404 to the console.
html_favicon = "favicon.svg"
html_static_path: list[str] = []


def mathjax_source() -> Path:
    """MathJax's browser build (its ``es5/`` folder) as the docs extra installs it.

    Raises:
        FileNotFoundError: the distribution is not installed (``pip install -e '.[docs]'``).
    """
    try:
        folder = Path(distribution(MATHJAX_DISTRIBUTION).locate_file("mathjax/static/mathjax/es5"))
    except PackageNotFoundError:
        folder = None
    if folder is None or not (folder / MATHJAX_ENTRY).is_file():
        raise FileNotFoundError(
            f"MathJax not found: the site serves it itself, from the package "
            f"{MATHJAX_DISTRIBUTION} of the docs extra (pip install -e '.[docs]')"
        )
    return folder


def copy_mathjax(app, exception) -> None:
    """Copy MathJax into ``_static/mathjax/`` of the built site: the entry script and the
    folders it loads from on demand (fonts, TeX extensions, the accessibility menu and its
    speech rules), without MathJax's other combined scripts, which no page loads."""
    if exception is not None or app.builder.format != "html":
        return
    source = mathjax_source()
    target = Path(app.outdir) / "_static" / "mathjax"
    others = {path.name for path in source.glob("*.js")} - {MATHJAX_ENTRY}
    shutil.copytree(
        source,
        target,
        dirs_exist_ok=True,
        ignore=lambda folder, names: others & set(names) if Path(folder) == source else (),
    )


def setup(app):
    # Checked before the build starts, so that a missing MathJax fails at once, not at the end.
    mathjax_source()
    app.connect("build-finished", copy_mathjax)
