"""Tables behind the Results page: accuracies, agreements, label flips, changed worker matrices.

Pure functions of a trainer result (``KDResult``) and the answers it trained
on; no streamlit.  Methods are the keys of ``result.probas`` in the canonical
order mv, ds, teacher, student, stage2.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from kdcrowd_core.data import CrowdData

from .analysis import answers_of_items, label_summary

METHODS = ("mv", "ds", "teacher", "student", "stage2")


def methods_of(result) -> list[str]:
    return [m for m in METHODS if m in result.probas] + [m for m in result.probas if m not in METHODS]


def codes(result, method: str) -> np.ndarray:
    return np.asarray(result.probas[method]).argmax(axis=1)


def accuracy_splits(result, crowd: CrowdData) -> dict[str, dict[str, float]]:
    """``{"annotated items (gold)": {method: acc}, "test split": {method: acc}}``, splits without gold left out.

    Uses the trainer's own ``train_accuracy`` / ``test_accuracy``; when the
    trainer gave none but the answers carry gold, computes it from the probabilities.
    """
    out: dict[str, dict[str, float]] = {}
    train = dict(getattr(result, "train_accuracy", {}) or {})
    if not train and crowd.has_gold:
        m = crowd.gold_mask
        train = {k: float((codes(result, k)[m] == crowd.gold[m]).mean()) for k in methods_of(result)}
    if train:
        out[f"annotated items with gold ({int(crowd.gold_mask.sum()):,})"] = train
    test = dict(getattr(result, "test_accuracy", {}) or {})
    if test:
        ids = getattr(result, "test_ids", None)
        n = 0 if ids is None else len(ids)
        out[f"test split ({n:,})" if n else "test split"] = test
    return out


def per_class_accuracy(result, crowd: CrowdData) -> pd.DataFrame | None:
    """Rows = methods, columns = classes: accuracy on the gold items of each class (None without gold)."""
    if not crowd.has_gold:
        return None
    m = crowd.gold_mask
    g = crowd.gold[m]
    K = crowd.n_classes
    n = np.bincount(g, minlength=K).astype(float)
    rows = {}
    for meth in methods_of(result):
        hit = codes(result, meth)[m] == g
        rows[meth] = np.bincount(g[hit], minlength=K) / np.maximum(n, 1)
    df = pd.DataFrame(rows, index=[str(c) for c in crowd.classes]).T
    return df.loc[:, n > 0]


def method_agreement(result) -> pd.DataFrame:
    """Method x method share of items on which the two methods give the same label."""
    ms = methods_of(result)
    L = np.stack([codes(result, m) for m in ms])
    A = (L[:, None, :] == L[None, :, :]).mean(axis=2)
    return pd.DataFrame(A, index=ms, columns=ms)


def confidences(result) -> dict[str, np.ndarray]:
    """Per method, each item's confidence (max probability)."""
    return {m: np.asarray(result.probas[m]).max(axis=1) for m in methods_of(result)}


def confidence_summary(result) -> pd.DataFrame:
    """Per method: mean confidence and share of items with confidence >= 0.9."""
    conf = confidences(result)
    return pd.DataFrame({"mean confidence": {m: float(c.mean()) for m, c in conf.items()},
                         "items with confidence ≥ 0.9": {m: float((c >= 0.9).mean()) for m, c in conf.items()}})


def flip_counts(result, a: str = "teacher", b: str = "student") -> np.ndarray:
    """K x K counts: items labelled row-class by ``a`` and column-class by ``b``."""
    K = np.asarray(result.probas[a]).shape[1]
    return np.bincount(codes(result, a) * K + codes(result, b), minlength=K * K).reshape(K, K)


def differing_items(result, crowd: CrowdData, a: str = "teacher", b: str = "student",
                    limit: int = 5000) -> pd.DataFrame:
    """Items where ``a`` and ``b`` disagree: both labels and confidences, the gold label, the answers.

    Columns: ``{a}``, ``{b}``, ``{a}_confidence``, ``{b}_confidence``, ``stage2`` (when present),
    ``gold`` (empty when unknown), ``votes`` ("cat×3, dog×1"), ``answers`` ("worker: label, ...");
    indexed by item id.  At most ``limit`` items (the most confident ``b`` first).
    """
    pa, pb = np.asarray(result.probas[a]), np.asarray(result.probas[b])
    ca, cb = pa.argmax(1), pb.argmax(1)
    idx = np.flatnonzero(ca != cb)
    conf_b = pb[idx, cb[idx]]
    idx = idx[np.argsort(-conf_b, kind="stable")][:limit]
    cls = crowd.classes
    df = pd.DataFrame({
        a: cls.take(ca[idx]).astype(str), b: cls.take(cb[idx]).astype(str),
        f"{a}_confidence": pa[idx, ca[idx]], f"{b}_confidence": pb[idx, cb[idx]],
    }, index=pd.Index(crowd.item_ids.take(idx), name="item"))
    if "stage2" in result.probas and "stage2" not in (a, b):
        df["stage2"] = cls.take(codes(result, "stage2")[idx]).astype(str)
    if crowd.gold is not None:
        g = crowd.gold[idx]
        df["gold"] = np.where(g >= 0, cls.take(np.clip(g, 0, None)).astype(str), "")
    df["votes"] = label_summary(crowd, idx).to_numpy()
    df["answers"] = answers_of_items(crowd, idx).to_numpy()
    return df


def matrix_change(result, before: str = "teacher", after: str = "stage2") -> pd.DataFrame | None:
    """Per worker: mean diagonal before/after and the L1 change per row, ``||T_after - T_before||_1 / K``."""
    wm = getattr(result, "worker_matrices", {}) or {}
    if before not in wm or after not in wm:
        return None
    B, A = np.asarray(wm[before]), np.asarray(wm[after])
    K = B.shape[1]
    return pd.DataFrame({
        f"{before}_accuracy": np.einsum("rjj->r", B) / K,
        f"{after}_accuracy": np.einsum("rjj->r", A) / K,
        "change": np.abs(A - B).sum(axis=(1, 2)) / K,
    }, index=pd.Index(result.worker_ids, name="worker"))


def worker_report(result, crowd: CrowdData, workers: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per worker: answers, the estimated accuracy under each matrix set (ds, teacher, stage2), and
    the dashboard's worker statistics when given (agreement, spammer score, gold accuracy)."""
    wm = getattr(result, "worker_matrices", {}) or {}
    K = crowd.n_classes
    df = pd.DataFrame(index=pd.Index(result.worker_ids, name="worker"))
    df["answers"] = np.bincount(crowd.worker, minlength=crowd.n_workers)[: len(df)]
    for name in ("ds", "teacher", "stage2"):
        if name in wm:
            df[f"{name}_accuracy"] = np.einsum("rjj->r", np.asarray(wm[name])) / K
    if workers is not None:
        extra = workers.drop(columns=[c for c in ("answers",) if c in workers.columns])
        extra = extra.reindex(df.index)
        df = df.join(extra.add_prefix("crowd_"))
    return df


def matrices_json(result) -> str:
    """Worker matrices as JSON: ``{"classes", "workers", "layout", "matrices": {name: [R][K][K]}}``."""
    wm = getattr(result, "worker_matrices", {}) or {}
    return json.dumps({
        "classes": [_plain(c) for c in result.classes], "workers": [_plain(w) for w in result.worker_ids],
        "layout": "[worker][true class][answer] = P(answer | true class)",
        "matrices": {k: np.round(np.asarray(v), 6).tolist() for k, v in wm.items()},
    })


def summary_json(result, record: Any = None) -> str:
    s = dict(result.summary())
    if record is not None:
        s = {"run_id": record.id, "dataset": record.dataset, **s}
    return json.dumps(s, indent=2, default=_plain)


def _plain(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)
