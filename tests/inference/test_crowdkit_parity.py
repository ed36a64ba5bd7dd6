"""kdcrowd as a drop-in for Crowd-Kit: same arguments, attributes, dtypes and numbers.

Every comparison runs Crowd-Kit (a test dependency) on the same small simulated or
hand-made frame; the frames here are our own.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from kdcrowd_core import CrowdData, CrowdDataError
from kdcrowd_core.errors import MissingColumnError
from kdcrowd_core.inference import (GLAD, DawidSkene, MajorityVote, OneCoinDawidSkene, get_method,
                                    method_defaults)
from kdcrowd_core.io import read_answers
from kdcrowd_core.simulate import simulate_crowd

ck = pytest.importorskip("crowdkit.aggregation")
ALL = [MajorityVote, DawidSkene, OneCoinDawidSkene, GLAD]


@pytest.fixture(scope="module")
def crowd() -> pd.DataFrame:
    """A simulated crowd as a Crowd-Kit frame: 120 items, 3 classes, 10 workers, string ids."""
    sim = simulate_crowd(n_items=120, n_classes=3, n_features=0, n_workers=10, answers_per_item=(3, 5),
                         archetypes={"expert": 0.5, "novice": 0.3, "spammer": 0.2}, seed=11)
    d = sim.data
    return pd.DataFrame({"task": np.char.add("t", d.item.astype(str)), "worker": np.char.add("w", d.worker.astype(str)),
                         "label": np.array(["cat", "dog", "fox"])[d.label]})


@pytest.fixture
def small() -> pd.DataFrame:
    """Int task ids, bool labels, three workers."""
    return pd.DataFrame({"task": [10, 10, 10, 20, 20, 20, 30, 30, 30, 40, 40],
                         "worker": ["a", "b", "c"] * 3 + ["a", "b"],
                         "label": [True, True, False, False, False, True, True, False, True, False, False]})


def _ck(cls, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(*args, **kw)


def _aligned(ours: pd.DataFrame, ref: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    ref = ref.reindex(index=ours.index, columns=ours.columns)
    return ours.to_numpy(dtype=float), ref.to_numpy(dtype=float)


# ------------------------------------------------------------------ numbers
def test_majority_vote_equals_crowdkit(crowd):
    ours = MajorityVote().fit(crowd)
    ref = _ck(ck.MajorityVote).fit(crowd)
    a, b = _aligned(ours.probas_, ref.probas_)
    np.testing.assert_allclose(a, b, atol=1e-12)
    pd.testing.assert_series_equal(ours.skills_, ref.skills_.sort_index(), check_index_type=False)
    tie = ours.tie_
    assert (ours.labels_[~tie] == ref.labels_.reindex(ours.labels_.index)[~tie]).all()


@pytest.mark.parametrize("n_iter", [0, 1, 5, 100])
def test_dawid_skene_defaults_reproduce_crowdkit(crowd, n_iter):
    ours = DawidSkene(n_iter).fit(crowd)
    ref = _ck(ck.DawidSkene, n_iter).fit(crowd)
    a, b = _aligned(ours.probas_, ref.probas_)
    np.testing.assert_allclose(a, b, atol=1e-4)
    a, b = _aligned(ours.errors_, ref.errors_)
    ok = ~np.isnan(b)  # Crowd-Kit has no row for a label a worker never gave
    np.testing.assert_allclose(a[ok], b[ok], atol=1e-4)
    assert np.all(a[~ok] < 1e-6)
    np.testing.assert_allclose(ours.priors_.to_numpy(), ref.priors_.reindex(ours.priors_.index).to_numpy(),
                               atol=1e-5)
    assert len(ours.loss_history_) == len(ref.loss_history_)
    np.testing.assert_allclose(ours.loss_history_, ref.loss_history_, atol=1e-4)
    assert (ours.labels_ == ref.labels_.reindex(ours.labels_.index)).all()


def test_dawid_skene_gold_as_true_labels_matches_crowdkit(crowd):
    gold = crowd.groupby("task")["label"].first().iloc[:30]
    ours = DawidSkene(20).fit(crowd, gold)
    ref = _ck(ck.DawidSkene, 20).fit(crowd, gold)
    a, b = _aligned(ours.probas_, ref.probas_)
    np.testing.assert_allclose(a, b, atol=1e-4)
    assert (ours.labels_[gold.index] == gold).all()


@pytest.mark.parametrize("strategy", ["addition", "assign"])
@pytest.mark.parametrize("n_iter", [0, 3])
def test_initial_error_strategies_match_crowdkit(crowd, strategy, n_iter):
    base = _ck(ck.DawidSkene, 5).fit(crowd).errors_
    init = base * 7 if strategy == "addition" else base
    ours = DawidSkene(n_iter, initial_error_strategy=strategy).fit(crowd, initial_error=init.copy())
    ref = _ck(ck.DawidSkene, n_iter, initial_error_strategy=strategy).fit(crowd, initial_error=init.copy())
    a, b = _aligned(ours.errors_, ref.errors_)
    ok = ~np.isnan(b)
    np.testing.assert_allclose(a[ok], b[ok], atol=1e-4)
    a, b = _aligned(ours.probas_, ref.probas_)
    np.testing.assert_allclose(a, b, atol=1e-4)
    # errors_ follows the layout of the frame passed in
    assert list(ours.errors_.index[:len(init)]) == list(init.index)


def test_initial_error_assign_checks_like_crowdkit(crowd):
    init = _ck(ck.DawidSkene, 5).fit(crowd).errors_
    with pytest.raises(ValueError, match="should be 1.0"):
        DawidSkene(initial_error_strategy="assign").fit(crowd, initial_error=init * 0.5)
    with pytest.raises(ValueError, match="All the workers"):
        DawidSkene(initial_error_strategy="assign").fit(crowd, initial_error=init.iloc[:5])
    with pytest.raises(ValueError, match="index of initial_error"):
        DawidSkene(initial_error_strategy="assign").fit(crowd, initial_error=init.reset_index(drop=True))
    zeros = init * 0
    a = DawidSkene(10, initial_error_strategy="addition").fit(crowd, initial_error=zeros)
    b = DawidSkene(10).fit(crowd)
    np.testing.assert_allclose(a.proba_array_, b.proba_array_, atol=1e-6)


def test_one_coin_defaults_reproduce_crowdkit(crowd):
    ours = OneCoinDawidSkene(30).fit(crowd)
    ref = _ck(ck.OneCoinDawidSkene, 30).fit(crowd)
    a, b = _aligned(ours.probas_, ref.probas_)
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(ours.skills_.to_numpy(), ref.skills_.reindex(ours.skills_.index).to_numpy(),
                               atol=1e-5)
    np.testing.assert_allclose(ours.loss_history_, ref.loss_history_, atol=1e-5)


def test_glad_agrees_with_crowdkit(crowd):
    ours = GLAD(n_iter=5).fit(crowd)
    ref = _ck(ck.GLAD, n_iter=5).fit(crowd)
    agree = (ours.labels_ == ref.labels_.reindex(ours.labels_.index)).mean()
    assert agree >= 0.97
    a, b = _aligned(ours.probas_, ref.probas_)
    assert np.abs(a - b).mean() < 0.02
    assert ours.alphas_.name == "alpha" and ours.betas_.name == "beta"
    rho = np.corrcoef(ours.alphas_.to_numpy(), ref.alphas_.reindex(ours.alphas_.index).to_numpy())[0, 1]
    assert rho > 0.95


# -------------------------------------------------------------------- API
@pytest.mark.parametrize("cls", ALL)
def test_dtypes_and_names_are_kept(small, cls):
    m = cls().fit(small)
    assert m.labels_.dtype == bool and m.labels_.name == "agg_label"
    assert m.labels_.index.dtype == np.int64 and m.labels_.index.name == "task"
    assert m.probas_.columns.name == "label" and m.probas_.columns.dtype == bool
    assert list(m.probas_.columns) == [False, True]
    assert m.errors_.index.names == ["worker", "label"]
    if cls is not MajorityVote:
        assert m.priors_.name == "prior" and m.priors_.index.name == "label"
    if cls in (MajorityVote, OneCoinDawidSkene):
        assert m.skills_.name == "skill" and m.skills_.index.name == "worker"


@pytest.mark.parametrize("cls", ALL)
def test_zero_iterations_and_empty_input(crowd, cls):
    if cls is not MajorityVote:
        m = cls(n_iter=0).fit(crowd)
        assert m.labels_.index.equals(m.probas_.index) and len(m.labels_) == crowd.task.nunique()
    empty = cls().fit(pd.DataFrame([], columns=["task", "worker", "label"]))
    assert empty.probas_.empty and empty.labels_.empty and empty.labels_.name == "agg_label"


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("drop", ["task", "worker", "label"])
def test_missing_column_raises_keyerror(cls, drop):
    df = pd.DataFrame({"task": ["t1"], "worker": ["w1"], "label": ["no"]}).drop(columns=drop)
    with pytest.raises(KeyError, match=drop) as e:
        cls().fit_predict(df)
    assert isinstance(e.value, CrowdDataError) and isinstance(e.value, MissingColumnError)


def test_fit_predict_returns_the_fitted_objects(crowd):
    mv = MajorityVote()
    assert mv.fit_predict_proba(crowd) is mv.probas_
    ds = DawidSkene(5)
    gold = crowd.groupby("task")["label"].first().iloc[:5]
    assert ds.fit_predict(crowd, gold) is ds.labels_


def test_majority_vote_skills_policies(crowd):
    ref_skills = _ck(ck.MajorityVote).fit(crowd).skills_
    ours = MajorityVote().fit(crowd, skills=ref_skills)
    ref = _ck(ck.MajorityVote).fit(crowd, skills=ref_skills)
    a, b = _aligned(ours.probas_, ref.probas_)
    np.testing.assert_allclose(a, b, atol=1e-12)
    part = ref_skills.drop(ref_skills.index[0])
    with pytest.raises(ValueError, match="missing"):
        MajorityVote().fit(crowd, part)
    dropped = MajorityVote(on_missing_skill="ignore").fit(crowd, part)
    assert ref_skills.index[0] not in dropped.skills_.index
    with pytest.raises(ValueError, match="no workers with known skills"):
        MajorityVote(on_missing_skill="ignore").fit(crowd, pd.Series([], dtype=float))
    big = MajorityVote(on_missing_skill="value", default_skill=1e6).fit(crowd, part)
    mine = crowd[crowd.worker == ref_skills.index[0]]
    assert (big.labels_[mine.task].to_numpy() == mine.label.to_numpy()).all()
    with pytest.raises(ValueError, match="default_skill"):
        MajorityVote(default_skill=1.0).fit(crowd, part)


def test_crowdkit_metrics_accept_our_fitted_models(crowd):
    from crowdkit.metrics.data import consistency
    mv = MajorityVote().fit(crowd)
    ours = consistency(crowd, mv.skills_)
    ref = consistency(crowd, _ck(ck.MajorityVote).fit(crowd).skills_)
    assert ours == pytest.approx(ref)


def test_single_class_crowd_aggregates_like_crowdkit():
    df = pd.DataFrame({"task": ["a", "a", "b"], "worker": ["x", "y", "x"], "label": ["yes", "yes", "yes"]})
    for cls in ALL:
        m = cls().fit(df)
        assert (m.labels_ == "yes").all() and np.allclose(m.probas_["yes"], 1.0)


# -------------------------------------------------------- registry defaults
def test_registry_carries_product_defaults_while_classes_match_crowdkit():
    assert DawidSkene().alpha == 0.0 and OneCoinDawidSkene().alpha == 0.0
    assert get_method("dawid_skene").alpha == 0.01 and method_defaults("ds") == {"alpha": 0.01}
    assert get_method("one_coin").alpha == 1.0
    assert get_method("dawid_skene", alpha=0.0).alpha == 0.0
    for name in ("majority_vote", "dawid_skene", "one_coin", "glad"):
        assert get_method(name) is not None


# ----------------------------------------------- many answers per item, float32
def _overlap(n_workers: int) -> CrowdData:
    """3 tasks, each answered by every worker; worker w says "no" on task (w mod 3), else "yes"."""
    w = np.repeat(np.arange(n_workers), 3)
    t = np.tile(np.arange(3), n_workers)
    lab = np.where((w - t) % 3 == 0, 0, 1)
    return CrowdData.from_arrays(t, w, lab, n_items=3, n_workers=n_workers, classes=["no", "yes"])


def test_thirty_thousand_answers_per_item_do_not_collapse_in_float32():
    d = _overlap(30_000)
    m = DawidSkene(20).fit(d)
    np.testing.assert_allclose(m.proba_array_[:, 0], 1 / 3, atol=0.005)
    assert (m.labels_ == "yes").all()
    np.testing.assert_allclose(m.prior_, [1 / 3, 2 / 3], atol=0.005)
    # with smoothing the model itself moves, but float32 agrees with float64: no silent collapse
    s32 = DawidSkene(20, alpha=0.01).fit(d)
    s64 = DawidSkene(20, alpha=0.01, dtype="float64").fit(d)
    np.testing.assert_allclose(s32.proba_array_, s64.proba_array_, atol=0.01)
    assert s32.proba_array_[:, 0].max() < 0.5


# ---------------------------------------------------------------- policies
def test_duplicate_answers_count_like_crowdkit():
    # w1 answers t1 twice with "dog": counting both, dog wins 2-1 (keeping one: a 1-1 tie -> "cat")
    df = pd.DataFrame({"task": ["t1"] * 4 + ["t2"] * 2, "worker": ["w1", "w1", "w2", "w3", "w1", "w2"],
                       "label": ["dog", "dog", "cat", None, "cat", "cat"]})
    ours = MajorityVote().fit(df)
    ref = _ck(ck.MajorityVote).fit(df.dropna())
    assert ours.labels_["t1"] == ref.labels_["t1"] == "dog"
    rep = ours.data_.report[0]
    assert "1 repeated (item, worker) answers all count" in " ".join(rep.notes) and rep.missing_labels == 1
    for cls, ref_cls in ((DawidSkene, ck.DawidSkene), (OneCoinDawidSkene, ck.OneCoinDawidSkene)):
        a, b = _aligned(cls(10).fit(df).probas_, _ck(ref_cls, 10).fit(df.dropna()).probas_)
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_duplicate_policies_in_crowd_data_and_readers():
    df = pd.DataFrame({"task": ["t1", "t1", "t1", "t2"], "worker": ["w1", "w1", "w2", "w2"],
                       "label": ["a", "b", "b", "a"]})
    assert CrowdData.from_frame(df).n_answers == 4
    last = CrowdData.from_frame(df, duplicates="last").to_frame()
    first = CrowdData.from_frame(df, duplicates="first").to_frame()
    assert last[last.worker == "w1"].label.tolist() == ["b"] and first[first.worker == "w1"].label.tolist() == ["a"]
    with pytest.raises(CrowdDataError, match="duplicates must be one of"):
        CrowdData.from_frame(df, duplicates="some")
    assert "dropped, the last one" in " ".join(CrowdData.from_frame(df, duplicates="last").report[0].notes)
    d = read_answers(df.to_csv(index=False).encode(), name="x.csv")
    assert d.n_answers == 4 and "all count" in d.report[0].to_text()


def test_ties_go_to_the_first_sorted_label_whatever_the_row_order():
    df = pd.DataFrame({"task": ["a", "a", "b", "b", "c", "c", "c"], "worker": ["x", "y", "x", "y", "x", "y", "z"],
                       "label": ["zebra", "ant", "ant", "zebra", "mole", "ant", "zebra"]})
    want = {"a": "ant", "b": "ant", "c": "ant"}
    for seed in range(3):
        shuffled = df.sample(frac=1, random_state=seed)
        assert MajorityVote().fit_predict(shuffled).to_dict() == want
        assert DawidSkene(0).fit_predict(shuffled).to_dict() == want
    ints = pd.DataFrame({"task": [1, 1], "worker": [1, 2], "label": [10, 2]})
    assert MajorityVote().fit_predict(ints)[1] == 2  # numbers compare as numbers


def test_whitespace_in_ids_is_kept_on_the_crowdkit_face():
    df = pd.DataFrame({"task": [" t1", "t1", "t1"], "worker": ["w1", "w1", " w1"], "label": ["a", "b", "b"]})
    m = MajorityVote().fit(df)
    assert set(m.labels_.index) == {" t1", "t1"} and set(m.skills_.index) == {"w1", " w1"}
    assert not any("repeated" in n for n in m.data_.report[0].notes)
