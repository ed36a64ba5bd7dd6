"""Truth inference: majority vote, Dawid-Skene, one-coin DS, GLAD."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdcrowd_core import CrowdData, CrowdDataError
from kdcrowd_core.inference import (DEFAULT_METHOD, GLAD, DawidSkene, MajorityVote, OneCoinDawidSkene,
                                    available_methods, expected_tie_accuracy, get_method)
from kdcrowd_core.inference._sparse import soft_majority
from kdcrowd_core.simulate import simulate_crowd

ALL = [MajorityVote, DawidSkene, OneCoinDawidSkene, GLAD]


@pytest.fixture(scope="module")
def sim():
    return simulate_crowd(n_items=600, n_classes=4, n_features=0, n_workers=30, answers_per_item=(3, 5),
                          archetypes={"expert": 0.4, "novice": 0.3, "confuser": 0.1, "spammer": 0.2}, seed=3)


# ------------------------------------------------------------------ registry
def test_registry_names_and_default():
    names = available_methods()
    assert {"majority_vote", "dawid_skene", "one_coin_dawid_skene", "glad"} <= set(names)
    assert DEFAULT_METHOD in names
    assert isinstance(get_method("DS"), DawidSkene)
    assert isinstance(get_method("mv"), MajorityVote)
    assert isinstance(get_method(None), type(get_method(DEFAULT_METHOD)))
    with pytest.raises(CrowdDataError, match="unknown inference method 'nope'.*choose one of"):
        get_method("nope")


# ----------------------------------------------------------- majority vote
def test_majority_vote_toy(toy_frame):
    mv = MajorityVote()
    labels = mv.fit_predict(toy_frame)
    # t1: cat 2 vs dog 1 ; t2: dog ; t3: dog 2 vs cat 1 ; t4: bird
    assert labels.to_dict() == {"t1": "cat", "t2": "dog", "t3": "dog", "t4": "bird"}
    assert labels.index.name == "task"
    proba = mv.probas_
    assert list(proba.columns) == ["bird", "cat", "dog"]
    assert proba.loc["t1", "cat"] == pytest.approx(2 / 3, abs=1e-6)
    assert not mv.tie_.any()


def test_majority_vote_tie_break_is_first_class_and_deterministic():
    df = pd.DataFrame({"task": ["a", "a", "b", "b"], "worker": ["x", "y", "x", "y"],
                       "label": ["zebra", "ant", "ant", "zebra"]})
    for _ in range(3):
        lab = MajorityVote().fit_predict(df)
        assert lab.to_dict() == {"a": "ant", "b": "ant"}  # classes sorted: ant < zebra
    hard = MajorityVote(soft=False).fit(df)
    assert hard.tie_.all()
    np.testing.assert_array_equal(hard.proba_array_, [[1, 0], [1, 0]])


def test_expected_tie_accuracy():
    votes = np.array([[1, 1, 0], [2, 0, 0], [0, 1, 1]], dtype=float)
    truth = np.array([0, 0, 0])
    assert expected_tie_accuracy(votes, truth) == pytest.approx((0.5 + 1 + 0) / 3)


# ------------------------------------------------------------- Dawid-Skene
def test_ds_beats_mv_and_recovers_worker_matrices(sim):
    d = sim.data
    mv = MajorityVote().fit(d)
    ds = DawidSkene().fit(d)
    acc_mv = (mv.proba_array_.argmax(1) == sim.truth).mean()
    acc_ds = (ds.proba_array_.argmax(1) == sim.truth).mean()
    assert acc_ds > acc_mv + 0.02
    # matrices of workers with >= 40 answers within 0.25 mean L1/K of the truth
    n = d.answers_per_worker()
    busy = n >= 40
    assert busy.sum() >= 5
    err = np.abs(ds.worker_matrices_ - sim.true_matrices).sum(axis=(1, 2)) / d.n_classes
    assert err[busy].mean() < 0.25, err[busy]
    assert ds.worker_matrices_.shape == (d.n_workers, d.n_classes, d.n_classes)
    np.testing.assert_allclose(ds.worker_matrices_.sum(axis=2), 1.0, atol=1e-5)
    assert ds.prior_.sum() == pytest.approx(1.0, abs=1e-6)
    # EM never decreases the log-likelihood by more than float noise
    h = np.array(ds.loglik_history_)
    assert np.all(np.diff(h) > -1e-4)


def test_ds_errors_layout_like_crowdkit(toy_frame):
    ds = DawidSkene().fit(toy_frame)
    assert ds.errors_.index.names == ["worker", "label"]
    assert list(ds.errors_.columns) == ["bird", "cat", "dog"]
    # each true-label column sums to one per worker
    sums = ds.errors_.groupby(level="worker").sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.0, atol=1e-5)


def test_ds_gold_clamping_and_stopping(sim):
    d = sim.data
    gold = np.full(d.n_items, -1)
    gold[:100] = sim.truth[:100]
    dg = CrowdData.from_arrays(d.item, d.worker, d.label, item_ids=d.item_ids, worker_ids=d.worker_ids,
                               classes=d.classes, gold=gold)
    ds = DawidSkene(tol=1e-4).fit(dg)
    assert (ds.proba_array_[:100].argmax(1) == sim.truth[:100]).all()
    np.testing.assert_allclose(ds.proba_array_[:100].max(1), 1.0)
    assert ds.converged_ and ds.n_iter_ < 100
    one = DawidSkene(n_iter=1).fit(d)
    assert one.n_iter_ == 1 and len(one.loglik_history_) == 1


def test_ds_initial_matrices_and_float64(sim):
    d = sim.data
    ds = DawidSkene(initial_matrices=sim.true_matrices, n_iter=5, dtype="float64").fit(d)
    assert (ds.proba_array_.argmax(1) == sim.truth).mean() > 0.8
    with pytest.raises(CrowdDataError, match="initial_matrices must have shape"):
        DawidSkene(initial_matrices=np.ones((2, 2, 2))).fit(d)
    with pytest.raises(CrowdDataError, match="dtype"):
        DawidSkene(dtype="float16").fit(d)


def test_ds_agrees_with_crowdkit(sim):
    ck = pytest.importorskip("crowdkit.aggregation")
    df = sim.data.to_frame()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ck.DawidSkene(n_iter=100, tol=1e-7).fit(df)
    ours = DawidSkene(alpha=0.0, n_iter=100, tol=1e-9, dtype="float64").fit(df)
    agree = (ours.labels_ == ref.labels_.reindex(ours.labels_.index)).mean()
    assert agree >= 0.99
    diff = np.abs(ours.probas_.to_numpy() - ref.probas_.reindex(ours.probas_.index)[ours.probas_.columns].to_numpy())
    assert diff.mean() < 0.02
    ck_err = ref.errors_.reindex(ours.errors_.index)[ours.errors_.columns].to_numpy()
    assert np.abs(ck_err - ours.errors_.to_numpy()).mean() < 0.02


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_ds_cuda_matches_cpu(sim):
    cpu = DawidSkene(device="cpu", tol=0, n_iter=30).fit(sim.data)
    gpu = DawidSkene(device="cuda", tol=0, n_iter=30).fit(sim.data)
    np.testing.assert_allclose(cpu.proba_array_, gpu.proba_array_, atol=1e-3)


def test_cuda_request_without_gpu_is_clear_error(sim):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(CrowdDataError, match="no CUDA GPU"):
        DawidSkene(device="cuda").fit(sim.data)


# ------------------------------------------------------- one-coin and GLAD
@pytest.mark.parametrize("cls", [OneCoinDawidSkene, GLAD])
def test_coin_models_beat_chance_and_rank_workers(sim, cls):
    m = cls().fit(sim.data)
    acc = (m.proba_array_.argmax(1) == sim.truth).mean()
    assert acc > 0.8
    skill = m.skills_ if cls is OneCoinDawidSkene else m.abilities_
    true_acc = np.einsum("rkk->r", sim.true_matrices) / sim.data.n_classes
    busy = sim.data.answers_per_worker() >= 20
    rho = pd.Series(skill.to_numpy()[busy]).corr(pd.Series(true_acc[busy]), method="spearman")
    assert rho > 0.6


def test_glad_difficulties_indexed_by_item(sim):
    m = GLAD(n_iter=5).fit(sim.data)
    assert m.difficulties_.index.equals(sim.data.item_ids)
    assert (m.difficulties_ > 0).all()


# ----------------------------------------------------- property-based tests
@st.composite
def crowds(draw):
    K = draw(st.integers(2, 4))
    N = draw(st.integers(3, 25))
    R = draw(st.integers(2, 6))
    n = draw(st.integers(1, R))
    seed = draw(st.integers(0, 10_000))
    rng = np.random.default_rng(seed)
    items, workers = [], []
    for i in range(N):  # tiny: a loop in test data generation is fine
        w = rng.choice(R, size=rng.integers(1, n + 1), replace=False)
        items += [i] * len(w)
        workers += list(w)
    items, workers = np.array(items), np.array(workers)
    labels = rng.integers(0, K, len(items))
    labels[:K] = np.arange(K) if len(labels) >= K else labels[:K]
    if len(np.unique(labels)) < 2:
        labels[0] = 1 - labels[0] if K >= 2 else 0
        labels[0] = (labels[-1] + 1) % K
    return CrowdData.from_arrays(items, workers, labels, n_items=N, n_workers=R, n_classes=K)


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(crowds(), st.sampled_from(ALL))
def test_probabilities_sum_to_one(data, cls):
    kw = {"n_iter": 5} if cls is GLAD else {}
    m = cls(**kw).fit(data)
    p = m.proba_array_
    assert p.shape == (data.n_items, data.n_classes)
    assert np.all(p >= -1e-9)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(m.worker_matrices_.sum(axis=2), 1.0, atol=1e-5)


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(crowds(), st.integers(0, 1000))
def test_relabelling_classes_permutes_result(data, seed):
    perm = np.random.default_rng(seed).permutation(data.n_classes)  # old class k -> new class perm[k]
    relabelled = CrowdData.from_arrays(data.item, data.worker, perm[data.label], n_items=data.n_items,
                                       n_workers=data.n_workers, n_classes=data.n_classes)
    for cls in (DawidSkene, OneCoinDawidSkene):
        a = cls(dtype="float64", tol=0, n_iter=20).fit(data) if cls is DawidSkene else cls(tol=0, n_iter=20).fit(data)
        b = (cls(dtype="float64", tol=0, n_iter=20) if cls is DawidSkene else cls(tol=0, n_iter=20)).fit(relabelled)
        np.testing.assert_allclose(b.proba_array_[:, perm], a.proba_array_, atol=1e-6)
    mv_a, mv_b = soft_majority(data), soft_majority(relabelled)
    np.testing.assert_allclose(mv_b[:, perm], mv_a)


@settings(max_examples=8, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), st.floats(0.05, 0.5))
def test_gold_never_lowers_ds_accuracy(seed, frac):
    sim = simulate_crowd(n_items=300, n_classes=3, n_features=0, n_workers=15, answers_per_item=(2, 4), seed=seed)
    d = sim.data
    # an rng independent of the simulator's (same seed would correlate the gold mask with the truth)
    rng = np.random.default_rng([seed, 99])
    gold = np.where(rng.random(d.n_items) < frac, sim.truth, -1)
    dg = CrowdData.from_arrays(d.item, d.worker, d.label, n_items=d.n_items, n_workers=d.n_workers,
                               n_classes=d.n_classes, gold=gold)
    free = gold < 0
    acc0 = (DawidSkene().fit(d).proba_array_.argmax(1) == sim.truth).mean()
    acc1 = (DawidSkene().fit(dg).proba_array_.argmax(1) == sim.truth).mean()
    # overall accuracy (gold items count as right once clamped) never drops;
    # on the non-gold items, a tiny slack for EM's local optima
    assert acc1 >= acc0 - 1e-12
    acc0_free = (DawidSkene().fit(d).proba_array_.argmax(1)[free] == sim.truth[free]).mean()
    acc1_free = (DawidSkene().fit(dg).proba_array_.argmax(1)[free] == sim.truth[free]).mean()
    assert acc1_free >= acc0_free - 0.03


# --------------------------------------------------------------- real data
def _labelme(shared):
    ans = np.loadtxt(shared / "labelme" / "answers.txt", dtype=np.int64)
    truth = np.loadtxt(shared / "labelme" / "LabelMe_Z_train.txt", dtype=np.int64)
    i, w = np.nonzero(ans >= 0)
    return CrowdData.from_arrays(i, w, ans[i, w], n_items=ans.shape[0], n_workers=ans.shape[1], n_classes=8), truth


def _music(shared):
    df = pd.read_csv(shared / "music_genre" / "mturk_answers.csv")
    data = CrowdData.from_frame(df, item="Input.song", worker="WorkerID", label="Answer.pred_label")
    truth = df.groupby("Input.song")["Input.true_label"].first().reindex(data.item_ids)
    return data, data.classes.get_indexer(truth)


@pytest.mark.datasets
def test_majority_vote_reproduces_published_accuracy(shared_datasets):
    d, truth = _labelme(shared_datasets)
    mv = MajorityVote().fit(d)
    assert (mv.proba_array_.argmax(1) == truth).mean() == pytest.approx(0.769, abs=0.003)
    assert expected_tie_accuracy(soft_majority(d), truth) == pytest.approx(0.767, abs=0.003)
    dm, tm = _music(shared_datasets)
    assert expected_tie_accuracy(soft_majority(dm), tm) == pytest.approx(0.706, abs=0.004)
    assert (MajorityVote().fit(dm).proba_array_.argmax(1) == tm).mean() == pytest.approx(0.706, abs=0.01)


@pytest.mark.datasets
@pytest.mark.parametrize("name", ["dog", "face"])
def test_ds_matches_or_beats_crowdkit_on_truth_inference(shared_datasets, name):
    ck = pytest.importorskip("crowdkit.aggregation")
    folder = shared_datasets / "truth_inference" / name
    ans = pd.read_csv(folder / "answer.csv").rename(columns={"question": "task", "answer": "label"})
    truth = pd.read_csv(folder / "truth.csv").set_index("question")["truth"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ck.DawidSkene(n_iter=100).fit_predict(ans)
        best_ck = max((m.fit_predict(ans).reindex(truth.index) == truth).mean()
                      for m in (ck.MajorityVote(), ck.DawidSkene(n_iter=100), ck.OneCoinDawidSkene(n_iter=100)))
    acc_ref = (ref.reindex(truth.index) == truth).mean()
    acc = (DawidSkene().fit_predict(ans).reindex(truth.index) == truth).mean()
    assert acc >= acc_ref - 0.005
    acc_default = (get_method(None).fit_predict(ans).reindex(truth.index) == truth).mean()
    assert acc_default >= best_ck - 0.005   # the adaptive default: within 0.5 pt of the best (issue 12)


def test_ds_num_threads_same_result_and_restored(sim):
    before = torch.get_num_threads()
    a = DawidSkene(num_threads=1, tol=0, n_iter=10).fit(sim.data).proba_array_
    assert torch.get_num_threads() == before
    b = DawidSkene(tol=0, n_iter=10).fit(sim.data).proba_array_
    np.testing.assert_allclose(a, b, atol=1e-5)
    with pytest.raises(CrowdDataError, match="num_threads"):
        DawidSkene(num_threads=0).fit(sim.data)


def _random_crowd(n_items: int, n_classes: int, n_workers: int, per_item: int = 4, seed: int = 0) -> CrowdData:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_classes, n_items)
    acc = rng.uniform(0.5, 0.95, n_workers)
    item = np.repeat(np.arange(n_items), per_item)
    worker = rng.integers(0, n_workers, item.size)
    right = rng.random(item.size) < acc[worker]
    label = np.where(right, truth[item], (truth[item] + rng.integers(1, n_classes, item.size)) % n_classes)
    return CrowdData.from_arrays(item, worker, label, n_classes=n_classes)


def test_ds_thread_count_does_not_change_results():
    """Large enough for torch to split the products and element-wise steps over threads: 1 and 2 threads give
    the same posteriors and worker matrices, bit for bit, and the fit reports the threads it used."""
    data = _random_crowd(12_000, 5, 40)
    one = DawidSkene(num_threads=1, tol=0, n_iter=15).fit(data)
    two = DawidSkene(num_threads=2, tol=0, n_iter=15).fit(data)
    assert (one.num_threads_, two.num_threads_) == (1, 2)
    np.testing.assert_array_equal(one.proba_array_, two.proba_array_)
    np.testing.assert_array_equal(one.worker_matrices_, two.worker_matrices_)
    np.testing.assert_allclose(one.loss_history_, two.loss_history_, rtol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_posteriors_floor_keeps_softmax_without_subnormals(dtype):
    """Centred logits far below the others (a confident item) would make exp() return subnormal numbers,
    which CPUs compute many times slower: posteriors raises them to exp_floor, a change below 1e-36."""
    from kdcrowd_core.inference.dawid_skene import exp_floor, posteriors
    rng = np.random.default_rng(1)
    g = torch.from_numpy(rng.uniform(-900, 0, (2000, 10))).to(dtype)
    g[:, 0] = 0.0
    q, lse = posteriors(g, with_lse=True)
    ref = torch.softmax(g, dim=1)
    tiny, low = torch.finfo(dtype).tiny, 10 * math.exp(exp_floor(dtype, 10))
    assert bool(((ref > 0) & (ref < tiny)).any())                  # without the floor: subnormal numbers
    assert bool((q >= tiny).all())                                 # with it: none, and no zero
    kept = ref > low
    torch.testing.assert_close(q[kept], ref[kept], rtol=1e-6, atol=0)
    assert bool((q[~kept] <= low).all())
    torch.testing.assert_close(q.sum(1), torch.ones(len(q), dtype=dtype))
    torch.testing.assert_close(lse, torch.logsumexp(g, 1))


def test_ds_blocks_and_threads_do_not_change_results(monkeypatch):
    """Above BLOCK_ANSWERS answers the EM loop runs item and (worker, answer) blocks on a pool of threads:
    the posteriors and worker matrices equal the one-block (whole-array) fit bit for bit, gold included,
    with any thread count; by default the pool has torch's threads, and a one-block fit runs on one."""
    from kdcrowd_core.inference import blocks
    data = _random_crowd(12_000, 5, 40, seed=4)
    gold = np.full(data.n_items, -1)
    gold[::37] = np.random.default_rng(5).integers(0, 5, gold[::37].size)
    data = CrowdData.from_arrays(data.item, data.worker, data.label, n_classes=5, gold=gold)
    before = torch.get_num_threads()
    whole = DawidSkene(tol=0, n_iter=15).fit(data)                    # 48k answers: one block
    assert whole.num_threads_ == 1
    monkeypatch.setattr(blocks, "BLOCK_ANSWERS", 4_000)                 # 12 blocks
    for threads in (1, 3):
        m = DawidSkene(tol=0, n_iter=15, num_threads=threads).fit(data)
        assert m.num_threads_ == threads
        np.testing.assert_array_equal(m.proba_array_, whole.proba_array_)
        np.testing.assert_array_equal(m.worker_matrices_, whole.worker_matrices_)
        np.testing.assert_allclose(m.loss_history_, whole.loss_history_, rtol=1e-6)
    assert DawidSkene(tol=0, n_iter=2).fit(data).num_threads_ == min(before, 12)
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ones_csr_mm_equals_the_csr_product(dtype):
    """The E- and M-step products as embedding_bag sums: the CSR product's values bit for bit (repeated
    answers, rows without answers, row slices as the EM blocks use them)."""
    from kdcrowd_core.inference._sparse import _csr, ones_csr_mm
    from kdcrowd_core.inference.blocks import _row_slice
    rng = np.random.default_rng(2)
    rows = torch.from_numpy(np.sort(rng.integers(0, 3_000, 40_000)))   # some rows empty, some repeated pairs
    cols = torch.from_numpy(rng.integers(0, 500, 40_000))
    m = _csr(rows, cols, 3_100, 500, dtype)
    x = torch.from_numpy(rng.normal(size=(500, 7))).to(dtype)
    assert torch.equal(ones_csr_mm(m, x), m @ x)
    part = _row_slice(m, 1_000, 2_500)
    assert torch.equal(ones_csr_mm(part, x), (m @ x)[1_000:2_500])
