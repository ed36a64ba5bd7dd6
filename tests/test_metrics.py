"""Tests of kdcrowd_core.metrics: hand-computed values, textbook values, naive loops."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest

from kdcrowd_core.data import CrowdData
from kdcrowd_core.errors import CrowdDataError
from kdcrowd_core import metrics as M
from kdcrowd_core.simulate import simulate_crowd

nan = np.nan


@pytest.fixture
def toy(toy_frame) -> CrowdData:
    """conftest's toy crowd; classes sorted: bird=0, cat=1, dog=2; items t1..t4; workers w1, w2, w3."""
    return CrowdData.from_frame(toy_frame)


def _from_matrix(rel: np.ndarray) -> CrowdData:
    """Coders x units matrix with NaN for missing -> CrowdData (values 1..K -> codes 0..K-1)."""
    w, u = np.where(~np.isnan(rel))
    return CrowdData.from_arrays(u, w, rel[w, u].astype(int) - 1, n_items=rel.shape[1],
                                 n_workers=rel.shape[0], n_classes=int(np.nanmax(rel)))


# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", nominal example: alpha = 0.743
KRIPP = np.array([
    [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
    [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
])

# Fleiss (1971) style example from Wikipedia ("Fleiss' kappa"): 10 subjects x 14 raters, kappa = 0.210
FLEISS = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                   [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])


def _from_counts(tab: np.ndarray) -> CrowdData:
    n, K = tab.shape
    m = tab.sum(axis=1)
    item = np.repeat(np.arange(n), m)
    label = np.concatenate([np.repeat(np.arange(K), row) for row in tab])
    worker = np.concatenate([np.arange(k) for k in m])
    return CrowdData.from_arrays(item, worker, label, n_classes=K)


# --------------------------------------------------------------------------- accuracy
def test_accuracy_ignores_unknown_truth_and_respects_mask():
    pred = np.array([0, 1, 2, 1, 0])
    truth = np.array([0, 2, 2, -1, 1])
    assert M.accuracy(pred, truth) == pytest.approx(2 / 4)
    assert M.accuracy(pred, truth, mask=np.array([1, 1, 0, 1, 0], bool)) == pytest.approx(1 / 2)
    P = np.eye(3)[pred] * 0.9 + 0.03
    assert M.accuracy(P, truth) == pytest.approx(0.5)
    assert math.isnan(M.accuracy(pred, np.full(5, -1)))
    with pytest.raises(CrowdDataError):
        M.accuracy(pred, truth[:3])


def test_per_class_accuracy():
    pred = np.array([0, 1, 1, 1, 2, 0])
    truth = np.array([0, 0, 1, 1, 1, -1])
    s = M.per_class_accuracy(pred, truth, ["a", "b", "c"])
    assert list(s.index) == ["a", "b", "c"] and s.name == "accuracy"
    assert s["a"] == pytest.approx(0.5) and s["b"] == pytest.approx(2 / 3) and math.isnan(s["c"])


# --------------------------------------------------------------------------- matrices
def test_worker_matrix_error_hand_values():
    I = np.eye(2)
    U = np.full((2, 2), 0.5)
    T_hat = np.stack([I, I, U])
    T_true = np.stack([I, np.array([[0.8, 0.2], [0.4, 0.6]]), I])
    # worker 0: 0; worker 1: (0.4 + 0.8) / 2 = 0.6; worker 2: (1 + 1) / 2 = 1
    np.testing.assert_allclose(M.worker_matrix_errors(T_hat, T_true), [0.0, 0.6, 1.0])
    assert M.worker_matrix_error(T_hat, T_true) == pytest.approx(1.6 / 3)
    counts = np.array([10, 3, 0])
    assert M.worker_matrix_error(T_hat, T_true, min_answers=5, counts=counts) == pytest.approx(0.0)
    assert M.worker_matrix_error(T_hat, T_true, counts=counts) == pytest.approx(0.3)
    assert math.isnan(M.worker_matrix_error(T_hat, T_true, min_answers=50, counts=counts))
    # a NaN row (class never seen) is skipped: mean over the known rows
    T_nan = T_true.copy()
    T_nan[1, 1] = nan
    np.testing.assert_allclose(M.worker_matrix_errors(T_hat, T_nan), [0.0, 0.4, 1.0])
    with pytest.raises(CrowdDataError):
        M.worker_matrix_error(T_hat, T_true, min_answers=2)
    with pytest.raises(CrowdDataError):
        M.worker_matrix_error(T_hat, T_true[:2])


def test_empirical_confusion_toy(toy):
    # classes bird=0, cat=1, dog=2; truth: t1 cat, t2 dog, t3 dog, t4 unknown
    truth = np.array([1, 2, 2, -1])
    E = M.empirical_confusion(toy, truth)
    w = {w: i for i, w in enumerate(toy.worker_ids)}
    # w1: t1 cat (true cat), t2 dog (true dog), t3 cat (true dog)
    np.testing.assert_allclose(E[w["w1"], 1], [0, 1, 0])
    np.testing.assert_allclose(E[w["w1"], 2], [0, 0.5, 0.5])
    assert np.isnan(E[w["w1"], 0]).all()  # no bird item: unknown row
    # w3: t1 dog (true cat), t3 dog (true dog); t4 unknown truth ignored
    np.testing.assert_allclose(E[w["w3"], 1], [0, 0, 1])
    np.testing.assert_allclose(E[w["w3"], 2], [0, 0, 1])
    S = M.empirical_confusion(toy, truth, alpha=1.0)
    np.testing.assert_allclose(S[w["w3"], 0], [1 / 3] * 3)
    np.testing.assert_allclose(S[w["w1"], 2], [1 / 5, 2 / 5, 2 / 5])
    with pytest.raises(CrowdDataError):
        M.empirical_confusion(toy)  # no gold, no truth
    gold = toy.with_gold(pd.Series({"t1": "cat", "t2": "dog", "t3": "dog"}))
    np.testing.assert_allclose(M.empirical_confusion(gold), E, equal_nan=True)


def test_spammer_score():
    K = 4
    perm = np.eye(K)[[1, 2, 3, 0]]
    one_col = np.zeros((K, K))
    one_col[:, 2] = 1
    T = np.stack([np.eye(K), perm, np.full((K, K), 1 / K), one_col])
    np.testing.assert_allclose(M.spammer_score(T), [1, 1, 0, 0], atol=1e-12)
    # hand value, Raykar & Yu pair form: 1/(K(K-1)) sum_{c<c'} sum_k (T[c,k] - T[c',k])^2
    A = np.array([[0.8, 0.2], [0.3, 0.7]])
    assert M.spammer_score(A[None])[0] == pytest.approx(0.5 * (0.5 ** 2 + 0.5 ** 2))
    rng = np.random.default_rng(0)
    B = rng.dirichlet(np.ones(3), size=3)
    pair = sum(((B[c] - B[d]) ** 2).sum() for c, d in itertools.combinations(range(3), 2)) / (3 * 2)
    assert M.spammer_score(B[None])[0] == pytest.approx(pair)


# --------------------------------------------------------------------------- tables
def test_worker_stats_toy(toy):
    # consensus: t1 cat, t2 dog, t3 dog, t4 bird
    P = np.array([[0.1, 0.8, 0.1], [0.0, 0.1, 0.9], [0.1, 0.2, 0.7], [0.6, 0.2, 0.2]])
    T = np.stack([np.eye(3), np.full((3, 3), 1 / 3), np.eye(3) * 0.5 + 0.5 / 3])
    ws = M.worker_stats(toy, P, T)
    assert list(ws.index) == ["w1", "w2", "w3"] and ws.index.name == "worker"
    assert list(ws.columns) == ["answers", "accuracy", "agreement", "spammer_score", "top_label_share"]
    assert list(ws["answers"]) == [3, 3, 3]
    # w1: cat, dog, cat vs cat, dog, dog -> 2/3; w2: cat, dog, dog -> 1; w3: dog, dog, bird -> 2/3
    np.testing.assert_allclose(ws["agreement"], [2 / 3, 1, 2 / 3])
    np.testing.assert_allclose(ws["accuracy"], [1, 1 / 3, 0.5 + 0.5 / 3])  # any prior: equal diagonals
    np.testing.assert_allclose(ws["spammer_score"], [1, 0, 0.25])
    np.testing.assert_allclose(ws["top_label_share"], [2 / 3, 2 / 3, 2 / 3])
    # prior-weighted accuracy with unequal diagonals
    T2 = T.copy()
    T2[0] = np.array([[0.5, 0.5, 0], [0, 1, 0], [0, 0, 1]])
    ws2 = M.worker_stats(toy, P, T2, prior=[0.5, 0.25, 0.25])
    assert ws2.loc["w1", "accuracy"] == pytest.approx(0.5 * 0.5 + 0.25 + 0.25)
    # gold columns
    g = toy.with_gold(pd.Series({"t1": "cat", "t3": "dog"}))
    wg = M.worker_stats(g, P, T)
    assert list(wg["gold_answers"]) == [2, 2, 2]
    np.testing.assert_allclose(wg["gold_accuracy"], [0.5, 1.0, 0.5])
    with pytest.raises(CrowdDataError):
        M.worker_stats(toy, P[:2], T)
    with pytest.raises(CrowdDataError):
        M.worker_stats(toy, P, T[:2])


def test_item_stats_toy(toy):
    st = M.item_stats(toy)
    assert list(st.index) == ["t1", "t2", "t3", "t4"] and st.index.name == "item"
    assert list(st.columns) == ["answers", "distinct", "vote_entropy", "margin"]
    assert list(st["answers"]) == [3, 2, 3, 1]
    assert list(st["distinct"]) == [2, 1, 2, 1]
    h = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    np.testing.assert_allclose(st["vote_entropy"], [h, 0, h, 0])
    np.testing.assert_allclose(st["margin"], [1 / 3, 1, 1 / 3, 1])
    P = np.array([[0.1, 0.8, 0.1], [0.0, 0.1, 0.9], [0.1, 0.2, 0.7], [0.6, 0.2, 0.2]])
    g = toy.with_gold(pd.Series({"t2": "dog"}))
    st2 = M.item_stats(g, P)
    assert list(st2["consensus"]) == ["cat", "dog", "dog", "bird"]
    np.testing.assert_allclose(st2["confidence"], [0.8, 0.9, 0.7, 0.6])
    assert st2.loc["t2", "gold"] == "dog" and pd.isna(st2.loc["t1", "gold"])


def test_item_stats_tie_has_zero_margin():
    d = CrowdData.from_arrays([0, 0, 0, 0], [0, 1, 2, 3], [0, 1, 0, 1], n_classes=3)
    st = M.item_stats(d)
    assert st["margin"].iloc[0] == 0 and st["vote_entropy"].iloc[0] == pytest.approx(math.log(2))


# --------------------------------------------------------------------------- agreement
def test_krippendorff_alpha_textbook_value():
    assert M.krippendorff_alpha(_from_matrix(KRIPP)) == pytest.approx(0.743, abs=5e-4)


def test_krippendorff_alpha_matches_the_krippendorff_package():
    kr = pytest.importorskip("krippendorff")
    assert M.krippendorff_alpha(_from_matrix(KRIPP)) == pytest.approx(
        kr.alpha(reliability_data=KRIPP, level_of_measurement="nominal"), abs=1e-12)
    sim = simulate_crowd(n_items=120, n_classes=4, n_features=0, n_workers=9, answers_per_item=(1, 5), seed=4)
    d = sim.data
    rel = np.full((d.n_workers, d.n_items), nan)
    rel[d.worker, d.item] = d.label + 1
    assert M.krippendorff_alpha(d) == pytest.approx(
        kr.alpha(reliability_data=rel, level_of_measurement="nominal"), abs=1e-10)


def test_krippendorff_alpha_edge_cases():
    perfect = CrowdData.from_arrays([0, 0, 1, 1], [0, 1, 0, 1], [0, 0, 1, 1])
    assert M.krippendorff_alpha(perfect) == pytest.approx(1.0)
    singles = CrowdData.from_arrays([0, 1], [0, 1], [0, 1])
    assert math.isnan(M.krippendorff_alpha(singles))
    one_value = CrowdData.from_arrays([0, 0, 1], [0, 1, 0], [0, 0, 1])  # pairable values are all 0
    assert math.isnan(M.krippendorff_alpha(one_value))


def test_fleiss_kappa_textbook_value():
    d = _from_counts(FLEISS)
    assert M.fleiss_kappa(d) == pytest.approx(0.20993, abs=1e-5)
    s = M.agreement_summary(d)
    assert s["percent_agreement"] == pytest.approx(0.378, abs=5e-4)


def test_fleiss_kappa_two_raters_is_scotts_pi_and_variable_raters_ignore_singletons():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 3, 50), rng.integers(0, 3, 50)
    b[:30] = a[:30]
    d = CrowdData.from_arrays(np.r_[np.arange(50), np.arange(50)], np.r_[np.zeros(50, int), np.ones(50, int)],
                              np.r_[a, b])
    p = np.bincount(np.r_[a, b], minlength=3) / 100
    pe = (p ** 2).sum()
    assert M.fleiss_kappa(d) == pytest.approx(((a == b).mean() - pe) / (1 - pe))
    # adding items with a single answer changes nothing
    d2 = CrowdData.from_arrays(np.r_[d.item, 50, 51], np.r_[d.worker, 0, 0], np.r_[d.label, 2, 2])
    assert M.fleiss_kappa(d2) == pytest.approx(M.fleiss_kappa(d))


def test_fleiss_kappa_variable_raters_matches_naive_loop():
    sim = simulate_crowd(n_items=80, n_classes=3, n_features=0, n_workers=8, answers_per_item=(1, 6), seed=9)
    d = sim.data
    P_i, tot, n = [], np.zeros(3), 0
    for i in range(d.n_items):
        labs = d.label[d.item == i]
        if labs.size < 2:
            continue
        agree = sum(1 for x, y in itertools.permutations(range(labs.size), 2) if labs[x] == labs[y])
        P_i.append(agree / (labs.size * (labs.size - 1)))
        tot += np.bincount(labs, minlength=3)
        n += labs.size
    pe = ((tot / n) ** 2).sum()
    assert M.fleiss_kappa(d) == pytest.approx((np.mean(P_i) - pe) / (1 - pe))


def test_pairwise_cohen_kappa_matches_sklearn():
    skm = pytest.importorskip("sklearn.metrics")
    sim = simulate_crowd(n_items=300, n_classes=4, n_features=0, n_workers=12, answers_per_item=(2, 5), seed=2)
    d = sim.data
    kap = M.pairwise_cohen_kappa(d, top=5)
    counts = d.answers_per_worker()
    order = np.argsort(-counts, kind="stable")[:5]
    assert list(kap.index) == list(d.worker_ids.take(order)) == list(kap.columns)
    assert np.all(np.diag(kap.to_numpy()) == 1.0)
    L = np.full((d.n_workers, d.n_items), -1)
    L[d.worker, d.item] = d.label
    for x, y in itertools.combinations(range(5), 2):
        a, b = L[order[x]], L[order[y]]
        common = (a >= 0) & (b >= 0)
        want = skm.cohen_kappa_score(a[common], b[common]) if common.sum() >= 2 else nan
        assert kap.iloc[x, y] == pytest.approx(want, nan_ok=True)
        assert kap.iloc[y, x] == pytest.approx(want, nan_ok=True)


def test_pairwise_cohen_kappa_nan_cases(toy):
    # w1 and w3 share t1, t3 (2 items); add a worker with a single shared item
    d = CrowdData.from_arrays(np.r_[toy.item, 0], np.r_[toy.worker, 3], np.r_[toy.label, 1],
                              item_ids=toy.item_ids, worker_ids=list(toy.worker_ids) + ["w4"], classes=toy.classes)
    kap = M.pairwise_cohen_kappa(d, top=4)
    assert kap.shape == (4, 4)
    assert np.isnan(kap.loc["w4", "w1"]) and np.isnan(kap.loc["w1", "w4"])  # one common item
    # both always give one and the same label -> p_e = 1 -> NaN
    same = CrowdData.from_arrays([0, 0, 1, 1, 2, 2], [0, 1, 0, 1, 0, 1], [0, 0, 0, 0, 0, 0], n_classes=2,
                                 validate=False)
    assert np.isnan(M.pairwise_cohen_kappa(same).iloc[0, 1])


def test_pair_cooccurrence_matches_naive_loop():
    sim = simulate_crowd(n_items=40, n_classes=4, n_features=0, n_workers=7, answers_per_item=(1, 5), seed=6)
    d = sim.data
    want = np.zeros((4, 4), dtype=np.int64)
    for i in range(d.n_items):
        labs = d.label[d.item == i]
        for x, y in itertools.permutations(range(labs.size), 2):
            want[labs[x], labs[y]] += 1
    got = M.pair_cooccurrence(d)
    np.testing.assert_array_equal(got, want)
    m = d.answers_per_item()
    assert got.sum() == (m * (m - 1)).sum()
    f = M.pair_cooccurrence(d, as_frame=True)
    assert list(f.index) == list(d.classes) and (f.to_numpy() == want).all()


def test_pairs_within_groups():
    a, b = M._pairs_within_groups(np.array([0, 0, 0, 3, 5, 5]))
    got = sorted(zip(a.tolist(), b.tolist()))
    assert got == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (4, 5), (5, 4)]


def test_agreement_summary_is_json_ready(toy):
    s = M.agreement_summary(toy)
    json.dumps(s, allow_nan=False)
    assert s["n_items"] == 4 and s["n_answers"] == 9 and s["items_multi"] == 3
    assert s["unanimous_fraction"] == pytest.approx(1 / 3)
    assert s["answers_per_item_min"] == 1 and s["answers_per_item_max"] == 3
    h = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    assert s["mean_vote_entropy"] == pytest.approx(2 * h / 3)
    # P_i: t1 2/6, t2 1, t3 2/6
    assert s["percent_agreement"] == pytest.approx((1 / 3 + 1 + 1 / 3) / 3)
    for k in ("krippendorff_alpha", "fleiss_kappa", "mean_pairwise_cohen_kappa"):
        assert s[k] is None or isinstance(s[k], float)


def test_metrics_on_a_simulated_crowd_rank_workers_sensibly():
    sim = simulate_crowd(n_items=2000, n_classes=4, n_features=0, n_workers=20, answers_per_item=(3, 5),
                         worker_activity="uniform", archetypes={"expert": 0.5, "spammer": 0.25,
                                                                "one_answer_spammer": 0.25}, seed=1)
    d = sim.data
    P = np.eye(4)[sim.truth]
    ws = M.worker_stats(d, P, M.empirical_confusion(d, sim.truth))
    spam = np.isin(sim.archetype, ["spammer", "one_answer_spammer"])
    assert ws["spammer_score"][spam].max() < 0.05 < 0.6 < ws["spammer_score"][~spam].min()
    np.testing.assert_allclose(ws["accuracy"], sim.worker_accuracy(), atol=0.05)
    assert (ws["top_label_share"][sim.archetype == "one_answer_spammer"] == 1).all()
