"""Background runs: a worker thread per run, progress in a shared object, no st.* calls.

A page starts a run with :meth:`JobManager.start`, passing a callable
``fn(ctx: JobContext) -> Any``.  The callable runs in a daemon thread; it
reports progress with ``ctx.report(event)`` (the trainer's progress-event
dicts), checks ``ctx.cancel`` (a :class:`threading.Event`) and may write
files to ``ctx.run_dir``.  The page polls :meth:`Job.snapshot` from an
``@st.fragment(run_every=...)``; nothing here touches Streamlit, so the
thread is safe and the module is unit-testable.

Every event and the final status are also written to the
:class:`~dashboard.runs_db.RunStore`, so a run can be reopened (with its log
and, for failures, its error) after the app restarts.
"""
from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable

from .runs_db import HEARTBEAT_S, RunStore

#: Minimum seconds between two progress events written to SQLite for the same
#: stage (the in-memory object keeps them all; stage changes are always written).
DB_EVENT_INTERVAL = 0.5


class JobCancelled(Exception):
    """Raised by a job callable that noticed ``ctx.cancel`` (the trainer raises its own TrainingCancelled)."""


@dataclass
class JobContext:
    """What a job callable gets: where to report, when to stop, where to write."""

    run_id: str
    run_dir: Path
    cancel: threading.Event
    report: Callable[[dict], None]
    log: Callable[[str], None]


@dataclass
class Job:
    """One run's live state, shared between the worker thread and the page (guarded by ``lock``)."""

    run_id: str
    run_dir: Path
    status: str = "queued"
    started: float | None = None
    finished: float | None = None
    events: list[dict] = field(default_factory=list)
    stages: dict[str, dict] = field(default_factory=dict)   # stage -> last event
    error: str | None = None
    traceback: str | None = None
    result: Any = None
    cancel: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    thread: threading.Thread | None = field(default=None, repr=False)

    # -------------------------------------------------------------- updates
    def _add_event(self, ev: dict) -> None:
        with self.lock:
            self.events.append(ev)
            st = ev.get("stage")
            if st:
                self.stages[st] = ev

    # ------------------------------------------------------------- reading
    @property
    def is_active(self) -> bool:
        return self.status in ("queued", "running")

    def elapsed(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.time()) - self.started

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy for display: status, events, per-stage last events, progress, timings."""
        with self.lock:
            events = list(self.events)
            stages = dict(self.stages)
            status, error = self.status, self.error
        last = events[-1] if events else {}
        progress = float(last.get("overall_progress") or 0.0)
        if status == "done":
            progress = 1.0
        elapsed = self.elapsed()
        remaining = None
        if status == "running" and 0.02 < progress < 1.0:
            remaining = elapsed * (1.0 - progress) / progress
        return {"run_id": self.run_id, "status": status, "error": error, "events": events,
                "stages": stages, "progress": progress, "elapsed": elapsed, "remaining": remaining,
                "message": last.get("message", ""), "cancel_requested": self.cancel.is_set()}


class JobManager:
    """Starts runs in threads and keeps the live ones (one process-wide instance via st.cache_resource)."""

    def __init__(self, store: RunStore, *, max_active: int = 1):
        self.store = store
        self.max_active = max_active
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        # runs left 'running' by a process that is gone can't be resumed; live ones (another server) stay
        store.mark_interrupted()

    def get(self, run_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(run_id)

    def active(self) -> list[Job]:
        with self._lock:
            return [j for j in self._jobs.values() if j.is_active]

    def start(self, fn: Callable[[JobContext], Any], *, config: dict, dataset: str = "",
              dataset_key: str = "", dataset_id: str = "") -> Job:
        """Create a run in the store and start ``fn`` in a daemon thread.

        Raises RuntimeError when ``max_active`` runs are already going.
        """
        with self._lock:
            if sum(j.is_active for j in self._jobs.values()) >= self.max_active:
                raise RuntimeError("a training run is already going; wait for it or cancel it first.")
            rec = self.store.create(config=config, dataset=dataset, dataset_key=dataset_key, dataset_id=dataset_id)
            self.store.claim(rec.id)   # this process runs it: pid, host, first heartbeat
            job = Job(run_id=rec.id, run_dir=self.store.run_dir(rec.id))
            self._jobs[rec.id] = job
        t = threading.Thread(target=self._run, args=(job, fn), name=f"kdcrowd-run-{rec.id}", daemon=True)
        job.thread = t
        t.start()
        return job

    def cancel(self, run_id: str) -> bool:
        job = self.get(run_id)
        if job is None or not job.is_active:
            return False
        job.cancel.set()
        self.store.add_event(run_id, "log", {"message": "cancel requested"})
        return True

    # ------------------------------------------------------------ the thread
    def _run(self, job: Job, fn: Callable[[JobContext], Any]) -> None:
        store = self.store
        last_write: dict[str, float] = {}

        def report(ev: dict) -> None:
            ev = dict(ev)
            job._add_event(ev)
            st = str(ev.get("stage", ""))
            now = time.time()
            final = ev.get("stage_progress") in (1, 1.0) or st == "done"
            if final or st not in last_write or now - last_write[st] >= DB_EVENT_INTERVAL:
                last_write[st] = now
                try:
                    store.add_event(job.run_id, "progress", ev)
                except Exception:  # the log must never kill the run
                    pass

        def log(msg: str) -> None:
            try:
                store.add_event(job.run_id, "log", {"message": str(msg)})
            except Exception:
                pass

        ctx = JobContext(run_id=job.run_id, run_dir=job.run_dir, cancel=job.cancel, report=report, log=log)
        job.started = time.time()
        job.status = "running"
        store.set_status(job.run_id, "running")
        log("run started")
        stop_beat = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(job.run_id, stop_beat), daemon=True,
                                name=f"kdcrowd-heartbeat-{job.run_id}")
        beat.start()
        try:
            self._execute(job, fn, ctx, log)
        finally:
            stop_beat.set()

    def _heartbeat(self, run_id: str, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                self.store.beat(run_id)
            except Exception:  # noqa: BLE001 - a locked database must not kill the heartbeat
                pass

    def _execute(self, job: Job, fn: Callable[[JobContext], Any], ctx: JobContext, log) -> None:
        store = self.store
        try:
            result = fn(ctx)
        except BaseException as exc:  # noqa: BLE001 - every failure is reported, none escapes the thread
            job.finished = time.time()
            cancelled = job.cancel.is_set() and (isinstance(exc, JobCancelled)
                                                 or type(exc).__name__ in ("TrainingCancelled", "JobCancelled"))
            # the store is written first: whoever sees the in-memory status change finds the store up to date
            if cancelled:
                note = str(exc) if str(exc) and str(exc) != "training cancelled" else None
                job.error = note   # what was kept of the finished stages, when the job says so
                log("run cancelled" + (f": {note}" if note else ""))
                try:
                    store.set_status(job.run_id, "cancelled", error=note)
                finally:
                    job.status = "cancelled"
            else:
                job.error = f"{type(exc).__name__}: {exc}"
                job.traceback = traceback.format_exc()
                try:
                    store.add_event(job.run_id, "error", {"message": job.error, "traceback": job.traceback})
                    store.set_status(job.run_id, "failed", error=job.error)
                finally:
                    job.status = "failed"
            return
        job.result = result
        job.finished = time.time()
        summary = None
        device = None
        if hasattr(result, "summary"):
            try:
                summary = result.summary()
                device = getattr(result, "device", None)
            except Exception:  # pragma: no cover - a summary bug must not fail the run
                summary = None
        elif isinstance(result, dict):
            summary = result
        log(f"run finished in {job.finished - job.started:.1f} s")
        try:
            store.set_status(job.run_id, "done", summary=summary, device=device)
        finally:
            job.status = "done"
