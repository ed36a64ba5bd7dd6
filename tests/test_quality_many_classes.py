"""Item quality with many classes (issue 10, item 8): the calibrated posterior builds no (R, K, K)
matrices and no (answers, K) array above ``COMPACT_POSTERIOR_FROM_CLASSES`` classes."""
from __future__ import annotations

import tracemalloc

import numpy as np

from kdcrowd_core import quality
from kdcrowd_core.data import CrowdData


def _crowd(n_items: int, n_classes: int, n_workers: int, seed: int = 0) -> tuple[CrowdData, np.ndarray]:
    rng = np.random.default_rng(seed)
    item = np.repeat(np.arange(n_items), 4)
    worker = np.concatenate([rng.choice(n_workers, 4, replace=False) for _ in range(n_items)])
    truth = rng.integers(0, n_classes, n_items)
    label = np.where(rng.random(item.size) < 0.7, truth[item], rng.integers(0, n_classes, item.size))
    data = CrowdData.from_arrays(item, worker, label, classes=[f"c{k}" for k in range(n_classes)])
    q = rng.dirichlet(np.full(n_classes, 0.05), n_items)
    q[np.arange(n_items), truth] += 1.0
    return data, q / q.sum(axis=1, keepdims=True)


def _peak_mb(fn) -> tuple[float, object]:
    tracemalloc.start()
    try:
        out = fn()
        return tracemalloc.get_traced_memory()[1] / 2**20, out
    finally:
        tracemalloc.stop()


def test_compact_posterior_equals_the_dense_one():
    data, q = _crowd(300, 6, 12)
    model = np.random.default_rng(3).dirichlet(np.ones(6), 300)
    for mp in (None, model):
        dense = quality.crowd_posterior(data, q, mp, compact=False)
        comp = quality.crowd_posterior(data, q, mp, compact=True)
        assert comp.matrices is None and dense.matrices is not None
        assert (comp.tau, comp.weight) == (dense.tau, dense.weight)
        assert abs(comp.heldout_loglik - dense.heldout_loglik) < 1e-12
        np.testing.assert_allclose(comp.proba, dense.proba, atol=1e-12)
        pool = np.tensordot(data.answers_per_worker().astype(float), dense.matrices, axes=1)
        np.testing.assert_allclose(comp.activity_pool, pool, rtol=1e-10)
        gain = quality.expected_gain(data, comp)      # the whole pool's matrix (no per-item matrices)
        assert gain.shape == (300,) and np.isfinite(gain).all()


def test_item_quality_with_300_classes_stays_small():
    """The dense path held R x K x K matrices (several copies) and an answers x K array: 3.3 GB at 1,000 classes."""
    data, q = _crowd(600, 300, 40)
    dense_mb, _ = _peak_mb(lambda: quality.crowd_posterior(data, q, compact=False))
    comp_mb, post = _peak_mb(lambda: quality.crowd_posterior(data, q))
    assert post.matrices is None and post.proba.shape == (600, 300)
    assert np.allclose(post.proba.sum(axis=1), 1.0)
    assert dense_mb > 60, dense_mb           # the old path: 40 x 300 x 300 float64 = 29 MB per copy
    assert comp_mb < 25, (comp_mb, dense_mb)
    peak, table = _peak_mb(lambda: quality.item_quality(data, q, class_probas=False))
    assert len(table) == 600 and table["quality"].between(0, 1).all()
    assert peak < 40, peak
    # the consensus is the method's label; most items' quality is high on this easy crowd
    assert (table["consensus"].to_numpy() == data.classes.take(q.argmax(axis=1)[
        data.item_ids.get_indexer(table.index)])).all()


def test_many_workers_accuracy_interval_matches_the_draws():
    """Past MONTE_CARLO_MAX_DRAWS the interval is a moment-matched Beta: close to many draws' quantiles."""
    rng = np.random.default_rng(0)
    R, K = 40, 8
    pi = rng.dirichlet(np.full(K, 5.0))
    rows = rng.poisson(rng.choice([0.3, 2, 10, 60], R)[:, None] * pi * K * 0.5, (R, K)).astype(float)
    diag = rows * rng.uniform(0.3, 0.95, (R, 1))
    ref = quality._accuracy_posterior(diag, rows, pi, draws=40_000)      # 12.8M draws: Monte Carlo
    mc = quality._accuracy_posterior(diag, rows, pi, draws=2000)
    old = quality.MONTE_CARLO_MAX_DRAWS
    quality.MONTE_CARLO_MAX_DRAWS = 0
    try:
        approx = quality._accuracy_posterior(diag, rows, pi, draws=2000)
    finally:
        quality.MONTE_CARLO_MAX_DRAWS = old
    np.testing.assert_allclose(approx[0], ref[0])
    gap = np.abs(np.r_[approx[1] - ref[1], approx[2] - ref[2]])
    gap_mc = np.abs(np.r_[mc[1] - ref[1], mc[2] - ref[2]])
    assert gap.mean() < 0.002 and gap.max() < 0.01, (gap.mean(), gap.max())
    assert gap.mean() <= gap_mc.mean() + 0.001, (gap.mean(), gap_mc.mean())
    assert ((approx[1] <= approx[0]) & (approx[0] <= approx[2])).all()


def test_expected_gain_on_the_top_classes_matches_the_full_one():
    data, q = _crowd(400, 300, 30)
    post = quality.crowd_posterior(data, q)
    sc = quality.quality_scores(data, q)
    full = quality.expected_gain(data, post, sc.quality, sc.consensus, top_classes=300)
    top = quality.expected_gain(data, post, sc.quality, sc.consensus)     # 32 classes per item above 200
    every = quality.expected_gain(data, post, sc.quality, sc.consensus, top_classes=299)
    assert np.abs(every - full).max() < 1e-3
    assert np.corrcoef(top, full)[0, 1] > 0.95, np.corrcoef(top, full)[0, 1]
    assert np.abs(top - full).mean() < 0.02, np.abs(top - full).mean()
    table = quality.relabel_next(data, q, 20, scores=sc)
    assert len(table) == 20 and np.isfinite(table["expected_gain"]).all()


def test_votes_text_from_sparse_counts_equals_the_table_one():
    for k in (3, 50):
        data, _ = _crowd(500, k, 10)
        C = np.bincount(data.item * k + data.label, minlength=500 * k).reshape(500, k)
        assert (quality._votes_text_sparse(data) == quality._votes_text(C, data.classes)).all()
