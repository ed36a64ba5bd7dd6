"""Classifier heads and crowd models: shapes, invariants, hand-checked updates."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kdcrowd_core.errors import CrowdDataError
from kdcrowd_core.models import (available_crowd_models, build_classifier, build_crowd_model, Standardizer)

TEACHERS = ["prob-transition", "crowdlayer-mw", "crowdlayer-vw", "crowdlayer-vb", "crowdlayer-vw+b", "conal", "aggnet"]


def test_registry_names():
    assert set(TEACHERS) <= set(available_crowd_models())
    with pytest.raises(CrowdDataError):
        build_crowd_model("nope", build_classifier("linear", 3, 2), 2, 2)
    with pytest.raises(CrowdDataError):
        build_classifier("resnet", 3, 2)


def test_standardizer_fits_train_statistics():
    X = np.array([[1.0, 5.0, 2.0], [3.0, 5.0, 4.0]], dtype=np.float32)
    s = Standardizer(3).fit(X)
    np.testing.assert_allclose(s.mean.numpy(), [2.0, 5.0, 3.0])
    np.testing.assert_allclose(s.std.numpy(), [1.0, 1.0, 1.0])  # constant feature -> std 1
    np.testing.assert_allclose(s(torch.tensor(X)).numpy(), [[-1, 0, -1], [1, 0, 1]])


@pytest.mark.parametrize("norm", ["none", "batch", "layer"])
@pytest.mark.parametrize("depth", [0, 1, 2])
def test_mlp_shapes_and_eval_determinism(norm, depth):
    torch.manual_seed(0)
    h = build_classifier("mlp", 6, 4, hidden=16, depth=depth, dropout=0.5, norm=norm, feature_noise=0.1)
    x = torch.randn(8, 6)
    h.fit_standardizer(x)
    assert h(x).shape == (8, 4)
    h.eval()
    assert torch.equal(h(x), h(x))


def _answers():
    a_item = torch.tensor([0, 0, 1, 2, 2, 2])
    a_worker = torch.tensor([0, 1, 1, 0, 1, 2])
    a_label = torch.tensor([0, 1, 1, 2, 0, 2])
    return a_item, a_worker, a_label


@pytest.mark.parametrize("name", TEACHERS)
def test_crowd_model_invariants(name):
    torch.manual_seed(0)
    R, K, d = 3, 3, 5
    rng = np.random.default_rng(0)
    T0 = rng.dirichlet(np.ones(K), size=(R, K))
    m = build_crowd_model(name, build_classifier("mlp", d, K, hidden=8), R, K, init_matrices=T0)
    x = torch.randn(3, d)
    m.classifier.fit_standardizer(x)
    m.eval()
    a_item, a_worker, a_label = _answers()
    emb = m.item_embedding(x)
    p = torch.softmax(m(x), dim=1)
    lp = m.answer_log_probs(p, a_item, a_worker, emb)
    assert lp.shape == (6, K)
    np.testing.assert_allclose(lp.exp().sum(1).detach().numpy(), 1.0, rtol=1e-5)
    # with a one-hot classifier output for class j, P(c|x,r) is row j of the answer's matrix
    ll = m.answer_log_lik(a_worker, a_label, None if emb is None else emb[a_item])
    assert ll.shape == (6, K)
    for j in range(K):
        onehot = torch.nn.functional.one_hot(torch.full((3,), j), K).float()
        lpj = m.answer_log_probs(onehot, a_item, a_worker, emb)
        np.testing.assert_allclose(lpj.gather(1, a_label.view(-1, 1)).squeeze(1).detach().numpy(),
                                   ll[:, j].detach().numpy(), rtol=1e-5, atol=1e-6)
    T = m.worker_matrices()
    assert T.shape == (R, K, K)
    np.testing.assert_allclose(T.sum(2).detach().numpy(), 1.0, rtol=1e-5)
    assert torch.isfinite(m.penalty())


def test_prob_transition_starts_at_ds_matrices_and_trace_penalty():
    T0 = np.array([[[0.8, 0.2], [0.3, 0.7]]])
    m = build_crowd_model("prob-transition", build_classifier("linear", 2, 2), 1, 2, init_matrices=T0,
                          trace_lambda=0.5)
    np.testing.assert_allclose(m.worker_matrices().detach().numpy(), T0, rtol=1e-5)
    assert m.penalty().item() == pytest.approx(0.5 * 1.5, rel=1e-5)
    assert set(map(id, m.transition_parameters())) == {id(m.W)}


def test_aggnet_m_step_by_hand():
    R, K = 2, 2
    m = build_crowd_model("aggnet", build_classifier("linear", 2, K), R, K, alpha=1.0)
    q = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    item = torch.tensor([0, 1, 1])
    worker = torch.tensor([0, 0, 1])
    label = torch.tensor([0, 1, 0])
    m.m_step(q, item, worker, label)
    # worker 0: answer 0 on item 0 (q=[.9,.1]), answer 1 on item 1 (q=[.2,.8])
    # counts[j, c]: j=0: c0 .9, c1 .2 ; j=1: c0 .1, c1 .8  (+1 each)
    exp0 = np.array([[1.9, 1.2], [1.1, 1.8]])
    exp0 /= exp0.sum(1, keepdims=True)
    exp1 = np.array([[1.2, 1.0], [1.8, 1.0]])
    exp1 /= exp1.sum(1, keepdims=True)
    np.testing.assert_allclose(m.T.numpy(), np.stack([exp0, exp1]), rtol=1e-6)


def test_crowdlayer_learns_a_flipping_worker():
    """Worker 1 always answers the other class (workers 0 and 2 are right): MW must learn the flip."""
    torch.manual_seed(0)
    from kdcrowd_core.losses import crowd_nll
    n, K = 200, 2
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, K, (n,), generator=g)
    x = torch.randn(n, 2, generator=g) + 3.0 * torch.nn.functional.one_hot(y, K).float()
    a_item = torch.arange(n).repeat(3)
    a_worker = torch.arange(3).repeat_interleave(n)
    a_label = torch.cat([y, 1 - y, y])
    m = build_crowd_model("crowdlayer-mw", build_classifier("linear", 2, K), 3, K)
    m.classifier.fit_standardizer(x)
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    for _ in range(200):
        p = torch.softmax(m(x), 1)
        loss = crowd_nll(m.answer_log_probs(p, a_item, a_worker), a_label)
        opt.zero_grad()
        loss.backward()
        opt.step()
    T = m.worker_matrices().detach().numpy()
    assert T[1, 0, 1] > 0.8 and T[1, 1, 0] > 0.8
    assert T[0, 0, 0] > 0.8 and T[0, 1, 1] > 0.8


def test_ensemble_head_averages_member_probabilities():
    from kdcrowd_core.models import EnsembleHead
    torch.manual_seed(0)
    members = [build_classifier("mlp", 5, 3, hidden=8) for _ in range(3)]
    x = torch.randn(7, 5)
    ens = EnsembleHead(members).fit_standardizer(x)
    ens.eval()
    expected = torch.stack([torch.softmax(m(x), 1) for m in members]).mean(0)
    torch.testing.assert_close(torch.softmax(ens(x), 1), expected, rtol=1e-5, atol=1e-6)
    assert (ens.n_features, ens.n_classes) == (5, 3)
    back = EnsembleHead([build_classifier("mlp", 5, 3, hidden=8) for _ in range(3)])
    back.load_state_dict(ens.state_dict())
    back.eval()
    torch.testing.assert_close(back(x), ens(x))
    with pytest.raises(CrowdDataError):
        EnsembleHead([])
