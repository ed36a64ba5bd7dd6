"""Hierarchical Dawid-Skene on sparse counts (many classes) against the dense fit, and the compact matrices."""
from __future__ import annotations

import numpy as np
import pytest

from kdcrowd_core.inference import get_method
from kdcrowd_core.inference.base import expected_confusion
from kdcrowd_core.inference.matrices import ShrunkMatrices, block, diagonals
from kdcrowd_core.simulate import simulate_crowd


@pytest.fixture(scope="module")
def sim():
    return simulate_crowd(n_items=800, n_classes=12, n_features=0, n_workers=25, answers_per_item=(3, 5), seed=7)


@pytest.fixture(scope="module")
def fits(sim):
    # strengths fixed: the E- and M-steps compared without the search (tested on its own below)
    fixed = {"use_gold": False, "strength_grid": (16.0,), "accuracy_strength_grid": (4.0,)}
    dense = get_method("adaptive", sparse_from_classes=0, **fixed).fit(sim.data)
    sparse = get_method("adaptive", sparse_from_classes=2, **fixed).fit(sim.data)
    return dense, sparse


def test_sparse_fit_matches_the_dense_fit(sim, fits):
    dense, sparse = fits
    assert dense.matrices_ is None and isinstance(sparse.matrices_, ShrunkMatrices)
    assert (sparse.labels_ == dense.labels_).mean() >= 0.995
    diff = np.abs(sparse.proba_array_ - dense.proba_array_)
    assert diff.max() < 0.1 and diff.mean() < 1e-3
    assert np.abs(sparse.worker_matrices_ - dense.worker_matrices_).max() < 0.01
    assert np.abs(sparse.skills_.to_numpy() - dense.skills_.to_numpy()).max() < 0.01
    assert abs(sparse.loglik_history_[-1] - dense.loglik_history_[-1]) < 1e-3
    acc = lambda m: (m.proba_array_.argmax(axis=1) == sim.truth).mean()  # noqa: E731
    assert abs(acc(sparse) - acc(dense)) <= 0.005


def test_sparse_fit_with_the_strength_search_as_accurate_as_dense(sim):
    dense = get_method("adaptive", use_gold=False, sparse_from_classes=0).fit(sim.data)
    sparse = get_method("adaptive", use_gold=False, sparse_from_classes=2).fit(sim.data)
    acc = lambda m: (m.proba_array_.argmax(axis=1) == sim.truth).mean()  # noqa: E731
    assert abs(acc(sparse) - acc(dense)) <= 0.01
    assert sparse.strength_ in sparse.strength_grid and sparse.accuracy_strength_ in sparse.accuracy_strength_grid


def test_strength_scores_equal_the_dense_scores(sim):
    """The search's scores on sparse cells equal the dense fit's scores on the same posteriors."""
    import torch
    from kdcrowd_core.inference._sparse import AnswerOperator
    from kdcrowd_core.inference.adaptive import _answer_sample, _loo_matrix_score
    from kdcrowd_core.inference.adaptive_sparse import SparseHDSFit, _csr, _matmul
    data = sim.data
    N, R, K = data.n_items, data.n_workers, data.n_classes
    fit = SparseHDSFit(get_method("adaptive", use_gold=False), data)
    fit.sample = _answer_sample(data, 2000, torch.device("cpu"))
    grid = torch.tensor([0.25, 1.0, 4.0, 16.0, 64.0], dtype=torch.float64)
    fit.acc_grid = grid
    q = np.random.default_rng(0).dirichlet(np.full(K, 0.5), size=N)
    qs = (torch.arange(N).repeat_interleave(K), torch.arange(K).repeat(N), torch.from_numpy(q.ravel()))
    fit.prev = None
    fit._m_step(qs, grid, search=True)                 # a previous M-step: q_loo from its matrices
    st = fit.prev
    Q = _csr(*qs, (N, K))
    C, n = _matmul(fit.At, Q), _matmul(fit.Wt, Q).to_dense()
    cells = fit._sample_cells(Q, C, n)
    prior = torch.from_numpy(q.mean(axis=0))
    mine = fit._matrix_score(cells, n, st["d"], st["b"], grid, prior)
    qt = torch.from_numpy(q)
    counts = AnswerOperator(data, torch.device("cpu"), torch.float64).scatter_sum(qt).reshape(R, K, K).transpose(1, 2)
    mean = st["b"][:, None, None].expand(R, K, K).clone()
    mean[:, torch.arange(K), torch.arange(K)] = st["d"][:, None]
    worker, label, item = fit.sample
    T_prev = (counts + st["s"] * mean) / (n[:, :, None] + st["s"])
    q_loo = torch.softmax(qt[item].log() - T_prev[worker, :, label].log(), dim=1)
    dense = _loo_matrix_score(counts, mean, qt[item], q_loo, worker, label, grid, prior)
    torch.testing.assert_close(mine, dense, rtol=0, atol=1e-9)
    torch.testing.assert_close(cells["p_loo"], q_loo.gather(1, label[:, None])[:, 0], rtol=0, atol=1e-12)


def test_sparse_fit_outputs_are_distributions(sim, fits):
    _, sparse = fits
    T = sparse.worker_matrices_
    assert T.shape == (sim.data.n_workers, 12, 12)
    np.testing.assert_allclose(T.sum(axis=2), 1.0, atol=1e-9)
    np.testing.assert_allclose(sparse.proba_array_.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(sparse.pooled_matrix_.sum(axis=1), 1.0, atol=1e-9)
    assert sparse.errors_.shape == (sim.data.n_workers * 12, 12)


def test_sparse_fit_clamps_gold():
    sim = simulate_crowd(n_items=300, n_classes=6, n_features=0, n_workers=15, gold_fraction=0.2, seed=2)
    m = get_method("adaptive", sparse_from_classes=2).fit(sim.data)
    g = sim.data.gold
    assert (g >= 0).any()
    np.testing.assert_array_equal(m.proba_array_[g >= 0].argmax(axis=1), g[g >= 0])
    np.testing.assert_allclose(m.proba_array_[g >= 0].max(axis=1), 1.0)


def test_default_path_by_number_of_classes(sim):
    assert get_method("adaptive")._use_sparse(sim.data) is False          # 12 classes: dense
    assert get_method("adaptive", sparse_from_classes=12)._use_sparse(sim.data) is True
    assert get_method("adaptive", sparse_from_classes=12, error_pattern="pooled")._use_sparse(sim.data) is False


def test_shrunk_matrices_blocks_agree_with_the_dense_array(fits):
    _, sparse = fits
    M = sparse.matrices_
    T = np.asarray(M)
    R, K = T.shape[0], T.shape[1]
    np.testing.assert_allclose(M[3], T[3])
    np.testing.assert_allclose(M[-1], T[-1])
    np.testing.assert_allclose(M[2:5], T[2:5])
    codes, classes = np.array([4, 0, 7]), np.array([5, 1, 9])
    np.testing.assert_allclose(block(M, codes, classes), block(T, codes, classes))
    np.testing.assert_allclose(block(M, codes), T[codes])
    np.testing.assert_allclose(M[codes[:, None, None], classes[None, :, None], classes[None, None, :]],
                               T[codes[:, None, None], classes[None, :, None], classes[None, None, :]])
    np.testing.assert_allclose(diagonals(M), np.diagonal(T, axis1=1, axis2=2))
    assert M.shape == (R, K, K) and len(M) == R


def test_spammer_scores_of_compact_matrices_equal_the_dense_formula(fits):
    from kdcrowd_core import metrics
    M = fits[1].matrices_
    dense = metrics.spammer_score(np.asarray(M))
    np.testing.assert_allclose(M.spammer_scores(), dense, atol=1e-12)
    np.testing.assert_allclose(metrics.spammer_score(M), dense, atol=1e-12)


def test_compact_matrices_feed_worker_stats(sim, fits):
    from kdcrowd_core import metrics, quality
    _, sparse = fits
    a = metrics.worker_stats(sim.data, sparse.proba_array_, sparse.matrices_)
    b = metrics.worker_stats(sim.data, sparse.proba_array_, sparse.worker_matrices_)
    np.testing.assert_allclose(a.to_numpy(dtype=float), b.to_numpy(dtype=float))
    ra = quality.worker_report(sim.data, sparse.proba_array_, sparse.matrices_)
    rb = quality.worker_report(sim.data, sparse.proba_array_, sparse.worker_matrices_)
    np.testing.assert_allclose(ra["accuracy_low"], rb["accuracy_low"])


def test_matrices_from_posteriors_are_built_when_read(sim):
    mv = get_method("mv").fit(sim.data)
    assert "_dense_matrices" not in mv.__dict__ or mv.__dict__["_dense_matrices"] is None
    np.testing.assert_allclose(mv.worker_matrices_, expected_confusion(sim.data, mv.proba_array_, alpha=1.0))
    assert mv.compact_matrices_ is mv.worker_matrices_


def test_accuracy_interval_from_diagonals_matches_the_full_counts():
    from kdcrowd_core import quality
    rng = np.random.default_rng(1)
    counts = rng.gamma(0.5, 2.0, size=(5, 6, 6))
    pi = np.full(6, 1 / 6)
    full = quality.matrix_accuracy_posterior(counts, pi)
    part = quality._accuracy_posterior(np.einsum("rjj->rj", counts), counts.sum(axis=2), pi)
    for x, y in zip(full, part):
        np.testing.assert_allclose(x, y)


def test_accuracy_interval_normal_with_many_classes_close_to_monte_carlo(monkeypatch):
    from kdcrowd_core import quality
    rng = np.random.default_rng(2)
    counts = rng.gamma(0.3, 2.0, size=(4, 150, 150))
    pi = np.full(150, 1 / 150)
    normal = quality.matrix_accuracy_posterior(counts, pi)
    monkeypatch.setattr(quality, "NORMAL_INTERVAL_CLASSES", 10**9)
    mc = quality.matrix_accuracy_posterior(counts, pi)
    np.testing.assert_allclose(normal[0], mc[0])
    assert np.abs(np.asarray(normal[1:]) - np.asarray(mc[1:])).max() < 0.005


def test_sums_over_workers_by_expansion_equal_the_sampled_product(sim, fits, monkeypatch):
    """Many workers: the E-step sums run by expansion instead of the sampled dense product; same fit."""
    from kdcrowd_core.inference import adaptive_sparse
    monkeypatch.setattr(adaptive_sparse, "DENSE_W_WORKERS", 0)
    _, sparse = fits
    other = get_method("adaptive", use_gold=False, sparse_from_classes=2, strength_grid=(16.0,),
                       accuracy_strength_grid=(4.0,)).fit(sim.data)
    np.testing.assert_allclose(other.proba_array_, sparse.proba_array_, atol=1e-9)
