"""read_gold, read_features and load_crowd on good files."""
from __future__ import annotations

import io
import pickle

import numpy as np
import pandas as pd
import pytest

from kdcrowd_core.errors import CrowdDataError
from kdcrowd_core.io import Features, load_crowd, read_features, read_gold

ANSWERS = "question,worker,answer\n1,a,cat\n1,b,dog\n2,a,dog\n2,b,dog\n3,a,cat\n3,c,cat\n"


# ----------------------------------------------------------------- gold
@pytest.mark.parametrize("content,expected", [
    ("question,truth\n1,cat\n2,dog\n", {1: "cat", 2: "dog"}),
    ("task_id\tgold\n1\tcat\n2\tdog\n", {1: "cat", 2: "dog"}),
    ("id,class\n1,cat\n2,dog\n", {1: "cat", 2: "dog"}),
    ("item,label\nimg1,3\nimg2,1\n", {"img1": 3, "img2": 1}),
    ("img1,cat\nimg2,cat\nimg3,dog\n", {"img1": "cat", "img2": "cat", "img3": "dog"}),  # 2 columns, no header
    ("1,2\n2,1\n", {1: 2, 2: 1}),                                                        # numeric, no header
    ("3\n1\n2\n", {0: 3, 1: 1, 2: 2}),                                                   # LabelMe Z file
    ("cat\r\ndog\r\n", {0: "cat", 1: "dog"}),
    ("truth\ncat\ndog\n", {0: "cat", 1: "dog"}),                                         # 1 named column
])
def test_gold_layouts(content, expected):
    g = read_gold(content.encode(), name="gold.csv")
    assert g.to_dict() == expected
    assert g.name == "gold" and g.index.name == "item"
    assert g.attrs["report"].format == "gold"


def test_gold_explicit_columns_and_report():
    raw = b"a,b,c\n1,x,cat\n2,y,\n3,z,dog\n3,z,dog\n"
    g = read_gold(raw, name="g.csv", item="a", label="c")
    assert g.to_dict() == {1: "cat", 3: "dog"}
    rep = g.attrs["report"]
    assert rep.columns == {"item": "a", "label": "c"}
    assert rep.skipped[0]["examples"] == ["line 3"]
    assert any("merged" in n for n in rep.notes)


def test_gold_from_mturk_truth_column_and_toloka_golden():
    mt = (b"WorkerID,Input.song,Input.true_label,Answer.pred_label\r"
          b"A1,s1.mp3,rock,pop\rA2,s1.mp3,rock,rock\rA1,s2.mp3,jazz,jazz\r")
    assert read_gold(mt, name="m.csv").to_dict() == {"s1.mp3": "rock", "s2.mp3": "jazz"}
    tol = (b"INPUT:image\tOUTPUT:result\tGOLDEN:result\tASSIGNMENT:worker_id\n"
           b"a.png\tcat\tcat\tw1\nb.png\tdog\t\tw1\n")
    assert read_gold(tol, name="t.tsv").to_dict() == {"a.png": "cat"}


def test_gold_json_npy_and_series():
    assert read_gold(b'{"a": "cat", "b": "dog"}', name="g.json").to_dict() == {"a": "cat", "b": "dog"}
    assert read_gold(b'[{"item": 1, "truth": "x"}]', name="g.json").to_dict() == {1: "x"}
    buf = io.BytesIO()
    np.save(buf, np.array([2, 0, 1]))
    assert read_gold(buf.getvalue(), name="z.npy").to_dict() == {0: 2, 1: 0, 2: 1}
    assert read_gold(pd.Series({"a": " cat "})).to_dict() == {"a": "cat"}


def test_gold_ambiguous_columns():
    with pytest.raises(CrowdDataError, match="could be the gold label"):
        read_gold(b"item,truth,gold\n1,a,a\n", name="g.csv")


# ----------------------------------------------------------------- features
def test_features_csv_like_music_gold():
    raw = b"id,feature0,feature1,class\nblues.1.mp3,0.5,-1e-3,blues\nrock.2.mp3,1.5,2,rock\n"
    X, ids, names = read_features(raw, name="music_genre_gold.csv")
    assert X.dtype == np.float32 and X.shape == (2, 2)
    np.testing.assert_allclose(X, [[0.5, -1e-3], [1.5, 2]], rtol=1e-6)
    assert list(ids) == ["blues.1.mp3", "rock.2.mp3"] and names == ["feature0", "feature1"]
    f = read_features(raw, name="music_genre_gold.csv")
    assert any("'class'" in n and "left out" in n for n in f.report.notes)
    assert f.report.columns["item"] == "id"


def test_features_tsv_parquet_and_european_csv(tmp_path):
    df = pd.DataFrame({"item": ["a", "b", "c"], "x": [1.0, 2.0, 3.0], "y": [0.0, -1.0, 0.5]})
    p = tmp_path / "f.tsv"
    df.to_csv(p, sep="\t", index=False)
    X, ids, names = read_features(p)
    np.testing.assert_array_equal(X, df[["x", "y"]].to_numpy(np.float32))
    assert list(ids) == ["a", "b", "c"] and names == ["x", "y"]
    pytest.importorskip("pyarrow")
    pq = tmp_path / "f.parquet"
    df.to_parquet(pq)
    X2, ids2, _ = read_features(pq)
    np.testing.assert_array_equal(X, X2)
    assert list(ids2) == list(ids)
    X3, ids3, _ = read_features(b"id;x;y\na;1,0;0\nb;2,0;-1\nc;3,0;0,5\n", name="eu.csv")
    np.testing.assert_allclose(X3, X)


def test_features_ids_keep_leading_zeros_and_headerless():
    X, ids, _ = read_features(b"item,f\n007,1\n8,2\n", name="f.csv")
    assert list(ids) == ["007", "8"]
    X, ids, names = read_features(b"img1,0.5,1\nimg2,0.1,3\n", name="f.csv")
    assert list(ids) == ["img1", "img2"] and names == ["f0", "f1"]
    X, ids, _ = read_features(b"0.5,1\n0.1,3\n", name="f.csv")
    assert list(ids) == [0, 1] and X.shape == (2, 2)


def test_features_npy_with_and_without_ids(tmp_path):
    arr = np.arange(12, dtype=np.float64).reshape(3, 4)
    p = tmp_path / "X.npy"
    np.save(p, arr)
    X, ids, names = read_features(p)
    assert X.dtype == np.float32 and list(ids) == [0, 1, 2] and names == ["f0", "f1", "f2", "f3"]
    idf = tmp_path / "ids.txt"
    idf.write_text("img_a\nimg_b\nimg_c\n")
    assert list(read_features(p, ids=idf).ids) == ["img_a", "img_b", "img_c"]
    assert list(read_features(p, ids=[10, 11, 12]).ids) == [10, 11, 12]
    np.save(p, arr.reshape(3, 2, 2))
    f = read_features(p)
    assert f.X.shape == (3, 4) and "flattened" in f.report.notes[0]
    g = pickle.loads(pickle.dumps(f))
    assert isinstance(g, Features) and g.report.source == str(p)


# ----------------------------------------------------------------- load_crowd
def test_load_crowd_attaches_everything(tmp_path):
    a = tmp_path / "answer.csv"
    a.write_text(ANSWERS)
    g = tmp_path / "truth.csv"
    g.write_text("question,truth\n1,cat\n3,cat\n")
    f = tmp_path / "feat.csv"
    f.write_text("question,f1,f2\n3,0.3,3\n1,0.1,1\n2,0.2,2\n")
    d = load_crowd(a, gold=g, features=f)
    assert d.n_items == 3 and d.features.shape == (3, 2) and d.feature_names == ["f1", "f2"]
    # features are aligned to d.item_ids whatever their row order
    np.testing.assert_allclose(d.features[:, 1], np.asarray(d.item_ids, dtype=float))
    assert d.gold_series().to_dict() == {1: "cat", 3: "cat"}
    sources = [r.source for r in d.report]
    assert sources == [str(a), str(g), str(f)]
    assert d.report[1].format == "gold" and d.report[2].format == "features"


def test_load_crowd_npy_with_feature_ids_and_read_kwargs(tmp_path):
    a = tmp_path / "a.csv"
    a.write_text("x,y,z\nA,w1,0\nA,w2,1\nB,w1,1\n")
    X = np.array([[2.0], [1.0]], dtype=np.float32)
    np.save(tmp_path / "X.npy", X)
    d = load_crowd(a, features=tmp_path / "X.npy", feature_ids=["B", "A"], item="x", worker="y", label="z")
    assert list(d.item_ids) == ["A", "B"]
    np.testing.assert_array_equal(d.features[:, 0], [1.0, 2.0])


def test_load_crowd_accepts_loaded_objects():
    d = load_crowd(ANSWERS.encode(), name="a.csv", gold=pd.Series({2: "dog"}),
                   features=(np.eye(3, dtype=np.float32), [1, 2, 3], ["a", "b", "c"]))
    assert d.gold_series().to_dict() == {2: "dog"} and d.features.shape == (3, 3)


def test_gold_ids_read_as_text_match_integer_items():
    d = load_crowd(ANSWERS.encode(), name="a.csv", gold=pd.Series({"1": "cat"}))
    assert d.gold_series().to_dict() == {1: "cat"}


def test_without_items_drops_items_answers_and_empty_workers():
    from kdcrowd_core.data import CrowdData
    df = pd.DataFrame({"task": ["a", "a", "b", "b", "c", "c"], "worker": ["w1", "w2", "w1", "w3", "w2", "w1"],
                       "label": ["x", "y", "x", "x", "y", "y"]})
    d = CrowdData.from_frame(df).with_gold(pd.Series({"a": "x", "c": "y"}))
    d = d.with_features(np.arange(6, dtype=np.float32).reshape(3, 2), ["a", "b", "c"])
    out = d.without_items(["b", "nope"])
    assert list(out.item_ids) == ["a", "c"] and list(out.worker_ids) == ["w1", "w2"]   # w3 only answered b
    assert out.n_answers == 4 and list(out.classes) == ["x", "y"]
    back = out.to_frame()
    assert set(map(tuple, back.to_numpy())) == {("a", "w1", "x"), ("a", "w2", "y"), ("c", "w2", "y"), ("c", "w1", "y")}
    assert out.gold_series().to_dict() == {"a": "x", "c": "y"}
    assert out.features.tolist() == [[0, 1], [4, 5]]
    assert "left out 1 items" in out.report[-1].notes[0]
    assert d.without_items(["nope"]) is d and d.n_items == 3   # unknown ids: unchanged, original untouched
    with pytest.raises(CrowdDataError, match="every item"):
        d.without_items(["a", "b", "c"])
