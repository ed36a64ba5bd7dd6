"""Common face of every truth-inference method, and the method registry.

Every method works on :class:`~kdcrowd_core.data.CrowdData` arrays and offers
Crowd-Kit's face on a DataFrame with columns ``task, worker, label``:

- ``fit(data, ...) -> self`` (each method takes Crowd-Kit's arguments: gold as
  ``true_labels``, a Series indexed by task; MV's ``skills``; DS's ``initial_error``)
- ``fit_predict(data, ...) -> pandas.Series`` (index ``task``, the inferred labels)
- ``fit_predict_proba(data, ...) -> pandas.DataFrame`` (index ``task``, columns ``label``)

A DataFrame is read exactly (:meth:`CrowdData.from_answers_frame`): ids and labels
keep their values and dtypes, every answer counts, a missing column raises a
``KeyError`` (:class:`~kdcrowd_core.errors.MissingColumnError`) and an empty frame
gives empty results, as in Crowd-Kit.

Fitted attributes end in ``_``: ``probas_`` (DataFrame), ``labels_`` (Series),
``proba_array_`` (float64 array N x K), ``data_`` (the CrowdData fitted on) and,
for every method, ``worker_matrices_`` (float64 array R x K x K with
``[r, j, c] = P(worker r answers c | true class j)``) and ``errors_`` (the same
in Crowd-Kit's layout: index (worker, label), one column per true class).

Registry entries can carry their own default parameters
(``register("dawid_skene", defaults={"alpha": 0.01})``): ``get_method(name)`` is the
product's choice, the class with no arguments is Crowd-Kit's.
"""
from __future__ import annotations

from typing import ClassVar
from collections.abc import Callable

import numpy as np
import pandas as pd

from ..data import CrowdData, as_crowd_data
from ..errors import CrowdDataError, MissingColumnError

_REGISTRY: dict[str, type] = {}
_ALIASES: dict[str, str] = {}
_DEFAULTS: dict[str, dict] = {}


def register(name: str, *aliases: str, defaults: dict | None = None) -> Callable[[type], type]:
    """Class decorator: register an inference method under ``name`` (and aliases).

    ``defaults``: parameters ``get_method(name)`` passes unless the caller overrides
    them (the product's settings; the class's own defaults stay Crowd-Kit's).
    """
    def deco(cls: type) -> type:
        cls.name = name
        register_entry(name, cls, *aliases, defaults=defaults)
        return cls
    return deco


def register_entry(name: str, cls: type, *aliases: str, defaults: dict | None = None) -> None:
    """Register ``cls`` under ``name`` with registry defaults (e.g. a smoothed DS as its own entry)."""
    _REGISTRY[name] = cls
    _DEFAULTS[name] = dict(defaults or {})
    for a in aliases:
        _ALIASES[a] = name


def method_defaults(name: str) -> dict:
    """The parameters ``get_method(name)`` adds to the class's defaults."""
    key = _ALIASES.get(name, name)
    return dict(_DEFAULTS.get(key, {}))


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
    return _REGISTRY[key](**{**_DEFAULTS.get(key, {}), **params})


def expected_confusion(data: CrowdData, q: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Per-worker confusion matrices from soft truths ``q`` (N x K).

    ``T[r, j, c]`` is proportional to ``alpha + sum over answers (i, r, c) of q[i, j]``,
    rows normalised.  Returns float64 (R, K, K).
    """
    K, R = data.n_classes, data.n_workers
    key = data.worker * K + data.label
    counts = np.zeros((R * K, K))
    np.add.at(counts, key, q[data.item]) if data.n_answers < 50_000 else _index_add(counts, key, q[data.item])
    T = counts.reshape(R, K, K).transpose(0, 2, 1)  # [r, j, c]; in place: large for many classes
    T += alpha
    T /= T.sum(axis=2, keepdims=True)
    return T


def _index_add(out: np.ndarray, index: np.ndarray, rows: np.ndarray) -> np.ndarray:
    import torch
    t = torch.from_numpy(out)
    t.index_add_(0, torch.from_numpy(index), torch.from_numpy(np.ascontiguousarray(rows, dtype=out.dtype)))
    return out


class BaseInference:
    """Base class: subclasses implement ``_fit(data) -> (N x K) probabilities``.

    Subclasses with Crowd-Kit arguments define ``fit`` and call :meth:`_fit_frame`.
    """

    name: ClassVar[str] = "base"

    # ------------------------------------------------------------- internals
    def _fit(self, data: CrowdData) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _worker_matrices(self, data: CrowdData, q: np.ndarray) -> np.ndarray:
        return expected_confusion(data, q, alpha=1.0)

    def _fit_empty(self) -> None:
        """Crowd-Kit's results on an empty answers table."""
        self.probas_ = pd.DataFrame()
        self.labels_ = pd.Series(dtype=float, name="agg_label")
        self.errors_ = pd.DataFrame()
        self.proba_array_ = np.zeros((0, 0))
        self.worker_matrices_ = np.zeros((0, 0, 0))
        self.matrices_ = None
        self.data_ = None

    def _fit_frame(self, data: CrowdData | pd.DataFrame, true_labels: pd.Series | None = None) -> BaseInference:
        """Fit on a CrowdData or a Crowd-Kit frame (gold as ``true_labels``) and set the common outputs."""
        data = as_inference_data(data)
        if data is None:
            self._fit_empty()
            return self
        if true_labels is not None:
            data = data.with_true_labels(true_labels)
        self.worker_matrices_ = None
        self.matrices_ = None
        q = np.asarray(self._fit(data), dtype=np.float64)
        if q.shape != (data.n_items, data.n_classes):
            raise RuntimeError(f"{type(self).__name__} returned shape {q.shape}")
        self.data_ = data
        self.proba_array_ = q
        index = pd.Index(data.item_ids, name="task")
        self._probas_frame = None   # probas_ is built on first read (a copy of proba_array_: N x K)
        # ties: the first class in data.classes (sorted labels) wins, as numpy.argmax
        self.labels_ = pd.Series(data.classes.take(q.argmax(axis=1)), index=index, name="agg_label")
        T = self.__dict__.get("_dense_matrices")
        if self.matrices_ is None and (T is None or T.shape[0] != data.n_workers):
            self.worker_matrices_ = None
            self._matrices_from_posteriors = True   # expected_confusion of proba_array_, built when first read
        self._errors_table = None  # built from worker_matrices_ on first access of errors_ (R*K x K, large for big K)
        return self

    @property
    def worker_matrices_(self) -> np.ndarray:
        """Dense (R, K, K) float64 worker matrices ``[r, true j, answer c]``.

        Built on first read when the method keeps them compactly (``matrices_``, many classes) or derives
        them from its posteriors (:func:`expected_confusion`): with 1,000 classes the array takes
        R x 8 MB, and a caller that needs one worker or the diagonals reads ``matrices_`` instead.
        """
        d = self.__dict__
        T = d.get("_dense_matrices")
        if T is None:
            if d.get("matrices_") is not None:
                T = np.asarray(d["matrices_"], dtype=np.float64)
            elif d.get("_matrices_from_posteriors") and d.get("data_") is not None:
                T = self._worker_matrices(d["data_"], d["proba_array_"])
            else:
                raise AttributeError(f"{type(self).__name__} has no worker_matrices_ before fit")
            d["_dense_matrices"] = T
        return T

    @worker_matrices_.setter
    def worker_matrices_(self, T) -> None:
        self.__dict__["_dense_matrices"] = T
        self.__dict__["_matrices_from_posteriors"] = False

    @property
    def compact_matrices_(self):
        """The worker matrices in the cheapest form held: ``matrices_`` (compact) when the fit made one,
        else the dense ``worker_matrices_`` (see :mod:`.matrices` for functions that take either)."""
        M = self.__dict__.get("matrices_")
        return M if M is not None else self.worker_matrices_

    @property
    def probas_(self) -> pd.DataFrame:
        """Crowd-Kit's ``probas_`` (index ``task``, columns ``label``), built from ``proba_array_`` on first read."""
        frame = self.__dict__.get("_probas_frame")
        if frame is None:
            data = self.__dict__.get("data_")
            if data is None:
                raise AttributeError(f"{type(self).__name__} has no probas_ before fit")
            frame = self._probas_frame = pd.DataFrame(self.proba_array_, index=pd.Index(data.item_ids, name="task"),
                                                      columns=pd.Index(data.classes, name="label"))
        return frame

    @probas_.setter
    def probas_(self, frame: pd.DataFrame) -> None:
        self._probas_frame = frame

    @property
    def errors_(self) -> pd.DataFrame:
        """Crowd-Kit's ``errors_`` (index (worker, label), columns true labels), built on first access.

        Equal to ``matrices_to_errors(worker_matrices_, data_)``; lazy because with many classes the
        table (R*K rows x K columns) is as large as the worker matrices and the trainer never reads it.
        """
        table = self.__dict__.get("_errors_table")
        if table is None:
            data = self.__dict__.get("data_")
            if data is None:
                raise AttributeError(f"{type(self).__name__} has no errors_ before fit")
            T = self.worker_matrices_
            table = self._errors_table = matrices_to_errors(T, data)
        return table

    @errors_.setter
    def errors_(self, table: pd.DataFrame) -> None:
        self._errors_table = table

    # ------------------------------------------------------------ public API
    def fit(self, data: CrowdData | pd.DataFrame, true_labels: pd.Series | None = None) -> BaseInference:
        return self._fit_frame(data, true_labels)

    def fit_predict(self, data: CrowdData | pd.DataFrame, *args, **kwargs) -> pd.Series:
        """``fit(data, ...)`` then ``labels_`` (same arguments as ``fit``)."""
        return self.fit(data, *args, **kwargs).labels_

    def fit_predict_proba(self, data: CrowdData | pd.DataFrame, *args, **kwargs) -> pd.DataFrame:
        """``fit(data, ...)`` then ``probas_`` (same arguments as ``fit``)."""
        return self.fit(data, *args, **kwargs).probas_

    def get_params(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def as_inference_data(data: CrowdData | pd.DataFrame) -> CrowdData | None:
    """CrowdData as given; a Crowd-Kit frame read exactly; ``None`` for an empty frame."""
    if isinstance(data, CrowdData):
        return data
    if isinstance(data, pd.DataFrame):
        missing = [c for c in ("task", "worker", "label") if c not in data.columns]
        if missing and "item" in data.columns and missing == ["task"]:
            data = data.rename(columns={"item": "task"})  # kdcrowd's own name for the task column
        elif missing:
            raise MissingColumnError(f"no column {missing[0]!r} in the answers; columns are {list(data.columns)}.",
                                     column=missing[0],
                                     hint="give the answers columns 'task', 'worker' and 'label'.")
        if len(data) == 0:
            return None
        return CrowdData.from_answers_frame(data)
    return as_crowd_data(data)  # raises the usual error for other types


def matrices_to_errors(T: np.ndarray, data: CrowdData) -> pd.DataFrame:
    """(R, K, K) [r, true, answer] -> Crowd-Kit errors_ layout: index (worker, label), columns true labels."""
    R, K, _ = T.shape
    flat = T.transpose(0, 2, 1).reshape(R * K, K)
    idx = pd.MultiIndex.from_product([data.worker_ids, data.classes], names=["worker", "label"])
    return pd.DataFrame(flat, index=idx, columns=list(data.classes))
