"""How many CPU threads an EM step should use right now.

torch's multi-threaded sparse products split the work evenly and wait for the slowest thread.  On a
busy machine (a shared notebook server, other jobs) a thread that has to share its core with another
process makes every step wait for it: on this project's 2-core machine with other jobs running,
Dawid-Skene on 100k answers took 25-37 s with 2 threads and 1.4-1.7 s with 1 (benchmarks/scale.py
measures it next to Crowd-Kit).  :func:`steady_threads` therefore uses only the cores nobody else is
running on at the moment of the call (``/proc/loadavg``'s count of runnable tasks; Linux), never more
than torch's own setting and never fewer than one.
"""
from __future__ import annotations

import os

import torch


def runnable_others() -> int | None:
    """Runnable tasks on the machine other than the caller, now (None where unknown)."""
    try:
        with open("/proc/loadavg") as f:
            running = int(f.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(running - 1, 0)


def steady_threads(limit: int | None = None) -> int:
    """Threads for a compute step: torch's setting (or ``limit``) capped at the idle cores."""
    want = int(limit or torch.get_num_threads())
    others = runnable_others()
    if others is None:
        return max(want, 1)
    idle = (os.cpu_count() or 1) - others
    return max(1, min(want, idle))
