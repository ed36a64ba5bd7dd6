"""Real-browser end-to-end test: headless Chromium drives `streamlit run dashboard/app.py`.

Uploads an annotation CSV (plus features and gold) through the file inputs,
visits every page, runs a very short training, waits for the results and checks
the headline numbers against the runs database.  Screenshots go to
test-artifacts/e2e/.  Skipped when /usr/bin/chromium or playwright is missing.
"""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} not found: install Debian's chromium to run the browser tests", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path, port: int, log: Path) -> subprocess.Popen:
    """`streamlit run dashboard/app.py` on ``port`` with its own data directory; waits until healthy."""
    env = dict(os.environ, KDCROWD_HOME=str(home), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.headless", "true",
           "--server.port", str(port), "--server.address", "localhost", "--browser.gatherUsageStats", "false",
           "--client.showErrorDetails", "full"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://localhost:{port}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return proc
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    raise RuntimeError("streamlit did not become healthy within 60 s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def wait_idle(page, timeout: float = 60.0) -> None:
    """Wait until Streamlit has finished running the script (no 'Running...' status widget)."""
    page.wait_for_timeout(300)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if page.locator('[data-testid="stStatusWidget"]').count() == 0:
            page.wait_for_timeout(300)
            if page.locator('[data-testid="stStatusWidget"]').count() == 0:
                return
        page.wait_for_timeout(200)
    raise AssertionError(f"the app kept running for more than {timeout:.0f} s")


def goto_page(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
    page.locator("h1").filter(has_text=title).first.wait_for(timeout=60_000)
    wait_idle(page)


def wait_run_done(home: Path, timeout: float = 240.0) -> None:
    """Wait until the newest run in the data directory's store has finished (done, failed or cancelled)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        con = sqlite3.connect(home / "runs.sqlite")
        try:
            row = con.execute("SELECT status, error FROM runs ORDER BY created DESC LIMIT 1").fetchone()
        finally:
            con.close()
        if row and row[0] not in ("queued", "running"):
            assert row[0] == "done", row
            return
        time.sleep(1.0)
    raise AssertionError(f"the run did not finish within {timeout:.0f} s")


def assert_no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, page.locator(
        '[data-testid="stException"]').first.inner_text()


def n_charts(page) -> int:
    return page.locator(".js-plotly-plot").count() + page.locator('[data-testid="stVegaLiteChart"] canvas, '
                                                                  '[data-testid="stVegaLiteChart"] svg').count()


def upload(page, label: str, path: Path) -> None:
    box = page.locator('[data-testid="stFileUploader"]').filter(has_text=label).first
    box.locator('input[type="file"]').set_input_files(str(path))
    page.get_by_text(path.name).first.wait_for(timeout=30_000)
    wait_idle(page)


@pytest.fixture(scope="module")
def crowd_files(tmp_path_factory) -> dict[str, Path]:
    from kdcrowd_core.simulate import simulate_crowd
    sim = simulate_crowd(n_items=600, n_classes=4, n_features=16, n_workers=20, answers_per_item=(3, 5),
                         gold_fraction=0.3, class_names=["cat", "dog", "bird", "fish"], seed=11)
    d = tmp_path_factory.mktemp("e2e_crowd")
    w = sim.to_files(d)
    return {"answers": w["answers.csv"], "features": w["features.csv"], "gold": w["gold.csv"]}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("kdhome")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = start_server(home, port, ARTIFACTS / "streamlit.log")
    yield f"http://localhost:{port}", home
    stop_server(proc)


def test_upload_browse_train_results(server, crowd_files):
    url, home = server
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1800})
        try:
            _run(page, url, home, crowd_files)
        except BaseException:
            page.screenshot(path=str(ARTIFACTS / "failure.png"))
            raise
        finally:
            browser.close()


def _run(page, url: str, home: Path, files: dict[str, Path]) -> None:
    # 1. opens on the sample, every chart of the Data page drawn
    page.goto(url)
    page.locator("h1").filter(has_text="Data").wait_for(timeout=90_000)
    wait_idle(page, 120)
    assert_no_exception(page)
    assert page.get_by_text("sample data").count() > 0
    page.locator(".js-plotly-plot").nth(2).wait_for(timeout=60_000)
    assert n_charts(page) >= 3

    # 2. upload the annotations, then features and gold, through the real file inputs
    upload(page, "Annotations", files["answers"])
    page.get_by_text("Loaded annotations from answers.csv").first.wait_for(timeout=30_000)
    page.get_by_text("Optional: features, gold labels, validation and test splits").first.click()
    upload(page, "Item features", files["features"])
    upload(page, "Gold labels", files["gold"])
    assert_no_exception(page)
    assert page.locator('[data-testid="stAlert"]').filter(has_text="could not").count() == 0
    values = page.locator('[data-testid="stMetricValue"]').all_inner_texts()
    assert values[0] == "600" and values[2] == "4", values       # items, classes
    page.screenshot(path=str(ARTIFACTS / "1_data.png"))

    # 3. every analysis page renders its charts
    for title, min_charts in (("Workers", 2), ("Disagreement", 4)):
        goto_page(page, title)
        assert_no_exception(page)
        page.locator(".js-plotly-plot").nth(min_charts - 1).wait_for(timeout=30_000)
        assert n_charts(page) >= min_charts
        page.screenshot(path=str(ARTIFACTS / f"2_{title.lower()}.png"))

    # 4. a very short training run
    goto_page(page, "Train")
    for label in ("Teacher epochs", "Student epochs", "Stage-2 epochs"):
        box = page.get_by_label(label, exact=True)
        box.fill("2")
        box.press("Tab")
    page.get_by_text("More settings").first.click()
    folds = page.get_by_label("Cross-fit folds (0/1 = off)", exact=True)
    folds.fill("0")
    folds.press("Tab")
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("Cancel the run").or_(page.get_by_role("button", name="Show the results")).first.wait_for(
        timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "3_train_running.png"))
    wait_run_done(home)
    page.get_by_text("Cancel the run").wait_for(state="detached", timeout=60_000)
    page.get_by_role("button", name="Show the results").wait_for(timeout=60_000)
    wait_idle(page)
    assert_no_exception(page)
    page.screenshot(path=str(ARTIFACTS / "4_train_done.png"))

    # 5. results: headline numbers equal the run's stored summary, charts drawn
    page.get_by_role("button", name="Show the results").click()
    page.get_by_text("Before and after", exact=True).first.wait_for(timeout=60_000)
    wait_idle(page)
    assert_no_exception(page)
    page.locator(".js-plotly-plot").nth(4).wait_for(timeout=30_000)
    con = sqlite3.connect(home / "runs.sqlite")
    status, summary = con.execute("SELECT status, summary FROM runs ORDER BY created DESC LIMIT 1").fetchone()
    con.close()
    assert status == "done"
    acc = json.loads(summary)["train_accuracy"]
    metrics = page.locator('[data-testid="stMetric"]')
    shown = {metrics.nth(i).locator('[data-testid="stMetricLabel"]').inner_text().strip():
             metrics.nth(i).locator('[data-testid="stMetricValue"]').inner_text().strip()
             for i in range(metrics.count())}
    for key, label in (("mv", "Majority vote"), ("ds", "Dawid-Skene"), ("teacher", "Teacher"),
                       ("student", "Student"), ("stage2", "Stage 2")):
        assert shown[label] == f"{acc[key]:.1%}", (label, shown, acc)
    assert n_charts(page) >= 5
    page.screenshot(path=str(ARTIFACTS / "5_results.png"), full_page=True)

    # 6. the workers page now shows the teacher and stage-2 matrices of this run
    goto_page(page, "Workers")
    assert_no_exception(page)
    detail = page.locator(".js-plotly-plot").filter(has_text="Stage 2").filter(has_text="Teacher")
    detail.first.wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "6_workers_after_training.png"))
