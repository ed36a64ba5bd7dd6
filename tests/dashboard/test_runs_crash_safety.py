"""Runs survive crashes honestly (issue 10, item 7): a heartbeat (pid, host, process start time) in the runs
store; runs whose process is gone are marked interrupted, live runs of another server are left alone;
cancel keeps the finished stages on disk and says so."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from dashboard import jobs as jobs_mod
from dashboard import launch, training
from dashboard.jobs import JobManager
from dashboard.runs_db import RunStore, this_host

ROOT = Path(__file__).resolve().parents[2]

OTHER_SERVER = textwrap.dedent("""
    import sys, time
    from dashboard.runs_db import RunStore
    store = RunStore(sys.argv[1])
    rec = store.create(config={}, dataset="other server")
    store.claim(rec.id)
    store.set_status(rec.id, "running")
    print(rec.id, flush=True)
    time.sleep(120)
""")


def _other_server(home: Path) -> tuple[subprocess.Popen, str]:
    """Another process ("server") with a live running run on the same data directory."""
    proc = subprocess.Popen([sys.executable, "-c", OTHER_SERVER, str(home)], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    run_id = proc.stdout.readline().strip()
    assert run_id, "the other process did not start its run"
    return proc, run_id


def test_live_run_of_another_server_is_left_alone_and_a_dead_one_is_interrupted(tmp_path, monkeypatch):
    home = tmp_path / "shared_home"
    proc, run_id = _other_server(home)
    try:
        # issue 10: a second server on the same data directory marked the first one's live run "interrupted"
        JobManager(RunStore(home))
        assert RunStore(home).get(run_id).status == "running"
        monkeypatch.setenv("KDCROWD_HOME", str(home))
        assert launch.recover_runs() == 0
        assert RunStore(home).get(run_id).status == "running"
    finally:
        proc.send_signal(signal.SIGKILL)      # kill -9: no chance to write anything
        proc.wait()
    rec = RunStore(home).get(run_id)
    assert rec.status == "running" and rec.pid == proc.pid and rec.host == this_host()
    assert launch.recover_runs() == 1         # what `kdcrowd dashboard` does at server start
    rec = RunStore(home).get(run_id)
    assert rec.status == "interrupted" and str(proc.pid) in rec.error


def test_other_host_runs_go_by_heartbeat(tmp_path):
    store = RunStore(tmp_path / "home")
    fresh, stale = store.create(config={}), store.create(config={})
    for r in (fresh, stale):
        store.set_status(r.id, "running")
    now = time.time()
    store._exec("UPDATE runs SET pid = 1, host = 'another-machine', heartbeat = ? WHERE id = ?", (now, fresh.id))
    store._exec("UPDATE runs SET pid = 1, host = 'another-machine', heartbeat = ? WHERE id = ?",
                (now - 3600, stale.id))
    assert store.mark_interrupted() == 1
    assert store.get(fresh.id).status == "running" and store.get(stale.id).status == "interrupted"


def test_heartbeat_is_written_while_a_job_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(jobs_mod, "HEARTBEAT_S", 0.05)
    store = RunStore(tmp_path / "home")
    mgr = JobManager(store)
    job = mgr.start(lambda ctx: time.sleep(3.0), config={})
    deadline = time.time() + 2.5          # generous: the beat thread may be slow on a busy machine
    first = None
    while time.time() < deadline:
        rec = store.get(job.run_id)
        if rec.heartbeat is not None:
            first = rec.heartbeat if first is None else first
            if rec.heartbeat > first:     # the beat is refreshed while the job runs
                break
        time.sleep(0.05)
    assert rec.pid == os.getpid() and rec.host == this_host() and first is not None
    assert rec.heartbeat > first, "the heartbeat was not refreshed while the job ran"
    while job.is_active:
        time.sleep(0.02)
    assert store.get(job.run_id).status == "done"


def _small_crowd():
    from kdcrowd_core.simulate import simulate_crowd
    return simulate_crowd(n_items=200, n_classes=3, n_features=8, n_workers=10, answers_per_item=(2, 4),
                          gold_fraction=0.3, seed=5).data


def test_cancel_keeps_the_finished_stages(tmp_path):
    crowd = _small_crowd()
    store = RunStore(tmp_path / "home")
    mgr = JobManager(store)
    cfg = dict(training.default_config(), device="cpu", epochs_teacher=2, epochs_student=5000, epochs_stage2=2)
    job = mgr.start(training.make_job(crowd, cfg), config=cfg)
    deadline = time.time() + 120
    while not any(e.get("stage") == "student" for e in job.snapshot()["events"]):
        assert job.is_active and time.time() < deadline, (job.status, job.error)
        time.sleep(0.05)
    mgr.cancel(job.run_id)
    while job.is_active:
        time.sleep(0.05)
    assert job.status == "cancelled"
    rec = store.get(job.run_id)
    assert rec.status == "cancelled" and "majority vote, Dawid-Skene, teacher" in rec.error
    assert "student stage" in rec.error
    part = store.run_dir(job.run_id) / "partial"
    import json
    meta = json.loads((part / "partial.json").read_text())
    assert meta["finished_stages"] == ["mv", "ds", "teacher"] and meta["interrupted_in"] == "student"
    z = np.load(part / "arrays.npz")
    assert z["proba_teacher"].shape == (crowd.n_items, crowd.n_classes)
    assert z["wm_teacher"].shape == (crowd.n_workers, crowd.n_classes, crowd.n_classes)
    import torch
    states = torch.load(part / "models.pt", weights_only=True)
    assert set(states) == {"teacher"}
    assert any("Cancelled:" in e.get("message", "") for e in store.events(job.run_id, "log"))
