"""Real browser: hostile names in uploaded files are shown as text, never fetched or rendered (issue 10, item 3).

The server is started with `kdcrowd dashboard` from a temporary folder (the safe start command);
headless Chromium uploads a CSV whose header is a markdown image pointing at 127.0.0.1:9 and a
crowd whose worker ids and labels are markdown images and HTML tags, visits the pages, and checks
that no request went to 127.0.0.1:9, that the names are displayed literally, and that Plotly drew
no bold text from a ``<b>`` label.  Skipped when /usr/bin/chromium or playwright is missing.
"""
from __future__ import annotations

import os
import socket
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
RUN_CLI = "import sys; from kdcrowd_core.cli import main; sys.exit(main())"

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} not found: install Debian's chromium to run the browser tests", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")

sys.path.insert(0, str(ROOT / "tests" / "dashboard"))
from test_security_escaping import IMG, hostile_answers  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("elsewhere")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    env.pop("KDCROWD_HOME", None)
    log = ARTIFACTS / "security_server.log"
    proc = subprocess.Popen([sys.executable, "-c", RUN_CLI, "dashboard", "--port", str(port), "--headless",
                             "--data-dir", "home"], cwd=cwd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 90
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            assert time.time() < deadline, "server not healthy in 90 s"
            time.sleep(0.3)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_idle(page, timeout: float = 90.0) -> None:
    page.wait_for_timeout(300)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if page.locator('[data-testid="stStatusWidget"]').count() == 0:
            page.wait_for_timeout(400)
            if page.locator('[data-testid="stStatusWidget"]').count() == 0:
                return
        page.wait_for_timeout(200)
    raise AssertionError("the app kept running")


def _upload(page, path: Path) -> None:
    box = page.locator('[data-testid="stFileUploader"]').filter(has_text="Annotations").first
    box.wait_for(timeout=120_000)
    box.locator('input[type="file"]').set_input_files(str(path), timeout=120_000)
    page.wait_for_timeout(500)
    _wait_idle(page)


def _goto(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
    page.locator("h1").filter(has_text=title).first.wait_for(timeout=60_000)
    _wait_idle(page)


def test_hostile_names_are_text_in_the_browser(server, tmp_path):
    bad = tmp_path / "hostile_header.csv"
    bad.write_text(f"item,{IMG},<b>lab</b>\n1,a,x\n2,b,y\n")
    good = tmp_path / "hostile_ids.csv"
    good.write_bytes(hostile_answers())
    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1800})
        page.on("request", lambda r: requests.append(r.url))
        try:
            page.goto(server)
            page.locator("h1").filter(has_text="Data").wait_for(timeout=90_000)
            _wait_idle(page, 120)
            # 1. the error quotes the markdown-image header as text
            _upload(page, bad)
            alert = page.locator('[data-testid="stAlert"]').filter(has_text="hostile_header.csv").first
            alert.wait_for(timeout=30_000)
            assert IMG in alert.inner_text()
            assert alert.locator("img").count() == 0 and alert.locator("b").count() == 0
            # 2. a crowd of hostile ids and labels: every page
            _upload(page, good)
            page.get_by_text("Loaded annotations from hostile_ids.csv").first.wait_for(timeout=30_000)
            page.locator(".js-plotly-plot").nth(2).wait_for(timeout=60_000)
            _check_plotly(page)
            page.screenshot(path=str(ARTIFACTS / "security_data.png"))
            for title in ("Workers", "Disagreement"):
                _goto(page, title)
                page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
                page.wait_for_timeout(1500)
                assert page.locator('[data-testid="stException"]').count() == 0
                _check_plotly(page)
                page.screenshot(path=str(ARTIFACTS / f"security_{title.lower()}.png"))
            assert page.locator('img[src*="127.0.0.1:9"]').count() == 0
        except BaseException:
            page.screenshot(path=str(ARTIFACTS / "security_failure.png"))
            raise
        finally:
            browser.close()
    hits = [u for u in requests if "127.0.0.1:9/" in u or u.startswith("javascript:")]
    assert not hits, hits
    assert any(u.startswith(server) for u in requests)        # the listener did see the page's own requests


def _check_plotly(page) -> None:
    """Plotly drew the ``<b>bold</b>`` label as literal text, not as bold text."""
    texts = page.evaluate("""() => Array.from(document.querySelectorAll('.js-plotly-plot text'))
                                   .map(t => t.textContent)""")
    assert any("<b>bold</b>" in t for t in texts), texts[:40]
    bold = page.evaluate("""() => Array.from(document.querySelectorAll('.js-plotly-plot tspan'))
                                  .filter(t => (t.getAttribute('style') || '').includes('bold'))
                                  .map(t => t.textContent)""")
    # Streamlit's theme draws chart titles in bold: only the hostile labels' own text must not be bold
    assert not [t for t in bold if t.strip() in ("bold", "dave")], bold
