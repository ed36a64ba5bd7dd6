"""The Item quality page's library paths with many classes (issue 10, item 8): the same numbers with less
work and memory — one answers' likelihood for the two posteriors of :func:`quality.quality_scores`, per-item
sums that touch only the items of each chunk of answers, the ranking score a block of rows at a time."""
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
    label = np.where(rng.random(item.size) < 0.6, truth[item], rng.integers(0, n_classes, item.size))
    label[worker == 0] = 0                      # a spammer: one label for all its items (a pair with many items)
    data = CrowdData.from_arrays(item, worker, label, classes=[f"c{k}" for k in range(n_classes)])
    q = rng.dirichlet(np.full(n_classes, 0.1), n_items)
    q[np.arange(n_items), truth] += 2.0
    return data, q / q.sum(axis=1, keepdims=True)


def _peak_bytes(fn) -> tuple[int, object]:
    fn()                                        # imports and caches outside the measurement
    tracemalloc.start()
    try:
        out = fn()
        return tracemalloc.get_traced_memory()[1], out
    finally:
        tracemalloc.stop()


def test_answer_columns_equal_the_plain_sparse_sums():
    data, q = _crowd(400, 90, 15)
    cols = quality._AnswerColumns(data, q, 90.0, max_block=9_000)
    assert cols.heavy_sums.shape[0] > 0                     # the spammer's pair is summed once
    every = np.arange(data.item.size)
    plain = np.asarray(cols.S[cols.pair] @ q)
    expected = (plain + 90.0 * cols.pooled[:, data.label].T) / (cols.n[data.worker] + 90.0)
    np.testing.assert_array_equal(cols.columns(every), expected)
    L = np.zeros((data.n_items, data.n_classes))
    np.add.at(L, data.item, np.log(np.clip(expected, 1e-12, None)))
    np.testing.assert_allclose(cols.item_loglik(), L, rtol=1e-13, atol=1e-12)


def test_item_loglik_writes_no_items_x_classes_array_per_chunk():
    """Each chunk of answers was summed into a new (items, K) array (80 MB per chunk at 10,000 x 1,000)."""
    data, q = _crowd(3000, 200, 20)
    cols = quality._AnswerColumns(data, q, 200.0, max_block=20_000)
    peak, L = _peak_bytes(cols.item_loglik)
    assert L.shape == (3000, 200)
    assert peak < 1.5 * L.nbytes, peak / L.nbytes            # the old sums: at least 2 x L


def test_quality_scores_share_one_likelihood_and_give_the_same_posteriors():
    for K in (5, 120):                                       # the dense and the compact path
        data, q = _crowd(300, K, 12, seed=K)
        model = np.random.default_rng(3).dirichlet(np.ones(K), 300)
        for mp in (None, model):
            sc = quality.quality_scores(data, q, mp, heldout_refit=False)     # the in-sample tempering, as alone
            alone = quality.crowd_posterior(data, q, mp)      # its own likelihood
            np.testing.assert_array_equal(sc.posterior.proba, alone.proba)
            assert (sc.posterior.tau, sc.posterior.weight) == (alone.tau, alone.weight)
    lik = quality.answer_likelihood(data, q)
    lik.reusable = False
    quality.crowd_posterior(data, q, likelihood=lik)
    assert lik.L is None                                     # used up: the posterior took its memory
    try:
        quality.crowd_posterior(data, q, likelihood=lik)
        raise AssertionError("a used-up likelihood was accepted")
    except quality.CrowdDataError as exc:
        assert "used up" in str(exc)


def test_rank_score_by_blocks_of_rows_is_the_same_and_small():
    data, q = _crowd(2000, 300, 20)
    sc = quality.quality_scores(data, q)
    sharp = quality.crowd_posterior(data, q, tau=1.0, overdispersion=0.0).proba
    cons, agree = sc.consensus, np.nan_to_num(sc.agreement, nan=0.0)
    whole_block = quality._RANK_BLOCK
    try:
        quality._RANK_BLOCK = q.size                          # one block: the whole arrays at once
        whole = quality._rank_score([q, q], cons, agree, None, sc.posterior, sharp)
        quality._RANK_BLOCK = 5_000
        peak, blocks = _peak_bytes(lambda: quality._rank_score([q, q], cons, agree, None, sc.posterior, sharp))
    finally:
        quality._RANK_BLOCK = whole_block
    np.testing.assert_array_equal(blocks, whole)
    assert peak < 0.5 * q.nbytes, peak / q.nbytes           # the old score copied q and sharp whole


def test_quality_scores_many_classes_without_model_read_the_tie_break_by_blocks():
    """Many classes, no model: the tie-break's posterior is read a block of rows at a time before the
    calibrated posterior takes the likelihood's memory (the same numbers as reading its whole ``proba``)."""
    data, q = _crowd(1500, 300, 20)
    sc = quality.quality_scores(data, q)
    sharp = quality.crowd_posterior(data, q, tau=1.0, overdispersion=0.0).proba
    agree = np.nan_to_num(sc.agreement, nan=0.0)
    whole = quality._rank_score([q, q], sc.consensus, agree, None, sc.posterior, sharp)
    np.testing.assert_array_equal(sc.rank_score, quality._sigmoid(whole))


def test_expected_gain_a_few_items_at_a_time_is_the_same_and_small():
    """Above 200 classes the gain works a few items at a time, its belief included (it copied the (N, K)
    posterior and went through (items, 32, K) blocks of 4 million numbers)."""
    data, q = _crowd(2000, 250, 15)
    sc = quality.quality_scores(data, q)
    post = sc.posterior
    act = data.answers_per_worker().astype(float)
    P = np.clip(post.activity_pool / act.sum(), 1e-12, None)
    belief = quality._belief(post.proba, sc.consensus, sc.quality)
    cache_block = quality._GAIN_CACHE_BLOCK
    for tau in (1.0, 0.5):
        try:
            quality._GAIN_CACHE_BLOCK = 10**9                # whole blocks of max_block numbers (the old way)
            whole = quality._expected_gain_top(belief, sc.consensus, P, tau, 32, 4_000_000)
        finally:
            quality._GAIN_CACHE_BLOCK = cache_block
        few = quality._expected_gain_top(post.proba, sc.consensus, P, tau, 32, 4_000_000, quality=sc.quality)
        np.testing.assert_array_equal(few, whole)
    peak, gain = _peak_bytes(lambda: quality.expected_gain(data, post, sc.quality, sc.consensus))
    assert gain.shape == (2000,) and np.isfinite(gain).all()
    assert peak < post.proba.nbytes, peak / post.proba.nbytes     # the old belief alone: one (N, K) copy
