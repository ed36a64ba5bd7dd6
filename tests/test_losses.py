"""Each loss against a value computed by hand (numpy, tiny tensors)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdcrowd_core import losses as L

S = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
Q = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]])
P = np.array([0.4, 0.3, 0.3])


def t(a):
    return torch.tensor(a, dtype=torch.float64)


def _kmat():
    B = len(S)
    Km = np.zeros((B, B))
    for i in range(B):
        for j in range(B):
            Km[i, j] = sum(S[i, c] * Q[j, c] / P[c] for c in range(3))
    return Km


def test_crowd_nll_gathers_observed_answers():
    logp = np.log(np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8], [0.25, 0.25, 0.5]]))
    lab = np.array([1, 2, 0])
    expected = -(np.log(0.3) + np.log(0.8) + np.log(0.25)) / 3
    got = L.crowd_nll(t(logp), torch.tensor(lab))
    assert got.item() == pytest.approx(expected, rel=1e-12)
    w = np.array([1.0, 2.0, 0.0])
    expw = -(1 * np.log(0.3) + 2 * np.log(0.8)) / 3
    assert L.crowd_nll(t(logp), torch.tensor(lab), weight=t(w)).item() == pytest.approx(expw, rel=1e-12)
    assert L.crowd_nll(t(logp), torch.tensor(lab), reduction="sum").item() == pytest.approx(3 * expected)


@pytest.mark.parametrize("f", ["kl", "pearson", "hellinger"])
def test_mig_loss_matches_hand_formula(f):
    Km = _kmat()
    B = len(S)
    off = ~np.eye(B, dtype=bool)
    d = np.diag(Km)
    if f == "kl":
        exp = -np.mean(np.log(d)) + Km[off].sum() / (B * (B - 1))
    elif f == "pearson":
        exp = -np.mean(2 * (d - 1)) + (Km[off] ** 2 - 1).sum() / (B * (B - 1))
    else:
        exp = -np.mean(1 - d ** -0.5) + (np.sqrt(Km[off]) - 1).sum() / (B * (B - 1))
    got = L.mig_loss(t(S), t(Q), t(P), f=f)
    assert got.item() == pytest.approx(exp, rel=1e-10)


def test_mig_matrix_and_degenerate_batch():
    np.testing.assert_allclose(L.mig_matrix(t(S), t(Q), t(P)).numpy(), _kmat(), rtol=1e-12)
    one = L.mig_loss(t(S[:1]), t(Q[:1]), t(P))
    assert one.item() == 0.0
    with pytest.raises(ValueError):
        L.mig_loss(t(S), t(Q), t(P), f="js")


def test_mig_rewards_agreement_over_copying_marginals():
    # a student that agrees with the teacher item by item beats one that outputs the prior
    q = torch.eye(3, dtype=torch.float64)
    prior = q.mean(0)
    good = L.mig_loss(q * 0.9 + 0.1 / 3, q, prior)
    flat = L.mig_loss(prior.expand(3, 3), q, prior)
    assert good.item() < flat.item()


def test_kl_distillation_temperature():
    z = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
    q = Q[:2]
    for T in (1.0, 2.0):
        qt = q ** (1 / T)
        qt = qt / qt.sum(1, keepdims=True)
        s = np.exp(z / T)
        s = s / s.sum(1, keepdims=True)
        exp = np.mean((qt * (np.log(qt) - np.log(s))).sum(1)) * T * T
        assert L.kl_distillation(t(z), t(q), temperature=T).item() == pytest.approx(exp, rel=1e-8)


def test_soft_cross_entropy_and_gce():
    z = np.array([[1.0, 0.0, -1.0], [0.2, 0.3, 0.5]])
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = np.array([0, 2])
    assert L.soft_cross_entropy(t(z), torch.tensor(y)).item() == pytest.approx(
        -np.mean(np.log(p[[0, 1], y])), rel=1e-10)
    tq = Q[:2]
    assert L.soft_cross_entropy(t(z), t(tq)).item() == pytest.approx(-np.mean((tq * np.log(p)).sum(1)), rel=1e-10)
    q = 0.7
    assert L.gce_loss(t(z), torch.tensor(y), q=q).item() == pytest.approx(
        np.mean((1 - p[[0, 1], y] ** q) / q), rel=1e-8)
    assert L.gce_loss(t(z), t(tq), q=q).item() == pytest.approx(
        np.mean((tq * (1 - p ** q)).sum(1) / q), rel=1e-8)


def test_small_loss_mask_and_schedule():
    losses = torch.tensor([0.5, 0.1, 0.9, 0.3, 0.7])
    m = L.small_loss_mask(losses, 0.6)
    assert m.tolist() == [True, True, False, True, False]
    assert L.small_loss_mask(losses, 1.0).all()
    assert L.small_loss_mask(losses, 0.0).sum().item() == 1
    assert L.forget_schedule(1, 0.2, 10) == pytest.approx(0.02)
    assert L.forget_schedule(20, 0.2, 10) == pytest.approx(0.2)
    assert L.forget_schedule(3, 0.2, 0) == pytest.approx(0.2)


def test_trace_regulariser():
    T = np.stack([np.eye(3) * 0.5 + 0.5 / 3, np.full((3, 3), 1 / 3)])
    assert L.trace_regulariser(t(T)).item() == pytest.approx(np.trace(T[0]) + np.trace(T[1]))


def test_mig_gradients_are_finite_at_one_hot():
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64, requires_grad=True)
    q = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    for f in L.MIG_FUNCTIONS:
        loss = L.mig_loss(s, q, torch.tensor([0.5, 0.5], dtype=torch.float64), f=f)
        loss.backward()
        assert math.isfinite(loss.item()) and torch.isfinite(s.grad).all()
        s.grad = None


@pytest.mark.parametrize("f", ["kl", "pearson", "hellinger"])
def test_mig_loss_with_an_explicit_marginal_set(f):
    """Marginal pairs (i, j) over every row j of ``marginal_teacher`` except the item's own row."""
    M = np.vstack([Q, [[0.3, 0.3, 0.4], [0.6, 0.2, 0.2]]])           # the batch's targets are rows 0..2
    Km = np.array([[sum(S[i, c] * M[j, c] / P[c] for c in range(3)) for j in range(len(M))] for i in range(3)])
    d = np.array([Km[i, i] for i in range(3)])
    off = np.ones_like(Km, dtype=bool)
    off[np.arange(3), np.arange(3)] = False
    g = {"kl": lambda k: k, "pearson": lambda k: k ** 2 - 1, "hellinger": lambda k: np.sqrt(k) - 1}[f]
    joint = {"kl": np.log(d), "pearson": 2 * (d - 1), "hellinger": 1 - d ** -0.5}[f].mean()
    exp = -joint + g(Km[off]).mean()
    got = L.mig_loss(t(S), t(Q), t(P), f=f, marginal_teacher=t(M), self_index=torch.arange(3))
    assert got.item() == pytest.approx(exp, rel=1e-10)
    # with the batch itself as the marginal set it equals the plain batch estimator
    same = L.mig_loss(t(S), t(Q), t(P), f=f, marginal_teacher=t(Q), self_index=torch.arange(3))
    assert same.item() == pytest.approx(L.mig_loss(t(S), t(Q), t(P), f=f).item(), rel=1e-10)
    # a single item still has marginal pairs against the set
    assert L.mig_loss(t(S[:1]), t(Q[:1]), t(P), f=f, marginal_teacher=t(M), self_index=torch.tensor([0])).item() != 0.0


def test_elr_update_and_regulariser_by_hand():
    ema = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    p = torch.tensor([[0.8, 0.2], [0.3, 0.7]], requires_grad=True)
    new = L.elr_update(ema, p, beta=0.7)
    # 0.7 * 0.5 + 0.3 * 0.8 = 0.59 ; 0.7 * 0.5 + 0.3 * 0.2 = 0.41 ; row 2: 0.7 + 0.09, 0.21
    assert torch.allclose(new, torch.tensor([[0.59, 0.41], [0.79, 0.21]]))
    assert not new.requires_grad
    reg = L.elr_regulariser(p, new)
    # <p, t>: 0.8*0.59 + 0.2*0.41 = 0.554 ; 0.3*0.79 + 0.7*0.21 = 0.384
    expected = (math.log(1 - 0.554) + math.log(1 - 0.384)) / 2
    assert float(reg.detach()) == pytest.approx(expected, rel=1e-5)
    reg.backward()
    # d/dp log(1 - <p, t>) = -t / (1 - <p, t>) / B : pushes p towards its running targets
    assert torch.allclose(p.grad[0], -new[0] / (1 - 0.554) / 2, rtol=1e-5)
    # probabilities are clamped to [1e-4, 1 - 1e-4]: a one-hot prediction on a one-hot target stays finite
    assert torch.isfinite(L.elr_regulariser(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]])))


def test_mig_loss_item_weights():
    s = torch.tensor([[0.7, 0.3], [0.2, 0.8], [0.5, 0.5]])
    q = torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7]])
    p = q.mean(0)
    for f in ("kl", "pearson", "hellinger"):
        plain = L.mig_loss(s, q, p, f=f)
        assert torch.allclose(L.mig_loss(s, q, p, f=f, weight=torch.ones(3)), plain)
        assert torch.allclose(L.mig_loss(s, q, p, f=f, weight=torch.full((3,), 5.0)), plain)
    # weight (1, 0, 0): the joint term is item 0's alone, the marginal term is unchanged
    K00 = float((s[0] / p * q[0]).sum())
    marg = float(L.mig_loss(s, q, p, f="kl") + torch.log(((s / p) * q).sum(1)).mean())
    assert float(L.mig_loss(s, q, p, f="kl", weight=torch.tensor([1.0, 0.0, 0.0]))) == pytest.approx(
        -math.log(K00) + marg, rel=1e-5)
