"""Common face of every truth-inference method, and the method registry.

Every method works on :class:`~kdcrowd_core.data.CrowdData` arrays and offers
the Crowd-Kit face on a DataFrame with columns ``task, worker, label``:

- ``fit(data) -> self``
- ``fit_predict(data) -> pandas.Series`` (index ``task``, the inferred label names)
- ``fit_predict_proba(data) -> pandas.DataFrame`` (index ``task``, one column per class)

Fitted attributes end in ``_``: ``probas_`` (DataFrame), ``labels_`` (Series),
``proba_array_`` (float64 array N x K), ``data_`` (the CrowdData fitted on) and,
for every method, ``worker_matrices_`` (float64 array R x K x K with
``[r, j, c] = P(worker r answers c | true class j)``) and ``errors_`` (the same
in Crowd-Kit's layout: index (worker, label), one column per true class).
"""
from __future__ import annotations

from typing import ClassVar
from collections.abc import Callable

import numpy as np
import pandas as pd

from ..data import CrowdData, as_crowd_data
from ..errors import CrowdDataError

_REGISTRY: dict[str, type] = {}
_ALIASES: dict[str, str] = {}


def register(name: str, *aliases: str) -> Callable[[type], type]:
    """Class decorator: register an inference method under ``name`` (and aliases)."""
    def deco(cls: type) -> type:
        cls.name = name
        _REGISTRY[name] = cls
        for a in aliases:
            _ALIASES[a] = name
        return cls
    return deco


def available_methods() -> list[str]:
    """Registered method names, in registration order."""
    return list(_REGISTRY)


def get_method(name: str | None = None, **params):
    """Instantiate a registered method by name (``None`` = the default method)."""
    from . import DEFAULT_METHOD
    key = (name or DEFAULT_METHOD).strip().lower().replace("-", "_").replace(" ", "_")
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise CrowdDataError(f"unknown inference method {name!r}.",
                             hint=f"choose one of {', '.join(available_methods())}.")
    return _REGISTRY[key](**params)


def expected_confusion(data: CrowdData, q: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Per-worker confusion matrices from soft truths ``q`` (N x K).

    ``T[r, j, c]`` is proportional to ``alpha + sum over answers (i, r, c) of q[i, j]``,
    rows normalised.  Returns float64 (R, K, K).
    """
    K, R = data.n_classes, data.n_workers
    key = data.worker * K + data.label
    counts = np.zeros((R * K, K))
    np.add.at(counts, key, q[data.item]) if data.n_answers < 50_000 else _index_add(counts, key, q[data.item])
    T = counts.reshape(R, K, K).transpose(0, 2, 1) + alpha  # [r, j, c]
    return T / T.sum(axis=2, keepdims=True)


def _index_add(out: np.ndarray, index: np.ndarray, rows: np.ndarray) -> np.ndarray:
    import torch
    t = torch.from_numpy(out)
    t.index_add_(0, torch.from_numpy(index), torch.from_numpy(np.ascontiguousarray(rows, dtype=out.dtype)))
    return out


class BaseInference:
    """Base class: subclasses implement ``_fit(data) -> (N x K) probabilities``."""

    name: ClassVar[str] = "base"

    # ------------------------------------------------------------- internals
    def _fit(self, data: CrowdData) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _worker_matrices(self, data: CrowdData, q: np.ndarray) -> np.ndarray:
        return expected_confusion(data, q, alpha=1.0)

    # ------------------------------------------------------------ public API
    def fit(self, data: CrowdData | pd.DataFrame) -> BaseInference:
        data = as_crowd_data(data)
        q = np.asarray(self._fit(data), dtype=np.float64)
        if q.shape != (data.n_items, data.n_classes):
            raise RuntimeError(f"{type(self).__name__} returned shape {q.shape}")
        self.data_ = data
        self.proba_array_ = q
        self.probas_ = pd.DataFrame(q, index=pd.Index(data.item_ids, name="task"), columns=list(data.classes))
        self.labels_ = pd.Series(data.classes.take(q.argmax(axis=1)), index=self.probas_.index, name="agg_label")
        if getattr(self, "worker_matrices_", None) is None or self.worker_matrices_.shape[0] != data.n_workers:
            self.worker_matrices_ = self._worker_matrices(data, q)
        self.errors_ = matrices_to_errors(self.worker_matrices_, data)
        return self

    def fit_predict(self, data: CrowdData | pd.DataFrame) -> pd.Series:
        return self.fit(data).labels_

    def fit_predict_proba(self, data: CrowdData | pd.DataFrame) -> pd.DataFrame:
        return self.fit(data).probas_

    def get_params(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def matrices_to_errors(T: np.ndarray, data: CrowdData) -> pd.DataFrame:
    """(R, K, K) [r, true, answer] -> Crowd-Kit errors_ layout: index (worker, label), columns true labels."""
    R, K, _ = T.shape
    flat = T.transpose(0, 2, 1).reshape(R * K, K)
    idx = pd.MultiIndex.from_product([data.worker_ids, data.classes], names=["worker", "label"])
    return pd.DataFrame(flat, index=idx, columns=list(data.classes))
