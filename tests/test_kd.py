"""The KD-Crowd trainer end to end on tiny simulated crowds (fixed seeds, CPU)."""
from __future__ import annotations

import dataclasses
import json
import threading

import numpy as np
import pandas as pd
import pytest
import torch

from kdcrowd_core.errors import CrowdDataError
from kdcrowd_core.kd import (DISTILL_LOSSES, ROBUST_METHODS, TEACHERS, KDConfig, KDCrowd, KDResult,
                            TrainingCancelled)
from kdcrowd_core.simulate import simulate_crowd

EVENT_KEYS = {"stage", "epoch", "n_epochs", "loss", "train_accuracy", "valid_accuracy", "elapsed",
              "stage_progress", "overall_progress", "message", "round"}


@pytest.fixture(scope="module")
def sim():
    s = simulate_crowd(n_items=400, n_classes=3, n_features=6, n_workers=25, answers_per_item=(2, 4),
                       n_test=300, overlap=1.3, seed=3)
    data = dataclasses.replace(s.data, gold=s.truth.copy())
    return s, data


def tiny(**kw) -> KDConfig:
    base = dict(epochs_teacher=3, epochs_student=3, epochs_stage2=2, cross_fit_folds=0, hidden=16,
                batch_size=128, seed=0, device="cpu")
    base.update(kw)
    return KDConfig(**base)


def test_student_beats_a_barely_trained_teacher(sim):
    """A teacher whose classifier saw one epoch at a tiny learning rate predicts test items badly;
    its posteriors still carry the answers, so the student distilled from them must do much better."""
    s, data = sim
    cfg = KDConfig(teacher="crowdlayer-mw", epochs_teacher=1, lr=1e-3, epochs_student=30, epochs_stage2=0,
                   cross_fit_folds=0, batch_size=64, hidden=32, seed=0, device="cpu", robust="none")
    events = []
    res = KDCrowd(cfg).fit(data, test=(s.test_features, s.test_truth, s.test_ids), callback=events.append)
    acc = res.test_accuracy
    assert acc["student"] > acc["teacher"] + 0.1, acc
    assert acc["student"] > 0.75, acc
    # events: keys, stages in order, progress monotone and complete
    assert all(set(e) == EVENT_KEYS for e in events)
    stages = [e["stage"] for e in events]
    assert stages[0] == "mv" and stages[1] == "ds" and stages[-1] == "done"
    prog = [e["overall_progress"] for e in events]
    assert prog == sorted(prog) and prog[-1] == 1.0
    assert events[-1]["stage_progress"] == 1.0


def test_result_contents(sim):
    s, data = sim
    res = KDCrowd(tiny()).fit(data, test=(s.test_features, s.test_truth, s.test_ids))
    N, K, R = data.n_items, data.n_classes, data.n_workers
    assert set(res.probas) == {"mv", "ds", "teacher", "student", "stage2"}
    for p in res.probas.values():
        assert p.shape == (N, K) and np.allclose(p.sum(1), 1.0)
    assert set(res.worker_matrices) == {"ds", "teacher", "stage2"}
    for T in res.worker_matrices.values():
        assert T.shape == (R, K, K) and np.allclose(T.sum(2), 1.0, atol=1e-5)
    lf = res.labels_frame()
    assert list(lf.columns) == ["mv", "ds", "teacher", "student", "stage2", "mv_confidence", "ds_confidence",
                                "teacher_confidence", "student_confidence", "stage2_confidence"]
    assert lf.index.equals(pd.Index(data.item_ids)) and set(lf["stage2"]) <= set(data.classes)
    assert set(res.train_accuracy) == {"mv", "ds", "teacher", "student", "stage2"}
    # the classifiers, and the same head trained on MV / DS labels as test baselines (kd/baselines.py)
    assert set(res.test_accuracy) == {"teacher", "student", "stage2", "mv", "ds"}
    assert res.test_probas["stage2"].shape == (300, K) and res.test_probas["mv"].shape == (300, K)
    assert res.summary()["test_accuracy"]["ds"] == res.test_accuracy["ds"]
    assert {"mv", "ds", "teacher", "student", "stage2", "total"} <= set(res.timings)
    json.dumps(res.summary())
    assert res.device == "cpu"


def test_cancellation_from_the_callback(sim):
    _, data = sim
    ev = threading.Event()
    seen = []

    def cb(e):
        seen.append(e)
        if len(seen) == 4:
            ev.set()

    with pytest.raises(TrainingCancelled):
        KDCrowd(tiny(epochs_teacher=50)).fit(data, callback=cb, cancel=ev)
    assert len(seen) == 4


def test_cancellation_from_another_thread(sim):
    _, data = sim
    ev = threading.Event()
    timer = threading.Timer(0.3, ev.set)
    timer.start()
    with pytest.raises(TrainingCancelled):
        KDCrowd(tiny(epochs_teacher=100000)).fit(data, cancel=ev)
    timer.cancel()


def test_save_load_round_trip(sim, tmp_path):
    s, data = sim
    tr = KDCrowd(tiny())
    res = tr.fit(data, test=(s.test_features, s.test_truth, s.test_ids))
    tr.save(tmp_path / "run")
    back = KDCrowd.load(tmp_path / "run")
    for m in ("teacher", "student", "stage2"):
        np.testing.assert_allclose(back.predict_proba(s.test_features, model=m),
                                   tr.predict_proba(s.test_features, model=m), rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(back.predict(s.test_features, model=m), tr.predict(s.test_features, model=m))
    r2 = KDResult.load(tmp_path / "run")
    assert r2.config == res.config
    assert r2.item_ids.equals(res.item_ids) and r2.classes.equals(res.classes)
    assert r2.worker_ids.equals(res.worker_ids) and list(r2.test_ids) == list(res.test_ids)
    for k in res.probas:
        np.testing.assert_array_equal(r2.probas[k], res.probas[k])
    for k in res.worker_matrices:
        np.testing.assert_array_equal(r2.worker_matrices[k], res.worker_matrices[k])
    assert r2.train_accuracy == res.train_accuracy and r2.history == res.history
    pd.testing.assert_frame_equal(r2.labels_frame(), res.labels_frame())
    with pytest.raises(CrowdDataError):
        KDResult.load(tmp_path / "nothing")


def test_deterministic_on_cpu(sim):
    _, data = sim
    a = KDCrowd(tiny(cross_fit_folds=2)).fit(data)
    b = KDCrowd(tiny(cross_fit_folds=2)).fit(data)
    for k in a.probas:
        np.testing.assert_array_equal(a.probas[k], b.probas[k])
    c = KDCrowd(tiny(cross_fit_folds=2, seed=1)).fit(data)
    assert not np.array_equal(a.probas["student"], c.probas["student"])


@pytest.mark.parametrize("teacher", TEACHERS)
def test_every_teacher_runs(sim, teacher):
    _, data = sim
    res = KDCrowd(tiny(teacher=teacher, epochs_teacher=2, epochs_student=1, epochs_stage2=1)).fit(data)
    assert np.isfinite(res.probas["stage2"]).all()
    assert np.isfinite(res.worker_matrices["teacher"]).all()


@pytest.mark.parametrize("distill", DISTILL_LOSSES)
@pytest.mark.parametrize("robust", ROBUST_METHODS)
def test_every_student_loss_runs(sim, distill, robust):
    _, data = sim
    res = KDCrowd(tiny(distill=distill, robust=robust, epochs_teacher=1, epochs_student=2, epochs_stage2=0,
                       forget_rate=0.2, forget_ramp_epochs=1)).fit(data)
    assert np.isfinite(res.probas["student"]).all()


def test_validation_selection_and_early_stopping(sim):
    s, data = sim
    Xv, yv = s.test_features[:100], s.test_truth[:100]
    events = []
    res = KDCrowd(tiny(epochs_teacher=200, lr=0.01, patience=3)).fit(data, valid=(Xv, yv), callback=events.append)
    assert set(res.valid_accuracy) == {"teacher", "student", "stage2"}
    assert res.robust in ("none", "small-loss")  # robust="auto" chose one on the validation data
    assert any(e["message"].startswith("student: kept robust=") for e in events)
    teach = [e for e in events if e["stage"] == "teacher"]
    assert all(e["valid_accuracy"] is not None for e in teach)
    assert len(teach) < 200  # stopped early
    # the kept teacher is the best validation epoch
    assert res.valid_accuracy["teacher"] == pytest.approx(max(e["valid_accuracy"] for e in teach))


def test_config_round_trip_and_validation():
    cfg = KDConfig(teacher="conal", distill="kl", forget_rate=0.1)
    assert KDConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert KDConfig.from_dict({"teacher": "CrowdLayer_MW"}).teacher == "crowdlayer-mw"
    for bad in ({"teacher": "resnet"}, {"distill": "mse"}, {"robust": "magic"}, {"forget_rate": 1.5},
                {"nonsense": 1}, {"epochs_teacher": 0}):
        with pytest.raises(CrowdDataError):
            KDConfig.from_dict(bad)


def test_bad_inputs_raise_crowd_data_error(sim):
    s, data = sim
    with pytest.raises(CrowdDataError, match="features"):
        KDCrowd(tiny()).fit(dataclasses.replace(data, features=None))
    with pytest.raises(CrowdDataError, match="valid features"):
        KDCrowd(tiny()).fit(data, valid=(np.zeros((5, 2)), np.zeros(5, dtype=int)))
    with pytest.raises(CrowdDataError):
        KDCrowd(tiny()).predict(s.test_features)
    with pytest.raises(CrowdDataError):
        KDCrowd(tiny(device="cuda" if not torch.cuda.is_available() else "cpu", teacher="nope"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_with_mixed_precision(sim):
    s, data = sim
    res = KDCrowd(tiny(device="cuda", amp=True)).fit(data, test=(s.test_features, s.test_truth, s.test_ids))
    assert res.device.startswith("cuda")
    assert np.isfinite(res.probas["stage2"]).all()


def test_student_ensemble_and_mig_options(sim, tmp_path):
    """student_ensemble averages several students (saved and restored as one head); mig_marginal="all"
    and mig_temperature train and change the student; bad values are rejected."""
    s, data = sim
    base = dict(epochs_teacher=2, epochs_student=3, epochs_stage2=1, robust="none")
    tr = KDCrowd(tiny(student_ensemble=3, **base))
    res = tr.fit(data, test=(s.test_features, s.test_truth, s.test_ids))
    head = tr.models_["student"]
    assert len(head.members) == 3
    import torch.nn.functional as F
    x = torch.as_tensor(s.test_features[:20], dtype=torch.float32)
    with torch.no_grad():
        mean_p = torch.stack([F.softmax(m(x), 1) for m in head.members]).mean(0).double().numpy()
    np.testing.assert_allclose(tr.predict_proba(s.test_features[:20], model="student"), mean_p, rtol=1e-5, atol=1e-6)
    assert np.allclose(res.probas["student"].sum(1), 1.0)
    tr.save(tmp_path / "ens")
    back = KDCrowd.load(tmp_path / "ens")
    np.testing.assert_allclose(back.predict_proba(s.test_features, model="student"),
                               tr.predict_proba(s.test_features, model="student"), rtol=1e-6, atol=1e-7)
    one = KDCrowd(tiny(**base)).fit(data)
    for kw in ({"mig_marginal": "all"}, {"mig_temperature": 0.5}):
        r = KDCrowd(tiny(**base, **kw)).fit(data)
        assert np.isfinite(r.probas["student"]).all()
        assert not np.array_equal(r.probas["student"], one.probas["student"])
    r = KDCrowd(tiny(**{**base, "robust": "small-loss"}, mig_marginal="all", distill="mig-pearson",
                     forget_rate=0.2, forget_ramp_epochs=1)).fit(data)
    assert np.isfinite(r.probas["student"]).all()
    for bad in ({"student_ensemble": 0}, {"mig_marginal": "some"}, {"mig_temperature": 0.0}):
        with pytest.raises(CrowdDataError):
            KDConfig.from_dict(bad)


def test_rounds_mixup_and_student_schedule(sim):
    """rounds=2 retrains targets, student and stage 2 from the first stage 2 (progress stays complete and
    monotone); mixup, a cosine schedule and the student's own weight decay train and change the student;
    bad values are rejected."""
    s, data = sim
    base = dict(epochs_teacher=2, epochs_student=3, epochs_stage2=1, robust="none", cross_fit_folds=2, rounds=1)
    assert KDConfig().rounds == 2   # the default (validation search in docs/kd.md)
    one = KDCrowd(tiny(**base)).fit(data)
    events = []
    two = KDCrowd(tiny(**{**base, "rounds": 2})).fit(data, callback=events.append)
    msgs = [e["message"] for e in events]
    assert sum(m.startswith("next-round teacher") for m in msgs) == 2 * base["epochs_teacher"]
    assert sum(e["stage"] == "stage2" for e in events) == 2 * base["epochs_stage2"]
    prog = [e["overall_progress"] for e in events]
    assert prog == sorted(prog) and prog[-1] == 1.0 and prog[-2] == pytest.approx(1.0)
    np.testing.assert_array_equal(two.probas["teacher"], one.probas["teacher"])   # round 1's teacher
    assert not np.array_equal(two.targets, one.targets)
    assert not np.array_equal(two.probas["stage2"], one.probas["stage2"])
    assert "rounds" in two.timings and np.isfinite(two.probas["stage2"]).all()
    # in-sample next-round targets without folds
    r = KDCrowd(tiny(**{**base, "cross_fit_folds": 0, "rounds": 2})).fit(data)
    assert np.isfinite(r.targets).all() and np.allclose(r.targets.sum(1), 1.0, atol=1e-5)
    for kw in ({"student_mixup": 0.4}, {"student_schedule": "cosine"}, {"student_weight_decay": 0.5}):
        r = KDCrowd(tiny(**base, **kw)).fit(data)
        assert np.isfinite(r.probas["student"]).all()
        assert not np.array_equal(r.probas["student"], one.probas["student"]), kw
        np.testing.assert_array_equal(r.probas["teacher"], one.probas["teacher"])   # student options only
    r = KDCrowd(tiny(**{**base, "robust": "small-loss"}, student_mixup=0.4, forget_rate=0.2,
                     forget_ramp_epochs=1)).fit(data)
    assert np.isfinite(r.probas["student"]).all()
    # co-teaching: two students exchanging small-loss selections; differs from plain small-loss
    sl = dict(forget_rate=0.3, forget_ramp_epochs=1)
    r_sl = KDCrowd(tiny(**{**base, "robust": "small-loss"}, **sl)).fit(data)
    tr = KDCrowd(tiny(**{**base, "robust": "co-teaching"}, **sl))
    r_ct = tr.fit(data)
    assert r_ct.robust == "co-teaching" and r_ct.forget_rate == pytest.approx(0.3)
    assert np.isfinite(r_ct.probas["student"]).all()
    assert not np.array_equal(r_ct.probas["student"], r_sl.probas["student"])
    cfg = KDConfig(rounds=3, student_mixup=0.2, student_schedule="cosine", student_weight_decay=1e-3)
    assert KDConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    for bad in ({"rounds": 0}, {"rounds": 1.5}, {"student_mixup": -0.1}, {"student_schedule": "step"},
                {"student_weight_decay": -1.0}):
        with pytest.raises(CrowdDataError):
            KDConfig.from_dict(bad)


def test_average_last_weight_averaging(sim):
    """average_last=k ends each stage with the mean of its last k epochs' weights (no epoch picked)."""
    from types import SimpleNamespace
    from kdcrowd_core.kd import _Selector
    lin = torch.nn.Linear(2, 1)
    sel = _Selector(SimpleNamespace(cfg=KDConfig(average_last=2), Xv=None, yv=None), lin, lin, epochs=3)
    for ep, w in enumerate((1.0, 2.0, 6.0), start=1):
        with torch.no_grad():
            lin.weight.fill_(w)
            lin.bias.fill_(-w)
        sel.step(ep)
    sel.finish()
    assert torch.allclose(lin.weight, torch.full((1, 2), 4.0)) and float(lin.bias.detach()) == pytest.approx(-4.0)
    # end to end: k = 1 with validation data = the last epoch = the run without validation data
    s, data = sim
    Xv, yv = s.test_features[:100], s.test_truth[:100]
    base = dict(robust="none", rounds=1, cross_fit_folds=2, epochs_teacher=4, epochs_student=4, epochs_stage2=2)
    last = KDCrowd(tiny(**base)).fit(data)
    k1 = KDCrowd(tiny(**base, average_last=1)).fit(data, valid=(Xv, yv))
    for m in ("teacher", "student", "stage2"):
        np.testing.assert_allclose(k1.probas[m], last.probas[m], atol=1e-6)
    k3 = KDCrowd(tiny(**base, average_last=3)).fit(data, valid=(Xv, yv))
    assert np.isfinite(k3.probas["stage2"]).all()
    assert not np.allclose(k3.probas["student"], last.probas["student"])
    assert KDConfig.from_dict({"average_last": 5}).average_last == 5
    for bad in ({"average_last": -1}, {"average_last": 1.5}):
        with pytest.raises(CrowdDataError):
            KDConfig.from_dict(bad)


_ROBUST_BASE = dict(epochs_teacher=2, epochs_student=3, epochs_stage2=1, rounds=1)


def _robust_student(data, robust, bad_settings=(), **kw):
    """Train with ``robust``; check it is finite and differs from the plain student; reject ``bad_settings``."""
    plain = KDCrowd(tiny(**_ROBUST_BASE, robust="none")).fit(data)
    tr = KDCrowd(tiny(**_ROBUST_BASE, robust=robust, **kw))
    res = tr.fit(data)
    assert res.robust == robust and np.isfinite(res.probas["student"]).all()
    assert not np.allclose(res.probas["student"], plain.probas["student"])
    for bad in bad_settings:
        with pytest.raises(CrowdDataError):
            KDConfig.from_dict(bad)
    return tr, res, plain


def test_elr_student(sim):
    """ELR adds its regulariser to the distillation loss; with elr_lambda = 0 it is exactly the plain student."""
    _, data = sim
    _, _, plain = _robust_student(data, "elr", ({"elr_beta": 1.0}, {"elr_beta": -0.1}, {"elr_lambda": -1.0}))
    off = KDCrowd(tiny(**_ROBUST_BASE, robust="elr", elr_lambda=0.0)).fit(data)
    np.testing.assert_allclose(off.probas["student"], plain.probas["student"], rtol=1e-5, atol=1e-6)


def test_consistency_student(sim):
    """The least confident targets are unlabeled (consistency loss only); the forget rate is reported."""
    _, data = sim
    _, cons, _ = _robust_student(data, "consistency", ({"consistency_weight": -1.0}, {"consistency_noise": -0.1}),
                                 forget_rate=0.3)
    assert cons.forget_rate == pytest.approx(0.3)


def test_agreement_weighted_student(sim):
    """Items whose answers disagree with the target weigh less; the weights have mean 1 and favour agreement."""
    from kdcrowd_core.kd import _agreement_weights
    _, data = sim
    tr, res, _ = _robust_student(data, "agreement")
    ctx = tr.ctx_
    t = torch.as_tensor(res.targets, dtype=torch.float32)
    w = _agreement_weights(ctx, t, torch.arange(ctx.N)).numpy()
    assert w.mean() == pytest.approx(1.0, rel=1e-5) and (w > 0).all()
    agree = np.bincount(data.item, weights=(data.label == res.targets.argmax(1)[data.item]), minlength=data.n_items)
    n = np.bincount(data.item, minlength=data.n_items)
    expected = (agree + 1) / (n + 2)
    np.testing.assert_allclose(w, expected / expected.mean(), rtol=1e-5)


def test_optimizer_schedule_and_batch_norm_options(sim):
    """optimizer / schedule apply to every stage (the teacher changes, and each choice trains); a batch-norm
    head trains even when an epoch ends with a one-item batch; bad values are rejected."""
    s, data = sim
    base = dict(epochs_teacher=2, epochs_student=2, epochs_stage2=1, robust="none", rounds=1)
    ref = KDCrowd(tiny(**base)).fit(data)
    for kw in ({"optimizer": "radam", "lr": 0.01}, {"optimizer": "adamw", "weight_decay": 0.1},
               {"schedule": "cosine"}, {"norm": "batch", "depth": 2}):
        r = KDCrowd(tiny(**base, **kw)).fit(data)
        for m in ("teacher", "student", "stage2"):
            assert np.isfinite(r.probas[m]).all(), kw
        assert not np.array_equal(r.probas["teacher"], ref.probas["teacher"]), kw
    # 400 items in batches of 133: the last batch of every epoch holds one item
    r = KDCrowd(tiny(**base, norm="batch", batch_size=133, distill="kl")).fit(data)
    assert np.isfinite(r.probas["stage2"]).all()
    from kdcrowd_core.models.heads import BatchNorm
    bn = BatchNorm(3).train()
    before = bn.running_mean.clone()
    out = bn(torch.ones(1, 3))
    assert out.shape == (1, 3) and torch.equal(bn.running_mean, before)   # running statistics untouched
    for bad in ({"optimizer": "sgd"}, {"schedule": "step"}):
        with pytest.raises(CrowdDataError):
            KDConfig.from_dict(bad)
