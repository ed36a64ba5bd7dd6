"""Real browser, 1,000 classes (issue 10 item 8): the Item quality page shows its table without ranking the
items to relabel; *Rank the items to relabel* ranks them, and the task list downloads.

Skipped when /usr/bin/chromium or playwright is missing.
"""
from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

CHROMIUM = "/usr/bin/chromium"

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} not found: install Debian's chromium to run the browser tests", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_dashboard_e2e import (  # noqa: E402
    ARTIFACTS, LAUNCH_ARGS, assert_no_exception, free_port, goto_page, start_server, stop_server, wait_idle)
from test_stories_e2e import open_data, upload_bytes  # noqa: E402


def _answers_csv(n_items: int = 2000, n_classes: int = 1000, n_workers: int = 20, seed: int = 0) -> bytes:
    """4 answers per item, 70 % of them right: every class occurs (a relabel ranking of 64 million numbers)."""
    rng = np.random.default_rng(seed)
    item = np.repeat(np.arange(n_items), 4)
    worker = np.concatenate([rng.choice(n_workers, 4, replace=False) for _ in range(n_items)])
    truth = np.arange(n_items) % n_classes
    label = np.where(rng.random(item.size) < 0.7, truth[item], rng.integers(0, n_classes, item.size))
    rows = ["item,worker,label"] + [f"i{i},w{w},c{c}" for i, w, c in zip(item, worker, label)]
    return "\n".join(rows).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("kdhome_items_many")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = start_server(home, port, ARTIFACTS / "streamlit_items_many.log")
    yield f"http://localhost:{port}"
    stop_server(proc)


def test_items_page_with_1000_classes_ranks_the_relabel_list_on_click(server):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1800}, accept_downloads=True)
        try:
            open_data(page, server)
            upload_bytes(page, "Annotations", "thousand_classes.csv", _answers_csv())
            goto_page(page, "Item quality")
            rank = page.get_by_role("button", name="Rank the items to relabel")
            rank.wait_for(timeout=180_000)
            wait_idle(page, 180)
            assert_no_exception(page)
            assert page.get_by_role("button", name="Download the relabel task list (50 items, CSV)").count() == 0
            assert page.get_by_role("button", name="… with the 1,000 classes' probabilities (large CSV)").count() == 1
            page.screenshot(path=str(ARTIFACTS / "items_many_1_before_click.png"))
            rank.click()
            with page.expect_download(timeout=180_000) as dl:
                page.get_by_role("button", name="Download the relabel task list (50 items, CSV)").click(
                    timeout=180_000)
            nxt = pd.read_csv(io.BytesIO(Path(dl.value.path()).read_bytes()), keep_default_na=False)
            assert list(nxt.columns[:1]) == ["item_id"] and len(nxt) == 50
            assert nxt["item_id"].astype(str).str.startswith("i").all()
            assert_no_exception(page)
            page.screenshot(path=str(ARTIFACTS / "items_many_2_ranked.png"))
        except BaseException:
            page.screenshot(path=str(ARTIFACTS / "items_many_failure.png"))
            raise
        finally:
            browser.close()
