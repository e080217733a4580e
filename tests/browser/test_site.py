"""The course website, read in Chromium: pages, images, links and search.

``make docs`` builds the site from the notebooks that ``make figures`` executed (tens of minutes).
This test builds the same site quickly: notebook 02 is executed under the smoke profile (it has
figures, formulas and the explorer's cell) and the other chapters are taken as committed, without
outputs. The site lands in ``build/browser/site/`` and a screenshot of chapter 02 next to it.
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_build_site():
    spec = importlib.util.spec_from_file_location("build_site", ROOT / "docs" / "build_site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(artefacts, tmp_path_factory) -> Path:
    """The built test site (its folder)."""
    pytest.importorskip(
        "sphinx", reason="the docs extra is not installed (pip install -e '.[docs]')"
    )
    from umlkit.runner import run_notebooks

    executed = tmp_path_factory.mktemp("executed")
    summary = run_notebooks("smoke", only=["02"], output_dir=executed, progress=False)
    assert (summary["status"] == "ok").all(), summary.to_string()
    build_site = load_build_site()
    return build_site.build(
        executed, artefacts / "site", artefacts / "site-src", allow_unexecuted=True
    )


@pytest.fixture(scope="module")
def server(site):
    """The site served on a free loopback port (the search needs http, not file://)."""
    handler = functools.partial(QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


class LinkCollector(HTMLParser):
    """The ids of a page and the addresses its links, images, scripts and styles point to."""

    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if attributes.get("id"):
            self.ids.add(attributes["id"])
        for name in ("href", "src"):
            if attributes.get(name) and tag in {"a", "img", "script", "link"}:
                self.links.append(attributes[name])


@functools.cache
def parse(path: Path) -> LinkCollector:
    collector = LinkCollector()
    collector.feed(path.read_text(encoding="utf-8"))
    return collector


def pages(site: Path) -> list[Path]:
    return sorted(
        path for path in site.rglob("*.html") if not path.relative_to(site).parts[0].startswith("_")
    )


def test_site_has_every_chapter_and_reference_page(site):
    names = {path.relative_to(site).as_posix() for path in pages(site)}
    chapters = sorted(path.stem for path in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert len(chapters) == 10
    for expected in [f"notebooks/{stem}.html" for stem in chapters] + [
        "index.html",
        "docs/course.html",
        "docs/fidelity.html",
        "docs/decisions.html",
        "figures/results.html",  # the README's Results section links it
        "api.html",
        "generated/umlkit.evidential.html",
        "generated/umlkit.widgets.html",
    ]:
        assert expected in names
    # the formulas of the docstrings reach the API pages as math (MathJax renders them)
    evidential = (site / "generated" / "umlkit.evidential.html").read_text(encoding="utf-8")
    assert 'class="math' in evidential
    chapter = (site / "notebooks" / "02_evidential_primer.html").read_text(encoding="utf-8")
    assert "<img" in chapter  # the executed chapter shows its figures
    # ...and the raw results.json is a download of the landing page
    assert list(site.glob("_downloads/*/results.json"))


def test_no_broken_internal_link(site):
    broken = []
    for page in pages(site):
        base = page.relative_to(site).as_posix()
        for link in parse(page).links:
            parts = urlsplit(urljoin(base, link))
            if parts.scheme or parts.netloc or link.startswith(("mailto:", "javascript:")):
                continue
            target = site / unquote(parts.path) if parts.path else page
            if not target.is_file():
                broken.append(f"{base}: {link} (no file)")
            elif parts.fragment and target.suffix == ".html":
                if unquote(parts.fragment) not in parse(target).ids:
                    broken.append(f"{base}: {link} (no such anchor)")
    assert not broken, "broken links:\n" + "\n".join(broken[:40])


def test_every_page_loads_without_error_in_chromium(site, server, page, artefacts):
    problems, external = [], set()
    page.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text} ({message.location['url']})")
            if message.type == "error"
            else None
        ),
    )
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    # The site needs nothing from elsewhere (docs/conf.py): a request that leaves it is recorded
    # (and fails at once, since the browser resolves no other host: tests/browser/conftest.py).
    # Recorded, not intercepted: Playwright's request routing turns the browser's cache off, and
    # every page would fetch the theme's scripts, styles and fonts again (docs/decisions.md).
    page.on(
        "request",
        lambda request: (
            None if request.url.startswith(server) else external.add(urlsplit(request.url).netloc)
        ),
    )
    for path in pages(site):
        relative = path.relative_to(site).as_posix()
        before = len(problems)
        page.goto(server + relative, wait_until="load")
        broken = page.evaluate(
            """async () => {
                const images = [...document.images];
                images.forEach(img => { img.loading = 'eager'; });
                await Promise.all(images.map(img => img.decode().catch(() => null)));
                return images.filter(img => !img.complete || img.naturalWidth === 0)
                             .map(img => img.getAttribute('src'));
            }"""
        )
        problems += [f"broken image: {src}" for src in broken]
        problems[before:] = [f"{relative}: {problem}" for problem in problems[before:]]
    assert not external, f"requests outside the site, to: {sorted(external)}"
    assert not problems, "\n".join(problems[:40])

    page.goto(server + "notebooks/02_evidential_primer.html", wait_until="load")
    # One search field at a desktop's width, the sidebar's: with sphinx-book-theme 1.4,
    # pydata-sphinx-theme 0.20 added a top bar holding a second one, drawn over the sidebar as
    # it scrolls (docs/conf.py turns that bar's field off).
    searches = page.locator(".search-button-field, .search-button").filter(visible=True)
    assert searches.count() == 1, f"{searches.count()} search fields shown"
    assert page.locator(".bd-sidebar-primary .search-button-field").is_visible()
    screenshot = artefacts / "site-02_evidential_primer.png"
    page.screenshot(path=str(screenshot), full_page=False)
    assert screenshot.stat().st_size > 10_000


#: What the offline test reads of a page once MathJax has finished: its formulas (the elements
#: Sphinx writes for MathJax), how many MathJax replaced by its output, the first output's size,
#: the TeX left as text, and whether MathJax's own fonts were loaded.
RENDERED_MATH = r"""async () => {
    await MathJax.startup.promise;
    await document.fonts.ready;
    const formulas = [...document.querySelectorAll('article .math')];
    const rendered = formulas.filter(el => el.querySelector('mjx-container'));
    const first = rendered.length ? rendered[0].querySelector('mjx-container') : null;
    const box = first ? first.getBoundingClientRect() : {width: 0, height: 0};
    const raw = formulas.map(el => el.innerText)
                        .filter(text => text.includes('\\') || text.includes('$'));
    const fonts = [...document.fonts].filter(font => font.family.includes('MJX'));
    return {
        formulas: formulas.length,
        rendered: rendered.length,
        width: box.width,
        height: box.height,
        raw: raw.slice(0, 5),
        fonts: fonts.filter(font => font.status === 'loaded').map(font => font.family),
        font_errors: fonts.filter(font => font.status === 'error').map(font => font.family),
    };
}"""


@pytest.mark.parametrize(
    "address", ["notebooks/02_evidential_primer.html", "generated/umlkit.evidential.html"]
)
def test_formulas_render_with_every_request_outside_the_site_blocked(server, page, address):
    """A lab room without internet: MathJax and its fonts come from the site itself."""
    blocked, failed = [], []

    def offline(route):
        if route.request.url.startswith(server):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort("internetdisconnected")

    page.route("**/*", offline)
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.goto(server + address, wait_until="load")
    assert not blocked, f"requests outside the site: {blocked[:5]}"
    # MathJax's script is deferred: by the load event it has run, if it was there to run.
    assert page.evaluate("() => Boolean(window.MathJax && MathJax.startup)"), "no MathJax"
    math = page.evaluate(RENDERED_MATH)
    assert math["formulas"] > 0, f"{address} has no formula to render"
    assert math["rendered"] == math["formulas"], math
    assert math["width"] > 0 and math["height"] > 0, math
    assert not math["raw"], f"TeX left as text: {math['raw']}"
    assert math["fonts"] and not math["font_errors"], math
    assert not [url for url in failed if url.startswith(server)], failed[:5]
    loaded = page.evaluate(
        "() => performance.getEntriesByType('resource').map(entry => entry.name)"
    )
    assert any("/_static/mathjax/" in url for url in loaded), "MathJax was not loaded from the site"


def test_search_finds_the_uncertainty_navigator(server, page):
    page.goto(server + "search.html?q=Uncertainty+Navigator", wait_until="load")
    results = page.locator("#search-results ul.search li")
    results.first.wait_for(timeout=30_000)
    found = " ".join(results.all_inner_texts())
    assert "Evidential primer" in found or "Uncertainty Navigator" in found, found
