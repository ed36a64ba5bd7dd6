"""The numbers behind the Labels and Item quality pages and the Workers page's actions (no st.* drawing).

Everything comes from :mod:`kdcrowd_core.quality` — the same functions as ``kdcrowd aggregate``,
``kdcrowd items``, ``kdcrowd relabel`` and ``kdcrowd workers`` — so the dashboard and the CLI give the
same numbers for the same options.  Results are cached per dataset key and options.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st

from kdcrowd_core import quality
from kdcrowd_core.data import CrowdData
from kdcrowd_core.inference import DEFAULT_METHOD, available_methods, get_method

#: Session key of the "Clamp gold labels during inference" control (shared by the pages).
CLAMP_KEY = "kdc_clamp_gold"
METHOD_KEY = "kdc_label_method"


def method_options() -> list[str]:
    """``"default"`` first, then every registered method."""
    return ["default"] + available_methods()


def method_label(name: str) -> str:
    if name == "default":
        return f"default ({DEFAULT_METHOD.replace('_', ' ')})"
    return {"mv": "majority vote", "dawid_skene": "Dawid-Skene", "one_coin": "one-coin Dawid-Skene",
            "glad": "GLAD"}.get(name, name.replace("_", " "))


@dataclass
class Labels:
    method: str            # the method's registry name
    proba: np.ndarray      # (N, K)
    matrices: np.ndarray   # (R, K, K), or compact (kdcrowd_core.inference.matrices) with many classes
    clamped: bool


def fit_labels(data: CrowdData, method: str = "default", clamp_gold: bool = False) -> Labels:
    """Fit ``method`` exactly as the CLI does (gold clamped only when asked)."""
    m = get_method(None if method == "default" else method)
    if hasattr(m, "use_gold"):
        m.use_gold = bool(clamp_gold)
    m.fit(data)
    return Labels(method=getattr(m, "name", method), proba=m.proba_array_, matrices=m.compact_matrices_,
                  clamped=bool(clamp_gold) and data.has_gold)


def is_default_fit(method: str, clamp_gold: bool, data: CrowdData) -> bool:
    """The fit the dashboard's background analysis already made: the default method, gold not clamped."""
    return method in ("default", DEFAULT_METHOD) and not (clamp_gold and data.has_gold)


@st.cache_resource(max_entries=8, show_spinner="Inferring the labels…")
def labels_cached(key: str, _data: CrowdData, method: str, clamp_gold: bool) -> Labels:
    if is_default_fit(method, clamp_gold, _data):
        # the same fit as the background analysis of this dataset (state.analysis): reuse it, never fit twice
        from dashboard import state
        a = state.analysis_of(key, _data)
        return Labels(method=a.method, proba=a.ds_proba, matrices=a.ds_matrices, clamped=False)
    return fit_labels(_data, method, clamp_gold)


def return_freed_memory() -> None:
    """Give the memory this process has freed back to the system (glibc's ``malloc_trim``; nothing elsewhere).

    The truth-inference fit runs in a background thread whose freed blocks glibc keeps in that thread's
    arena: after the analysis of 10,000 items x 1,000 classes about 100 MB of freed memory stayed resident,
    and the Item quality page's scores came on top of it (its peak went over 1 GB).
    """
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):        # not glibc (macOS, musl): nothing to do
        pass


@st.cache_resource(max_entries=6, show_spinner="Scoring every item…")
def scores_cached(key: str, _data: CrowdData, method: str, clamp_gold: bool, run_id: str | None,
                  _run: quality.RunView | None) -> quality.QualityScores:
    lab = labels_cached(key, _data, method, clamp_gold)
    return_freed_memory()                    # before the scores' (items, K) arrays: a lower peak
    return quality.quality_scores(_data, lab.proba, None if _run is None else _run.model_proba,
                                  use_gold=not clamp_gold)


@st.cache_resource(max_entries=4, show_spinner="Training an out-of-fold classifier on the item features…")
def oof_cached(key: str, _data: CrowdData, method: str, clamp_gold: bool) -> np.ndarray:
    """Out-of-fold classifier probabilities on the item features (CROWDLAB's second opinion)."""
    lab = labels_cached(key, _data, method, clamp_gold)
    return quality.oof_classifier_proba(_data.features, lab.proba)


#: Past this many classes the on-screen item table has no ``prob_`` columns (the CSV download has them).
ITEM_TABLE_MAX_CLASS_COLUMNS = 20


def item_table(key: str, data: CrowdData, method: str, clamp_gold: bool, run_id: str | None = None,
               run: quality.RunView | None = None, content: pd.Series | None = None,
               class_probas: bool | None = None) -> pd.DataFrame:
    """:func:`kdcrowd_core.quality.item_quality` with the item content (when known) as a ``content`` column.

    ``class_probas``: add the ``prob_<class>`` columns (default: up to ``ITEM_TABLE_MAX_CLASS_COLUMNS`` classes).
    """
    lab = labels_cached(key, data, method, clamp_gold)
    sc = scores_cached(key, data, method, clamp_gold, run_id, run)
    if class_probas is None:
        class_probas = data.n_classes <= ITEM_TABLE_MAX_CLASS_COLUMNS
    t = quality.item_quality(data, lab.proba, run, scores=sc, class_probas=class_probas)
    if content is not None:
        c = content.copy()
        c.index = c.index.astype(str)
        t.insert(1, "content", c.reindex(t.index.astype(str)).fillna("").to_numpy())
    return t


#: Above this much work for the relabel ranking (items x classes kept per item x classes: 320 million at
#: 10,000 items and 1,000 classes, about 3 s) the Item quality page ranks the items when asked, not on every visit.
RELABEL_EAGER_MAX_WORK = 50_000_000


def relabel_work(data: CrowdData) -> int:
    """Numbers the relabel ranking's expected gain goes through (:func:`kdcrowd_core.quality.expected_gain`)."""
    K = data.n_classes
    kept = min(K, quality.RELABEL_TOP_CLASSES) if K > quality.RELABEL_TOP_FROM_CLASSES else K
    return int(data.n_items) * kept * K


def relabel_on_request(data: CrowdData) -> bool:
    """Whether the Item quality page waits for a click before ranking the items to relabel (a large ranking)."""
    return relabel_work(data) > RELABEL_EAGER_MAX_WORK


@st.cache_resource(max_entries=4, show_spinner="Ranking the items to relabel…")
def relabel_table(key: str, _data: CrowdData, method: str, clamp_gold: bool, budget: int,
                  run_id: str | None = None, _run: quality.RunView | None = None) -> pd.DataFrame:
    """:func:`kdcrowd_core.quality.relabel_next`, cached per dataset, method, budget and run (reruns are free)."""
    lab = labels_cached(key, _data, method, clamp_gold)
    sc = scores_cached(key, _data, method, clamp_gold, run_id, _run)
    return quality.relabel_next(_data, lab.proba, budget, _run, scores=sc)


@st.cache_resource(max_entries=4, show_spinner="Estimating each worker's accuracy interval…")
def _worker_report_base(key: str, _data: CrowdData, _proba: np.ndarray, _matrices: np.ndarray,
                        _work_seconds: pd.Series | None = None) -> pd.DataFrame:
    return quality.worker_report(_data, _proba, _matrices, work_seconds=_work_seconds)


def worker_report_cached(key: str, data: CrowdData, proba: np.ndarray, matrices: np.ndarray,
                         thresholds: quality.WorkerThresholds, work_seconds: pd.Series | None = None) -> pd.DataFrame:
    """The full worker report (every worker) with flags for ``thresholds`` (intervals computed once);
    with ``work_seconds`` (:func:`work_seconds`), a ``median_seconds`` column as in ``kdcrowd workers``."""
    return quality.apply_flags(_worker_report_base(key, data, proba, matrices, work_seconds), thresholds)


@st.cache_resource(max_entries=8, show_spinner=False)
def _work_seconds_cached(key: str, _payload: bytes, name: str, worker_column) -> pd.Series | None:
    return quality.work_seconds_from_bytes(_payload, worker_column, name=name)


def work_seconds(ds) -> pd.Series | None:
    """Median time on task per worker when the dataset's answers file has MTurk's ``WorkTimeInSeconds``
    (read from the stored file, as ``kdcrowd workers`` reads it), else None."""
    src = ds.sources.get("answers") if getattr(ds, "sources", None) else None
    if src is None or not getattr(ds, "id", ""):
        return None
    from dashboard import state
    try:
        payload = state.read_source(ds, "answers")
    except Exception:  # noqa: BLE001 - no stored file (e.g. the simulated sample): no time on task
        return None
    return _work_seconds_cached(ds.key, payload, src.name, (ds.options or {}).get("worker"))


def with_work_seconds(table: pd.DataFrame, seconds: pd.Series | None) -> pd.DataFrame:
    """``table`` (indexed by worker id) with a ``median_seconds`` column when ``seconds`` is known."""
    if seconds is None:
        return table
    s = seconds.copy()
    s.index = s.index.astype(str)
    out = table.copy()
    out["median_seconds"] = s.reindex(out.index.astype(str)).to_numpy(dtype=float)
    return out


def item_content(ds) -> pd.Series | None:
    """Item text/URL by item id when the loaded dataset has it (uploaded on the Data page), else None."""
    for attr in ("content", "item_content", "items_content"):
        v = getattr(ds, attr, None)
        if isinstance(v, pd.Series):
            return v.astype(str)
        if isinstance(v, pd.DataFrame) and v.shape[1] >= 1:
            col = next((c for c in ("text", "content", "url", "path") if c in v.columns), v.columns[0])
            return v[col].astype(str)
    return None


# ------------------------------------------------------------------ charts data
def confidence_bins(conf: np.ndarray, correct: np.ndarray | None = None, bins: int = 10) -> pd.DataFrame:
    """Items per confidence bin (and, with ``correct``, how many of them are right): the chart's data."""
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    df = pd.DataFrame({"low": edges[:-1], "high": edges[1:],
                       "items": np.bincount(idx, minlength=bins)})
    if correct is not None:
        df["right"] = np.bincount(idx, weights=correct.astype(float), minlength=bins)
    return df


# ------------------------------------------------------------------ downloads
def csv_bytes(df: pd.DataFrame, index: bool = False) -> bytes:
    """The one place these pages turn a table into a CSV download (io's formula guard)."""
    from kdcrowd_core.io.csv_guard import csv_bytes as guarded
    return guarded(df, index=index)
