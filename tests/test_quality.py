"""Per-item quality, relabel-next and worker actions (kdcrowd_core.quality)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kdcrowd_core import quality
from kdcrowd_core.data import CrowdData
from kdcrowd_core.errors import CrowdDataError
from kdcrowd_core.inference import get_method
from kdcrowd_core.simulate import simulate_crowd


def _auroc(score_wrong: np.ndarray, wrong: np.ndarray) -> float:
    """AUROC of ``score_wrong`` (higher = more likely wrong) for finding ``wrong`` items (ties count half)."""
    s = np.asarray(score_wrong, dtype=float)
    pos, neg = s[wrong], s[~wrong]
    gt = (pos[:, None] > neg[None, :]).mean()
    eq = (pos[:, None] == neg[None, :]).mean()
    return float(gt + eq / 2)


@pytest.fixture(scope="module")
def sim():
    s = simulate_crowd(n_items=1200, n_classes=4, n_workers=40, answers_per_item=(1, 5), gold_fraction=0.5,
                       n_features=8, instance_noise=0.3, seed=3)
    ds = get_method("dawid_skene", use_gold=False).fit(s.data)     # gold only measures
    return s, ds


def test_intervals():
    lo, hi = quality.accuracy_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)   # Wilson, 95 %
    assert np.isnan(quality.accuracy_interval(0, 0)[0])
    lo, hi = quality.beta_interval(np.array([9.0, 90.0]), np.array([3.0, 30.0]))
    assert lo[0] < 0.75 < hi[0] and lo[1] < 0.75 < hi[1]
    assert hi[0] - lo[0] > 2 * (hi[1] - lo[1])           # ten times the answers: a much narrower interval


def test_item_quality_columns_sorted_and_ranks_wrong_labels_first(sim):
    s, ds = sim
    t = quality.item_quality(s.data, ds.proba_array_)
    assert len(t) == s.data.n_items and t.index.name == "item"
    for col in ("consensus", "quality", "agreement", "answers", "votes", "method_confidence", "reason", "gold",
                "consensus_correct") + tuple(f"prob_{c}" for c in s.data.classes):
        assert col in t.columns, col
    assert t["quality"].between(0, 1).all()
    assert t["answers"].sum() == s.data.n_answers
    # likely-wrong first: the first tenth is far more often wrong than the last tenth
    truth = pd.Series(s.data.classes.take(s.truth), index=s.data.item_ids).reindex(t.index)
    wrong = (t["consensus"] != truth).to_numpy()
    n = len(t) // 10
    assert wrong[:n].mean() > 3 * max(wrong[-n:].mean(), 0.01)
    # better than vote agreement and than the method's own confidence at finding wrong labels
    auc_q = _auroc(-t["quality"].to_numpy(), wrong)
    assert auc_q > _auroc(-t["agreement"].fillna(0).to_numpy(), wrong) + 0.05
    assert auc_q > _auroc(-t["method_confidence"].to_numpy(), wrong)
    # calibrated on the gold items: mean quality close to the consensus accuracy there
    g = t["consensus_correct"].notna()
    assert abs(t.loc[g, "quality"].mean() - t.loc[g, "consensus_correct"].astype(float).mean()) < 0.05
    assert t.attrs["calibration"].startswith("gold")


def test_label_free_calibration_and_reasons():
    # a tiny hand-made crowd: item a unanimous, b split 2-2, c one answer
    df = pd.DataFrame({"task": ["a"] * 4 + ["b"] * 4 + ["c"], "worker": ["w1", "w2", "w3", "w4"] * 2 + ["w1"],
                       "label": ["x"] * 4 + ["x", "x", "y", "y", "y"]})
    data = CrowdData.from_frame(df)
    mv = get_method("mv").fit(data)
    t = quality.item_quality(data, mv.proba_array_)
    assert t.attrs["calibration"] == quality.UNCHECKED_CALIBRATION      # 2 items with two answers: too few
    assert t.index[-1] == "a" and t.loc["a", "reason"] == ""
    assert "contested" in t.loc["b", "reason"] and t.loc["b", "agreement"] == 0.5
    assert t.loc["a", "quality"] > t.loc["b", "quality"]
    assert t.loc["c", "votes"] == "y×1" and t.loc["b", "votes"] in ("x×2, y×2", "y×2, x×2")


def test_calibration_says_when_nothing_could_check_it():
    s = simulate_crowd(n_items=120, n_classes=3, n_workers=8, answers_per_item=(2, 3), gold_fraction=0.0, seed=3)
    ds = get_method("dawid_skene").fit(s.data)
    assert quality.item_quality(s.data, ds.proba_array_).attrs["calibration"] == "held-out answers"
    # one answer per item: every worker looks right, nothing can be held out
    first = np.unique(s.data.item, return_index=True)[1]
    one = CrowdData.from_arrays(s.data.item[first], s.data.worker[first], s.data.label[first],
                                n_items=s.data.n_items, n_workers=s.data.n_workers, n_classes=3)
    t = quality.item_quality(one, get_method("dawid_skene").fit(one).proba_array_)
    assert t.attrs["calibration"] == quality.UNCHECKED_CALIBRATION
    assert "order only" in t.attrs["calibration"]


def test_run_columns_reasons_and_fixed_broke():
    df = pd.DataFrame({"task": ["a", "a", "b", "b", "c", "c"], "worker": ["w1", "w2"] * 3,
                       "label": ["x", "x", "y", "y", "x", "y"]})
    data = CrowdData.from_frame(df)
    gold = pd.Series({"a": "x", "b": "x", "c": "y"})
    data = data.with_gold(gold)
    mv = get_method("mv").fit(data)
    eye = np.eye(2)
    teacher = eye[[0, 1, 0]]      # a right, b wrong, c wrong
    student = eye[[1, 0, 1]]      # a wrong (broke), b right (fixed), c right (fixed)
    run = quality.RunView(model_proba=student * 0.8 + 0.1, model_source="test", label_proba=student,
                          label_source="student", teacher=teacher, student=student, stage2=teacher)
    t = quality.item_quality(data, mv.proba_array_, run)
    for col in ("model_label", "model_confidence", "model_prob_consensus", "teacher", "student", "stage2",
                "fixed_student", "broke_student", "fixed_stage2", "broke_stage2", "model_prob_x", "model_prob_y"):
        assert col in t.columns, col
    assert t.loc["a", "broke_student"] and not t.loc["a", "fixed_student"]
    assert t.loc["b", "fixed_student"] and t.loc["c", "fixed_student"]
    assert not t["fixed_stage2"].any() and not t["broke_stage2"].any()
    assert "model disagrees with crowd" in t.loc["a", "reason"]
    assert "teacher and student disagree" in t.loc["b", "reason"]


def test_relabel_next_prefers_uncertain_items_and_checks_budget(sim):
    s, ds = sim
    nxt = quality.relabel_next(s.data, ds.proba_array_, 50)
    assert list(nxt["rank"]) == list(range(1, 51))
    assert (np.diff(nxt["priority"].to_numpy()) <= 1e-9).all()                  # highest priority first
    votes = nxt["agreement"].fillna(0) * nxt["answers"]
    np.testing.assert_allclose(nxt["priority"], nxt["expected_gain"] + quality.RELABEL_WRONG_WEIGHT
                               * (1 - nxt["quality"]) + quality.RELABEL_CONTESTED_WEIGHT
                               * (1 - (votes + 1) / (nxt["answers"] + 2)), atol=1e-9)
    # smoothed: one answer for the label is less settled than two of two, a split is contested, none of two most
    np.testing.assert_allclose(quality.relabel_contested(np.array([1.0, 1.0, 0.5, 0.0, np.nan]),
                                                         np.array([1, 2, 2, 2, 0])), [1 / 3, 1 / 4, 1 / 2, 3 / 4, 1 / 2])
    assert (nxt["expected_gain"] > -1e-9).all()        # the chosen items: an answer can only help in expectation
    assert not s.data.gold_mask[s.data.item_ids.get_indexer(nxt.index)].any()   # gold items skipped
    t = quality.item_quality(s.data, ds.proba_array_)
    assert nxt["quality"].mean() < t["quality"].mean() - 0.2
    with pytest.raises(CrowdDataError, match="larger than"):
        quality.relabel_next(s.data, ds.proba_array_, s.data.n_items)
    with pytest.raises(CrowdDataError, match="at least 1"):
        quality.relabel_next(s.data, ds.proba_array_, 0)
    tasks = quality.relabel_task_list(nxt, pd.Series({nxt.index[0]: "some text"}))
    assert list(tasks.columns) == ["item_id", "content", "current_label", "quality", "answers", "reason"]
    assert tasks.loc[0, "content"] == "some text" and tasks.loc[1, "content"] == ""


def test_relabel_next_puts_unsupported_labels_before_unanimous_items():
    """Two answers per item: an item whose consensus no answer gave (agreement 0) comes before every unanimous
    item, which one more answer cannot turn (the contested weight outweighs the model's over-confidence)."""
    s = simulate_crowd(n_items=400, n_classes=4, n_workers=30, answers_per_item=(2, 2), n_features=2,
                       instance_noise=0.3, seed=1)
    d = s.data
    q = get_method("dawid_skene", use_gold=False).fit(d).proba_array_.copy()
    votes = np.bincount(d.item * 4 + d.label, minlength=d.n_items * 4).reshape(-1, 4)
    for i in np.random.default_rng(1).choice(d.n_items, 20, replace=False):   # a label no answer gave wins
        q[i] = 0.4 / 3
        q[i, np.flatnonzero(votes[i] == 0)[0]] = 0.6
    order = quality.relabel_next(d, q, d.n_items, exclude_gold=False)["agreement"].to_numpy()
    assert (order == 0).sum() >= 20 and (order == 1).sum() > 100
    assert np.flatnonzero(order == 0).max() < np.flatnonzero(order == 1).min()


def test_relabel_next_beats_random_on_a_simulated_crowd():
    """One more (simulated) answer on the chosen items: relabel-next gains more accuracy than random picks."""
    s = simulate_crowd(n_items=800, n_classes=4, n_workers=30, answers_per_item=(1, 3), n_features=4, seed=5)
    d = s.data
    ds = get_method("dawid_skene", use_gold=False).fit(d)
    budget = 120
    rng = np.random.default_rng(0)
    T = s.true_matrices
    act = d.answers_per_worker().astype(float)

    def gain(items):
        """Accuracy gained when each item gets one more answer from an activity-weighted worker new to it."""
        workers = []
        for i in items:
            seen = set(d.worker[d.item == i].tolist())
            p = np.array([0.0 if w in seen else a for w, a in enumerate(act)])
            workers.append(rng.choice(d.n_workers, p=p / p.sum()))
        workers = np.array(workers)
        lab = np.array([rng.choice(d.n_classes, p=T[w, s.truth[i]]) for i, w in zip(items, workers)])
        d2 = CrowdData.from_arrays(np.r_[d.item, items], np.r_[d.worker, workers], np.r_[d.label, lab],
                                   n_items=d.n_items, n_workers=d.n_workers, n_classes=d.n_classes)
        acc2 = (get_method("dawid_skene", use_gold=False).fit(d2).proba_array_.argmax(1) == s.truth).mean()
        return acc2 - (ds.proba_array_.argmax(1) == s.truth).mean()

    chosen = d.item_ids.get_indexer(quality.relabel_next(d, ds.proba_array_, budget).index)
    random = rng.choice(d.n_items, size=budget, replace=False)
    assert gain(chosen) > gain(random) + 0.01


def test_worker_report_intervals_flags_and_exports(sim):
    s, ds = sim
    r = quality.worker_report(s.data, ds.proba_array_, ds.worker_matrices_)
    assert len(r) == s.data.n_workers                     # never filtered
    assert ((r["accuracy_low"] <= r["accuracy"]) & (r["accuracy"] <= r["accuracy_high"])).all()
    for col in ("answers", "method_accuracy", "agreement", "spammer_score", "gold_accuracy", "gold_accuracy_low",
                "flags", "action"):
        assert col in r.columns
    few = r["answers"] < 10
    assert (r.loc[few, "action"] == "").all() and r.loc[few, "flags"].str.contains("too few").all()
    width = r["accuracy_high"] - r["accuracy_low"]
    assert width[r["answers"] >= 100].mean() < width[r["answers"] < 20].mean()
    # the simulator's spammers get blocked, its experts don't
    wf = s.workers_frame()
    arche = pd.Series(wf["archetype"].to_numpy(), index=wf.index.astype(str)).reindex(r.index.astype(str))
    blocked = r["action"] == "block"
    assert blocked[arche.isin(["spammer", "one_answer_spammer"]).to_numpy() & (r["answers"] >= 10)].mean() > 0.5
    assert not blocked[(arche == "expert").to_numpy()].any()
    # thresholds change the flags
    strict = quality.apply_flags(r, quality.WorkerThresholds(min_answers=0, block_accuracy=0.99))
    assert (strict["action"] == "block").sum() > blocked.sum()
    lax = quality.apply_flags(r, quality.WorkerThresholds(min_answers=10_000))
    assert (lax["action"] == "").all()
    b = quality.block_list(r, "mturk")
    assert list(b.columns) == ["Worker ID", "UPDATE-BlockStatus", "BLOCK_REASON"] and len(b) == blocked.sum()
    assert (b["UPDATE-BlockStatus"] == "Block").all()
    assert list(quality.block_list(r, "toloka").columns) == ["user_id", "scope", "private_comment"]
    bo = quality.bonus_list(r, "toloka", amount=2)
    assert list(bo.columns) == ["user_id", "amount", "public_title", "public_message"]
    assert len(bo) == (r["action"] == "bonus").sum() and (bo["amount"] == "2.00").all()
    assert list(quality.bonus_list(r, "mturk").columns) == ["WorkerId", "AssignmentId", "BonusAmount", "Reason"]
    with pytest.raises(CrowdDataError):
        quality.block_list(r, "upwork")


def test_work_seconds_from_mturk_file(tmp_path):
    p = tmp_path / "batch.csv"
    p.write_text("HITId,WorkerId,WorkTimeInSeconds,Input.item,Answer.label\n"
                 "h1,A1,10,i1,cat\nh2,A1,30,i2,dog\nh3,B2,5,i1,cat\n")
    s = quality.work_seconds_from_file(p)
    assert s["A1"] == 20 and s["B2"] == 5
    q = tmp_path / "long.csv"
    q.write_text("item,worker,label\ni1,A1,cat\n")
    assert quality.work_seconds_from_file(q) is None


def _shared_distractor_crowd(hard_share: float, seed: int = 0):
    """8 answers per item; on 'hard' items half the answers go to one shared wrong class (workers err together)."""
    rng = np.random.default_rng(seed)
    N, K, R, n = 400, 4, 20, 8
    truth = rng.integers(0, K, N)
    hard = rng.random(N) < hard_share
    distractor = (truth + rng.integers(1, K, N)) % K
    item = np.repeat(np.arange(N), n)
    worker = np.concatenate([rng.choice(R, n, replace=False) for _ in range(N)])
    label = np.where(rng.random(item.size) < 0.8, truth[item], rng.integers(0, K, item.size))
    label = np.where(hard[item] & (rng.random(item.size) < 0.5), distractor[item], label)
    return CrowdData.from_arrays(item, worker, label, n_items=N, n_workers=R, n_classes=K), truth


def test_overdispersion_found_when_workers_err_together_and_not_otherwise():
    indep, truth0 = _shared_distractor_crowd(0.0)
    q0 = get_method("dawid_skene", use_gold=False).fit(indep).proba_array_
    assert quality.answer_overdispersion(indep, q0)[0] == 0.0
    assert quality.crowd_posterior(indep, q0).overdispersion == 0.0
    data, truth = _shared_distractor_crowd(0.3)
    q = get_method("dawid_skene", use_gold=False).fit(data).proba_array_
    rho, conc = quality.answer_overdispersion(data, q)
    assert 0.03 < rho < 0.5 and rho == pytest.approx(1 / (1 + conc))
    cons, rows = q.argmax(1), np.arange(data.n_items)
    accuracy = (cons == truth).mean()
    post = quality.crowd_posterior(data, q)
    indep_post = quality.crowd_posterior(data, q, overdispersion=0.0)
    assert post.overdispersion == rho
    # the correlated answers count for less: less over-confident, closer to the true accuracy
    assert abs(post.proba[rows, cons].mean() - accuracy) < abs(indep_post.proba[rows, cons].mean() - accuracy) - 0.03


def test_ranking_averages_the_method_with_plain_dawid_skene(sim):
    s, ds = sim
    default = quality.quality_scores(s.data, ds.proba_array_)
    same = quality.quality_scores(s.data, ds.proba_array_, reference=ds.proba_array_)
    np.testing.assert_allclose(default.rank_score, same.rank_score, atol=1e-9)     # the default reference is DS
    mv = get_method("mv").fit(s.data).proba_array_
    mixed = quality.quality_scores(s.data, ds.proba_array_, reference=mv)
    assert not np.allclose(mixed.rank_score, default.rank_score)
    with pytest.raises(CrowdDataError, match="reference posterior"):
        quality.quality_scores(s.data, ds.proba_array_, reference=mv[:10])


def test_overdispersion_refit_sees_the_correlation_the_consensus_hides():
    """The soft labels' answer distribution counts each item's own answers towards its consensus (too diagonal),
    so it under-states how much an item's answers err together; the EM refit of the mixture does not."""
    higher = 0
    for seed in range(4):
        data, truth = _shared_distractor_crowd(0.7, seed)
        q = get_method("dawid_skene", use_gold=False).fit(data).proba_array_
        refit = quality.answer_overdispersion(data, q)[0]
        plain = quality.answer_overdispersion(data, q, refit=False)[0]
        assert refit >= plain
        higher += refit > plain
        cons, rows = q.argmax(1), np.arange(data.n_items)
        accuracy = (cons == truth).mean()
        gap_refit = abs(quality.crowd_posterior(data, q, overdispersion=refit).proba[rows, cons].mean() - accuracy)
        gap_plain = abs(quality.crowd_posterior(data, q, overdispersion=plain).proba[rows, cons].mean() - accuracy)
        assert gap_refit <= gap_plain + 1e-9
    assert higher >= 3


def test_label_free_calibration_tempers_on_answers_the_model_never_saw():
    """Sparse answers (2-3 per item, 8 classes) and workers erring together: the in-sample choice of the tempering
    keeps the posteriors over-confident; the refits on held-out answers bring the mean quality closer to the
    consensus accuracy, and their choice of ranking finds the wrong labels better than vote agreement (seed 1:
    the fixed ranking did worse than agreement)."""
    for seed in (1, 2):
        s = simulate_crowd(n_items=1500, n_classes=8, n_workers=60, answers_per_item=(2, 3), instance_noise=0.8,
                           n_features=0, seed=seed)
        q = get_method("hierarchical_dawid_skene", use_gold=False).fit(s.data).proba_array_
        new = quality.quality_scores(s.data, q)
        old = quality.quality_scores(s.data, q, heldout_refit=False)
        accuracy = (q.argmax(1) == s.truth).mean()
        assert new.posterior.tau < old.posterior.tau
        assert abs(new.quality.mean() - accuracy) < abs(old.quality.mean() - accuracy) - 0.03
        wrong = q.argmax(1) != s.truth
        auc_new, auc_old = _auroc(-new.rank_score, wrong), _auroc(-old.rank_score, wrong)
        auc_agree = _auroc(-np.nan_to_num(new.agreement), wrong)
        assert auc_new > auc_agree + 0.01 and auc_new >= auc_old
        if seed == 1:
            assert auc_old < auc_agree and new.rank_weight < quality.RANK_POSTERIOR_WEIGHT
    tiny = CrowdData.from_arrays(np.arange(6), np.zeros(6, dtype=int), np.arange(6) % 2, n_items=6,
                                 n_workers=1, n_classes=2)
    tau, curve = quality.heldout_refit_tau(tiny)                            # no item with two answers: no choice
    assert np.isnan(tau) and curve.size == 0


def test_refitted_tempering_keeps_the_consensus_the_most_probable_class():
    """Strong tempering of the answers with the class shares untempered lets a frequent class outvote the answers;
    the calibrated posterior tempers both, so its most probable class stays the consensus."""
    rng = np.random.default_rng(0)
    N, K, R = 600, 4, 15
    truth = rng.choice(K, N, p=[0.55, 0.25, 0.1, 0.1])
    item = np.repeat(np.arange(N), 6)
    worker = np.concatenate([rng.choice(R, 6, replace=False) for _ in range(N)])
    hard = rng.random(N) < 0.5                      # half the items: the workers split between truth and a distractor
    distractor = (truth + rng.integers(1, K, N)) % K
    label = np.where(rng.random(item.size) < 0.75, truth[item], rng.integers(0, K, item.size))
    label = np.where(hard[item] & (rng.random(item.size) < 0.4), distractor[item], label)
    data = CrowdData.from_arrays(item, worker, label, n_items=N, n_workers=R, n_classes=K)
    q = get_method("dawid_skene", use_gold=False).fit(data).proba_array_
    sc = quality.quality_scores(data, q)
    cons = q.argmax(1)
    assert sc.posterior.prior_tempered and sc.posterior.tau < 1.0
    untempered = quality.crowd_posterior(data, q, tau=sc.posterior.tau, overdispersion=sc.posterior.overdispersion)
    moved = (sc.posterior.proba.argmax(1) != cons).mean()
    assert moved <= 0.02 and moved < (untempered.proba.argmax(1) != cons).mean()


def test_auroc_counts_matches_ranks_with_ties_and_resampling():
    rng = np.random.default_rng(0)
    score = rng.integers(0, 5, 300).astype(float)            # many ties
    y = (rng.random(300) < 0.3 + 0.1 * score).astype(float)
    pick = rng.integers(0, 300, 300)
    counts = np.vstack([np.ones(300), np.bincount(pick, minlength=300)])
    got = quality._auroc_counts(score, y, counts)
    assert got[0] == pytest.approx(_auroc(score, y.astype(bool)))
    assert got[1] == pytest.approx(_auroc(score[pick], y[pick].astype(bool)))     # = the resampled rows


def test_rank_weight_moves_only_on_clear_evidence():
    rng = np.random.default_rng(1)
    agree = rng.random(2000)
    y = rng.random(2000) < agree                              # agreement predicts, the posterior is noise
    p = rng.random(2000)
    w = quality._choose_rank_weight(p, agree, y, np.random.default_rng(0))
    assert w < 0.5
    y2 = rng.random(2000) < p                                 # the posterior predicts: keep the default
    assert quality._choose_rank_weight(p, agree, y2, np.random.default_rng(0)) == quality.RANK_POSTERIOR_WEIGHT
    few = slice(0, quality.RANK_WEIGHT_MIN_ANSWERS - 1)      # too few held-out answers: the default
    assert quality._choose_rank_weight(p[few], agree[few], y[few], np.random.default_rng(0)) \
        == quality.RANK_POSTERIOR_WEIGHT


def test_heldout_choice_strength_and_weight():
    s = simulate_crowd(n_items=800, n_classes=4, n_workers=20, answers_per_item=(3, 5), gold_fraction=0.0, seed=2)
    choice = quality.heldout_choice(s.data)
    assert choice.strength / 4 in quality.RANK_STRENGTHS
    assert choice.weight in (*quality.RANK_WEIGHTS, quality.RANK_POSTERIOR_WEIGHT)
    tau, curve = quality.heldout_refit_tau(s.data)
    assert (tau, curve.tolist()) == (choice.tau, choice.curve.tolist())
    sc = quality.quality_scores(s.data, get_method("dawid_skene").fit(s.data).proba_array_)
    assert (sc.rank_weight, sc.rank_strength) == (choice.weight, choice.strength)
