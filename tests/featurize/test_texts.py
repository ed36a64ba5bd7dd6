"""Texts -> MiniLM embeddings: separation, reading the items table, bad input, cache, progress, cancel."""
from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from kdcrowd_core.errors import CrowdDataError
from kdcrowd_core.featurize import FeaturizeCancelled, embed_texts, read_items_table

from feat_inputs import NEGATIVE, POSITIVE, nearest_centroid_loo


def _items(tmp_path, rows, name="items.csv"):
    p = tmp_path / name
    pd.DataFrame(rows).to_csv(p, index=False)
    return p


def test_embeddings_separate_two_sentiments(text_model, tmp_path):
    texts = POSITIVE + NEGATIVE
    ids = [f"p{i}" for i in range(len(POSITIVE))] + [f"n{i}" for i in range(len(NEGATIVE))]
    emb = embed_texts(texts, ids=ids, cache_dir=None)
    assert emb.X.shape == (12, 384) and emb.X.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb.X, axis=1), 1.0, atol=1e-4)      # normalised like sentence-transformers
    assert list(emb.ids) == ids
    y = np.array([i[0] for i in ids])
    assert nearest_centroid_loo(emb.X, y) == 1.0
    S = emb.X @ emb.X.T
    pos, neg = y == "p", y == "n"
    within = (S[np.ix_(pos, pos)].sum() - pos.sum() + S[np.ix_(neg, neg)].sum() - neg.sum()) / (2 * 30)
    between = S[np.ix_(pos, neg)].mean()
    assert within > between + 0.1


def test_same_vectors_as_sentence_transformers(text_model):
    emb = embed_texts(["a small test sentence"], ids=["x"], cache_dir=None)
    ref = text_model.encode(["a small test sentence"], normalize_embeddings=True)
    assert np.allclose(emb.X, ref, atol=1e-5)


def test_table_formats_and_column_detection(text_model, tmp_path):
    df = pd.DataFrame({"id": ["a", "b"], "annotator_note": ["x", "y"], "review": ["good film", "bad film"]})
    for name, write in [("t.csv", lambda p: df.to_csv(p, index=False)),
                        ("t.tsv", lambda p: df.to_csv(p, index=False, sep="\t")),
                        ("t.parquet", lambda p: df.to_parquet(p)),
                        ("t.jsonl", lambda p: df.to_json(p, orient="records", lines=True))]:
        p = tmp_path / name
        write(p)
        t = read_items_table(p)
        assert t.ids == ["a", "b"] and t.values == ["good film", "bad film"], name
        assert t.report.columns == {"item": "id", "text": "review"}


def test_answers_file_with_text_column_collapses_repeats(text_model, tmp_path):
    p = _items(tmp_path, {"text": ["nice", "nice", "awful", "awful", "awful"],
                          "annotator": ["w1", "w2", "w1", "w2", "w3"], "sentiment": ["pos", "pos", "neg", "neg", "pos"],
                          "item": ["i1", "i1", "i2", "i2", "i2"]})
    emb = embed_texts(p, cache_dir=None)
    assert list(emb.ids) == ["i1", "i2"]
    assert any("3 rows repeat an item with the same text" in n for n in emb.report.notes)


def test_missing_and_empty_texts_are_counted(text_model, tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("item,text\na,hello there\nb,\nc,   \n,orphan text\nd,fine\n")
    emb = embed_texts(p, cache_dir=None)
    assert list(emb.ids) == ["a", "d"]
    sk = {s["reason"]: s for s in emb.report.skipped}
    assert sk["missing or empty texts"]["count"] == 2
    assert "line 3 (item 'b')" in sk["missing or empty texts"]["examples"]
    assert sk["rows without an item id"]["count"] == 1
    assert "skipped 2: missing or empty texts" in emb.report.to_text()


def test_all_texts_empty_is_an_error(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("item,text\na,\nb,\n")
    with pytest.raises(CrowdDataError, match="no row has both an item id and a non-empty text"):
        embed_texts(p, cache_dir=None)


def test_duplicate_ids_with_different_texts(text_model, tmp_path):
    p = _items(tmp_path, {"item": ["a", "b", "a"], "text": ["one", "two", "three"]})
    with pytest.raises(CrowdDataError) as e:
        embed_texts(p, cache_dir=None)
    msg = str(e.value)
    assert "item 'a' on line 2 and line 4" in msg and str(p) in msg and "Fix:" in msg
    assert "on_duplicate='first'" in msg
    emb = embed_texts(p, cache_dir=None, on_duplicate="first")
    assert list(emb.ids) == ["a", "b"]
    assert emb.report.skipped[0]["count"] == 1 and "kept the first" in emb.report.skipped[0]["reason"]


def test_texts_for_unknown_items(text_model, tmp_path):
    p = _items(tmp_path, {"item": ["a", "b", "zz"], "text": ["one", "two", "three"]})
    emb = embed_texts(p, cache_dir=None, known_items=["a", "b", "c"])
    assert list(emb.ids) == ["a", "b"]
    s = emb.report.skipped[0]
    assert s["count"] == 1 and "not in the answers" in s["reason"] and s["examples"] == ["line 4: 'zz'"]
    assert any("1 of the 3 answered items have no text" in n for n in emb.report.notes)
    with pytest.raises(CrowdDataError, match="none of the 3 texts belong to an item of the answers"):
        embed_texts(p, cache_dir=None, known_items=["x1.jpg", "x2.jpg"])


def test_bad_tables(tmp_path):
    empty = tmp_path / "e.csv"
    empty.write_text("")
    with pytest.raises(CrowdDataError, match="empty"):
        read_items_table(empty)
    one = tmp_path / "one.csv"
    one.write_text("text\nhello\n")
    with pytest.raises(CrowdDataError, match="1 column"):
        read_items_table(one)
    two = _items(tmp_path, {"item": ["a"], "text": ["x"]})
    with pytest.raises(CrowdDataError, match="no column 'body'") as e:
        read_items_table(two, column="body", flags={"column": "--text-column"})
    assert "--text-column" in str(e.value)


def test_cache_hit_progress_and_cancel(text_model, tmp_path):
    texts = POSITIVE + NEGATIVE
    ids = [f"t{i}" for i in range(len(texts))]
    calls = []
    first = embed_texts(texts, ids=ids, cache_dir=tmp_path / "cache", progress=lambda d, n: calls.append((d, n)))
    assert first.report.computed == 12 and first.report.from_cache == 0
    assert calls[-1] == (12, 12) and all(a[0] <= b[0] for a, b in zip(calls, calls[1:]))
    again = embed_texts(list(reversed(texts)), ids=list(reversed(ids)), cache_dir=tmp_path / "cache")
    assert again.report.computed == 0 and again.report.from_cache == 12
    assert np.allclose(again.X[::-1], first.X, atol=1e-6)
    stop = threading.Event()
    stop.set()
    with pytest.raises(FeaturizeCancelled):
        embed_texts(["something new to embed"], ids=["n"], cache_dir=tmp_path / "cache", cancel=stop)
    with pytest.raises(FeaturizeCancelled):
        embed_texts(["something new to embed"], ids=["n"], cache_dir=None, cancel=lambda: True)


def test_answers_file_without_item_column_uses_the_text_as_id(tmp_path):
    p = tmp_path / "answers.csv"
    p.write_text('text,annotator,sentiment\n"Great movie, loved it",a1,pos\n"Great movie, loved it",a2,pos\n'
                 '" Boring and too long",a1,neg\n')
    t = read_items_table(p)
    assert t.ids == ["Great movie, loved it", "Boring and too long"]
    assert t.report.columns == {"item": "text", "text": "text"}
    assert any("each text is its own item id" in n for n in t.report.notes)
    two = tmp_path / "two.csv"
    two.write_text("key,body\nk1,hello\n")
    assert read_items_table(two, item="body", column="body").ids == ["hello"]
    assert read_items_table(two).ids == ["k1"]
