"""The trainer's speed-ups give what the plain computations give (docs/kd.md, "Device and speed")."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from kdcrowd_core import losses as L
from kdcrowd_core.kd import KDConfig, KDCrowd, crowd_posterior
from kdcrowd_core.models.heads import FastDropout, _keep_mask
from kdcrowd_core.simulate import simulate_crowd


def _mig_by_matrix(s, q, p, f):
    """MIG^f with the full B x B matrix (the specification's formula)."""
    B = s.shape[0]
    K = L.mig_matrix(s, q, p)
    off = ~torch.eye(B, dtype=torch.bool)
    d = K.diagonal()
    if f == "kl":
        return -torch.log(d).mean() + K[off].sum() / (B * (B - 1))
    return -(2 * (d - 1)).mean() + (K[off] ** 2 - 1).sum() / (B * (B - 1))


@pytest.mark.parametrize("f", ["kl", "pearson"])
def test_mig_loss_without_the_batch_matrix_equals_the_matrix_formula(f):
    g = torch.Generator().manual_seed(1)
    s = torch.softmax(torch.randn(300, 7, generator=g, dtype=torch.float64), 1).requires_grad_(True)
    q = torch.softmax(3 * torch.randn(300, 7, generator=g, dtype=torch.float64), 1)
    p = q.mean(0)
    fast = L.mig_loss(s, q, p, f=f)
    (g_fast,) = torch.autograd.grad(fast, s)
    ref = _mig_by_matrix(s, q, p, f)
    (g_ref,) = torch.autograd.grad(ref, s)
    assert fast.item() == pytest.approx(ref.item(), rel=1e-10, abs=1e-12)
    assert torch.allclose(g_fast, g_ref, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("keep", [0.5, 0.7])
def test_fast_dropout_keeps_the_right_share_and_scales(keep):
    torch.manual_seed(0)
    m = _keep_mask(torch.Size([500, 200]), keep)
    assert m.shape == (500, 200) and set(m.unique().tolist()) <= {0.0, 1.0}
    assert abs(float(m.mean()) - keep) < 0.01
    # independent draws: neighbouring elements agree as often as two coin flips do
    agree = float((m[:, 1:] == m[:, :-1]).float().mean())
    assert abs(agree - (keep ** 2 + (1 - keep) ** 2)) < 0.01
    d = FastDropout(1 - keep)
    x = torch.ones(400, 300, requires_grad=True)
    y = d(x)
    assert abs(float(y.detach().mean()) - 1.0) < 0.02                  # inverted scaling 1 / keep
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())                    # gradient = mask / keep
    assert torch.equal(d.eval()(x), x)                        # identity in eval()
    torch.manual_seed(5)
    a = _keep_mask(torch.Size([64, 64]), keep)
    torch.manual_seed(5)
    assert torch.equal(a, _keep_mask(torch.Size([64, 64]), keep))   # seeded like every other draw
    g = torch.Generator().manual_seed(5)
    scaled = _keep_mask(torch.Size([37, 5]), keep, g, 1.0 / keep)   # odd size: not a whole number of bytes
    g.manual_seed(5)
    assert torch.equal(scaled, _keep_mask(torch.Size([37, 5]), keep, g) * (1.0 / keep))


def test_posterior_of_all_items_by_ranges_equals_the_lookup_per_item():
    s = simulate_crowd(n_items=300, n_classes=4, n_features=5, n_workers=20, answers_per_item=(1, 4), seed=2)
    tr = KDCrowd(KDConfig(epochs_teacher=1, hidden=8, device="cpu"))
    tr.prepare(s.data, torch.device("cpu"))
    m = tr.new_crowd_model("aggnet")
    ctx = tr.ctx_
    every = torch.arange(ctx.N)
    by_lookup = crowd_posterior(m, ctx.X, ctx.ans, items=every, chunk=64)
    lg = []
    by_ranges = crowd_posterior(m, ctx.X, ctx.ans, chunk=64, logits_out=lg)
    assert torch.allclose(by_lookup, by_ranges, atol=1e-6)
    assert lg[0].shape == (ctx.N, 4)
    sub = torch.arange(0, ctx.N, 3)
    assert torch.allclose(crowd_posterior(m, ctx.X, ctx.ans, items=sub), by_ranges[sub], atol=1e-6)


def test_train_accuracy_from_the_e_step_equals_a_separate_pass():
    """AggNet's per-epoch train accuracy now comes from the E-step's forward pass; it must be the accuracy of
    the classifier at the end of that epoch (the value a separate evaluation gives)."""
    s = simulate_crowd(n_items=300, n_classes=3, n_features=6, n_workers=20, answers_per_item=(2, 4), seed=4)
    data = dataclasses.replace(s.data, gold=s.truth.copy())
    cfg = KDConfig(epochs_teacher=4, epochs_student=1, epochs_stage2=1, cross_fit_folds=3, rounds=1, hidden=16,
                   batch_size=64, device="cpu")
    from kdcrowd_core.kd import _accuracy, train_crowd_model
    tr = KDCrowd(cfg)
    events = []
    from kdcrowd_core.kd.context import _Run
    tr.prepare(data, torch.device("cpu"), run=_Run(events.append, None, 100))
    m = tr.new_crowd_model("aggnet")
    seen = []
    orig = tr.ctx_.run.event

    def spy(stage, ep, n, loss, ta=None, va=None, message="", count=True):
        seen.append((ta, _accuracy(m.classifier, tr.ctx_.X, tr.ctx_.gold)))
        orig(stage, ep, n, loss, ta, va, message, count)
    tr.ctx_.run.event = spy
    train_crowd_model(tr.ctx_, m, torch.arange(0, 300, 2), 4, "teacher", label="t")
    assert len(seen) == 4
    for got, want in seen:
        assert got == pytest.approx(want, abs=1e-12)


def test_stages_pick_threads_and_fit_restores_torchs_setting(monkeypatch):
    """num_threads = 0: every stage caps torch's threads at the idle cores; fit puts torch's setting back."""
    from kdcrowd_core.inference import threads as th
    s = simulate_crowd(n_items=200, n_classes=3, n_features=5, n_workers=10, answers_per_item=(2, 3), seed=1)
    before = torch.get_num_threads()
    seen = []
    monkeypatch.setattr(th, "steady_threads", lambda limit=None: seen.append(limit) or 1)
    KDCrowd(KDConfig(epochs_teacher=1, epochs_student=1, epochs_stage2=1, cross_fit_folds=2, rounds=1, hidden=8,
                     device="cpu")).fit(s.data)
    assert seen and all(v == before for v in seen)       # capped from torch's own setting, once per stage
    assert torch.get_num_threads() == before


def test_aggnet_m_step_by_key_equals_the_per_answer_sum():
    """The M-step's counts as one embedding_bag over the answers ordered by (worker, label) equal the per-answer
    index_add; the training view's answers (a fold's items renumbered) are those items' answers."""
    s = simulate_crowd(n_items=300, n_classes=4, n_features=5, n_workers=20, answers_per_item=(1, 4), seed=2)
    tr = KDCrowd(KDConfig(epochs_teacher=1, hidden=8, device="cpu"))
    tr.prepare(s.data, torch.device("cpu"))
    ctx = tr.ctx_
    q = torch.softmax(torch.randn(ctx.N, 4, generator=torch.Generator().manual_seed(0)), 1)
    a, b = tr.new_crowd_model("aggnet"), tr.new_crowd_model("aggnet")
    a.m_step(q, ctx.ans.item, ctx.ans.worker, ctx.ans.label)
    b.m_step(q, ctx.ans.item, ctx.ans.worker, ctx.ans.label, by_key=ctx.ans.by_key(ctx.R, 4))
    assert torch.allclose(a.T, b.T, atol=1e-6)
    idx = torch.arange(1, ctx.N, 3)
    sub = ctx.ans.subset(idx, ctx.N)
    glob = idx[sub.item]
    mask = torch.isin(ctx.ans.item, idx)
    assert torch.equal(glob, ctx.ans.item[mask]) and torch.equal(sub.worker, ctx.ans.worker[mask])
    assert torch.equal(sub.cnt, ctx.ans.cnt[idx]) and int(sub.ptr[-1]) == int(mask.sum())
    assert torch.allclose(crowd_posterior(a, ctx.X[idx], sub), crowd_posterior(a, ctx.X, ctx.ans, items=idx),
                          atol=1e-6)


@pytest.mark.parametrize("K", [1, 3, 10, 64, 65])
def test_composed_softmax_rows_equal_torchs(K):
    g = torch.Generator().manual_seed(K)
    x = (4 * torch.randn(257, K, generator=g, dtype=torch.float64)).requires_grad_(True)
    x[0, 0].data.fill_(80.0)      # a large logit: the max shift keeps exp finite
    t = torch.softmax(torch.randn(257, K, generator=g, dtype=torch.float64), 1)
    lp = L.log_softmax_rows(x)
    ref = torch.log_softmax(x, 1)
    assert torch.allclose(lp, ref, atol=1e-12) and torch.allclose(L.softmax_rows(x), ref.exp(), atol=1e-12)
    (g_fast,) = torch.autograd.grad(-(t * lp).sum(), x)
    (g_ref,) = torch.autograd.grad(-(t * ref).sum(), x)
    assert torch.allclose(g_fast, g_ref, atol=1e-12)
