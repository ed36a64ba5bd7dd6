"""Issue 10 items 5-6 and issue 8's real exports: each defect found by the adversarial pass has a test here.

Silent merges (Toloka gold, repeated worker columns), internal errors (nested JSON/Parquet), messages that do not
say what to fix (all-rejected MTurk batch, pyarrow internals), size limits on rows and uncompressed size,
compressed files and MTurk radio/checkbox answers.
"""
from __future__ import annotations

import gzip
import io
import json
import zipfile

import numpy as np
import pytest

from kdcrowd_core.errors import CrowdDataError
from kdcrowd_core.io import read_answers, read_features, read_gold

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

LONG = b"item,worker,label\n" + b"".join(f"{i},w{w},{'ab'[(i + w) % 2]}\n".encode()
                                         for i in range(6) for w in range(3))


def _parquet(table) -> bytes:
    b = io.BytesIO()
    pq.write_table(table, b)
    return b.getvalue()


# ------------------------------------------------------------------ silent merges
def test_toloka_conflicting_golden_labels_are_refused_like_a_gold_file():
    rows = ["INPUT:image\tOUTPUT:result\tGOLDEN:result\tASSIGNMENT:worker_id"]
    for w in range(3):
        rows.append(f"img1\ta\t{'cat' if w < 2 else 'dog'}\tw{w}")  # two different gold labels for img1
        rows.append(f"img2\tb\t\tw{w}")
    raw = ("\n".join(rows) + "\n").encode()
    with pytest.raises(CrowdDataError) as e:
        read_answers(raw, name="toloka.tsv")
    msg = str(e.value)
    assert "toloka.tsv" in msg and "'img1'" in msg and "cat" in msg and "dog" in msg and "line" in msg
    same = raw.replace(b"\tdog\t", b"\tcat\t")
    d = read_answers(same, name="toloka.tsv")
    assert d.gold_series().to_dict() == {"img1": "cat"}


def test_repeated_worker_columns_in_a_wide_file_are_reported():
    d = read_answers(b"item,alice,bob,alice\n1,x,y,x\n2,y,y,x\n3,x,x,y\n", name="w.csv")
    notes = " ".join(d.report[0].notes)
    assert "repeated column names" in notes and "'alice'" in notes and "'alice.1'" in notes


def test_rejected_rows_and_dropped_rows_are_counted():
    head = "HITId,WorkerId,AssignmentStatus,Input.url,Answer.label"
    rows = [f"h{i},W{w},{'Rejected' if w == 0 else 'Approved'},u{i},{'ab'[(i + w) % 2]}"
            for i in range(4) for w in range(3)]
    d = read_answers(("\n".join([head, *rows]) + "\n").encode(), name="batch.csv")
    rep = d.report[0]
    assert rep.rows_read == 12 and d.n_answers == 8
    assert {s["reason"].split(" (")[0]: s["count"] for s in rep.skipped} == {"assignment rejected": 4}


# ------------------------------------------------------------------ messages that say what to fix
def test_all_rejected_mturk_batch_says_so():
    head = "HITId,WorkerId,AssignmentStatus,Input.url,Answer.label"
    rows = [f"h{i},W{w},Rejected,u{i},{'ab'[(i + w) % 2]}" for i in range(4) for w in range(3)]
    with pytest.raises(CrowdDataError) as e:
        read_answers(("\n".join([head, *rows]) + "\n").encode(), name="batch.csv")
    msg = str(e.value)
    assert "batch.csv" in msg and "Rejected" in msg and "12 rows" in msg
    assert "lacks an item, a worker or a label" not in msg


def test_nested_json_records_are_flattened_or_explained():
    recs = [{"item": {"id": i}, "worker": f"w{w}", "label": "ab"[(i + w) % 2]} for i in range(4) for w in range(3)]
    d = read_answers(json.dumps(recs).encode(), name="nested.json")
    assert d.report[0].columns["item"] == "item.id" and d.n_items == 4
    lists = [{"item": i, "worker": f"w{w}", "label": ["ab"[(i + w) % 2]]} for i in range(4) for w in range(3)]
    for reader in (read_answers, read_gold):
        with pytest.raises(CrowdDataError) as e:
            reader(json.dumps(lists).encode(), name="lists.json")
        assert "lists.json" in str(e.value) and "lists or objects" in str(e.value)


def test_nested_parquet_columns_are_explained():
    t = pa.table({"item": [1, 2, 3], "worker": ["a", "b", "c"], "label": [[1], [2], [1]]})
    with pytest.raises(CrowdDataError) as e:
        read_answers(_parquet(t), name="nested.parquet")
    assert "nested.parquet" in str(e.value) and "'label'" in str(e.value) and "lists or objects" in str(e.value)
    s = pa.table({"item": [{"a": 1}, {"a": 2}], "f": [1.0, 2.0]})
    f = read_features(_parquet(s), name="feat.parquet")
    assert f.X.shape == (2, 1) and any("lists or objects" in n for n in f.report.notes)


def test_corrupt_parquet_message_is_one_line():
    good = _parquet(pa.table({"item": list(range(100)), "worker": ["a"] * 100, "label": ["x", "y"] * 50}))
    truncated = good[:len(good) // 2] + good[-8:]  # pyarrow's message for this one spans two lines
    with pytest.raises(CrowdDataError) as e:
        read_answers(truncated, name="bad.parquet")
    assert "\n" not in str(e.value) and "bad.parquet" in str(e.value) and "Fix:" in str(e.value)


def test_error_messages_never_span_lines():
    err = CrowdDataError("first line\n  second line", path="f.csv", hint="a\nb")
    assert "\n" not in str(err) and "\n" not in err.render("cli")


# ------------------------------------------------------------------ size limits
def test_row_limit_is_checked_before_parsing_parquet_and_text():
    n = 50_000
    t = pa.table({"item": pa.array(np.zeros(n, dtype=np.int32)), "worker": pa.array(np.zeros(n, dtype=np.int32)),
                  "label": pa.array(np.zeros(n, dtype=np.int8))})
    data = _parquet(t)
    assert len(data) < 10_000  # a small file holding many rows
    with pytest.raises(CrowdDataError) as e:
        read_answers(data, name="many.parquet", max_rows=10_000)
    assert "many.parquet" in str(e.value) and "50,000 rows" in str(e.value) and "--max-rows" in e.value.render("cli")
    with pytest.raises(CrowdDataError, match="over the limit of 5 rows"):
        read_answers(LONG, name="a.csv", max_rows=5)
    with pytest.raises(CrowdDataError, match="over the limit"):
        read_gold(LONG, name="g.csv", max_rows=5)


def test_uncompressed_size_is_limited():
    bomb = gzip.compress(b"item,worker,label\n" + b"1,a,x\n" * 200_000)
    assert len(bomb) < 5_000
    with pytest.raises(CrowdDataError) as e:
        read_answers(bomb, name="bomb.csv.gz", max_bytes=100_000)
    assert "bomb.csv.gz" in str(e.value) and "decompressed" in str(e.value)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.csv", b"item,worker,label\n" + b"1,a,x\n" * 200_000)
    with pytest.raises(CrowdDataError, match="unzipped"):
        read_answers(buf.getvalue(), name="bomb.zip", max_bytes=100_000)


# ------------------------------------------------------------------ real exports
def test_gz_and_zip_holding_one_table(tmp_path):
    (tmp_path / "a.csv.gz").write_bytes(gzip.compress(LONG))
    d = read_answers(tmp_path / "a.csv.gz")
    assert d.n_answers == 18 and d.report[0].source.endswith("a.csv.gz")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("export/answers.tsv", LONG.replace(b",", b"\t"))
        z.writestr("__MACOSX/export/._answers.tsv", b"junk")
    d = read_answers(buf.getvalue(), name="export.zip")
    assert d.n_answers == 18 and "answers.tsv" in d.report[0].source
    g = read_gold(gzip.compress(b"item,truth\n1,a\n2,b\n"), name="gold.csv.gz")
    assert g.to_dict() == {1: "a", 2: "b"}


@pytest.mark.parametrize("members,match", [([], "holds no file"), (["a.csv", "b.csv"], "holds 2 files")])
def test_zip_with_no_or_several_tables(members, match):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for m in members:
            z.writestr(m, LONG)
    with pytest.raises(CrowdDataError, match=match) as e:
        read_answers(buf.getvalue(), name="x.zip")
    assert "x.zip" in str(e.value)


def _mturk_checkbox(extra_rows=()):
    head = "HITId,WorkerId,AssignmentStatus,Input.image_url,Answer.category.cat.on,Answer.category.dog.on"
    rows = [f"h{i},W{w},Approved,http://x/{i}.jpg,{str((i + w) % 2 == 0).lower()},{str((i + w) % 2 == 1).lower()}"
            for i in range(4) for w in range(3)]
    return ("\n".join([head, *rows, *extra_rows]) + "\n").encode()


def test_mturk_radio_answers_are_decoded_into_one_label():
    d = read_answers(_mturk_checkbox(["h9,W1,Approved,http://x/9.jpg,true,true",
                                      "h9,W2,Approved,http://x/9.jpg,false,false"]), name="batch.csv")
    assert list(d.classes) == ["cat", "dog"] and d.n_answers == 12
    f = d.to_frame()
    assert f[(f.task == "http://x/0.jpg") & (f.worker == "W0")].label.tolist() == ["cat"]
    reasons = {s["reason"].split(" (")[0]: s["count"] for s in d.report[0].skipped}
    assert reasons["several choices ticked"] == 1 and reasons["no label"] == 1


def test_mturk_boolean_answer_columns_and_several_questions():
    head = "WorkerId,HITId,Input.t,Answer.mood.happy,Answer.mood.sad,Answer.topic.news,Answer.topic.sport"
    rows = [f"W{w},h{i},t{i},{'TRUE' if w % 2 else 'FALSE'},{'FALSE' if w % 2 else 'TRUE'},TRUE,FALSE"
            for i in range(3) for w in range(3)]
    raw = ("\n".join([head, *rows]) + "\n").encode()
    with pytest.raises(CrowdDataError) as e:
        read_answers(raw, name="b.csv")
    assert "mood" in str(e.value) and "topic" in str(e.value) and "--label" in e.value.render("cli")
    d = read_answers(raw, name="b.csv", label="mood")
    assert list(d.classes) == ["happy", "sad"]
