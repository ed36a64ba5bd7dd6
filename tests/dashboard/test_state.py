"""Upload handling as plain functions of (bytes, file name): good files, each kind of bad file."""
from __future__ import annotations

import numpy as np
import pytest

from dashboard import state
from kdcrowd_core.errors import CrowdDataError


def _full(files):
    ds = None
    for kind in ("answers", "features", "gold", "test_features", "test_gold"):
        ds = state.apply_upload(ds, kind, files[kind], f"{kind}.csv", cached=False)
    return ds


def test_good_files_assemble(small_crowd_files):
    ds = _full(small_crowd_files)
    c = ds.crowd
    assert ds.name == "answers.csv" and not ds.is_sample
    assert c.n_items == 240 and c.n_classes == 3 and c.features.shape == (240, 8)
    assert c.has_gold and int(c.gold_mask.sum()) == 72
    X, y, ids = ds.test_split()
    assert X.shape == (60, 8) and X.dtype == np.float32 and len(ids) == 60 and (y >= 0).all()
    assert set(ds.sources) == {"answers", "features", "gold", "test_features", "test_gold"}
    assert ds.sources["answers"].digest == state.digest(small_crowd_files["answers"])


def test_key_changes_with_content(small_crowd_files):
    a = state.apply_upload(None, "answers", small_crowd_files["answers"], "a.csv", cached=False)
    b = state.apply_upload(a, "gold", small_crowd_files["gold"], "g.csv", cached=False)
    assert a.key != b.key
    assert a.crowd.gold is None          # the earlier dataset is untouched


def test_new_answers_keep_fitting_optional_files(small_crowd_files):
    ds = _full(small_crowd_files)
    again = state.apply_upload(ds, "answers", small_crowd_files["answers"], "again.csv", cached=False)
    assert again.crowd.features is not None and again.crowd.has_gold and again.has_test


BAD = {
    "empty file": ("answers", b"", "empty.csv", "empty"),
    "binary junk": ("answers", bytes(range(256)) * 40, "junk.csv", None),
    "one class only": ("answers", b"item,worker,label\n1,a,x\n2,b,x\n3,a,x\n", "one.csv", "one class"),
    "features for other items": ("features", b"item,f0,f1\nzz1,0.1,0.2\nzz2,0.3,0.4\n", "feat.csv", "missing"),
    "non-numeric features": ("features", None, "feat_text.csv", None),
    "gold for unknown items": ("gold", b"item,label\nnope1,cat\nnope2,dog\n", "gold.csv", "gold"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_files_raise_clear_errors_and_keep_previous(case, small_crowd_files):
    kind, payload, name, needle = BAD[case]
    ds = state.apply_upload(None, "answers", small_crowd_files["answers"], "answers.csv", cached=False)
    if payload is None:  # non-numeric features for the right items
        ids = ds.crowd.item_ids
        payload = ("item,f0,f1\n" + "\n".join(f"{i},abc,0.1" for i in ids)).encode()
    with pytest.raises(CrowdDataError) as err:
        state.apply_upload(ds, kind, payload, name, cached=False)
    msg = str(err.value)
    assert name in msg or needle and needle in msg.lower(), msg
    if needle:
        assert needle in msg.lower(), msg
    # ingest() stores the message and keeps the dataset
    st_ = {state.DATASET: ds}
    assert not state.ingest(st_, kind, payload, name)
    assert st_[state.DATASET] is ds and name in st_[state.UPLOAD_ERROR]


def test_optional_file_before_answers_is_refused(small_crowd_files):
    with pytest.raises(CrowdDataError, match="annotations first"):
        state.apply_upload(None, "gold", small_crowd_files["gold"], "gold.csv", cached=False)


def test_test_features_must_match_dimension(small_crowd_files):
    ds = state.apply_upload(None, "answers", small_crowd_files["answers"], "a.csv", cached=False)
    ds = state.apply_upload(ds, "features", small_crowd_files["features"], "f.csv", cached=False)
    bad = b"item,f0\nt1,0.5\nt2,0.1\n"
    with pytest.raises(CrowdDataError, match="columns"):
        state.apply_upload(ds, "test_features", bad, "tf.csv", cached=False)


def test_process_pending_applies_in_order(small_crowd_files):
    st_ = {state.PENDING: [("answers", small_crowd_files["answers"], "a.csv"),
                           ("gold", small_crowd_files["gold"], "g.csv")]}
    state.process_pending(st_)
    assert st_[state.DATASET].crowd.has_gold and state.PENDING not in st_ and state.UPLOAD_ERROR not in st_


def test_reports_word_each_file_kind():
    """The Data page's "what was read" texts: answers kept / gold labels kept / feature rows."""
    ds = state._sample_from_files()
    texts = {}
    for r in ds.reports:
        texts.setdefault(r.format, r.to_text())      # answers, features, gold (then the test split's)
    assert "10530 answers kept" in texts["long"]
    assert "300 gold labels kept" in texts["gold"] and "answers kept" not in texts["gold"]
    assert "3000 feature rows" in texts["features"] and "answers kept" not in texts["features"]
