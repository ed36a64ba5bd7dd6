"""Real-browser stories of bringing your own data (issue 8), one server shared by all, no file edited by hand.

- a Label Studio CSV export (``annotator, audio, genre, id``): columns picked in the browser;
- a Toloka TSV with URL item ids plus features keyed by file name: the id diagnosis proposes "file name";
- LabelMe's ``answers.txt`` (wide, whitespace, -1 = no answer) with class names given in the page;
- a text CSV ``text,annotator,sentiment`` trained from its texts;
- a zip of (drawn) images trained from its pictures;
- a refresh and a second tab keep the dataset; Results shows only that dataset's runs.

Inputs are generated here (tiny); training is short.  Screenshots go to test-artifacts/e2e/stories_*.png.
Skipped when /usr/bin/chromium or playwright is missing.
"""
from __future__ import annotations

import io
import sqlite3
import sys
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} not found: install Debian's chromium to run the browser tests", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_dashboard_e2e import (  # noqa: E402
    ARTIFACTS, LAUNCH_ARGS, assert_no_exception, free_port, goto_page, start_server, stop_server, wait_idle,
    wait_run_done)


# ------------------------------------------------------------------ inputs
def label_studio_csv(n_items: int = 12) -> bytes:
    rows = ["annotator,audio,genre,id"]
    for i in range(n_items):
        for w in (1, 2, 3):
            rows.append(f"{w},https://host/audio/song_{i:02d}.mp3,{['rock', 'jazz', 'pop'][(i + (w == 3)) % 3]},"
                        f"{100 + i}")
    return "\n".join(rows).encode()


def toloka_tsv_and_features(n_items: int = 40) -> tuple[bytes, bytes]:
    rows = ["INPUT:image\tOUTPUT:result\tASSIGNMENT:worker_id"]
    feats = ["item," + ",".join(f"f{j}" for j in range(4))]
    for i in range(n_items):
        cls = i % 2
        for w in range(4):
            label = ["cat", "dog"][cls if (i + w) % 5 else 1 - cls]
            rows.append(f"https://toloka.example/task/img/img_{i:03d}.jpg?size=big\t{label}\tworker{w}")
        feats.append(f"img_{i:03d}.jpg," + ",".join(f"{(cls * 2 - 1) * (j + 1) * 0.5 + (i % 7) * 0.01:.3f}"
                                                    for j in range(4)))
    return "\n".join(rows).encode(), "\n".join(feats).encode()


POS = ["I love this film", "what a wonderful day", "great acting and a happy ending", "a delightful song",
       "the best meal I have had", "lovely people, I am so glad"]
NEG = ["I hate this film", "what an awful day", "terrible acting and a sad ending", "a dreadful song",
       "the worst meal I have had", "rude people, I am so angry"]


def sentiment_csv() -> bytes:
    rows = ["text,annotator,sentiment"]
    for k, t in enumerate(POS + NEG):
        truth = "positive" if k < len(POS) else "negative"
        for w in range(3):
            flip = {"positive": "negative", "negative": "positive"}[truth]
            rows.append(f'"{t}",annotator_{w},{truth if (k + w) % 4 else flip}')
    return "\n".join(rows).encode()


def drawn_images(n: int = 12) -> tuple[bytes, bytes]:
    """A zip of small drawn pictures (red or blue shapes) and answers naming them by file stem."""
    from PIL import Image, ImageDraw
    buf = io.BytesIO()
    rows = ["item,worker,label"]
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(n):
            red = i % 2 == 0
            img = Image.new("RGB", (96, 72), (245, 245, 240))
            draw = ImageDraw.Draw(img)
            colour = (210, 40, 40) if red else (40, 70, 210)
            if i % 3:
                draw.ellipse([12, 8, 84, 64], fill=colour)
            else:
                draw.rectangle([14, 10, 82, 62], fill=colour)
            b = io.BytesIO()
            img.save(b, format="PNG")
            z.writestr(f"shapes/shape_{i:02d}.png", b.getvalue())
            for w in range(3):
                ok = (i + w) % 5 != 0
                rows.append(f"shape_{i:02d},worker_{w},{'red' if red == ok else 'blue'}")
    return buf.getvalue(), "\n".join(rows).encode()


def labelme_answers_txt(n_items: int = 30, n_workers: int = 6) -> bytes:
    lines = []
    for i in range(n_items):
        cells = []
        for w in range(n_workers):
            answered = (i + w) % 3 != 0
            cells.append(str((i + (w == 5)) % 3) if answered else "-1")
        lines.append(" ".join(cells))
    return ("\n".join(lines) + "\n").encode()


# ------------------------------------------------------------------ helpers
def metric(page, label: str) -> str:
    box = page.locator('[data-testid="stMetric"]').filter(has_text=label).first
    return box.locator('[data-testid="stMetricValue"]').inner_text().strip()


def upload_bytes(page, label: str, name: str, payload: bytes, mime: str = "text/csv") -> None:
    box = page.locator('[data-testid="stFileUploader"]').filter(has_text=label).first
    for attempt in range(3):   # a rerun can replace the input while the file is being set: try again
        try:
            box.locator('input[type="file"]').set_input_files(
                files=[{"name": name, "mimeType": mime, "buffer": payload}], timeout=15_000)
            break
        except sync_api.TimeoutError:
            if attempt == 2:
                raise
            wait_idle(page)
    page.get_by_text(name).first.wait_for(timeout=60_000)
    wait_idle(page, 120)


def pick(page, label: str, option: str) -> None:
    """Choose ``option`` in the select box labelled ``label``."""
    wait_idle(page)
    for attempt in range(3):   # a rerun may close the list while it opens: try again
        page.get_by_role("combobox", name=label, exact=True).first.click()
        try:
            page.get_by_role("option", name=option, exact=True).first.click(timeout=10_000)
            break
        except sync_api.TimeoutError:
            if attempt == 2:
                raise
            page.keyboard.press("Escape")
            wait_idle(page)
    wait_idle(page, 120)


def expand(page, title: str) -> None:
    """Open the expander titled ``title`` (clicking again if a rerun closed it)."""
    details = page.locator('[data-testid="stExpander"] details').filter(
        has=page.locator("summary").filter(has_text=title)).first
    for _ in range(4):
        if details.get_attribute("open") is not None:
            break
        details.locator("summary").first.click()
        page.wait_for_timeout(600)
    wait_idle(page)
    assert details.get_attribute("open") is not None, f"could not open {title!r}"


def open_data(page, url: str) -> None:
    page.goto(url)
    page.locator("h1").filter(has_text="Data").wait_for(timeout=90_000)
    wait_idle(page, 120)
    assert_no_exception(page)


def dataset_id(page) -> str:
    from urllib.parse import parse_qs, urlsplit
    ids = parse_qs(urlsplit(page.url).query).get("dataset")
    assert ids, page.url
    return ids[0]


def sidebar_text(page) -> str:
    return page.locator('[data-testid="stSidebar"]').inner_text()


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"stories_{name}.png"), full_page=True)


def run_ids(home: Path) -> set[str]:
    con = sqlite3.connect(home / "runs.sqlite")
    try:
        return {r[0] for r in con.execute("SELECT id FROM runs")}
    finally:
        con.close()


def short_training(page, home: Path) -> None:
    goto_page(page, "Train")
    for label in ("Teacher epochs", "Student epochs", "Stage-2 epochs"):
        box = page.get_by_label(label, exact=True)
        box.fill("1")
        box.press("Tab")
    page.get_by_text("More settings").first.click()
    folds = page.get_by_label("Cross-fit folds (0/1 = off)", exact=True)
    folds.fill("0")
    folds.press("Tab")
    wait_idle(page)
    before = run_ids(home)
    page.get_by_role("button", name="Start training").click()
    deadline = time.time() + 120
    while not (run_ids(home) - before):     # the click reaches the server: a new run is in the store
        assert time.time() < deadline, "no run started within 120 s"
        time.sleep(0.5)
    wait_run_done(home)                     # ... and it is the newest one
    page.get_by_text("Cancel the run").wait_for(state="detached", timeout=60_000)
    wait_idle(page)
    assert_no_exception(page)


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("kdhome_stories")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = start_server(home, port, ARTIFACTS / "streamlit_stories.log")
    yield f"http://localhost:{port}", home
    stop_server(proc)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()


@pytest.fixture()
def context(browser, request):
    ctx = browser.new_context(viewport={"width": 1440, "height": 1600})
    yield ctx
    for k, pg in enumerate(ctx.pages):   # the last state of every tab, for a look after a failure
        try:
            pg.screenshot(path=str(ARTIFACTS / f"stories_last_{request.node.name}_{k}.png"))
        except Exception:  # noqa: BLE001 - a closed page
            pass
    ctx.close()


STATE: dict = {}   # what one story leaves for a later one (dataset ids)


# ------------------------------------------------------------------ stories
def test_label_studio_csv_columns_picked_in_the_browser(server, context):
    url, _home = server
    page = context.new_page()
    open_data(page, url)
    upload_bytes(page, "Annotations", "project-7-at-2026-11-29.csv", label_studio_csv())
    # detection can't find the label column: the message names the page's picker, the panel is open
    alert = page.locator('[data-testid="stAlert"]').filter(has_text="project-7-at-2026-11-29.csv").first
    alert.wait_for(timeout=30_000)
    assert "Label column" in alert.inner_text() and "read_answers" not in alert.inner_text()
    page.get_by_text("Adjust how this file is read").first.wait_for()
    shot(page, "1_label_studio_detect_failed")
    pick(page, "Label column", "genre")
    page.get_by_text("Loaded annotations from project-7-at-2026-11-29.csv").first.wait_for(timeout=60_000)
    assert (metric(page, "Items"), metric(page, "Workers"), metric(page, "Classes")) == ("12", "3", "3")
    did = dataset_id(page)
    STATE["label_studio"] = did
    shot(page, "2_label_studio_read")

    # a refresh keeps the dataset (the id is in the address)
    page.reload()
    page.locator("h1").filter(has_text="Data").wait_for(timeout=60_000)
    wait_idle(page, 120)
    assert dataset_id(page) == did and "project-7-at-2026-11-29.csv" in sidebar_text(page)
    assert metric(page, "Items") == "12"
    # so does a second tab opened on the same address
    tab = context.new_page()
    tab.goto(page.url)
    tab.locator("h1").filter(has_text="Data").wait_for(timeout=60_000)
    wait_idle(tab, 120)
    assert dataset_id(tab) == did and metric(tab, "Classes") == "3"
    assert "project-7-at-2026-11-29.csv" in sidebar_text(tab)
    assert_no_exception(tab)


def test_toloka_url_ids_with_features_keyed_by_file_name(server, context):
    url, _home = server
    answers, features = toloka_tsv_and_features()
    page = context.new_page()
    open_data(page, url)
    upload_bytes(page, "Annotations", "assignments_from_pool_42.tsv", answers, mime="text/tab-separated-values")
    page.get_by_text("Loaded annotations from assignments_from_pool_42.tsv").first.wait_for(timeout=60_000)
    assert metric(page, "Items") == "40"
    expand(page, "Optional: features, gold labels, validation and test splits")
    upload_bytes(page, "Item features", "image_features.csv", features)
    # the diagnosis: how many match, an example of each side, the proposed transform, a button to apply it
    fix = page.get_by_role("button", name="Use the item id transform “file name”")
    fix.wait_for(timeout=30_000)
    body = page.locator('[data-testid="stMain"]').inner_text()
    assert "match 0 of the 40 answered items" in body and "img_000.jpg" in body
    shot(page, "3_toloka_diagnosis")
    fix.click()
    page.get_by_text("with the new item id transform").first.wait_for(timeout=60_000)
    wait_idle(page)
    assert "4 features" in sidebar_text(page)
    assert page.get_by_role("button", name="Use the item id transform “file name”").count() == 0
    STATE["toloka"] = dataset_id(page)
    shot(page, "4_toloka_features_matched")



def test_labelme_answers_txt_with_class_names(server, context):
    url, _home = server
    page = context.new_page()
    open_data(page, url)
    upload_bytes(page, "Annotations", "answers.txt", labelme_answers_txt(), mime="text/plain")
    page.get_by_text("Loaded annotations from answers.txt").first.wait_for(timeout=60_000)
    assert (metric(page, "Items"), metric(page, "Workers"), metric(page, "Classes")) == ("30", "6", "3")
    expand(page, "Adjust how this file is read")
    box = page.get_by_label("Class names for label codes", exact=True)
    box.fill("0=highway, 1=coast, 2=forest")
    box.press("Enter")
    page.get_by_text("Read answers.txt again with the chosen settings").first.wait_for(timeout=60_000)
    wait_idle(page)
    assert metric(page, "Classes") == "3"
    expand(page, "What was read, what was skipped")
    assert "class names for label codes: 0=highway, 1=coast, 2=forest" in page.locator(
        '[data-testid="stMain"]').inner_text()
    assert_no_exception(page)
    shot(page, "6_labelme_class_names")


def wait_features(page, n_features: int, timeout: float = 420_000) -> None:
    """Wait for the background featurizing to finish and its features to be in the dataset."""
    page.locator('[data-testid="stSidebar"]').get_by_text(f"{n_features} features").first.wait_for(timeout=timeout)
    wait_idle(page, 120)


@pytest.mark.timeout(600)
def test_text_csv_trained_from_its_texts(server, context):
    url, home = server
    page = context.new_page()
    open_data(page, url)
    upload_bytes(page, "Annotations", "reviews.csv", sentiment_csv())
    # no item column by name: the texts are the items; the label column is picked too
    page.get_by_text("Adjust how this file is read").first.wait_for(timeout=30_000)
    pick(page, "Item column", "text")
    if page.get_by_text("Loaded annotations from reviews.csv").count() == 0:
        pick(page, "Label column", "sentiment")
    page.get_by_text("Loaded annotations from reviews.csv").first.wait_for(timeout=60_000)
    assert (metric(page, "Items"), metric(page, "Classes")) == ("12", "2")
    # the texts become features (MiniLM), in the background, with a progress bar in the sidebar
    page.get_by_role("button", name="Take the texts from the annotations file").click()
    wait_features(page, 384)
    assert_no_exception(page)
    shot(page, "7_texts_features_built")
    short_training(page, home)
    goto_page(page, "Results")
    page.get_by_text("Before and after", exact=True).first.wait_for(timeout=60_000)
    assert_no_exception(page)
    goto_page(page, "Disagreement")   # the contested items, shown with their texts
    page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=60_000)
    wait_idle(page)
    assert_no_exception(page)
    shot(page, "8_texts_contested_items")


@pytest.mark.timeout(600)
def test_zip_of_pictures_trained_from_its_pictures(server, context):
    url, home = server
    zipped, answers = drawn_images()
    page = context.new_page()
    open_data(page, url)
    upload_bytes(page, "Annotations", "shape_colours.csv", answers)
    page.get_by_text("Loaded annotations from shape_colours.csv").first.wait_for(timeout=60_000)
    expand(page, "Item content: the texts or pictures of the items (optional)")
    upload_bytes(page, "Item content", "shapes.zip", zipped, mime="application/zip")
    wait_features(page, 1280)
    assert_no_exception(page)
    did = dataset_id(page)
    short_training(page, home)
    goto_page(page, "Results")
    page.get_by_text("Before and after", exact=True).first.wait_for(timeout=60_000)
    assert_no_exception(page)
    goto_page(page, "Disagreement")   # the contested items, shown with their pictures
    page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=60_000)
    wait_idle(page)
    assert_no_exception(page)
    shot(page, "9_pictures_contested_items")
    # Results shows only the open dataset's runs: the Label Studio dataset has none, and says so
    page.goto(f"{url}/?dataset={STATE['label_studio']}")
    page.locator("h1").filter(has_text="Data").wait_for(timeout=60_000)
    wait_idle(page, 120)
    goto_page(page, "Results")
    page.get_by_text("No finished training run on this dataset").first.wait_for(timeout=30_000)
    assert page.get_by_text("Before and after", exact=True).count() == 0
    # and going back to the pictures' dataset shows its run again
    page.goto(f"{url}/?dataset={did}")
    page.locator("h1").filter(has_text="Data").wait_for(timeout=60_000)
    wait_idle(page, 120)
    goto_page(page, "Results")
    page.get_by_text("Before and after", exact=True).first.wait_for(timeout=60_000)
