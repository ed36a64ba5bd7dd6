"""The Results page's honest before/after: accuracies with 95 % intervals, changes against the teacher,
fixed/broke counts, the recommended model, reliability curves (no streamlit here).

Rules: every accuracy carries its Wilson interval and its number of items; the student and stage 2
are compared with the teacher (the model they start from), with a paired interval from the items
each one fixed and broke; test-split baselines (classifiers trained on majority-vote and Dawid-Skene
labels with the same head) are shown when the run has them (``test_accuracy["mv"]``, ``["ds"]``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from kdcrowd_core.data import CrowdData
from kdcrowd_core.quality import accuracy_interval

CLASSIFIERS = ("teacher", "student", "stage2")
ORDER = ("mv", "ds", "teacher", "student", "stage2")
NAMES = {"mv": "majority vote", "ds": "Dawid-Skene", "teacher": "teacher", "student": "student",
         "stage2": "stage 2"}


def _row(split: str, method: str, right: int, n: int) -> dict:
    lo, hi = accuracy_interval(right, n)
    return {"split": split, "method": method, "accuracy": right / n if n else np.nan, "low": lo, "high": hi,
            "n": n, "right": right}


def accuracy_rows(result, crowd: CrowdData, test_y: np.ndarray | None = None) -> pd.DataFrame:
    """One row per (split, method): ``split, method, accuracy, low, high, n, right``.

    Annotated items with gold: every method's labels for those items.  Test split: the classifiers (and the
    MV / DS baselines when the run trained them), recomputed from the saved test probabilities when the
    test labels ``test_y`` (codes, -1 unknown) are given, else the run's own numbers with the interval
    from the number of test items it reports (``n`` missing: no interval).
    """
    rows = []
    if crowd.has_gold:
        m = crowd.gold_mask
        g = crowd.gold[m]
        n = int(m.sum())
        split = f"annotated items with gold ({n:,})"
        for meth in ORDER:
            if meth in result.probas and len(result.probas[meth]) == crowd.n_items:
                rows.append(_row(split, meth, int((np.asarray(result.probas[meth])[m].argmax(1) == g).sum()), n))
    test_acc = dict(getattr(result, "test_accuracy", {}) or {})
    tp = dict(getattr(result, "test_probas", {}) or {})
    if test_y is not None and (np.asarray(test_y) >= 0).any() and tp:
        y = np.asarray(test_y)
        k = y >= 0
        n = int(k.sum())
        split = f"test split ({n:,})"
        for meth in ORDER:
            if meth in tp and len(tp[meth]) == len(y):
                rows.append(_row(split, meth, int((np.asarray(tp[meth])[k].argmax(1) == y[k]).sum()), n))
            elif meth in test_acc and test_acc[meth] is not None:
                rows.append(_row(split, meth, int(round(test_acc[meth] * n)), n))
    elif test_acc:
        n_rep = getattr(result, "test_ids", None)
        n = len(n_rep) if n_rep is not None else 0
        split = f"test split ({n:,})" if n else "test split"
        for meth in ORDER:
            if test_acc.get(meth) is not None:
                if n:
                    rows.append(_row(split, meth, int(round(test_acc[meth] * n)), n))
                else:
                    rows.append({"split": split, "method": meth, "accuracy": test_acc[meth], "low": np.nan,
                                 "high": np.nan, "n": np.nan, "right": np.nan})
    return pd.DataFrame(rows, columns=["split", "method", "accuracy", "low", "high", "n", "right"])


def paired_change(before: np.ndarray, after: np.ndarray, truth: np.ndarray) -> dict:
    """How ``after`` changed ``before``'s labels on items with truth (codes; truth -1 = unknown).

    ``fixed`` (before wrong, after right), ``broke`` (before right, after wrong), ``changed`` (labels
    differ), ``n``, ``delta`` = (fixed - broke) / n and its 95 % interval (normal approximation of the
    paired difference: ``sd = sqrt(fixed + broke - (fixed - broke)^2 / n) / n``).
    """
    t = np.asarray(truth)
    k = t >= 0
    b, a, t = np.asarray(before)[k], np.asarray(after)[k], t[k]
    n = int(k.sum())
    fixed = int(((b != t) & (a == t)).sum())
    broke = int(((b == t) & (a != t)).sum())
    changed = int((b != a).sum())
    if n == 0:
        return {"fixed": 0, "broke": 0, "changed": 0, "n": 0, "delta": np.nan, "low": np.nan, "high": np.nan}
    d = (fixed - broke) / n
    sd = np.sqrt(max(fixed + broke - (fixed - broke) ** 2 / n, 0.0)) / n
    return {"fixed": fixed, "broke": broke, "changed": changed, "n": n, "delta": d, "low": d - 1.96 * sd,
            "high": d + 1.96 * sd}


def changes_vs_teacher(result, crowd: CrowdData, test_y: np.ndarray | None = None) -> pd.DataFrame:
    """Student and stage 2 against the teacher on each split with truth: ``split, model, fixed, broke,
    changed, n, delta, low, high``."""
    rows = []
    if crowd.has_gold and "teacher" in result.probas:
        t = np.asarray(result.probas["teacher"]).argmax(1)
        for m in ("student", "stage2"):
            if m in result.probas:
                rows.append({"split": "annotated items with gold", "model": m,
                             **paired_change(t, np.asarray(result.probas[m]).argmax(1), crowd.gold)})
    tp = dict(getattr(result, "test_probas", {}) or {})
    if test_y is not None and "teacher" in tp and len(tp["teacher"]) == len(test_y):
        t = np.asarray(tp["teacher"]).argmax(1)
        for m in ("student", "stage2"):
            if m in tp:
                rows.append({"split": "test split", "model": m,
                             **paired_change(t, np.asarray(tp[m]).argmax(1), np.asarray(test_y))})
    return pd.DataFrame(rows)


def recommended(result) -> dict:
    """The recommended model: the trainer's choice (``summary()["final"]`` / ``["final_model"]``, made on
    validation data or held-out answers) when the run has one, else the best validation accuracy among the
    classifiers, else none.

    Returns ``{"model": name or None, "how": sentence}``.
    """
    try:
        s = result.summary() or {}
    except Exception:  # noqa: BLE001
        s = {}
    fm = s.get("final_model")
    info = fm if isinstance(fm, dict) else {}
    final = s.get("final") or info.get("name") or info.get("model") or (fm if isinstance(fm, str) else None)
    criterion = str(info.get("criterion") or "")
    if final and criterion != "none" and (info or s.get("final_reason")):
        how = info.get("note") or s.get("final_reason") or (f"chosen by {criterion}" if criterion else
                                                            "chosen by the trainer on validation data only")
        return {"model": str(final), "how": str(how).rstrip(".")}
    va = {k: v for k, v in (getattr(result, "valid_accuracy", {}) or {}).items() if v is not None and k in CLASSIFIERS}
    if va:
        best = max(va, key=lambda k: (va[k], -CLASSIFIERS.index(k)))   # ties go to the simpler model
        return {"model": best, "how": f"best validation accuracy ({va[best]:.1%}); validation data only"}
    return {"model": None, "how": "no validation data in this run: no model can be recommended without "
                                  "looking at the test or gold labels (hold out some gold on the Train page)"}


def verdict(changes: pd.DataFrame) -> list[str]:
    """Plain sentences: did the student / stage 2 beat the teacher? (one per model and split)."""
    out = []
    for r in changes.itertuples(index=False):
        name = NAMES.get(r.model, r.model)
        where = "on the gold items" if r.split.startswith("annotated") else "on the test split"
        span = f"({r.delta * 100:+.1f} pts, 95 % interval {r.low * 100:+.1f} to {r.high * 100:+.1f})"
        if r.low > 0:
            out.append(f"The {name} beat the teacher {where}: it fixed {r.fixed} labels and broke {r.broke} {span}.")
        elif r.high < 0:
            out.append(f"The {name} did worse than the teacher {where}: it fixed {r.fixed} labels but broke "
                       f"{r.broke} {span}. Keep the teacher's labels.")
        else:
            out.append(f"The {name} did not beat the teacher {where}: it fixed {r.fixed} labels and broke "
                       f"{r.broke} {span}; the difference is within the noise.")
    return out


def model_zip(result_dir) -> bytes | None:
    """The run's saved result folder (``result.json``, ``arrays.npz``, ``models.pt``) as zip bytes, or None."""
    import io
    import zipfile
    from pathlib import Path
    if not result_dir:
        return None
    d = Path(result_dir) / "result"
    if not (d / "result.json").is_file():
        return None
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(d.iterdir()):
            if f.is_file() and f.name in ("result.json", "arrays.npz", "models.pt"):
                z.write(f, arcname=f"model/{f.name}")
    return buf.getvalue()


def test_predictions(result, model: str | None = None) -> pd.DataFrame | None:
    """The test split's predictions of ``model`` (the recommended one, else stage 2): ``item, label,
    confidence, prob_<class>..., model`` (the columns of ``kdcrowd predict``), or None without a test split."""
    tp = dict(getattr(result, "test_probas", {}) or {})
    name = model if model in tp else ("stage2" if "stage2" in tp else next(iter(tp), None))
    if name is None:
        return None
    P = np.asarray(tp[name])
    ids = getattr(result, "test_ids", None)
    out = pd.DataFrame({"item": list(ids) if ids is not None else list(range(len(P))),
                        "label": pd.Index(result.classes).take(P.argmax(1)), "confidence": P.max(1)})
    for k, c in enumerate(result.classes):
        out[f"prob_{c}"] = P[:, k]
    out["model"] = name
    return out
