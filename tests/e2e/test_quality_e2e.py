"""Real browser (one server, several checks): labels downloaded without training, the item table's CSV
sorted by quality, a relabel-next download, worker flags that follow the thresholds, and the Results
page's before/after with intervals and the recommended model.

The app opens on the bundled sample (with its pre-computed run).  Skipped when /usr/bin/chromium or
playwright is missing.
"""
from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} not found: install Debian's chromium to run the browser tests", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_dashboard_e2e import (  # noqa: E402
    ARTIFACTS, LAUNCH_ARGS, assert_no_exception, free_port, goto_page, start_server, stop_server, wait_idle)


def _download(page, button: str) -> pd.DataFrame:
    with page.expect_download(timeout=180_000) as dl:
        page.get_by_role("button", name=button).first.click(timeout=180_000)
    return pd.read_csv(io.BytesIO(Path(dl.value.path()).read_bytes()), keep_default_na=False)


def _metric(page, label: str) -> str:
    box = page.locator('[data-testid="stMetric"]').filter(has_text=label).first
    return box.locator('[data-testid="stMetricValue"]').inner_text()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("kdhome_quality")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = start_server(home, port, ARTIFACTS / "streamlit_quality.log")
    yield f"http://localhost:{port}"
    stop_server(proc)


def test_labels_items_relabel_workers_results(server):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1800}, accept_downloads=True)
        try:
            _run(page, server)
        except BaseException:
            page.screenshot(path=str(ARTIFACTS / "quality_failure.png"))
            raise
        finally:
            browser.close()


def _run(page, url: str) -> None:
    page.goto(url)
    page.locator("h1").filter(has_text="Data").wait_for(timeout=90_000)
    wait_idle(page, 120)

    # 1. labels without training: pick a method, download labels with confidence and probabilities
    goto_page(page, "Labels")
    assert_no_exception(page)
    page.get_by_text("95 % interval").first.wait_for(timeout=30_000)
    labels = _download(page, "Download the labels (CSV)")
    assert list(labels.columns[:3]) == ["item", "label", "confidence"]
    probs = [c for c in labels.columns if c.startswith("prob_")]
    assert len(probs) >= 2 and np.allclose(labels[probs].sum(axis=1), 1.0, atol=1e-6)
    assert labels["item"].is_unique and len(labels) >= 1000
    page.screenshot(path=str(ARTIFACTS / "q1_labels.png"))

    # 2. per-item quality, likely-wrong first, and the relabel-next task list
    goto_page(page, "Item quality")
    assert_no_exception(page)
    items = _download(page, "Download every item's quality (CSV)")
    assert items.columns[0] == "item" and {"consensus", "quality", "agreement", "answers", "reason"} <= set(items)
    assert (np.diff(items["quality"].to_numpy(dtype=float)) >= -1e-9).mean() > 0.95
    assert len(items) == len(labels)
    nxt = _download(page, "Download the relabel task list (50 items, CSV)")
    assert list(nxt.columns[:1]) == ["item_id"] and len(nxt) == 50
    assert set(nxt["item_id"].astype(str)) <= set(items["item"].astype(str))
    page.screenshot(path=str(ARTIFACTS / "q2_items.png"))

    # 3. worker flags follow the thresholds; the full report always holds every worker
    goto_page(page, "Workers")
    assert_no_exception(page)
    before = int(_metric(page, "Workers to block"))
    report = _download(page, "Full worker report")
    n_workers = len(report)
    box = page.get_by_label("Min. answers to judge", exact=True)
    box.fill("100000")
    box.press("Enter")
    wait_idle(page)
    for _ in range(60):                      # the flags follow the threshold once the page has rerun
        if _metric(page, "Workers to block") == "0":
            break
        page.wait_for_timeout(500)
    assert _metric(page, "Workers to block") == "0"
    assert before > 0
    assert len(_download(page, "Full worker report")) == n_workers          # never filtered
    page.screenshot(path=str(ARTIFACTS / "q3_workers.png"))

    # 4. before/after: intervals and the recommended model (or the reason there is none)
    goto_page(page, "Results")
    assert_no_exception(page)
    page.get_by_text("Before and after", exact=True).first.wait_for(timeout=60_000)
    assert page.get_by_text("recommended model", exact=False).count() > 0
    assert page.get_by_text("95 % interval").count() >= 3
    assert page.get_by_text("the teacher", exact=False).count() > 0            # compared with the teacher
    page.locator(".js-plotly-plot").nth(1).wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "q4_results.png"))
