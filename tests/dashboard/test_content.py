"""Item content: texts or a zip of pictures -> features in the background -> Train; items shown with it."""
from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import items_view, state

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")

POS = ["I love this film", "what a wonderful day", "great acting and a happy ending", "a delightful song",
       "the best meal I have had", "lovely people, I am so glad"]
NEG = ["I hate this film", "what an awful day", "terrible acting and a sad ending", "a dreadful song",
       "the worst meal I have had", "rude people, I am so angry"]


def text_csv() -> bytes:
    rows = ["text,annotator,sentiment"]
    for k, t in enumerate(POS + NEG):
        truth = "pos" if k < len(POS) else "neg"
        for w in range(3):
            rows.append(f'"{t}",ann{w},{truth if (k + w) % 4 else ("neg" if truth == "pos" else "pos")}')
    return "\n".join(rows).encode()


def images_zip(n: int = 8) -> tuple[bytes, bytes]:
    from PIL import Image, ImageDraw
    buf = io.BytesIO()
    rows = ["item,worker,label"]
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(n):
            red = i % 2 == 0
            img = Image.new("RGB", (64, 48), (250, 250, 250))
            ImageDraw.Draw(img).rectangle([8, 8, 56, 40], fill=(220, 30, 30) if red else (30, 60, 220))
            b = io.BytesIO()
            img.save(b, format="PNG")
            z.writestr(f"photos/pic_{i:02d}.png", b.getvalue())
            for w in range(3):
                rows.append(f"https://cdn.example/pic_{i:02d}.png,w{w},{'red' if red else 'blue'}")
    return buf.getvalue(), "\n".join(rows).encode()


def _wait_built(s: dict, timeout: float = 240.0) -> None:
    job = state.featurize_job(s[state.DATASET])
    assert job is not None
    deadline = time.time() + timeout
    while job.is_active and time.time() < deadline:
        time.sleep(0.5)
    assert job.status == "done", (job.status, job.error)
    assert state.add_built_features(s, job), s.get(state.UPLOAD_ERROR)


def test_texts_of_a_text_csv_become_features(kdcrowd_home):
    pytest.importorskip("sentence_transformers", reason="the text model's code is not installed")
    from kdcrowd_core.featurize import text_model_available
    if text_model_available() is not None:
        pytest.skip(f"text model missing: {text_model_available()}")
    s: dict = {}
    assert state.ingest(s, "answers", text_csv(), "reviews.csv", options={"item": "text", "label": "sentiment"})
    ds = s[state.DATASET]
    assert ds.crowd.n_items == 12 and ds.crowd.features is None
    assert state.ingest(s, "content", state.read_source(ds, "answers"), "reviews.csv")   # texts = the item ids
    ds = s[state.DATASET]
    assert ds.content.kind == "texts" and ds.content.text("I love this film") == "I love this film"
    state.start_featurizing(ds)
    _wait_built(s)
    built = s[state.DATASET]
    assert built.id == ds.id and built.crowd.features.shape == (12, 384)
    assert built.sources["features"].name == "features from reviews.csv"
    # the two sentiments separate: each text is closer to its own group's mean
    X, ids = built.crowd.features, [str(i) for i in built.crowd.item_ids]
    pos = X[[ids.index(t) for t in POS]]
    neg = X[[ids.index(t) for t in NEG]]
    mp, mn = pos.mean(0), neg.mean(0)
    right = sum(float(x @ mp) > float(x @ mn) for x in pos) + sum(float(x @ mn) > float(x @ mp) for x in neg)
    assert right >= 10, right
    # stored: reopened after a restart with its content and features
    import streamlit as st
    st.cache_resource.clear()
    back = state.open_dataset(built.id)
    assert back.crowd.features.shape == (12, 384) and back.content is not None
    # item tables show the text
    import pandas as pd
    df, cfg = items_view.with_content(pd.DataFrame({"label": ["x"]}, index=["I hate this film"]), back)
    assert list(df.columns)[0] == "text" and df.iloc[0, 0] == "I hate this film" and "text" in cfg


def test_pictures_in_a_zip_become_features_after_the_id_fix(kdcrowd_home):
    from kdcrowd_core.featurize import image_model_available
    if image_model_available() is not None:
        pytest.skip(f"image model missing: {image_model_available()}")
    zipped, answers = images_zip()
    s: dict = {}
    assert state.ingest(s, "answers", answers, "labels.csv")
    ds = s[state.DATASET]
    # the zip's ids are file names without extension, the answers' are URLs: refused, with the fix proposed
    assert not state.ingest(s, "content", zipped, "photos.zip")
    d = s[state.ID_PENDING]["diagnosis"]
    assert d.n_matched == 0 and d.proposed_transform == ("strip", "filename", "stem")
    assert state.apply_id_transform(s, d.proposed_transform)
    ds = s[state.DATASET]
    assert ds.content is not None and ds.content.kind == "images"
    state.start_featurizing(ds)
    _wait_built(s)
    built = s[state.DATASET]
    assert built.crowd.features.shape == (8, 1280)
    import pandas as pd
    df, cfg = items_view.with_content(pd.DataFrame({"label": ["red"]}, index=["pic_00"]), built)
    assert df.columns[0] == "picture" and str(df.iloc[0, 0]).startswith("data:image/png;base64,")


def test_item_content_upload_on_the_page_builds_features(kdcrowd_home):
    from kdcrowd_core.featurize import image_model_available
    if image_model_available() is not None:
        pytest.skip(f"image model missing: {image_model_available()}")
    zipped, answers = images_zip()
    answers = answers.replace(b"https://cdn.example/", b"").replace(b".png,", b",")
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.session_state[state.PENDING] = [("answers", answers, "labels.csv"), ("content", zipped, "photos.zip")]
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    ds = at.session_state[state.DATASET]
    assert ds.content is not None
    [b for b in at.button if b.label == "Build features from the item content"][0].click().run()
    job = state.featurize_job(ds)
    deadline = time.time() + 240
    while job.is_active and time.time() < deadline:
        time.sleep(0.5)
    at.run()       # the sidebar sees the finished job and adds the features
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state[state.DATASET].crowd.features.shape == (8, 1280)
    at.switch_page("app_pages/train.py")
    at.run()
    assert not at.exception and not any("needs item features" in i.value for i in at.info)
