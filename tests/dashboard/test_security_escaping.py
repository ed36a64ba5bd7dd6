"""User strings are shown as text on every page (issue 10, item 3).

Hostile worker ids, labels, column and file names (markdown images pointing at
127.0.0.1:9, HTML tags, Streamlit directives) go through the real pages under
AppTest; every element Streamlit renders as markdown must hold them escaped,
and every Plotly figure must hold them as entities, never as tags.
"""
from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import charts, state, text

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
# every page of the app (pages added later are checked too)
PAGES = ["app_pages/data.py"] + sorted(f"app_pages/{p.name}" for p in (Path(APP).parent / "app_pages").glob("*.py")
                                       if p.name not in ("__init__.py", "data.py"))

IMG = "![p](http://127.0.0.1:9/x.png)"
WORKERS = ["![w](http://127.0.0.1:9/w.png)", "<img src=http://127.0.0.1:9/i.png>", "alice", "bob", ":red[carol]",
           "<b>dave</b>"]
LABELS = ["<b>bold</b>", "![l](http://127.0.0.1:9/l.png)", "$x$"]
FILE_NAME = "[click](javascript:alert(1)) <img src=x>.csv"
# what must never reach the browser as markup: these constructs, unless escaped by a backslash
RAW = [re.compile(p) for p in (r"(?<!\\)\]\(", r"(?<!\\)<(img|b|/b|i|/i)\b", r"(?<!\\):red\[",
                                r"(?<!\\)\$x\$", r"127\.0\.0\.1:9")]


def hostile_answers(n_items: int = 80, seed: int = 0) -> bytes:
    r = random.Random(seed)
    rows = ["item,worker,label"]
    for i in range(n_items):
        truth = r.choice(LABELS)
        for w in r.sample(WORKERS, 4):
            lab = truth if r.random() < 0.7 else r.choice(LABELS)
            rows.append(f'"<i>{i}</i>","{w}","{lab}"')
    return "\n".join(rows).encode()


def test_md_escapes_markdown_html_and_directives():
    cases = {
        IMG: "!\\[p\\](http\\://127.0.0.1\\:9/x.png)",
        "<b>x</b> & y": "\\<b\\>x\\</b\\> \\& y",
        ":red[x] :material/delete:": "\\:red\\[x\\] \\:material/delete:",
        "$x^2$": "\\$x^2\\$",
        "*a* _b_ ~c~ `d` # e | f": "\\*a\\* \\_b\\_ \\~c\\~ \\`d\\` \\# e \\| f",
        "line1\nline2": "line1 line2",
        "- item": "\\- item",
        "1. item": "1\\. item",
        "back\\slash": "back\\\\slash",
        # ordinary messages and file names read the same
        "my_answers.csv: no worker column (expected a name).": "my_answers.csv: no worker column (expected a name).",
    }
    for raw, want in cases.items():
        assert text.md(raw) == want, (raw, text.md(raw))
    assert text.code("a`b") == "``a`b``" and text.code("`x") == "`` `x ``"
    assert text.plain("<b>x</b> & y") == "&lt;b&gt;x&lt;/b&gt; &amp; y"


def _strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def test_chart_labels_are_entities_not_tags():
    import numpy as np
    classes = LABELS
    fig = charts.class_balance(classes, np.array([3, 2, 1]), title="Class balance of <b>x</b>")
    fig2 = charts.worker_matrix_grid(np.full((2, 3, 3), 1 / 3), WORKERS[:2], classes)
    fig3 = charts.confusion_heatmap(np.eye(3), ["%{y}", "<a href='http://127.0.0.1:9'>z</a>", "c"], title="t")
    for f in (fig, fig2, fig3):
        strings = list(_strings(json.loads(f.to_json())))
        assert not [s for s in strings if any(r in s for r in ("<b>bold", "<b>x", "<img", "<a href"))]
        assert not [s for s in strings if "%{y}" in s and "true %{y}" not in s and s != "%{y}"]
    assert "&lt;b&gt;bold&lt;/b&gt;" in json.loads(fig.to_json())["data"][0]["x"]


def _markdown_values(at: AppTest) -> list[str]:
    out = []
    for kind in ("markdown", "caption", "error", "warning", "info", "success", "subheader", "title", "header"):
        out += [str(e.value) for e in getattr(at, kind)]
    return out


def _plotly_strings(at: AppTest) -> list[str]:
    out = []
    for el in at.get("plotly_chart"):
        out += list(_strings(json.loads(el.proto.spec)))
    return out


def _check(at: AppTest, where: str) -> None:
    assert not at.exception, (where, [e.value for e in at.exception])
    for v in _markdown_values(at):
        hit = [r.pattern for r in RAW if r.search(v)]
        assert not hit, (where, hit, v)
    for s in _plotly_strings(at):
        hit = [r for r in ("<img", "<b>bold", "<b>dave", "<i>") if r in s]   # Plotly renders tags, not markdown
        assert not hit, (where, hit, s[:200])


@pytest.mark.timeout(300)
def test_hostile_names_on_every_page():
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    # an unreadable file whose column names are markdown/HTML: the error quotes them escaped
    bad = f"item,{IMG},<b>lab</b>\n1,a,x\n2,b,y\n".encode()
    at.session_state[state.PENDING] = [("answers", bad, "cols.csv")]
    at.run()
    assert at.error and "cols.csv" in at.error[0].value
    assert "!\\[p\\](http\\://127.0.0.1\\:9" in at.error[0].value         # quoted, escaped
    _check(at, "data page, error")
    # a readable file full of hostile ids and labels, with a hostile file name
    at.session_state[state.PENDING] = [("answers", hostile_answers(), FILE_NAME)]
    at.run()
    assert not at.error, [e.value for e in at.error]
    assert at.session_state[state.DATASET].crowd.n_workers == len(WORKERS)
    _check(at, "data page")
    assert any("\\[click\\]" in s.value for s in at.subheader)
    for page in PAGES[1:]:
        at.switch_page(page)
        at.run()
        _check(at, page)
    at.switch_page("app_pages/workers.py")
    at.run()
    for w in WORKERS[:2]:                                    # one hostile worker in detail
        at.selectbox(key="workers_detail").select(w).run()
        _check(at, f"worker {w}")
