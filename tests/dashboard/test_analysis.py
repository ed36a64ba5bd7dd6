"""The numbers behind the pages (dashboard.analysis, dashboard.compare) on a hand-made crowd."""
from __future__ import annotations

import numpy as np
import pandas as pd

from dashboard import analysis as an
from kdcrowd_core.data import CrowdData


def _toy(toy_frame):
    d = CrowdData.from_frame(toy_frame)
    return d.with_gold(pd.Series({"t1": "cat", "t2": "dog"}))


def test_compute_analysis_shapes(toy_frame):
    d = _toy(toy_frame)
    a = an.compute_analysis(d)
    assert a.ds_proba.shape == (4, 3) and a.ds_matrices.shape == (3, 3, 3)
    assert list(a.workers.index) == ["w1", "w2", "w3"] and list(a.items.index) == ["t1", "t2", "t3", "t4"]
    assert np.allclose(a.mv_proba.sum(1), 1) and a.consensus.shape == (4,)


def test_filter_workers():
    s = pd.DataFrame({"answers": [1, 10, 5], "accuracy": [0.9, 0.5, 0.7]}, index=["alice", "bob", "Alina"])
    assert list(an.filter_workers(s, min_answers=2).index) == ["Alina", "bob"]
    assert list(an.filter_workers(s, search="ALI").index) == ["alice", "Alina"]
    assert list(an.filter_workers(s, sort_by="answers").index) == ["bob", "Alina", "alice"]


def test_empirical_confusion_counts(toy_frame):
    d = _toy(toy_frame)
    C = an.empirical_confusion_counts(d, int(d.worker_ids.get_loc("w3")))
    # w3 answered t1 (gold cat) with dog; t3/t4 have no gold
    cat, dog = d.classes.get_loc("cat"), d.classes.get_loc("dog")
    assert C.sum() == 1 and C[cat, dog] == 1
    assert np.allclose(an.row_normalise(C).sum(1), (C.sum(1) > 0).astype(float))
    assert an.empirical_confusion_counts(CrowdData.from_frame(toy_frame), 0) is None


def test_contested_items_block(toy_frame):
    d = CrowdData.from_frame(toy_frame)
    a = an.compute_analysis(d)
    b = an.contested_items(d, a.items, a.consensus, n_items=2, n_workers=2)
    A = b["answers"]
    assert A.shape == (2, 2) and set(b["item_ids"]) <= {"t1", "t3"}      # the two split items
    # each cell equals the worker's answer on that item, or -1
    lookup = {(i, w): l for i, w, l in zip(d.item, d.worker, d.label)}
    for r, i in enumerate(b["item_codes"]):
        for c, w in enumerate(b["worker_codes"]):
            assert A[r, c] == lookup.get((i, w), -1)


def test_answers_and_votes_text(toy_frame):
    d = CrowdData.from_frame(toy_frame)
    codes = np.array([d.item_ids.get_loc("t1"), d.item_ids.get_loc("t4")])
    ans = an.answers_of_items(d, codes)
    assert ans["t1"] == "w1: cat, w2: cat, w3: dog" and ans["t4"] == "w3: bird"
    votes = an.label_summary(d, codes)
    assert votes["t1"] == "cat×2, dog×1" and votes["t4"] == "bird×1"
