"""Background runs and the SQLite runs store, with small real callables (no mocks)."""
from __future__ import annotations

import threading
import time

import pytest

from dashboard.jobs import JobCancelled, JobManager
from dashboard.runs_db import RunStore, data_home


def _wait(job, timeout=10.0):
    t0 = time.time()
    while job.is_active and time.time() - t0 < timeout:
        time.sleep(0.01)
    assert not job.is_active, f"job still {job.status} after {timeout}s"


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "home")


def test_data_home_env(tmp_path, monkeypatch):
    monkeypatch.setenv("KDCROWD_HOME", str(tmp_path / "h"))
    assert data_home() == (tmp_path / "h").resolve()
    assert data_home(tmp_path / "x") == (tmp_path / "x").resolve()


def test_store_roundtrip(store):
    r = store.create(config={"epochs": 3, "teacher": "aggnet"}, dataset="sample", dataset_key="abc")
    assert r.status == "queued" and r.config["epochs"] == 3
    store.set_status(r.id, "running")
    store.add_event(r.id, "progress", {"stage": "teacher", "epoch": 1, "n_epochs": 3, "loss": 0.5})
    store.add_event(r.id, "log", {"message": "hello"})
    store.set_status(r.id, "done", summary={"acc": 0.9}, device="cpu")
    got = store.get(r.id)
    assert got.status == "done" and got.summary == {"acc": 0.9} and got.device == "cpu"
    assert got.started is not None and got.finished >= got.started
    ev = store.events(r.id)
    assert [e["kind"] for e in ev] == ["progress", "log"] and ev[0]["loss"] == 0.5
    assert "teacher epoch 1/3 loss 0.5000" in store.log_text(r.id)
    # reopened by a fresh store object (as after a restart)
    again = RunStore(store.home)
    assert again.get(r.id).summary == {"acc": 0.9}
    assert [x.id for x in again.list()] == [r.id]
    again.delete(r.id)
    assert again.get(r.id) is None and not again.run_dir(r.id).exists()


def test_job_runs_to_completion(store):
    mgr = JobManager(store)

    def fn(ctx):
        for e in range(1, 4):
            ctx.report({"stage": "teacher", "epoch": e, "n_epochs": 3, "loss": 1.0 / e,
                        "overall_progress": e / 3, "stage_progress": e / 3, "message": f"epoch {e}"})
        (ctx.run_dir / "out.txt").write_text("ok")
        return {"answer": 42}

    job = mgr.start(fn, config={"k": 1}, dataset="toy")
    _wait(job)
    assert job.status == "done" and job.result == {"answer": 42}
    snap = job.snapshot()
    assert snap["progress"] == 1.0 and len(snap["events"]) == 3 and snap["stages"]["teacher"]["epoch"] == 3
    rec = store.get(job.run_id)
    assert rec.status == "done" and rec.summary == {"answer": 42}
    assert (store.run_dir(job.run_id) / "out.txt").read_text() == "ok"
    # the last event of a stage is always stored
    assert store.events(job.run_id, "progress")[-1]["epoch"] == 3


def test_job_failure_keeps_error_and_log(store):
    mgr = JobManager(store)

    def fn(ctx):
        ctx.log("about to fail")
        raise ValueError("features are all NaN")

    job = mgr.start(fn, config={})
    _wait(job)
    assert job.status == "failed" and "features are all NaN" in job.error
    rec = store.get(job.run_id)
    assert rec.status == "failed" and "ValueError" in rec.error
    text = store.log_text(job.run_id)
    assert "about to fail" in text and "features are all NaN" in text


def test_job_cancel(store):
    mgr = JobManager(store)
    started = threading.Event()

    def fn(ctx):
        started.set()
        while not ctx.cancel.wait(0.01):
            pass
        raise JobCancelled()

    job = mgr.start(fn, config={})
    assert started.wait(5)
    with pytest.raises(RuntimeError, match="already going"):
        mgr.start(fn, config={})
    assert mgr.cancel(job.run_id)
    _wait(job)
    assert job.status == "cancelled" and store.get(job.run_id).status == "cancelled"
    assert not mgr.cancel(job.run_id)


def test_interrupted_runs_marked_on_restart(store):
    import subprocess
    gone = subprocess.Popen(["true"])
    gone.wait()
    r = store.create(config={})
    store.claim(r.id, pid=gone.pid)   # run by a process that has exited since (see test_runs_crash_safety.py)
    store.set_status(r.id, "running")
    JobManager(store)  # a new process starting
    rec = store.get(r.id)
    assert rec.status == "interrupted" and "stopped" in rec.error
