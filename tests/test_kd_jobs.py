"""Independent trainings side by side (kd/jobs.py): same results as one after the other, cancellation and
errors reach every job, progress bars of parallel jobs stay open."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from kdcrowd_core.errors import CrowdDataError
from kdcrowd_core.kd import KDConfig, KDCrowd, TrainingCancelled, progress
from kdcrowd_core.kd.jobs import job_seed, job_width
from kdcrowd_core.simulate import simulate_crowd


@pytest.fixture(scope="module")
def sim():
    return simulate_crowd(n_items=500, n_classes=3, n_features=6, n_workers=25, answers_per_item=(2, 4),
                          n_test=200, seed=3)


def cfg(**kw) -> KDConfig:
    base = dict(epochs_teacher=3, epochs_student=2, epochs_stage2=2, cross_fit_folds=3, rounds=2, hidden=16,
                batch_size=64, seed=0, device="cpu")
    base.update(kw)
    return KDConfig(**base)


def test_jobs_side_by_side_give_the_results_of_one_after_the_other(sim):
    runs = {}
    for width in (1, 2, 3):
        events = []
        tr = KDCrowd(cfg(parallel_jobs=width))
        res = tr.fit(sim.data, test=(sim.test_features, sim.test_truth), callback=events.append)
        runs[width] = (res, events)
    ref, ref_events = runs[1]
    assert set(ref.test_accuracy) == {"teacher", "student", "stage2", "mv", "ds"}
    for width in (2, 3):
        res, events = runs[width]
        for k in ref.probas:
            np.testing.assert_array_equal(res.probas[k], ref.probas[k], err_msg=k)
        for k in ref.test_probas:
            np.testing.assert_array_equal(res.test_probas[k], ref.test_probas[k], err_msg=k)
        np.testing.assert_array_equal(res.oof_probas, ref.oof_probas)
        for k, st in ref.model_states.items():
            for n, v in st.items():
                assert torch.equal(res.model_states[k][n], v), (k, n)
        # the same epochs were reported, each model's in order, with its own label
        key = lambda e: (e["stage"], e["message"], e["round"], e["epoch"])    # noqa: E731
        assert sorted(map(key, events[:-1])) == sorted(map(key, ref_events[:-1]))
        assert events[-1]["stage"] == "done"
        for bar in {key(e)[:3] for e in events}:
            eps = [e["epoch"] for e in events if key(e)[:3] == bar]
            assert eps == sorted(eps), bar
        # stage 2 of round 1 trained beside round 2's fold models, its events still say round 1
        assert [e["round"] for e in events if e["stage"] == "stage2"] == [1, 1, 2, 2]
        prog = [e["overall_progress"] for e in events]
        assert prog == sorted(prog) and prog[-1] == 1.0
    # another seed gives other jobs' streams (the seeds are not ignored)
    other = KDCrowd(cfg(parallel_jobs=2, seed=1)).fit(sim.data)
    assert not np.array_equal(other.probas["teacher"], ref.probas["teacher"])
    assert len({job_seed(0, t, j, r) for t in (1, 2, 3) for j in range(5) for r in (1, 2)}) == 30


def test_cancel_while_folds_train_side_by_side(sim):
    cancel = threading.Event()
    seen = []

    def cb(ev):
        seen.append(ev)
        if ev["message"] == "out-of-fold teacher 1/3" and ev["epoch"] == 2:    # beside the full-data teacher
            cancel.set()
    before = torch.get_num_threads()
    with pytest.raises(TrainingCancelled):
        KDCrowd(cfg(parallel_jobs=2, epochs_teacher=30)).fit(sim.data, callback=cb, cancel=cancel)
    assert torch.get_num_threads() == before
    # the job beside it stopped within a mini-batch (at most the epoch it was finishing), no job started after
    at = next(i for i, e in enumerate(seen) if e["message"] == "out-of-fold teacher 1/3" and e["epoch"] == 2)
    assert len(seen) - at - 1 <= 1
    assert not any(e["message"] == "out-of-fold teacher 2/3" for e in seen)


def test_a_failing_job_stops_the_others_and_its_error_is_raised(sim):
    seen = []

    def cb(ev):
        seen.append(ev)
        if ev["message"] == "out-of-fold teacher 1/3" and ev["epoch"] == 2:
            raise ValueError("the callback broke")
    with pytest.raises(ValueError, match="callback broke"):
        KDCrowd(cfg(parallel_jobs=2, epochs_teacher=30)).fit(sim.data, callback=cb)
    at = next(i for i, e in enumerate(seen) if e["message"] == "out-of-fold teacher 1/3" and e["epoch"] == 2)
    assert len(seen) - at - 1 <= 1 and not any(e["message"] == "out-of-fold teacher 2/3" for e in seen)


def test_job_width_follows_the_idle_cores_and_is_one_under_data_parallelism(sim, monkeypatch):
    from kdcrowd_core.inference import threads as th
    from kdcrowd_core.kd import context
    monkeypatch.setattr(context, "_own_runnable_threads", lambda: 1)
    tr = KDCrowd(cfg())
    tr.prepare(sim.data, torch.device("cpu"))
    ctx = tr.ctx_
    ctx.max_threads = 2
    monkeypatch.setattr(th, "steady_threads", lambda limit=None: min(limit or 2, 1))
    assert job_width(ctx, 6) == 1                   # one idle core: one after the other
    monkeypatch.setattr(th, "steady_threads", lambda limit=None: limit or 2)
    assert job_width(ctx, 6) == 2 and job_width(ctx, 1) == 1
    ctx.dp = object()
    assert job_width(ctx, 6) == 1
    ctx.dp = None
    ctx.cfg = cfg(parallel_jobs=4)
    assert job_width(ctx, 3) == 3


def test_bars_of_jobs_side_by_side_stay_open_until_they_end():
    def ev(msg, ep, stage="teacher", n=3):
        return {"stage": stage, "epoch": ep, "n_epochs": n, "message": msg, "round": 1, "loss": 0.5}
    events = [ev("teacher", 1), ev("out-of-fold teacher 1/2", 1), ev("teacher", 2), ev("out-of-fold teacher 1/2", 2)]
    bars = progress.bars(events)
    assert not bars["teacher"]["done"] and not bars["out-of-fold teacher 1/2"]["done"]
    events += [ev("teacher", 3), ev("out-of-fold teacher 2/2", 1), ev("student (robust=none)", 1, "student")]
    bars = progress.bars(events)
    assert bars["teacher"]["done"]                               # reached its last epoch
    assert bars["out-of-fold teacher 1/2"]["done"]               # a later stage started: stopped early
    assert not bars["student (robust=none)"]["done"]
    # round 2: stage 2 of round 1 beside the next round's fold models, one group
    r2 = [dict(ev("stage 2", 1, "stage2"), round=1), dict(ev("next-round teacher 1/2", 1), round=2),
          dict(ev("stage 2", 2, "stage2"), round=1)]
    bars = progress.bars(events + r2)
    assert not bars["round 1 · stage 2"]["done"] and not bars["round 2 · next-round teacher 1/2"]["done"]
    assert bars["round 1 · student (robust=none)"]["done"]


def test_own_spinning_threads_are_not_competing_load(monkeypatch):
    """torch's OpenMP workers still spin (runnable) just after a multi-threaded op; /proc/loadavg counts them
    as other jobs, idle_cores must not."""
    from kdcrowd_core.inference import threads as th
    from kdcrowd_core.kd import context
    monkeypatch.setattr(th, "steady_threads", lambda limit=None: 1)     # loadavg: one core looks busy
    monkeypatch.setattr(context, "_own_runnable_threads", lambda: 2)    # ... by this process's own worker
    assert context.idle_cores(2) == 2
    monkeypatch.setattr(context, "_own_runnable_threads", lambda: 1)    # someone else
    assert context.idle_cores(2) == 1
    monkeypatch.undo()
    assert context._own_runnable_threads() >= 1                         # the caller itself is running


def test_fewer_cross_fit_folds_from_large_n_on(sim, monkeypatch):
    from kdcrowd_core.kd import config as kd_config
    c = KDConfig()
    assert c.folds_for(kd_config.LARGE_N_ITEMS - 1) == 5 and c.folds_for(kd_config.LARGE_N_ITEMS) == 3
    assert KDConfig(cross_fit_folds_large=0).folds_for(10**6) == 5
    assert KDConfig(cross_fit_folds=2).folds_for(10**6) == 2          # never more folds than asked for
    assert KDConfig(cross_fit_folds=1).folds_for(10) == 0
    with pytest.raises(CrowdDataError, match="cross_fit_folds_large"):
        KDConfig(cross_fit_folds_large=-1).validate()
    # a fit on a crowd at the threshold trains the large-N folds in both rounds, and its progress ends at 1
    monkeypatch.setattr(kd_config, "LARGE_N_ITEMS", sim.data.n_items)
    events = []
    KDCrowd(cfg(cross_fit_folds=4, cross_fit_folds_large=2)).fit(sim.data, callback=events.append)
    labels = {e["message"] for e in events if e["stage"] == "teacher"}
    assert {m for m in labels if "out-of-fold" in m} == {"out-of-fold teacher 1/2", "out-of-fold teacher 2/2"}
    assert {m for m in labels if "next-round" in m} == {"next-round teacher 1/2", "next-round teacher 2/2"}
    assert events[-1]["overall_progress"] == 1.0
