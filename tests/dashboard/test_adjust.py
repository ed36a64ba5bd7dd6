""""Adjust how this file is read": column pickers for a file detection can't read, options re-applied at once."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import adjust, state
from dashboard.datasets_db import DatasetStore
from kdcrowd_core.errors import CrowdDataError

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")

# a Label Studio CSV export: no column is named like a label
LS_CSV = ("annotator,audio,genre,id\n" + "\n".join(
    f"{w},https://host/audio/song_{i:02d}.mp3,{['rock', 'jazz', 'pop'][(i + (w == 3)) % 3]},{100 + i}"
    for i in range(12) for w in (1, 2, 3))).encode()


def _page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    assert not at.exception
    return at


def _select(at: AppTest, label: str, value):
    box = [s for s in at.selectbox if s.label == label]
    assert box, [s.label for s in at.selectbox]
    box[0].set_value(value).run()
    assert not at.exception, [e.value for e in at.exception]


def test_options_from_widgets():
    o = adjust.options_from_widgets({"format": "auto", "item": "(detect)", "label": "genre",
                                     "id_transform": "file name without extension", "label_trim": True,
                                     "label_map": "0=highway, 1 = inside city"})
    assert o == {"label": "genre", "id_transform": ["strip", "filename", "stem"], "label_trim": True,
                 "label_map": {"0": "highway", "1": "inside city"}}
    with pytest.raises(CrowdDataError):
        adjust.options_from_widgets({"label_map": "just words"})


def test_label_studio_csv_columns_picked_on_the_page(kdcrowd_home):
    at = _page()
    at.session_state[state.PENDING] = [("answers", LS_CSV, "project-1-export.csv")]
    at.run()
    # detection fails: the message names the page's control, never a library call
    err = at.error[0].value
    assert "project-1-export.csv" in err and "Label column" in err
    assert "read_answers" not in err and "label=" not in err
    assert at.session_state[state.DATASET].is_sample          # nothing replaced yet
    exp = [e for e in at.expander if e.label == adjust.TITLE]
    rows = [d.value for d in at.dataframe if "audio" in d.value.columns]
    assert exp and rows and rows[0]["audio"].str.contains("song_00.mp3").any()
    _select(at, "Label column", "genre")
    ds = at.session_state[state.DATASET]
    assert not at.error, [e.value for e in at.error]
    assert ds.name == "project-1-export.csv" and ds.crowd.n_classes == 3 and ds.crowd.n_workers == 3
    assert ds.options["label"] == "genre"
    # on demand: other settings re-read the same dataset at once (same id) and show in the reading report
    _select(at, "Item column", "audio")
    _select(at, "Item id transform", "file name without extension")
    again = at.session_state[state.DATASET]
    assert again.id == ds.id and again.crowd.n_items == 12
    assert "song_00" in [str(i) for i in again.crowd.item_ids]
    assert DatasetStore(kdcrowd_home).get(ds.id).options == again.options
    assert any("Reading settings" in m.value and "filename" in m.value for m in at.markdown)


def test_class_names_for_label_codes(kdcrowd_home):
    wide = "\n".join(" ".join(str(((i + w) % 3) if (i + w) % 4 else -1) for w in range(4)) for i in range(20))
    at = _page()
    at.session_state[state.PENDING] = [("answers", wide.encode(), "answers.txt")]
    at.run()
    assert not at.error, [e.value for e in at.error]
    ds = at.session_state[state.DATASET]
    assert sorted(map(str, ds.crowd.classes)) == ["0", "1", "2"] and ds.crowd.n_workers == 4
    box = [t for t in at.text_input if t.label == "Class names for label codes"][0]
    box.input("0=highway, 1=coast, 2=forest").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    named = at.session_state[state.DATASET]
    assert list(map(str, named.crowd.classes)) == ["highway", "coast", "forest"] and named.id == ds.id
    # a bad mapping: the message names the box, the data stays
    box = [t for t in at.text_input if t.label == "Class names for label codes"][0]
    box.input("nonsense").run()
    assert at.error and "Class names for label codes" in at.error[0].value
    assert at.session_state[state.DATASET].id == ds.id


def _toloka(n_items=10):
    rows = ["INPUT:image\tOUTPUT:result\tASSIGNMENT:worker_id"]
    for i in range(n_items):
        for w in range(3):
            rows.append(f"https://toloka.example/img/img_{i:02d}.jpg\t{['cat', 'dog'][(i + (w == 2)) % 2]}\tw{w}")
    feats = ["item,f0,f1"] + [f"img_{i:02d}.jpg,{i / 10:.2f},{1 - i / 10:.2f}" for i in range(n_items)]
    return "\n".join(rows).encode(), "\n".join(feats).encode()


def test_toloka_url_ids_and_features_keyed_by_file_name(kdcrowd_home):
    answers, features = _toloka()
    at = _page()
    at.session_state[state.PENDING] = [("answers", answers, "assignments.tsv"), ("features", features, "feats.csv")]
    at.run()
    assert not at.exception
    ds = at.session_state[state.DATASET]
    assert ds.crowd.n_items == 10 and ds.crowd.features is None          # the features were refused
    pending = at.session_state[state.ID_PENDING]
    d = pending["diagnosis"]
    assert d.n_matched == 0 and d.proposed_transform == ("strip", "filename") and d.n_matched_proposed == 10
    assert "img_00.jpg" in str(d.example_other_id) and "https://" in str(d.example_answer_id)
    assert any("line up" in m.value for m in at.markdown)
    fix = [b for b in at.button if b.label.startswith("Use the item id transform")]
    assert fix and "file name" in fix[0].label
    fix[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    fixed = at.session_state[state.DATASET]
    assert fixed.id == ds.id and fixed.crowd.features is not None and fixed.crowd.features.shape == (10, 2)
    assert "img_03.jpg" in [str(i) for i in fixed.crowd.item_ids]
    assert state.ID_PENDING not in at.session_state
    assert fixed.options["id_transform"] == ["strip", "filename"]
    assert not [b for b in at.button if b.label.startswith("Use the item id transform")]
    # stored: the same data comes back after a restart
    import streamlit as st
    st.cache_resource.clear()
    back = state.open_dataset(fixed.id)
    assert back.crowd.features.shape == (10, 2) and back.key == fixed.key
