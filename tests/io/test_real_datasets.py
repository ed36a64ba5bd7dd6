"""The readers on the real datasets in ../shared/datasets (skipped when absent)."""
from __future__ import annotations

import numpy as np
import pytest

from kdcrowd_core.io import load_crowd, read_answers, read_features, read_gold

pytestmark = pytest.mark.datasets


def _mv_accuracy(data) -> tuple[float, float]:
    """Majority vote vs gold: (argmax with first-class tie-break, expectation under random tie-break)."""
    K = data.n_classes
    votes = np.bincount(data.item * K + data.label, minlength=data.n_items * K).reshape(data.n_items, K)
    m = data.gold_mask
    first = float((votes.argmax(axis=1)[m] == data.gold[m]).mean())
    top = votes >= votes.max(axis=1, keepdims=True)
    expected = float((top[m, data.gold[m]] / top[m].sum(axis=1)).mean())
    return first, expected


def test_labelme_answers_txt_is_wide(shared_datasets):
    lm = shared_datasets / "labelme"
    d = read_answers(lm / "answers.txt")
    assert d.report[0].format == "wide"
    assert (d.n_items, d.n_workers, d.n_answers, d.n_classes) == (1000, 59, 2547, 8)
    assert list(d.classes) == list(range(8))
    assert sorted(d.item_ids) == list(range(1000)) and sorted(d.worker_ids) == list(range(59))
    full = load_crowd(lm / "answers.txt", gold=lm / "LabelMe_Z_train.txt", features=lm / "LabelMe_VGG_avg_train.npy")
    assert full.features.shape == (1000, 512) and full.gold_mask.all()
    # row i of the npy / line i of the Z file is item i
    X = np.load(lm / "LabelMe_VGG_avg_train.npy")
    np.testing.assert_array_equal(full.features, X[np.asarray(full.item_ids)])
    first, expected = _mv_accuracy(full)
    assert 0.76 <= expected <= 0.775 and 0.76 <= first <= 0.775  # README: about 76.7-76.9 %


def test_labelme_gold_files(shared_datasets):
    lm = shared_datasets / "labelme"
    for part, n in (("train", 1000), ("valid", 500), ("test", 1188)):
        g = read_gold(lm / f"LabelMe_Z_{part}.txt")
        assert len(g) == n and list(g.index[:3]) == [0, 1, 2] and set(g.unique()) <= set(range(8))


def test_music_genre_mturk(shared_datasets):
    mg = shared_datasets / "music_genre"
    d = read_answers(mg / "mturk_answers.csv")
    rep = d.report[0]
    assert rep.format == "mturk" and rep.columns["item"] == "Input.song"
    assert rep.columns["label"] == "Answer.pred_label"
    assert (d.n_items, d.n_workers, d.n_answers, d.n_classes) == (700, 44, 2945, 10)
    gold = read_gold(mg / "mturk_answers.csv")  # the Input.true_label column
    assert len(gold) == 700
    full = load_crowd(mg / "mturk_answers.csv", gold=gold, features=mg / "music_genre_gold.csv")
    assert full.features.shape == (700, 124) and full.gold_mask.all()
    first, expected = _mv_accuracy(full)
    assert abs(expected - 0.706) < 0.01 and 0.69 <= first <= 0.72  # README: about 70.6 %
    # the gold file's class column agrees with Input.true_label
    g2 = read_gold(mg / "music_genre_gold.csv", item="id", label="class")
    assert (g2.reindex(gold.index) == gold).all()
    X, ids, names = read_features(mg / "music_genre_test.csv")
    assert X.shape == (300, 124) and "class" not in names


@pytest.mark.parametrize("name,shape,mv", [("dog", (807, 109, 8070, 4), 0.82), ("face", (584, 27, 5242, 4), 0.64)])
def test_truth_inference(shared_datasets, name, shape, mv):
    ti = shared_datasets / "truth_inference" / name
    d = load_crowd(ti / "answer.csv", gold=ti / "truth.csv")
    assert d.report[0].columns == {"item": "question", "worker": "worker", "label": "answer"}
    assert (d.n_items, d.n_workers, d.n_answers, d.n_classes) == shape
    assert d.gold_mask.all()
    first, expected = _mv_accuracy(d)
    assert abs(expected - mv) < 0.02


def test_majority_vote_class_agrees_when_available(shared_datasets):
    mvmod = pytest.importorskip("kdcrowd_core.inference.majority_vote")
    ti = shared_datasets / "truth_inference" / "dog"
    d = load_crowd(ti / "answer.csv", gold=ti / "truth.csv")
    mv = mvmod.MajorityVote().fit(d)
    first, _ = _mv_accuracy(d)
    lab = np.asarray(mv.proba_array_).argmax(axis=1)
    assert float((lab == d.gold).mean()) == pytest.approx(first)
