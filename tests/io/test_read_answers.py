"""read_answers on good long files: delimiters, encodings, line endings, sources, the report."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from kdcrowd_core.data import CrowdData
from kdcrowd_core.io import ReadOptions, read_answers

LONG = [("t1", "w1", "cat"), ("t1", "w2", "dog"), ("t1", "w3", "cat"),
        ("t2", "w1", "dog"), ("t2", "w2", "dog"), ("t3", "w3", "bird")]


def _text(rows, sep=",", header=("item", "worker", "label"), eol="\n"):
    lines = [sep.join(header)] + [sep.join(r) for r in rows]
    return eol.join(lines) + eol


def _as_triples(data: CrowdData) -> set:
    df = data.to_frame()
    return set(zip(df["task"], df["worker"], df["label"]))


@pytest.mark.parametrize("sep,ext", [(",", ".csv"), ("\t", ".tsv"), (";", ".csv"), ("|", ".txt"), ("\t", ".txt"),
                                     (" ", ".txt")])
def test_long_delimiters(tmp_path, sep, ext):
    p = tmp_path / f"answers{ext}"
    p.write_text(_text(LONG, sep=sep))
    data = read_answers(p)
    assert _as_triples(data) == set(LONG)
    assert (data.n_items, data.n_workers, data.n_classes, data.n_answers) == (3, 3, 3, 6)
    assert list(data.classes) == ["bird", "cat", "dog"]
    rep = data.report[0]
    assert rep.format == "long"
    assert rep.delimiter == {",": ",", "\t": "\\t", ";": ";", "|": "|", " ": "whitespace"}[sep]
    assert rep.columns == {"item": "item", "worker": "worker", "label": "label"}
    assert rep.rows_read == 6 and rep.answers == 6 and rep.source == str(p)


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_line_endings(tmp_path, eol):
    p = tmp_path / "a.csv"
    p.write_bytes(_text(LONG, eol=eol).encode())
    assert _as_triples(read_answers(p)) == set(LONG)


def test_utf8_bom_and_latin1_accents(tmp_path):
    rows = [("1", "anne", "éléphant"), ("1", "bob", "chat"), ("2", "anne", "chat"), ("2", "zoë", "éléphant")]
    p = tmp_path / "bom.csv"
    p.write_bytes(b"\xef\xbb\xbf" + _text(rows).encode("utf-8"))
    d = read_answers(p)
    assert d.report[0].encoding == "utf-8-sig"
    assert d.report[0].columns["item"] == "item"  # the BOM is not glued to the first column name
    assert set(d.classes) == {"chat", "éléphant"}
    p2 = tmp_path / "latin1.csv"
    p2.write_bytes(_text(rows, sep=";", eol="\r\n").encode("latin-1"))
    d2 = read_answers(p2)
    assert d2.report[0].encoding == "latin-1"
    assert set(d2.classes) == {"chat", "éléphant"} and "zoë" in set(d2.worker_ids)
    # Windows-1252 punctuation (bytes 0x80-0x9f) decodes as cp1252
    p3 = tmp_path / "cp1252.csv"
    p3.write_bytes(_text([("1", "a", "it’s"), ("1", "b", "no")]).encode("cp1252"))
    d3 = read_answers(p3)
    assert d3.report[0].encoding == "cp1252" and "it’s" in set(d3.classes)


def test_utf16_with_bom(tmp_path):
    p = tmp_path / "excel_unicode.txt"
    p.write_bytes(_text(LONG, sep="\t").encode("utf-16"))
    d = read_answers(p)
    assert d.report[0].encoding == "utf-16" and _as_triples(d) == set(LONG)


def test_parquet(tmp_path):
    pytest.importorskip("pyarrow")
    df = pd.DataFrame(LONG, columns=["task", "annotator", "answer"])
    p = tmp_path / "a.parquet"
    df.to_parquet(p)
    d = read_answers(p)
    assert _as_triples(d) == set(LONG)
    assert d.report[0].columns == {"item": "task", "worker": "annotator", "label": "answer"}
    assert d.report[0].delimiter is None


def test_sources_bytes_filelike_dataframe(tmp_path):
    raw = _text(LONG).encode()
    a = read_answers(raw, name="upload.csv")
    assert a.report[0].source == "upload.csv"
    f = io.BytesIO(raw)
    f.name = "from_browser.csv"  # like streamlit's UploadedFile
    b = read_answers(f)
    assert b.report[0].source == "from_browser.csv"
    c = read_answers(pd.DataFrame(LONG, columns=["task", "worker", "label"]))
    anon = read_answers(io.BytesIO(raw))
    assert anon.report[0].source == "<memory>"
    for d in (a, b, c, anon):
        assert _as_triples(d) == set(LONG)


@pytest.mark.parametrize("header,roles", [
    (("question", "worker", "answer"), ("question", "worker", "answer")),
    (("HITId", "WorkerId", "Answer"), ("HITId", "WorkerId", "Answer")),
    (("Task_ID", "Annotator", "Class"), ("Task_ID", "Annotator", "Class")),
    (("id", "performer", "label"), ("id", "performer", "label")),
    (("item", "user", "response"), ("item", "user", "response")),
])
def test_column_name_detection(header, roles):
    d = read_answers(_text(LONG, header=header).encode(), name="x.csv")
    assert d.report[0].columns == dict(zip(("item", "worker", "label"), roles))
    assert _as_triples(d) == set(LONG)


def test_explicit_columns_by_name_and_position():
    raw = _text([(r[0], r[1], r[2], "x") for r in LONG], header=("a", "b", "c", "d")).encode()
    d = read_answers(raw, name="x.csv", item="a", worker="B", label="c")  # case-insensitive
    assert _as_triples(d) == set(LONG)
    d2 = read_answers(raw, name="x.csv", item=0, worker=1, label=2, format="long")
    assert _as_triples(d2) == set(LONG)


def test_explicit_columns_on_headerless_long_file():
    raw = "\n".join(",".join(r) for r in LONG).encode()
    d = read_answers(raw, name="x.csv", format="long", item=0, worker=1, label=2)
    assert _as_triples(d) == set(LONG)
    assert _as_triples(read_answers(raw, name="x.csv", item=0, worker=1, label=2)) == set(LONG)


def test_truth_column_is_not_taken_as_label():
    rows = [("1", "a", "x", "x"), ("1", "b", "y", "x"), ("2", "a", "y", "y")]
    d = read_answers(_text(rows, header=("task", "worker", "answer", "true_label")).encode(), name="x.csv")
    assert d.report[0].columns["label"] == "answer"
    assert any("true_label" in n and "NOT used" in n for n in d.report[0].notes)


def test_missing_labels_blank_lines_and_duplicates_are_reported():
    raw = (b"item,worker,label\n"
           b"1,a,cat\n"        # line 2: replaced by line 7
           b"1,b,dog\n"
           b"\n"               # line 4: blank
           b"2,a,\n"           # line 5: no label
           b"2,,cat\n"         # line 6: no worker
           b"1,a,dog\n"        # line 7
           b",c,cat\n"         # line 8: no item
           b"3,a,  \n"         # line 9: whitespace-only label
           b"3,b,cat\n")
    every = read_answers(raw, name="x.csv")  # default duplicates="all": both answers of (1, a) count
    assert every.n_answers == 4 and every.report[0].duplicates == 0
    assert any("repeated (item, worker) answers all count" in n for n in every.report[0].notes)
    d = read_answers(raw, name="x.csv", options=ReadOptions(duplicates="last"))
    rep = d.report[0]
    assert rep.rows_read == 9
    assert d.n_answers == 3 and rep.answers == 3
    assert rep.duplicates == 1
    skipped = {s["reason"].split(" (")[0]: s for s in rep.skipped}
    assert skipped["blank line"]["examples"] == ["line 4"]
    assert skipped["no label"]["count"] == 2 and skipped["no label"]["examples"] == ["line 5", "line 9"]
    assert skipped["no worker id"]["examples"] == ["line 6"]
    assert skipped["no item id"]["examples"] == ["line 8"]
    assert rep.missing_labels == 2
    # the last answer of (1, a) is kept
    df = d.to_frame()
    assert df[(df.task == 1) & (df.worker == "a")]["label"].tolist() == ["dog"]
    assert "line 2" in " ".join(rep.notes)
    text = rep.to_text()
    assert "line 5" in text and "duplicate" in text


def test_ids_keep_their_form():
    raw = _text([("007", "01", "1"), ("007", "2", "2"), ("8", "01", "2")]).encode()
    d = read_answers(raw, name="x.csv")
    assert list(d.item_ids) == ["007", "8"]  # not all canonical integers: kept as text
    assert list(d.worker_ids) == ["01", "2"]
    assert list(d.classes) == [1, 2]  # integer labels become ints
    d2 = read_answers(_text([("7", "1", "a"), ("8", "2", "b")]).encode(), name="x.csv")
    assert d2.item_ids.dtype == np.int64 and list(d2.item_ids) == [7, 8]


def test_labels_that_pandas_would_call_missing_are_kept():
    raw = _text([("1", "a", "NA"), ("1", "b", "None"), ("2", "a", "null"), ("2", "b", "NA")]).encode()
    d = read_answers(raw, name="x.csv")
    assert set(d.classes) == {"NA", "None", "null"} and d.n_answers == 4


def test_numeric_labels_sorted_numerically_and_declared_classes():
    rows = [("1", "a", "10"), ("1", "b", "2"), ("2", "a", "2"), ("2", "b", "1")]
    d = read_answers(_text(rows).encode(), name="x.csv")
    assert list(d.classes) == [1, 2, 10]
    d2 = read_answers(_text(rows).encode(), name="x.csv", classes=[10, 2, 1, 0])
    assert list(d2.classes) == [10, 2, 1, 0]
    df = d2.to_frame()
    assert df["label"].tolist() == [10, 2, 2, 1]


def test_quoted_fields_with_delimiters():
    raw = b'item,worker,label\n"a,1",w1,"x, y"\n"a,1",w2,z\n'
    d = read_answers(raw, name="x.csv")
    assert set(d.item_ids) == {"a,1"} and set(d.classes) == {"x, y", "z"}


def test_big_file_uses_the_fast_path_and_matches(tmp_path):
    """A > 1 MiB file goes through the pyarrow engine when installed; same result as the C engine."""
    rng = np.random.default_rng(0)
    n = 120_000
    df = pd.DataFrame({"task": rng.integers(0, 20_000, n), "worker": rng.integers(0, 300, n),
                       "label": np.array(["a", "b", "c"])[rng.integers(0, 3, n)]})
    p = tmp_path / "big.csv"
    df.to_csv(p, index=False)
    assert p.stat().st_size > 1 << 20
    d = read_answers(p, options=ReadOptions(duplicates="last"))
    last = df.drop_duplicates(["task", "worker"], keep="last")
    assert d.n_answers == len(last) and d.report[0].duplicates == n - len(last)
    back = d.to_frame().sort_values(["task", "worker"]).reset_index(drop=True)
    exp = last.sort_values(["task", "worker"]).reset_index(drop=True)
    assert (back["label"].to_numpy() == exp["label"].to_numpy()).all()
    assert (back["task"].to_numpy() == exp["task"].to_numpy()).all()
