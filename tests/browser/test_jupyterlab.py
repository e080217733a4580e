"""A student's view: JupyterLab opens notebooks 02 and 06, runs all cells, and the explorers work.

JupyterLab is started from this interpreter (the project's venv) on a free loopback port with a
fresh settings folder. The notebooks are copied to ``build/browser/notebooks/`` first, so the
committed notebooks stay without outputs; inside the checkout, they find the project (data, model
cache) as the originals do. The smoke profile keeps them short.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

playwright = pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).resolve().parents[2]

RUN_TIMEOUT_MS = 480_000  # run-all of one notebook on a loaded CI machine


@pytest.fixture(scope="module")
def jupyter_lab(tmp_path_factory, artefacts, free_port):
    """A running JupyterLab; yields ``(base_url, token, notebook_folder)``."""
    settings = tmp_path_factory.mktemp("lab-settings")
    # Render every cell (no windowing) so the outputs of cells outside the viewport are in the DOM.
    tracker = settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))
    notebooks = artefacts / "notebooks"
    shutil.rmtree(notebooks, ignore_errors=True)
    notebooks.mkdir(parents=True)
    for name in ("02_evidential_primer.ipynb", "06_uncertainty_maps.ipynb"):
        shutil.copy2(ROOT / "notebooks" / name, notebooks / name)
    port, token = free_port(), secrets.token_hex(16)
    environment = {
        **os.environ,
        "UMLKIT_PROFILE": "smoke",
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path_factory.mktemp("lab-workspaces")),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    environment.pop("UMLKIT_INTERACTIVE", None)  # what a student's shell has: nothing forced
    log = (artefacts / "jupyterlab.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
            "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={ROOT}", "--ServerApp.port_retries=0",
            "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly", "--allow-root",
        ],
        cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start; see {artefacts / 'jupyterlab.log'}")
                time.sleep(0.5)
        yield base, token, notebooks.relative_to(ROOT).as_posix()
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def kernel_state(base: str, token: str, path: str) -> str | None:
    """The execution state of the kernel the server runs for the notebook ``path``, or None
    while the notebook has no session (JupyterLab starts one once it has opened the file)."""
    with urllib.request.urlopen(f"{base}/api/sessions?token={token}", timeout=5) as response:
        sessions = json.load(response)
    states = [s["kernel"]["execution_state"] for s in sessions if s.get("path") == path]
    return states[0] if states else None


def run_all_cells(page, base: str, token: str, path: str) -> None:
    """Open ``path`` in JupyterLab, run all cells and wait until the last one has finished."""
    page.goto(f"{base}/lab/tree/{path}?token={token}")
    panel = page.locator(".jp-NotebookPanel:visible")
    panel.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=120_000)
    # JupyterLab may ask which kernel to start (the notebook names one): accept its proposal.
    # The server says when the notebook's kernel has started and is idle; waiting a fixed time
    # for a question that mostly does not come would only leave a core idle.
    accept = page.locator(".jp-Dialog .jp-mod-accept")
    deadline = time.monotonic() + 120
    while kernel_state(base, token, path) != "idle":
        if accept.is_visible():
            accept.click()
        if time.monotonic() > deadline:
            pytest.fail(f"the kernel of {path} did not start within 120 s")
        page.wait_for_timeout(250)
    panel.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(timeout=120_000)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    # Every code cell of the shown notebook has "[n]:" once it has run ("[*]:" while queued or
    # running); notebooks in the other, hidden tabs are not looked at.
    page.wait_for_function(
        """() => {
            const cells = '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt';
            const prompts = [...document.querySelectorAll(cells)];
            return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
        }""",
        timeout=RUN_TIMEOUT_MS,
        polling=1000,
    )


def assert_no_traceback(page) -> None:
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    texts = [text for text in errors.all_inner_texts() if "Traceback" in text or "Error" in text]
    texts += page.locator(".jp-RenderedText[data-mime-type*='error']").all_inner_texts()
    assert not texts, "an output shows an error:\n" + "\n".join(texts)


def picture_and_readout(explorer) -> tuple[str, str]:
    picture = explorer.locator("img.widget-image").first
    return picture.get_attribute("src"), explorer.locator(".widget-html-content").last.inner_html()


def wait_for_change(page, explorer, before: tuple[str, str]) -> tuple[str, str]:
    """Wait until picture and read-out differ from ``before`` and then stay put for a second."""
    deadline = time.monotonic() + 60
    now = picture_and_readout(explorer)
    while now[0] == before[0] or now[1] == before[1]:
        if time.monotonic() > deadline:
            pytest.fail(f"the picture or the read-out did not change: {before} -> {now}")
        page.wait_for_timeout(250)
        now = picture_and_readout(explorer)
    while True:  # a few arrow presses queue a few redraws: wait for the last one
        page.wait_for_timeout(1000)
        settled = picture_and_readout(explorer)
        if settled == now:
            return now
        now = settled


def move_slider(slider, steps: int) -> None:
    """Move a slider's handle by ``steps`` steps with the arrow keys, as a keyboard user does."""
    handle = slider.locator(".noUi-handle").first
    handle.focus()
    for _ in range(abs(steps)):
        handle.press("ArrowRight" if steps > 0 else "ArrowLeft")


def check_picture_size(explorer) -> None:
    """The PNG has more pixels than the picture occupies on screen, and it is not stretched."""
    size = explorer.locator("img.widget-image").first.evaluate(
        "img => [img.naturalWidth, img.getBoundingClientRect().width]"
    )
    natural, shown = size
    assert 0 < shown <= natural / 1.9, f"picture of {natural} px shown at {shown} px"


def test_explorers_in_jupyterlab(jupyter_lab, page, artefacts):
    base, token, folder = jupyter_lab
    page.set_viewport_size({"width": 1400, "height": 1000})

    run_all_cells(page, base, token, f"{folder}/02_evidential_primer.ipynb")
    assert_no_traceback(page)
    explorer = page.locator(".widget-vbox").filter(has=page.locator(".widget-slider")).first
    explorer.wait_for(timeout=60_000)
    assert explorer.locator(".widget-slider").count() == 3  # alpha_1..alpha_3
    check_picture_size(explorer)
    before = picture_and_readout(explorer)
    move_slider(explorer.locator(".widget-slider").first, 6)
    after = wait_for_change(page, explorer, before)
    assert "S = " in after[1]
    page.screenshot(path=str(artefacts / "jupyterlab-02-explorer.png"))

    run_all_cells(page, base, token, f"{folder}/06_uncertainty_maps.ipynb")
    assert_no_traceback(page)
    panel = page.locator(".jp-NotebookPanel:visible")
    explorer = panel.locator(".widget-vbox").filter(has=page.locator("select")).first
    explorer.wait_for(timeout=60_000)
    check_picture_size(explorer)
    before = picture_and_readout(explorer)
    move_slider(explorer.locator(".widget-slider").first, -10)
    after_slider = wait_for_change(page, explorer, before)
    assert "UEO at t" in after_slider[1]
    choice = explorer.locator("select").first
    chosen = choice.input_value()
    # Open the list and pick the next entry with the keyboard. (Arrow keys on a closed <select>
    # inside a notebook reach JupyterLab's command-mode shortcuts, which move between cells.)
    choice.click()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    wait_for_change(page, explorer, after_slider)
    assert choice.input_value() != chosen
    assert_no_traceback(page)
    page.screenshot(path=str(artefacts / "jupyterlab-06-explorer.png"))
