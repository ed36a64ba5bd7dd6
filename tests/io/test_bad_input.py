"""Every kind of bad file raises CrowdDataError naming the file, where, what and how to fix — never a traceback."""
from __future__ import annotations

import gzip
import io
import json
import zipfile

import numpy as np
import pandas as pd
import pytest

from kdcrowd_core.errors import CrowdDataError
from kdcrowd_core.io import load_crowd, read_answers, read_features, read_gold

GOOD = "item,worker,label\n1,a,cat\n1,b,dog\n2,a,cat\n2,b,cat\n"


def _raises(fn, *args, match=None, **kw) -> CrowdDataError:
    with pytest.raises(CrowdDataError, match=match) as e:
        fn(*args, **kw)
    err = e.value
    assert "Fix:" in str(err) and err.hint, f"no hint in: {err}"
    return err


def _write(tmp_path, name, content):
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return p


def test_missing_column_names_columns_and_fix(tmp_path):
    p = _write(tmp_path, "a.csv", "item,person,verdict\n1,a,x\n1,b,y\n")
    err = _raises(read_answers, p, match="no worker column")
    assert str(p) in str(err) and "'person'" in str(err) and "worker=" in err.hint
    assert err.path == str(p)
    # once named, it reads
    assert read_answers(p, worker="person", label="verdict").n_answers == 2


def test_ambiguous_column_names_both(tmp_path):
    p = _write(tmp_path, "a.csv", "item,worker,annotator,label\n1,a,a,x\n1,b,b,y\n")
    err = _raises(read_answers, p, match="2 columns could be the worker column")
    assert "'worker'" in str(err) and "'annotator'" in str(err) and "worker=" in err.hint


def test_explicit_column_that_does_not_exist(tmp_path):
    p = _write(tmp_path, "a.csv", GOOD)
    err = _raises(read_answers, p, label="verdict", match="no column 'verdict'")
    assert "'label'" in str(err)


@pytest.mark.parametrize("content,what", [(b"", "0 bytes"), (b"\n\n  \n", "only blank lines"),
                                          (b"item,worker,label\n", "no data rows"),
                                          (b"item,worker,label\r\n\r\n", "no data rows")])
def test_empty_files(tmp_path, content, what):
    p = _write(tmp_path, "a.csv", content)
    err = _raises(read_answers, p, match=what)
    assert err.path == str(p)
    _raises(read_gold, p)
    _raises(read_features, p)


@pytest.mark.parametrize("name,content,what", [
    ("a.csv", bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)), "binary"),
    ("a.csv", bytes(np.random.default_rng(1).integers(0, 256, 64, dtype=np.uint8)) + b"\x00", "binary"),
    ("a.csv", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "PNG image"),
    ("a.txt", b"%PDF-1.4\n...", "PDF"),
    ("a.csv", None, "zip archive"),
    ("a.csv", gzip.compress(bytes(np.random.default_rng(2).integers(0, 256, 5000, dtype=np.uint8))), "binary"),
    ("a.csv.gz", gzip.compress(GOOD.encode())[:30], "gzip file is damaged"),
])
def test_binary_and_garbage(tmp_path, name, content, what):
    if content is None:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("a.csv", GOOD)
        content = buf.getvalue()
    p = _write(tmp_path, name, content)
    err = _raises(read_answers, p, match=what)
    assert err.path == str(p)
    _raises(read_gold, p, match=what)
    _raises(read_features, p, match=what)


def test_only_one_class(tmp_path):
    p = _write(tmp_path, "a.csv", "item,worker,label\n1,a,cat\n2,b,cat\n2,a,cat\n")
    err = _raises(read_answers, p, match="same label")
    assert err.column == "label" and "'cat'" in str(err)


def test_gold_for_unknown_items(tmp_path):
    a = _write(tmp_path, "a.csv", GOOD)
    g = _write(tmp_path, "gold.csv", "item,truth\n1,cat\n99,dog\n")
    err = _raises(load_crowd, a, gold=g, match="no answers")
    assert str(g) in str(err) and "99" in str(err)
    d = load_crowd(a, gold=g, allow_unknown_items=True)
    assert d.gold_series().to_dict() == {1: "cat"}


def test_gold_conflicting_labels(tmp_path):
    g = _write(tmp_path, "gold.csv", "item,truth\n1,cat\n2,dog\n1,dog\n")
    err = _raises(read_gold, g, match="different gold labels")
    assert "line 2" in str(err) and "line 4" in str(err)


def test_features_for_unknown_items_missing_items_and_non_numeric(tmp_path):
    a = _write(tmp_path, "a.csv", GOOD)
    extra = _write(tmp_path, "f_extra.csv", "item,f1\n1,0.5\n2,0.1\n3,0.7\n")
    err = _raises(load_crowd, a, features=extra, match="no answers")
    assert str(extra) in str(err) and "3" in str(err)
    assert load_crowd(a, features=extra, allow_unknown_items=True).features.shape == (2, 1)
    missing = _write(tmp_path, "f_missing.csv", "item,f1\n1,0.5\n")
    err = _raises(load_crowd, a, features=missing, match="missing for 1 of 2")
    assert str(missing) in str(err)
    text = _write(tmp_path, "f_text.csv", "item,f1,colour\n1,0.5,red\n2,0.1,blue\n")
    err = _raises(load_crowd, a, features=text, match="non-numeric")
    assert err.column == "colour" and err.line == 2 and str(text) in str(err)
    gap = _write(tmp_path, "f_gap.csv", "item,f1,f2\n1,0.5,1\n2,,2\n")
    err = _raises(read_features, gap, match="missing")
    assert err.line == 3 and err.column == "f1"
    dup = _write(tmp_path, "f_dup.csv", "item,f1\n1,0.5\n1,0.6\n")
    _raises(read_features, dup, match="several feature rows")


def test_bad_npy_features(tmp_path):
    buf = io.BytesIO()
    np.save(buf, np.array([1.0, 2.0]))
    _raises(read_features, buf.getvalue(), name="x.npy", match="2-D")
    buf = io.BytesIO()
    np.save(buf, np.array([[1.0, np.nan]]))
    _raises(read_features, buf.getvalue(), name="x.npy", match="NaN")
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    _raises(read_features, buf.getvalue(), name="x.npy", match="never loaded")
    buf = io.BytesIO()
    np.save(buf, np.ones((3, 2)))
    _raises(read_features, buf.getvalue()[:60], name="x.npy", match="not a readable")
    _raises(read_features, buf.getvalue(), name="x.npy", ids=["a", "b"], match="2 item ids but the features have 3")
    _raises(read_features, b"not an array at all", name="x.npy", match="does not start like")


@pytest.mark.parametrize("content,line", [(b'[{"id": 1, "annotations": [}]', 1),
                                          (b'[\n  {"id": 1,\n   "annotations": []\n  },\n]', 5),
                                          (b'[{"id": 1', 1)])
def test_malformed_json(tmp_path, content, line):
    p = _write(tmp_path, "export.json", content)
    err = _raises(read_answers, p, match="malformed JSON")
    assert err.line == line and err.path == str(p)


def test_malformed_jsonl_line(tmp_path):
    p = _write(tmp_path, "r.jsonl", b'{"item": 1, "worker": "a", "label": "x"}\n{"item": 2,\n')
    assert _raises(read_answers, p, match="malformed JSON").line == 2


def test_json_that_is_not_an_export(tmp_path):
    _raises(read_answers, _write(tmp_path, "x.json", b'"hello"'), match="list of tasks")
    _raises(read_answers, _write(tmp_path, "y.json", b"[]"), match="empty")
    _raises(read_answers, _write(tmp_path, "z.json", b"[1, 2]"), match="no objects")


def test_ragged_rows_have_line_numbers(tmp_path):
    p = _write(tmp_path, "a.csv", "item,worker,label\n1,a,cat\n1,b,dog\n2,a,cat,extra\n2,b,dog\n")
    err = _raises(read_answers, p, match="4 fields but 3")
    assert err.line == 4 and f"{p}, line 4" in str(err)
    # CRLF with a blank line before the bad row: still the physical line
    p2 = _write(tmp_path, "b.csv", "item,worker,label\r\n1,a,cat\r\n\r\n2,a,cat,extra\r\n")
    assert _raises(read_answers, p2).line == 4
    # header shorter than the rows
    p3 = _write(tmp_path, "c.csv", "item,worker\n1,a,cat\n1,b,dog\n")
    assert _raises(read_answers, p3, match="header line has fewer fields").line == 1
    # unclosed quote
    p4 = _write(tmp_path, "d.csv", 'item,worker,label\n1,a,"cat\n1,b,dog\n')
    _raises(read_answers, p4, match="quoted value is never closed")


def test_ragged_rows_in_a_big_file_fall_back_to_precise_errors(tmp_path):
    rows = "".join(f"{i},w{i % 7},{'ab'[i % 2]}\n" for i in range(120_000))
    p = _write(tmp_path, "big.csv", "item,worker,label\n" + rows + "1,2,3,4\n")
    assert p.stat().st_size > 1 << 20
    assert _raises(read_answers, p, match="4 fields").line == 120_002


def test_size_limit(tmp_path):
    p = _write(tmp_path, "a.csv", GOOD)
    err = _raises(read_answers, p, max_bytes=20, match="over the size limit")
    assert "max_bytes" in err.hint
    _raises(read_answers, GOOD.encode(), name="a.csv", max_bytes=20, match="size limit")
    _raises(read_answers, io.BytesIO(GOOD.encode()), max_bytes=20, match="size limit")
    _raises(read_gold, p, max_bytes=20, match="size limit")
    _raises(read_features, p, max_bytes=20, match="size limit")
    _raises(load_crowd, p, max_bytes=20, match="size limit")
    assert read_answers(p, max_bytes=len(GOOD)).n_answers == 4


@pytest.mark.parametrize("name,match", [("a.xlsx", "Excel"), ("a.foo", "unsupported file extension"),
                                        ("a.pkl", "pickle"), ("a.npy", "NumPy")])
def test_unsupported_extension(tmp_path, name, match):
    p = _write(tmp_path, name, GOOD)
    err = _raises(read_answers, p, match=match)
    assert ".csv" in err.hint


def test_missing_path_and_folder(tmp_path):
    err = _raises(read_answers, tmp_path / "nope.csv", match="file not found")
    assert err.path == str(tmp_path / "nope.csv")
    _raises(read_gold, tmp_path / "nope.csv", match="file not found")
    _raises(read_features, tmp_path / "nope.npy", match="file not found")
    _raises(read_answers, tmp_path, match="folder")
    _raises(load_crowd, _write(tmp_path, "a.csv", GOOD), gold=tmp_path / "g.csv", match="file not found")


def test_headerless_files_that_cannot_be_read_safely(tmp_path):
    _raises(read_answers, _write(tmp_path, "a.csv", "t1,w1,cat\nt1,w2,dog\nt2,w1,cat\n"), match="no header line")
    _raises(read_answers, _write(tmp_path, "b.csv", "1,1,2\n1,2,1\n2,1,2\n"), match="could be long")


def test_wrong_object_types():
    _raises(read_answers, 12345, match="cannot read a int")
    _raises(read_answers, GOOD, match="line breaks where a file path")
    _raises(read_features, np.array(["a", "b"]).reshape(2, 1), match="numbers")


def test_no_bare_exceptions_on_fuzzed_text():
    """Random printable junk either reads or raises CrowdDataError — never anything else."""
    rng = np.random.default_rng(7)
    alphabet = np.array(list('abc,;\t|"\n\r 0123456789-.'))
    for _ in range(60):
        raw = "".join(rng.choice(alphabet, size=int(rng.integers(1, 120)))).encode()
        for fn in (read_answers, read_gold, read_features):
            try:
                fn(raw, name="fuzz.csv")
            except CrowdDataError:
                pass


def test_dataframe_with_wrong_columns():
    _raises(read_answers, pd.DataFrame({"a": [1], "b": [2], "c": [3]}), format="long", match="no item column")
    _raises(read_answers, b'[{"x": 1}]', name="r.json", match="no item column")
    with pytest.raises(CrowdDataError):
        read_answers(json.dumps([{"id": 1, "annotations": [{"completed_by": 1, "result": []}]}]).encode(),
                     name="ls.json")


def test_parquet_without_pyarrow_says_how_to_fix(tmp_path, monkeypatch):
    pytest.importorskip("pyarrow")
    p = tmp_path / "a.parquet"
    pd.DataFrame({"task": [1, 1], "worker": ["a", "b"], "label": ["x", "y"]}).to_parquet(p)
    import sys
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    err = _raises(read_answers, p, match="needs the pyarrow package")
    assert "pip install pyarrow" in err.hint


def test_corrupt_parquet(tmp_path):
    pytest.importorskip("pyarrow")
    p = tmp_path / "a.parquet"
    p.write_bytes(b"PAR1" + b"garbage" * 10)
    _raises(read_answers, p, match="not a readable Parquet")
