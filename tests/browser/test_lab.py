"""`make lab-test`: the reader's path in a real browser (issue 13).

JupyterLab from the project's environment on 127.0.0.1, headless Chromium (Debian's package) driven by
selenium: each notebook opened and run with Run All at the ci scale, as a newcomer without the released
rows meets it (GPLAN_GSISR=none). Checked per notebook: no cell shows an error, no code cell but the
parameters cell is silent, every widget renders as a control (no text fallback) and figures appear; the
scaffold slider moves, the seed review panel records a decision, the
plan box's verdict, the CALR explorer and the loss landscape follow their controls; no committed file changes.
Screenshots go to runs/lab-test/. Not part of `make test` (it needs a browser); `.ci/run` runs it after.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "runs" / "lab-test"
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
DEBIAN_PACKAGES = ("chromium", "chromium-driver", "fonts-noto-cjk")
CELL_TIMEOUT_S = 600
WIDGET = "application/vnd.jupyter.widget-view+json"

#: The notebook panel's code cells as the browser holds them: execution count, outputs, and for each
#: output area what it rendered (widget controls, text fallbacks, images).
PANEL_JS = """
let w = null;
for (const x of window.jupyterapp.shell.widgets('main')) {
  if (x.context && x.context.path.endsWith(arguments[0])) w = x;
}
"""
CELLS_JS = PANEL_JS + """
const nodes = w.content.widgets;
const out = [];
for (let i = 0; i < w.content.model.cells.length; i++) {
  const c = w.content.model.cells.get(i);
  if (c.type !== 'code') continue;
  const node = nodes[i].node;
  const area = node.querySelector('.jp-OutputArea');
  out.push({index: i, count: c.executionCount, tags: c.getMetadata('tags') || [],
            outputs: c.outputs.toJSON().map(o => ({type: o.output_type, mimes: Object.keys(o.data || {}),
                                                  ename: o.ename || null, evalue: (o.evalue || '').slice(0, 300)})),
            widgets: area ? area.querySelectorAll('.jupyter-widgets:not(.jupyter-widgets-output-area)').length : 0,
            fallback: area ? /Loading widget|Error displaying widget|VBox\\(children=|HBox\\(children=/.test(area.innerText) : false,
            images: area ? area.querySelectorAll('img[src^="data:image/png"]').length : 0});
}
return out;
"""

READY_JS = """
if (!window.jupyterapp) return 'no app';
""" + PANEL_JS + """
if (!w || !w.sessionContext) return 'no panel';
const k = w.sessionContext.session && w.sessionContext.session.kernel;
return k ? k.status : 'no kernel';
"""


def _have_browser() -> bool:
    return bool(shutil.which("chromium") and shutil.which("chromedriver"))


def _have_cjk_font() -> bool:
    fc = shutil.which("fc-list")
    return bool(fc and subprocess.run([fc, ":lang=zh"], capture_output=True, text=True).stdout.strip())


def _install_debian_packages() -> str | None:
    """Install Chromium, its driver and a CJK font from Debian's packages; None on success, else why not."""
    if _have_browser() and _have_cjk_font():
        return None
    if not shutil.which("apt-get") or os.geteuid() != 0:
        return (f"needs Debian's {' '.join(DEBIAN_PACKAGES)} (run as root: apt-get install -y "
                f"{' '.join(DEBIAN_PACKAGES)})")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *DEBIAN_PACKAGES]
    if subprocess.run(cmd, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update"], capture_output=True)
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            return f"apt-get could not install {DEBIAN_PACKAGES}: {done.stderr[-400:]}"
    return None if _have_browser() else "chromium or chromedriver still missing after apt-get"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    why = _install_debian_packages()
    if why:
        pytest.skip(f"browser test skipped: {why}")
    tmp = tmp_path_factory.mktemp("lab")
    settings = tmp / "settings" / "@jupyterlab" / "docmanager-extension"
    settings.mkdir(parents=True)
    (settings / "plugin.jupyterlab-settings").write_text(json.dumps({"autosave": False}))  # never save outputs
    tracker = tmp / "settings" / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))  # every cell in the DOM
    news = tmp / "settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)
    (news / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    port = _free_port()
    env = {**os.environ, "GPLAN_SCALE": "ci", "GPLAN_GSISR": "none", "JUPYTERLAB_SETTINGS_DIR": str(tmp / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"), "JUPYTER_RUNTIME_DIR": str(tmp / "runtime")}
    log = open(tmp / "jupyter.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--allow-root",
         "--ServerApp.token=", "--ServerApp.password=", f"--ServerApp.root_dir={REPO}",
         "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{base}/api/status", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        server.kill()
        pytest.fail(f"JupyterLab did not start; its log: {(tmp / 'jupyter.log').read_text()[-2000:]}")

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1400,1100", f"--user-data-dir={tmp / 'chromium'}"):
        opts.add_argument(arg)
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium never downloads a driver
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    driver.set_script_timeout(60)
    OUT.mkdir(parents=True, exist_ok=True)
    review = REPO / "data" / "synth" / "ci" / "seed_review.json"
    had_review = review.is_file()
    yield driver, base
    driver.quit()
    server.terminate()
    server.wait(timeout=30)
    if not had_review:
        review.unlink(missing_ok=True)  # the test's own review click leaves nothing behind


def _open_and_run(driver, base: str, name: str) -> list[dict]:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{base}/lab/tree/notebooks/{name}")
    WebDriverWait(driver, 120, 0.5).until(lambda d: d.execute_script(READY_JS, name) == "idle")
    driver.execute_script(PANEL_JS + "window.jupyterapp.shell.activateById(w.id);"
                          "window.jupyterapp.commands.execute('notebook:run-all-cells');", name)
    time.sleep(2)

    def finished(d):
        cells = d.execute_script(CELLS_JS, name)
        errored = any(o["type"] == "error" for c in cells for o in c["outputs"])
        done = all(c["count"] is not None for c in cells)
        return cells if d.execute_script(READY_JS, name) == "idle" and (done or errored) else False

    WebDriverWait(driver, CELL_TIMEOUT_S, 1).until(finished)

    def rendered(d):  # widgets and images render after the kernel goes idle
        cells = d.execute_script(CELLS_JS, name)
        png = sum("image/png" in o["mimes"] for c in cells for o in c["outputs"])
        widgets = [c for c in cells if any(WIDGET in o["mimes"] for o in c["outputs"])]
        done = sum(c["images"] for c in cells) >= png and all(c["widgets"] for c in widgets)
        return cells if done else False

    try:
        return WebDriverWait(driver, 60, 1).until(rendered)
    except TimeoutException:  # the assertions below say what did not render
        return driver.execute_script(CELLS_JS, name)


def _cell_with(driver, selector: str, text: str | None = None):
    """The first code cell whose outputs hold an element matching ``selector`` (with ``text``), scrolled into view."""
    from selenium.webdriver.common.by import By

    for node in driver.find_elements(By.CSS_SELECTOR, ".jp-CodeCell"):
        found = [e for e in node.find_elements(By.CSS_SELECTOR, selector) if text is None or e.text == text]
        if found:
            driver.execute_script("arguments[0].scrollIntoView();", node)
            return node, found[0]
    raise AssertionError(f"no output holds {selector} {text or ''}")


def _check_slider(driver) -> str:
    """02: the scaffold slider moves one stage and the folded text beside it changes."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    node, handle = _cell_with(driver, ".widget-slider .noUi-handle")
    readout = node.find_element(By.CSS_SELECTOR, ".widget-slider .widget-readout")
    area = lambda: node.find_element(By.CSS_SELECTOR, ".jp-OutputArea").text
    before, text_before = readout.text, area()
    handle.click()
    handle.send_keys(Keys.ARROW_RIGHT)
    WebDriverWait(driver, 30, 0.5).until(lambda d: readout.text != before and area() != text_before,
                                         f"the slider did not move from {before}")
    return f"slider {before} -> {readout.text}, the folded text changed"


def _check_review(driver) -> str:
    """01: the review panel's accept button records a decision (header, status and count update)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    node, button = _cell_with(driver, "button.jupyter-button", "accept")
    button.click()
    area = lambda: node.find_element(By.CSS_SELECTOR, ".jp-OutputArea").text
    WebDriverWait(driver, 30, 0.5).until(lambda d: "saved to" in area(), "the review panel recorded nothing")
    text = area()
    assert "accept" in text and "decisions recorded" in text, text
    return "review: accept recorded (" + next(line for line in text.splitlines() if "decisions recorded" in line) + ")"


def _move_slider_where(driver, marker: str, what: str, index: int = 0) -> str:
    """Slider ``index`` of the cell whose output shows ``marker`` moves one step and the line holding it changes."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    node = next((n for n in driver.find_elements(By.CSS_SELECTOR, ".jp-CodeCell")
                 if marker in n.find_element(By.CSS_SELECTOR, ".jp-OutputArea").text
                 and n.find_elements(By.CSS_SELECTOR, ".widget-slider .noUi-handle")), None)
    assert node is not None, f"no cell shows a slider beside {marker!r}"
    driver.execute_script("arguments[0].scrollIntoView();", node)
    line = lambda: next(t for t in node.find_element(By.CSS_SELECTOR, ".jp-OutputArea").text.splitlines() if marker in t)
    before = line()
    handle = node.find_elements(By.CSS_SELECTOR, ".widget-slider .noUi-handle")[index]
    handle.click()
    handle.send_keys(Keys.ARROW_RIGHT)
    WebDriverWait(driver, 60, 0.5).until(lambda d: line() != before, f"{what}: moving a slider changed nothing")
    return f"{what}: {before[:60]!r} -> {line()[:60]!r}"


def _check_filter_box(driver) -> str:
    """00: emptying the plan box and typing [] turns the filter's verdict from passes to rejected."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    node, box = _cell_with(driver, ".widget-textarea textarea")
    area = lambda: node.find_element(By.CSS_SELECTOR, ".jp-OutputArea").text
    assert "passes all three tiers" in area(), area()
    box.click()
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    box.send_keys("[]")
    WebDriverWait(driver, 30, 0.5).until(lambda d: "rejected" in area(), "the verdict did not update")
    return "filter box: [] -> " + next(t for t in area().splitlines() if "rejected" in t)


INTERACTIONS = {"00": [_check_filter_box], "01": [_check_review],
                "02": [_check_slider, lambda d: _move_slider_where(d, "t* =", "CALR explorer")],
                "03": [lambda d: _move_slider_where(d, "minimum at r+", "loss landscape λg,h", index=2)]}  # λa moves no minimum


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_newcomer_runs_the_notebook_in_jupyterlab(lab, notebook):
    driver, base = lab
    before = _git_status()
    cells = _open_and_run(driver, base, notebook.name)
    driver.save_screenshot(str(OUT / f"{notebook.stem}-end.png"))
    driver.execute_script(PANEL_JS + "w.content.widgets[0].node.scrollIntoView();", notebook.name)
    driver.save_screenshot(str(OUT / f"{notebook.stem}-top.png"))
    errors = [(c["index"], o["ename"], o["evalue"]) for c in cells for o in c["outputs"] if o["type"] == "error"]
    assert not errors, errors
    silent = [c["index"] for c in cells if not c["outputs"] and "parameters" not in c["tags"]]
    assert not silent, f"code cells with no output: {silent}"
    widget_cells = [c for c in cells if any(WIDGET in o["mimes"] for o in c["outputs"])]
    assert all(c["widgets"] > 0 and not c["fallback"] for c in widget_cells), widget_cells
    png = sum("image/png" in o["mimes"] for c in cells for o in c["outputs"])
    assert png > 0 and sum(c["images"] for c in cells) >= png, "figures did not appear"
    done = []
    for k, interact in enumerate(INTERACTIONS.get(notebook.name[:2], [])):
        done.append(interact(driver))
        driver.save_screenshot(str(OUT / f"{notebook.stem}-widget{k}.png"))
    assert _git_status() == before, "running the notebook changed files git tracks"
    (OUT / f"{notebook.stem}.json").write_text(json.dumps(
        {"cells": len(cells), "figures": png, "widget_cells": len(widget_cells), "interactions": done}, indent=1))
