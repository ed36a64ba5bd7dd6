"""The numbers behind the Data, Workers and Disagreement pages (no streamlit here).

Everything is computed once per dataset (the caller caches it by the dataset's
key) from the sparse answer triples: no items x workers array, no Python loop
per answer.  Results are pandas objects indexed by the user's own ids.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kdcrowd_core import metrics
from kdcrowd_core.data import CrowdData
from kdcrowd_core.inference import DEFAULT_METHOD, get_method
from kdcrowd_core.inference.matrices import ShrunkMatrices


@dataclass
class Analysis:
    """Truth inference and per-worker / per-item statistics of one dataset.

    Attributes
    ----------
    mv_proba, ds_proba : float arrays (N, K)
        Soft majority vote and the default inference method's posteriors.
    ds_matrices : float array (R, K, K) or ShrunkMatrices
        ``[r, true j, answer c]`` worker confusion matrices of the default method, compact with many
        classes (:mod:`kdcrowd_core.inference.matrices`: read blocks with ``matrices.block``).
    workers : DataFrame indexed by worker id
        ``metrics.worker_stats`` columns: answers, accuracy (estimated), agreement
        (with the consensus), spammer_score, gold_accuracy (NaN without gold).
    items : DataFrame indexed by item id
        ``metrics.item_stats`` columns: answers, distinct, vote_entropy, margin,
        consensus, confidence.
    method : str
        Name of the inference method used for "ds".
    """

    mv_proba: np.ndarray
    ds_proba: np.ndarray
    ds_matrices: np.ndarray | ShrunkMatrices
    workers: pd.DataFrame
    items: pd.DataFrame
    method: str = DEFAULT_METHOD
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def consensus(self) -> np.ndarray:
        """Consensus class code per item (argmax of the default method's posterior)."""
        return self.ds_proba.argmax(axis=1)


def compute_analysis(data: CrowdData) -> Analysis:
    """Fit majority vote and the default inference method, then worker and item statistics."""
    import time
    t0 = time.perf_counter()
    mv = get_method("mv").fit(data)
    t1 = time.perf_counter()
    # gold labels are kept out of inference so that accuracy against them stays an honest measurement
    ds = get_method(None, use_gold=False).fit(data)
    t2 = time.perf_counter()
    # the compact matrices when the method kept them so (many classes): never R dense K x K at once
    workers = metrics.worker_stats(data, ds.proba_array_, ds.compact_matrices_)
    items = metrics.item_stats(data, ds.proba_array_)
    t3 = time.perf_counter()
    return Analysis(mv_proba=mv.proba_array_, ds_proba=ds.proba_array_, ds_matrices=ds.compact_matrices_,
                    workers=workers, items=items, method=getattr(ds, "name", DEFAULT_METHOD),
                    seconds={"mv": t1 - t0, "ds": t2 - t1, "stats": t3 - t2})


# --------------------------------------------------------------- workers page
def filter_workers(stats: pd.DataFrame, *, min_answers: int = 0, search: str = "",
                   sort_by: str = "accuracy", ascending: bool = False) -> pd.DataFrame:
    """Workers with at least ``min_answers`` answers whose id contains ``search`` (case-insensitive), sorted."""
    df = stats[stats["answers"] >= int(min_answers)]
    if search:
        ids = pd.Index(df.index.astype(str))
        df = df[ids.str.contains(search.strip(), case=False, regex=False)]
    key = sort_by if sort_by in df.columns else "answers"
    # ties broken by activity then id, so the order is stable
    return df.sort_values([key, "answers"], ascending=[ascending, False], kind="stable")


def empirical_confusion_counts(data: CrowdData, worker: int) -> np.ndarray | None:
    """K x K counts of (gold class, answer) for one worker's answers on gold items; None without gold."""
    if not data.has_gold:
        return None
    K = data.n_classes
    m = data.worker == worker
    g = data.gold[data.item[m]]
    a = data.label[m]
    ok = g >= 0
    return np.bincount(g[ok] * K + a[ok], minlength=K * K).reshape(K, K).astype(float)


def row_normalise(C: np.ndarray) -> np.ndarray:
    """Rows summing to 1 (rows with no counts stay 0)."""
    s = C.sum(axis=-1, keepdims=True)
    return np.divide(C, s, out=np.zeros_like(C, dtype=float), where=s > 0)


# ---------------------------------------------------------- disagreement page
def contested_items(data: CrowdData, items: pd.DataFrame, consensus: np.ndarray, *,
                    n_items: int = 30, n_workers: int = 40, min_answers: int = 2) -> dict:
    """The ``n_items`` most contested items (highest vote entropy, then most answers) as a small dense block.

    Returns ``{"answers": (n_i, n_w) int codes (-1 = no answer), "item_ids", "worker_ids",
    "consensus": (n_i,) codes, "item_codes", "worker_codes"}``; workers are those
    who answered the most of the chosen items (at most ``n_workers``).  Only the
    answers of the chosen items are touched (one ``isin`` over the answers).
    """
    ent = items["vote_entropy"].to_numpy(dtype=float)
    cnt = items["answers"].to_numpy()
    cand = np.flatnonzero(cnt >= min_answers)
    if cand.size == 0:
        cand = np.arange(data.n_items)
    order = np.lexsort((-cnt[cand], -ent[cand]))
    chosen = cand[order[:n_items]]
    sel = np.isin(data.item, chosen)
    it, wk, lb = data.item[sel], data.worker[sel], data.label[sel]
    w_count = np.bincount(wk, minlength=data.n_workers)
    w_top = np.argsort(-w_count, kind="stable")[: min(n_workers, int((w_count > 0).sum()))]
    w_top = w_top[w_count[w_top] > 0]
    # order workers by how many of the chosen items they answered, then id order
    row = np.full(data.n_items, -1, dtype=np.int64)
    row[chosen] = np.arange(chosen.size)
    col = np.full(data.n_workers, -1, dtype=np.int64)
    col[w_top] = np.arange(w_top.size)
    A = np.full((chosen.size, w_top.size), -1, dtype=np.int64)
    keep = col[wk] >= 0
    A[row[it[keep]], col[wk[keep]]] = lb[keep]
    return {"answers": A, "item_ids": data.item_ids.take(chosen), "worker_ids": data.worker_ids.take(w_top),
            "consensus": np.asarray(consensus)[chosen], "item_codes": chosen, "worker_codes": w_top}


def answers_of_items(data: CrowdData, item_codes: np.ndarray, *, max_per_item: int = 50) -> pd.Series:
    """For a few items, their answers as one readable string "worker: label, ..." (index = item id)."""
    item_codes = np.asarray(item_codes, dtype=np.int64)
    sel = np.isin(data.item, item_codes)
    df = pd.DataFrame({"i": data.item[sel], "w": data.worker_ids.take(data.worker[sel]).astype(str),
                       "l": data.classes.take(data.label[sel]).astype(str)})
    df["t"] = df["w"] + ": " + df["l"]
    s = df.groupby("i", sort=False)["t"].agg(lambda v: ", ".join(list(v)[:max_per_item]))
    s = s.reindex(item_codes).fillna("")
    s.index = data.item_ids.take(item_codes)
    return s


def label_summary(data: CrowdData, item_codes: np.ndarray) -> pd.Series:
    """For a few items, the vote counts as "cat×3, dog×1" (index = item id)."""
    item_codes = np.asarray(item_codes, dtype=np.int64)
    sel = np.isin(data.item, item_codes)
    df = pd.DataFrame({"i": data.item[sel], "l": data.classes.take(data.label[sel]).astype(str)})
    c = df.value_counts().rename("n").reset_index().sort_values(["i", "n"], ascending=[True, False])
    c["t"] = c["l"] + "×" + c["n"].astype(str)
    s = c.groupby("i", sort=False)["t"].agg(", ".join).reindex(item_codes).fillna("")
    s.index = data.item_ids.take(item_codes)
    return s
