"""Crowd models' per-answer mixing through worker matrices, without an (answers x K x K) array."""
from __future__ import annotations

import torch

from kdcrowd_core.models import crowd


def test_mix_by_worker_equals_the_batched_gather(monkeypatch):
    gen = torch.Generator().manual_seed(0)
    A, K, R = 60, 25, 7
    p = torch.rand(A, K, generator=gen, requires_grad=True)
    worker = torch.randint(0, R, (A,), generator=gen)
    W = torch.randn(R, K, K, generator=gen, requires_grad=True)

    def matrices(idx):
        return torch.softmax(W[idx], dim=2)

    gathered = crowd.mix_through_matrices(p, worker, matrices)
    monkeypatch.setattr(crowd, "_GATHER_CELLS", 0)          # as with many classes: worker by worker
    grouped = crowd.mix_through_matrices(p, worker, matrices)
    torch.testing.assert_close(grouped, gathered)
    g1 = torch.autograd.grad((gathered ** 2).sum(), [p, W])
    g2 = torch.autograd.grad((grouped ** 2).sum(), [p, W])
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)
