"""Independent trainings side by side: the cross-fit teachers (with the full-data teacher), the next round's
fold models and the two test baselines are separate jobs, run at most ``width`` at a time on the CPU cores
(Python threads: torch releases the GIL inside its ops), one intra-op thread each.

Each job has its own context (:func:`job_context`): its own ``torch.Generator``, seeded from the run's seed,
a tag naming the group and the job's index, drives its batch order and its models' dropout masks (also under
``--distributed``, where the jobs run one after the other), and the models are built before any job starts; so a job's result does not depend on how many jobs run at once or in
which order they finish (tests/test_kd_jobs.py).  Progress events come from the jobs as they train (each
labelled with its model, e.g. ``"out-of-fold teacher 2/5"``); cancelling stops every job within one
mini-batch; a failing job stops the others and its error is raised.

The width (:func:`job_width`): ``KDConfig.parallel_jobs`` when > 0; else, on a CPU, the cores idle at that
moment (:func:`~kdcrowd_core.inference.threads.steady_threads`, capped by torch's thread setting or
``num_threads``); 1 (one after the other, in order) under ``--distributed`` and on a GPU.
"""
from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..models.heads import use_generator
from .context import TrainingCancelled, _Ctx, idle_cores

#: Tags of the job groups (part of each job's seed).
TEACHER_JOBS, ROUND_JOBS, BASELINE_JOBS, STAGE2_JOBS = 1, 2, 3, 4


def job_seed(seed: int, tag: int, index: int, round_: int = 1) -> int:
    """A 63-bit seed for job ``index`` of group ``tag`` in round ``round_`` of a run seeded ``seed``."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(tag), int(round_), int(index)]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


class _RoundView:
    """The run as one job sees it: its events carry the job's round (stage 2 of round r - 1 trains beside the
    fold models of round r)."""

    def __init__(self, run, round_: int):
        self._run, self.round = run, int(round_)

    def __getattr__(self, name):
        return getattr(self._run, name)

    def event(self, *args, **kw):
        return self._run.event(*args, round_=self.round, **kw)


def job_context(ctx: _Ctx, tag: int, index: int, round_: int | None = None) -> _Ctx:
    """The context of one job: its own generator, no per-stage thread choice (the pool sets one thread).
    Under data parallelism every rank seeds it alike, and it is the generator the ranks keep in step while the
    job runs (``DataParallel.gen``).  ``round_``: the job's round (default the run's current one)."""
    run = ctx.run
    if round_ is None:
        round_ = run.round if run is not None else 1
    elif run is not None:
        run = _RoundView(run, round_)
    gen = torch.Generator().manual_seed(job_seed(ctx.cfg.seed, tag, index, round_))
    return dataclasses.replace(ctx, gen=gen, max_threads=0, run=run)


def job_width(ctx: _Ctx, n_jobs: int) -> int:
    """How many jobs run at once (see the module docstring)."""
    if n_jobs < 2 or ctx.dp is not None or ctx.dev.type != "cpu":
        return 1
    want = int(getattr(ctx.cfg, "parallel_jobs", 0) or 0)
    if want <= 0:
        if ctx.max_threads > 0:
            want = idle_cores(ctx.max_threads)
        else:
            want = int(ctx.cfg.num_threads) if ctx.cfg.num_threads > 0 else torch.get_num_threads()
    return max(1, min(int(want), n_jobs))


def run_jobs(ctx: _Ctx, tag: int, jobs: Sequence[tuple]) -> list:
    """Run ``jobs`` (``(fn, models)``: ``fn(job_ctx)`` trains ``models``, already built; or ``(fn, models,
    (tag, index, round))`` naming the job's own seed and round) and return their results in job order.  Each
    job's models draw their dropout masks from the job's generator while it runs."""
    ctxs = [job_context(ctx, *(job[2] if len(job) > 2 else (tag, j))) for j, job in enumerate(jobs)]
    width = job_width(ctx, len(jobs))
    cpu = ctx.dev.type == "cpu" and ctx.dp is None
    threads_before = torch.get_num_threads()

    def one(j: int):
        fn, models = jobs[j][:2]
        gen = ctxs[j].gen
        if cpu:
            torch.set_num_threads(1)         # this thread's intra-op pool (the caller's is restored below)
        for m in models:
            use_generator(m, gen)
        dp_gen = None
        if ctx.dp is not None:               # one job at a time: the ranks sync this job's generator
            dp_gen, ctx.dp.gen = ctx.dp.gen, gen
        try:
            return fn(ctxs[j])
        finally:
            for m in models:
                use_generator(m, None)
            if ctx.dp is not None:
                ctx.dp.gen = dp_gen

    run = ctx.run
    try:
        if width == 1:
            return [one(j) for j in range(len(jobs))]
        results: list = [None] * len(jobs)
        errors: list[tuple[int, BaseException]] = []
        lock = threading.Lock()

        def guarded(j: int):
            try:
                results[j] = one(j)
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                with lock:
                    errors.append((j, e))
                if run is not None:
                    run.halt()               # the other jobs stop at their next mini-batch
        with ThreadPoolExecutor(max_workers=width, thread_name_prefix="kd-job") as pool:
            list(pool.map(guarded, range(len(jobs))))
        if errors:
            first = [e for _, e in errors if not isinstance(e, TrainingCancelled)] or [e for _, e in errors]
            raise first[0]
        return results
    finally:
        if run is not None:
            run.resume()
        if cpu:
            torch.set_num_threads(threads_before)
