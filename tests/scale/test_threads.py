"""steady_threads: never more than torch's setting, never fewer than one, fewer when others run."""
import os

import torch

from kdcrowd_core.inference import threads


def test_bounds(monkeypatch):
    n = threads.steady_threads()
    assert 1 <= n <= torch.get_num_threads()
    monkeypatch.setattr(threads, "runnable_others", lambda: 0)
    assert threads.steady_threads(limit=64) == min(64, os.cpu_count())
    monkeypatch.setattr(threads, "runnable_others", lambda: 1000)
    assert threads.steady_threads(limit=64) == 1
    monkeypatch.setattr(threads, "runnable_others", lambda: None)
    assert threads.steady_threads(limit=3) == 3


def test_runnable_others_reads_proc():
    r = threads.runnable_others()
    assert r is None or r >= 0
