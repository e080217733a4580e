"""Build the umlkit course website: ``python docs/build_site.py`` (what ``make docs`` runs).

The site is a Sphinx + MyST-NB book. Its pages are gathered into a staging folder first, because
they live in three places: the README (the landing page), the executed notebooks (``make reference``
writes them to ``build/notebooks/``; the committed ones have no outputs) and the pages of ``docs/``
(the lecturer's guide under "Teaching", the others under "Reference").
The staging folder mirrors the repository's layout (``notebooks/``, ``docs/``), so the README's
relative links keep working on the site. Sphinx then runs with ``docs/conf.py`` and turns every
warning into an error: a broken reference fails the build.

No notebook is executed here (``nb_execution_mode = "off"`` in ``docs/conf.py``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

#: Pages of ``docs/`` that the site includes as they are, under "Teaching" and "Reference".
TEACHING_PAGES = ("course.md",)
REFERENCE_PAGES = ("fidelity.md", "decisions.md")


def missing_notebooks(executed_dir: Path, notebooks_dir: Path = ROOT / "notebooks") -> list[str]:
    """The numbered notebooks of ``notebooks_dir`` that have no executed copy in ``executed_dir``."""
    names = sorted(path.name for path in notebooks_dir.glob("[0-9][0-9]_*.ipynb"))
    return [name for name in names if not (executed_dir / name).is_file()]


#: The reference's results (``make reference``), which the README's Results section links.
RESULT_FILES = ("results.md", "results.json")


def landing_page(readme: str, notebooks: list[str]) -> str:
    """The README followed by the site's (hidden) tables of contents: notebooks, teaching,
    reference."""
    chapters = "\n".join(f"notebooks/{Path(name).stem}" for name in notebooks)
    teaching = "\n".join(f"docs/{Path(name).stem}" for name in TEACHING_PAGES)
    reference = "\n".join(f"docs/{Path(name).stem}" for name in REFERENCE_PAGES)
    return (
        f"{readme.rstrip()}\n\n"
        f"```{{toctree}}\n:caption: Notebooks\n:hidden:\n:maxdepth: 1\n\n{chapters}\n```\n\n"
        f"```{{toctree}}\n:caption: Teaching\n:hidden:\n:maxdepth: 1\n\n{teaching}\n```\n\n"
        f"```{{toctree}}\n:caption: Reference\n:hidden:\n:maxdepth: 1\n\n{reference}\n"
        f"figures/results\napi\n```\n"
    )


def stage(executed_dir: Path, staging: Path, *, allow_unexecuted: bool = False) -> Path:
    """Gather the site's pages into ``staging`` (emptied first) and return it.

    Args:
        executed_dir: the executed notebooks.
        staging: the folder to fill.
        allow_unexecuted: take a notebook without an executed copy as committed (without
            outputs) instead of failing; the browser tests build a quick site this way.

    Raises:
        FileNotFoundError: a numbered notebook has no executed copy in ``executed_dir`` (and
            ``allow_unexecuted`` is false).
    """
    missing = missing_notebooks(executed_dir)
    if missing and not allow_unexecuted:
        raise FileNotFoundError(
            f"no executed copy in {executed_dir} of: {', '.join(missing)} (run `make reference`)"
        )
    if staging.exists():
        shutil.rmtree(staging)
    (staging / "notebooks").mkdir(parents=True)
    (staging / "docs").mkdir()
    notebooks = sorted(path.name for path in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    for name in notebooks:
        source = executed_dir / name if name not in missing else ROOT / "notebooks" / name
        shutil.copy2(source, staging / "notebooks" / name)
    for name in TEACHING_PAGES + REFERENCE_PAGES:
        shutil.copy2(DOCS / name, staging / "docs" / name)
    shutil.copy2(DOCS / "api.md", staging / "api.md")
    # the README's Results section links the reference's results: a page and a download
    (staging / "figures").mkdir()
    for name in RESULT_FILES:
        if not (ROOT / "figures" / name).is_file():
            raise FileNotFoundError(f"{ROOT / 'figures' / name} is missing: run make reference")
        shutil.copy2(ROOT / "figures" / name, staging / "figures" / name)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (staging / "index.md").write_text(landing_page(readme, notebooks), encoding="utf-8")
    return staging


def build(
    executed_dir: Path,
    out: Path,
    staging: Path,
    *,
    quiet: bool = True,
    allow_unexecuted: bool = False,
) -> Path:
    """Stage the pages (:func:`stage`) and build the HTML site into ``out``, warnings as errors.

    Returns:
        ``out``.

    Raises:
        FileNotFoundError: see :func:`stage`.
        RuntimeError: Sphinx failed (a warning counts as a failure).
    """
    from sphinx.cmd.build import build_main

    stage(executed_dir, staging, allow_unexecuted=allow_unexecuted)
    if out.exists():
        shutil.rmtree(out)
    doctrees = staging.parent / f"{staging.name}-doctrees"
    arguments = ["-b", "html", "-W", "--keep-going", "-c", str(DOCS), "-d", str(doctrees)]
    arguments += ["-q"] if quiet else []
    status = build_main([*arguments, str(staging), str(out)])
    if status != 0:
        raise RuntimeError(f"sphinx-build failed (exit status {status}); its messages are above")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--notebooks",
        type=Path,
        default=ROOT / "build" / "notebooks",
        help="folder of the executed notebooks (default: build/notebooks)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "site", help="HTML output")
    parser.add_argument(
        "--staging", type=Path, default=ROOT / "build" / "site-src", help="staging folder"
    )
    parser.add_argument("--missing", action="store_true", help="list missing notebooks and exit")
    args = parser.parse_args(argv)
    if args.missing:
        print(" ".join(missing_notebooks(args.notebooks)))
        return 0
    try:
        out = build(args.notebooks, args.out, args.staging, quiet=False)
    except (FileNotFoundError, RuntimeError) as error:
        print(f"make docs: {error}", file=sys.stderr)
        return 1
    print(f"site written to {out}/index.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
