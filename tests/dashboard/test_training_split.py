"""Holding gold items out of training for model selection (the Train page's "Gold items for model selection")."""
from __future__ import annotations

import numpy as np

from dashboard.training import MAX_VALID_SHARE, split_gold_for_validation
from kdcrowd_core.simulate import simulate_crowd


def _crowd(gold_fraction=0.3):
    return simulate_crowd(n_items=120, n_classes=3, n_features=4, n_workers=10, answers_per_item=(2, 3),
                          gold_fraction=gold_fraction, seed=5).data


def test_split_holds_out_a_share_of_the_gold_and_keeps_every_worker():
    c = _crowd()
    n_gold = int(c.gold_mask.sum())
    train, (Xv, yv) = split_gold_for_validation(c, 0.5, seed=1)
    assert len(yv) == round(0.5 * n_gold) and (yv >= 0).all()
    assert train.n_items == c.n_items - len(yv) and list(train.worker_ids) == list(c.worker_ids)
    assert int(train.gold_mask.sum()) == n_gold - len(yv)
    held = np.setdiff1d(np.asarray(c.item_ids), np.asarray(train.item_ids))
    pos = c.item_ids.get_indexer(held)
    assert np.array_equal(c.features[pos], Xv) and np.array_equal(c.gold[pos], yv)
    # same seed, same split; the share is capped so that some gold still scores the run
    assert np.array_equal(split_gold_for_validation(c, 0.5, seed=1)[1][1], yv)
    train_all, (_, y_all) = split_gold_for_validation(c, 1.0)
    assert len(y_all) == round(MAX_VALID_SHARE * n_gold) and train_all.gold_mask.sum() >= 1


def test_split_is_a_no_op_without_a_share_or_gold():
    c = _crowd()
    assert split_gold_for_validation(c, 0.0) == (c, None)
    no_gold = _crowd(gold_fraction=0.0)
    assert split_gold_for_validation(no_gold, 0.5)[1] is None
