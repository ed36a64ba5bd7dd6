"""One KD-Crowd pipeline for ``kdcrowd train``, the dashboard and ``benchmarks/kd_accuracy.py``.

All three prepare their data with the same functions and train with :func:`train_kd`, so the same
data, splits and settings give the same numbers:

- :func:`read_split`: validation or test features with their labels, from files;
- :func:`hold_out_gold`: hold some gold items (and their answers) out of training as validation data
  (``kdcrowd train --valid-from-gold N``, the Train page's validation share, the benchmark's Music songs);
- :func:`leave_out_items`: validation items that also have answers leave training;
- :func:`train_kd`: ``KDCrowd(config).fit(data, valid, test)``; returns the fitted trainer
  (``trainer.result_`` is the :class:`~.result.KDResult`).
"""
from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import pandas as pd

from ..data import CrowdData
from ..errors import CrowdDataError
from .config import KDConfig
from .trainer import KDCrowd


def labels_to_codes(series: pd.Series, ids: pd.Index, classes: pd.Index, path: str) -> np.ndarray:
    """Gold labels (a Series indexed by item id) as class codes aligned with ``ids`` (-1 = no label)."""
    from ..data import _coerce_like, _normalise_labels
    s = pd.Series(_normalise_labels(pd.Series(series.to_numpy(), dtype=object)).to_numpy(), index=series.index)
    s.index = pd.Index(_coerce_like(s.index, ids))
    s = s[~s.index.duplicated(keep="last")]
    vals = s.reindex(ids)
    codes = np.full(len(ids), -1, dtype=np.int64)
    known = vals.notna().to_numpy()
    idx = classes.get_indexer(vals[known])
    if (idx < 0).any():
        bad = list(pd.unique(vals[known][idx < 0]))[:5]
        raise CrowdDataError(f"labels {bad} are not classes of the answers ({list(classes)}).", path=path,
                             hint="use the same label names as in the answers file.")
    codes[known] = idx
    return codes


def read_split(features: str, gold: str | None, classes: pd.Index, what: str, options=None):
    """``(X, y or None, ids)`` of a validation or test split from a features file and a gold file
    (``options``: the :class:`~kdcrowd_core.io.ReadOptions` the answers were read with)."""
    from ..io import read_features, read_gold
    X, ids, _ = read_features(features, options=None if options is None else options.replace(feature_ids=None))
    y = None
    if gold:
        y = labels_to_codes(read_gold(gold, options=options), ids, classes, gold)
        if (y < 0).all():
            raise CrowdDataError(f"none of the {what} labels match the {what} features' item ids.", path=gold,
                                 hint="the item ids in both files must be the same.")
    return X, y, ids


def hold_out_gold(data: CrowdData, n: float, seed: int = 0):
    """Hold gold items out of training as validation data: ``n >= 1`` items, or the share ``0 < n < 1``
    of the gold items (at most all but one), drawn with ``seed``.

    Returns ``(training data, (features, gold codes) or None, held-out item ids)``; the training data keeps
    every worker (worker codes stay those of ``data``) and the other gold items (they only score)."""
    if n <= 0 or not data.has_gold or data.features is None:
        return data, None, pd.Index([])
    gold_items = np.flatnonzero(data.gold_mask)
    k = int(round(n * gold_items.size)) if n < 1 else int(n)
    k = max(1, min(k, gold_items.size - 1)) if gold_items.size > 1 else 0
    if k == 0:
        return data, None, pd.Index([])
    pick = np.sort(np.random.default_rng(seed).choice(gold_items, size=k, replace=False))
    valid = (data.features[pick], data.gold[pick])
    ids = data.item_ids[pick]
    return data.without_items(ids, drop_empty_workers=False), valid, ids


def leave_out_items(data: CrowdData, ids) -> tuple[CrowdData, int]:
    """``data`` without the given items (validation items that also have answers); every worker is kept.
    Returns ``(data, number of items left out)``."""
    from ..data import _coerce_like
    shared = data.item_ids.intersection(pd.Index(_coerce_like(pd.Index(ids), data.item_ids)))
    if not len(shared):
        return data, 0
    return data.without_items(shared, drop_empty_workers=False), len(shared)


def train_kd(data: CrowdData, config: KDConfig | dict | None = None, valid=None, test=None,
             callback: Callable[[dict], None] | None = None, cancel: threading.Event | None = None,
             trainer: KDCrowd | None = None) -> KDCrowd:
    """Train KD-Crowd: the one entry point of the CLI, the dashboard and the benchmark.

    ``valid = (X, y)`` selects models (never trains); ``test = (X, y or None, ids)`` is only predicted and
    scored.  Returns the fitted :class:`~.trainer.KDCrowd`; its ``result_`` holds everything, including the
    recommended model (``final``, ``final_model``).  ``trainer``: a ``KDCrowd`` built by the caller (to keep its
    finished stages when the run is cancelled); ``config`` is then ignored."""
    trainer = KDCrowd(config) if trainer is None else trainer
    trainer.fit(data, valid=valid, test=test, callback=callback, cancel=cancel)
    return trainer
