"""Hierarchical Dawid-Skene, the adaptive truth-inference default."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kdcrowd_core.inference import DEFAULT_METHOD, HierarchicalDawidSkene, get_method
from kdcrowd_core.inference.adaptive import _one_se_choice
from kdcrowd_core.simulate import simulate_crowd

import torch


def _accuracy(method, sim) -> float:
    return float((method.fit(sim.data).proba_array_.argmax(axis=1) == sim.truth).mean())


def test_registered_as_the_default():
    assert DEFAULT_METHOD == "hierarchical_dawid_skene"
    assert isinstance(get_method(None), HierarchicalDawidSkene)
    assert isinstance(get_method("adaptive"), HierarchicalDawidSkene)


def test_fitted_attributes_are_valid_distributions():
    sim = simulate_crowd(n_items=300, n_classes=4, n_features=0, n_workers=30, answers_per_item=(2, 4), seed=3)
    est = get_method("adaptive").fit(sim.data)
    T = est.worker_matrices_
    assert T.shape == (sim.data.n_workers, 4, 4)
    np.testing.assert_allclose(T.sum(axis=2), 1.0, atol=1e-9)
    np.testing.assert_allclose(est.proba_array_.sum(axis=1), 1.0, atol=1e-9)
    assert est.strength_ in est.strength_grid and est.accuracy_strength_ in est.accuracy_strength_grid
    assert ((est.skills_ > 0) & (est.skills_ < 1)).all()
    assert len(est.loglik_history_) == est.n_iter_ and np.isfinite(est.loglik_history_).all()


def test_dense_workers_keep_their_own_matrices():
    """Workers with many answers and class-specific confusions: as good as plain DS, better than one-coin."""
    sim = simulate_crowd(n_items=1500, n_classes=4, n_features=0, n_workers=12, answers_per_item=(3, 3),
                         worker_activity="uniform", seed=5)
    ds = _accuracy(get_method("dawid_skene"), sim)
    one_coin = _accuracy(get_method("one_coin"), sim)
    ours = _accuracy(get_method("adaptive"), sim)
    assert ours >= ds - 0.01
    assert ours > one_coin + 0.005


def test_sparse_workers_borrow_strength():
    """Many workers with a handful of answers each: plain DS overfits, the hierarchical prior does not."""
    sim = simulate_crowd(n_items=1500, n_classes=6, n_features=0, n_workers=600, answers_per_item=(2, 3),
                         worker_activity="uniform", seed=11)
    ds = _accuracy(get_method("dawid_skene"), sim)
    ours = _accuracy(get_method("adaptive"), sim)
    assert ours > ds + 0.1
    assert ours > _accuracy(get_method("majority_vote"), sim) + 0.02


def test_gold_is_clamped_and_float32_runs():
    sim = simulate_crowd(n_items=200, n_classes=3, n_features=0, n_workers=20, gold_fraction=0.2, seed=2)
    est = HierarchicalDawidSkene(dtype="float32").fit(sim.data)
    g = sim.data.gold >= 0
    assert (est.proba_array_[g].argmax(axis=1) == sim.data.gold[g]).all()
    assert np.isfinite(est.proba_array_).all()


def test_crowdkit_frame_and_true_labels():
    df = pd.DataFrame({"task": [1, 1, 1, 2, 2, 2, 3, 3], "worker": list("abcabcab"),
                       "label": ["x", "x", "y", "y", "y", "x", "x", "y"]})
    est = HierarchicalDawidSkene().fit(df, pd.Series({3: "y"}))
    assert list(est.labels_.index) == [1, 2, 3] and est.labels_.index.dtype.kind == "i"
    assert est.labels_.loc[3] == "y"                      # the gold label
    assert list(est.probas_.columns) == ["x", "y"]


def test_one_standard_error_rule_prefers_more_pooling_within_noise():
    grid = torch.tensor([1.0, 2.0, 4.0])
    scores = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.1, -0.1, 0.1, -0.1], [-5.0, -5.0, -5.0, -5.0]])
    assert float(_one_se_choice(scores, grid, 1.0)) == 2.0      # 1 and 2 tie within noise; 4 is far worse
    assert float(_one_se_choice(scores, grid, 0.0)) in (1.0, 2.0)


def test_bad_settings_are_refused():
    from kdcrowd_core.errors import CrowdDataError
    sim = simulate_crowd(n_items=50, n_classes=3, n_features=0, n_workers=5, seed=0)
    with pytest.raises(CrowdDataError):
        HierarchicalDawidSkene(strength_grid=()).fit(sim.data)
    with pytest.raises(CrowdDataError):
        HierarchicalDawidSkene(dtype="float16").fit(sim.data)


def test_very_sparse_crowd_keeps_up_with_one_coin():
    """K = 10, ~5 answers per worker: the previous rule (k from 0.25, one SE) was 1.5 pt below one-coin here."""
    import pandas as pd
    from kdcrowd_core.inference import get_method
    sim = simulate_crowd(n_items=1500, n_classes=10, n_features=0, n_workers=600, answers_per_item=(1, 3),
                         worker_activity="uniform", seed=11)
    df = sim.data.to_frame()
    truth = pd.Series(sim.data.classes.take(sim.truth), index=sim.data.item_ids)

    def accuracy(method) -> float:
        return float((method.fit_predict(df).reindex(truth.index) == truth).mean())
    default = HierarchicalDawidSkene()
    ours, coin = accuracy(default), accuracy(get_method("one_coin_dawid_skene"))
    from kdcrowd_core.inference.adaptive import ACCURACY_STRENGTH_GRID
    assert default.accuracy_strength_ in ACCURACY_STRENGTH_GRID
    assert min(ACCURACY_STRENGTH_GRID) == 2.0     # the Laplace-strength floor itself is a candidate
    assert ours >= coin - 0.005, (ours, coin)
