"""Wide, MTurk, Toloka, Label Studio and JSON-record answers; format detection."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from kdcrowd_core.errors import CrowdDataError
from kdcrowd_core.io import read_answers


def _triples(data) -> set:
    df = data.to_frame()
    return set(zip(df["task"], df["worker"], df["label"]))


# ----------------------------------------------------------------- wide
def test_wide_headerless_like_labelme(tmp_path):
    p = tmp_path / "answers.txt"
    p.write_text("-1 2 -1 0\n1 -1 -1 -1\n-1 -1 -1 -1\n3 3 -1 2\n")
    d = read_answers(p)
    rep = d.report[0]
    assert rep.format == "wide" and rep.delimiter == "whitespace"
    assert _triples(d) == {(0, 1, 2), (0, 3, 0), (1, 0, 1), (3, 0, 3), (3, 1, 3), (3, 3, 2)}
    assert list(d.item_ids) == [0, 1, 3]  # row 2 has no answers: skipped, ids stay row numbers
    assert list(d.worker_ids) == [1, 3, 0]  # order of first appearance
    assert d.item_ids.dtype == np.int64 and d.worker_ids.dtype == np.int64
    assert rep.skipped[0]["examples"] == ["line 3"] and "no answers" in rep.skipped[0]["reason"]
    assert rep.columns == {"item": "<row number>", "worker": "<column number>", "label": "<cell values>"}


def test_wide_with_header_and_item_column():
    raw = b"item,alice,bob,carol\ni1,cat,dog,\ni2,,dog,dog\ni3,cat,-1,cat\n"
    d = read_answers(raw, name="w.csv")
    assert d.report[0].format == "wide"
    assert _triples(d) == {("i1", "alice", "cat"), ("i1", "bob", "dog"), ("i2", "bob", "dog"),
                           ("i2", "carol", "dog"), ("i3", "alice", "cat"), ("i3", "carol", "cat")}
    assert d.report[0].columns["item"] == "item"


def test_wide_written_by_pandas_with_index():
    wide = pd.DataFrame({0: [1, np.nan, 0], 1: [0, 1, 1], 2: [np.nan, 0, 1]})
    raw = wide.to_csv().encode()  # header ",0,1,2", first column = row index
    d = read_answers(raw, name="cleanlab.csv")
    assert d.report[0].format == "wide"
    assert list(d.worker_ids) == [0, 1, 2] and d.n_answers == 7
    assert (0, 0, 1) in _triples(d) and (2, 2, 1) in _triples(d)


def test_wide_headerless_with_text_item_column():
    raw = b"img1.jpg,3,-1,1\nimg2.jpg,-1,2,2\nimg3.jpg,1,1,\n"
    d = read_answers(raw, name="w.csv")
    assert set(d.item_ids) == {"img1.jpg", "img2.jpg", "img3.jpg"}
    assert set(d.worker_ids) == {0, 1, 2}
    assert ("img1.jpg", 0, 3) in _triples(d) and d.n_answers == 6


def test_wide_forced_format():
    raw = b"a,b\n1,2\n2,1\n1,1\n"
    d = read_answers(raw, name="w.csv", format="wide")
    assert d.n_items == 3 and d.n_workers == 2


# ----------------------------------------------------------------- MTurk
MUSIC_LIKE = ("WorkerID,Input.song,Input.true_label,Answer.pred_label\r"
              "A1,country.00072.mp3,country,country\r"
              "A1,disco.00041.mp3,disco,pop\r"
              "A2,country.00072.mp3,country,country\r"
              "A2,disco.00041.mp3,disco,disco\r"
              "A3,disco.00041.mp3,disco,disco\r")


def test_mturk_music_layout_cr_line_endings():
    d = read_answers(MUSIC_LIKE.encode(), name="mturk_answers.csv")
    rep = d.report[0]
    assert rep.format == "mturk"
    assert rep.columns == {"item": "Input.song", "worker": "WorkerID", "label": "Answer.pred_label"}
    assert set(d.item_ids) == {"country.00072.mp3", "disco.00041.mp3"}
    assert set(d.classes) == {"country", "disco", "pop"}  # the truth column is not an answer
    assert ("disco.00041.mp3", "A1", "pop") in _triples(d)
    assert any("Input.true_label" in n for n in rep.notes)


def test_mturk_batch_with_hit_ids_rejections_and_several_inputs():
    raw = (b"HITId,HITTypeId,AssignmentId,WorkerId,AssignmentStatus,Input.image_url,Input.caption,Answer.category\n"
           b"H1,T,A1,W1,Approved,http://x/1.jpg,a dog,dog\n"
           b"H1,T,A2,W2,Rejected,http://x/1.jpg,a dog,cat\n"
           b"H1,T,A3,W3,Submitted,http://x/1.jpg,a dog,dog\n"
           b"H2,T,A4,W1,Approved,http://x/2.jpg,a cat,cat\n"
           b"H3,T,A5,W2,Approved,http://x/1.jpg,a dog,cat\n")
    d = read_answers(raw, name="Batch_123_batch_results.csv")
    rep = d.report[0]
    # the id-like input column identifies the item (H3 re-posted image 1)
    assert rep.columns["item"] == "Input.image_url"
    assert set(d.item_ids) == {"http://x/1.jpg", "http://x/2.jpg"}
    assert d.n_answers == 4
    rej = [s for s in rep.skipped if "rejected" in s["reason"]]
    assert rej and rej[0]["examples"] == ["line 3"]
    # named explicitly: HITId as item
    d2 = read_answers(raw, name="b.csv", item="HITId")
    assert set(d2.item_ids) == {"H1", "H2", "H3"}


def test_mturk_without_id_like_input_falls_back_to_hitid():
    raw = (b"HITId,WorkerId,Input.text,Input.context,Answer.sentiment\n"
           b"H1,W1,good,x,pos\nH1,W2,good,x,neg\nH2,W1,bad,y,neg\n")
    d = read_answers(raw, name="b.csv")
    assert d.report[0].columns["item"] == "HITId"


def test_mturk_several_answer_columns_is_ambiguous():
    raw = b"HITId,WorkerId,Answer.q1,Answer.q2\nH1,W1,a,b\nH1,W2,b,c\n"
    with pytest.raises(CrowdDataError, match="Answer.q1") as e:
        read_answers(raw, name="b.csv")
    assert "label=" in str(e.value)
    d = read_answers(raw, name="b.csv", label="Answer.q2", item="HITId")
    assert d.report[0].columns["label"] == "Answer.q2"


# ----------------------------------------------------------------- Toloka
TOLOKA = ("INPUT:image\tOUTPUT:result\tGOLDEN:result\tHINT:text\tASSIGNMENT:link\tASSIGNMENT:assignment_id\t"
          "ASSIGNMENT:worker_id\tASSIGNMENT:status\tASSIGNMENT:started\n"
          "a.png\tcat\tcat\t\tl\t1\tw1\tACCEPTED\t2024\n"
          "a.png\tdog\tcat\t\tl\t2\tw2\tACCEPTED\t2024\n"
          "b.png\tdog\t\t\tl\t3\tw1\tREJECTED\t2024\n"
          "b.png\tdog\t\t\tl\t4\tw3\tSUBMITTED\t2024\n"
          "c.png\t\t\t\tl\t5\tw3\tSKIPPED\t2024\n")


def test_toloka_tsv_with_golden_and_rejected():
    d = read_answers(TOLOKA.encode(), name="assignments_from_pool.tsv")
    rep = d.report[0]
    assert rep.format == "toloka"
    assert rep.columns["item"] == "INPUT:image" and rep.columns["worker"] == "ASSIGNMENT:worker_id"
    assert rep.columns["label"] == "OUTPUT:result" and rep.columns["gold"] == "GOLDEN:result"
    assert _triples(d) == {("a.png", "w1", "cat"), ("a.png", "w2", "dog"), ("b.png", "w3", "dog")}
    reasons = {s["reason"].split(" (")[0]: s for s in rep.skipped}
    assert reasons["assignment rejected"]["examples"] == ["line 4"]
    assert reasons["no label"]["examples"] == ["line 6"]
    assert d.gold_series().to_dict() == {"a.png": "cat"}


def test_toloka_several_inputs_are_combined():
    raw = (b"INPUT:left\tINPUT:right\tOUTPUT:result\tASSIGNMENT:worker_id\n"
           b"a\tb\tL\tw1\na\tb\tR\tw2\na\tc\tL\tw1\n")
    d = read_answers(raw, name="t.tsv")
    assert set(d.item_ids) == {"a | b", "a | c"}
    assert "combination" in " ".join(d.report[0].notes)


# ----------------------------------------------------------------- Label Studio
def _ls_tasks():
    return [
        {"id": 11, "data": {"image": "/data/a.png"}, "annotations": [
            {"id": 1, "completed_by": 1, "result": [
                {"type": "choices", "from_name": "animal", "to_name": "image", "value": {"choices": ["Cat"]}}]},
            {"id": 2, "completed_by": {"id": 2, "email": "b@x.org"}, "result": [
                {"type": "choices", "from_name": "animal", "value": {"choices": ["Dog"]}}]},
            {"id": 3, "completed_by": 3, "was_cancelled": True, "result": []},
        ]},
        {"id": 12, "data": {"image": "/data/b.png"}, "annotations": [
            {"id": 4, "completed_by": 1, "result": []},
            {"id": 5, "completed_by": 2, "result": [
                {"type": "choices", "from_name": "animal", "value": {"choices": ["Dog", "Cat"]}}]},
            {"id": 6, "completed_by": 3, "result": [
                {"type": "choices", "from_name": "animal", "value": {"choices": ["Dog"]}}]},
        ]},
        {"id": 13, "data": {"image": "/data/c.png"}, "annotations": []},
    ]


def test_label_studio_json_export(tmp_path):
    p = tmp_path / "project-1-at-2024.json"
    p.write_text(json.dumps(_ls_tasks()))
    d = read_answers(p)
    rep = d.report[0]
    assert rep.format == "labelstudio"
    assert _triples(d) == {(11, 1, "Cat"), (11, 2, "Dog"), (12, 2, "Dog"), (12, 3, "Dog")}
    reasons = {s["reason"]: s for s in rep.skipped}
    assert reasons["annotation cancelled (was_cancelled)"]["count"] == 1
    assert reasons["annotation has no choice"]["examples"] == ["task 12 annotation 1"]
    assert rep.rows_read == 6
    assert any("several options" in n for n in rep.notes)
    assert any("1 tasks have no annotations" in n for n in rep.notes)
    d2 = read_answers(p, item="image")
    assert set(d2.item_ids) == {"/data/a.png", "/data/b.png"}


def test_label_studio_several_questions_need_label():
    tasks = _ls_tasks()
    tasks[0]["annotations"][0]["result"].insert(
        0, {"type": "choices", "from_name": "quality", "value": {"choices": ["good"]}})
    raw = json.dumps(tasks).encode()
    with pytest.raises(CrowdDataError, match="quality"):
        read_answers(raw, name="ls.json")
    d = read_answers(raw, name="ls.json", label="animal")
    assert set(d.classes) == {"Cat", "Dog"}


def test_json_records_and_jsonl():
    recs = [{"item": 1, "worker": "a", "label": "x"}, {"item": 1, "worker": "b", "label": "y"},
            {"item": 2, "worker": "a", "label": "y"}]
    d = read_answers(json.dumps(recs).encode(), name="r.json")
    assert d.report[0].format == "long" and _triples(d) == {(1, "a", "x"), (1, "b", "y"), (2, "a", "y")}
    jl = "\n".join(json.dumps(r) for r in recs).encode()
    assert _triples(read_answers(jl, name="r.jsonl")) == _triples(d)


# ----------------------------------------------------------------- detection
@pytest.mark.parametrize("raw,fmt", [
    (b"item,worker,label\n1,a,x\n1,b,y\n", "long"),
    (b"1 -1 2\n-1 1 1\n", "wide"),
    (b"item,w1,w2\n1,x,y\n2,y,\n", "wide"),
    (MUSIC_LIKE.encode(), "mturk"),
    (TOLOKA.encode(), "toloka"),
    (json.dumps(_ls_tasks()).encode(), "labelstudio"),
])
def test_format_detection(raw, fmt):
    assert read_answers(raw, name="f.json" if raw[:1] == b"[" else "f.csv").report[0].format == fmt


def test_unknown_format_name():
    with pytest.raises(CrowdDataError, match="unknown format"):
        read_answers(b"item,worker,label\n1,a,x\n", name="x.csv", format="excel")
