"""Accuracy, worker-expertise error and agreement statistics.

Everything works on the sparse answer triples of a :class:`~kdcrowd_core.data.CrowdData`
(``item``, ``worker``, ``label`` int arrays) with ``bincount`` and small
matrix products: nothing loops in Python per item or per answer, and nothing
builds an items x workers array (per-item class counts, N x K, are the
largest intermediate).  Every column of every table is defined in
``docs/metrics.md``.

Conventions
-----------
- Class codes index ``data.classes``; a truth/gold code ``< 0`` means unknown.
- Worker matrices are float arrays (R, K, K) with ``T[r, j, c] = P(worker r
  answers c | true class j)`` (rows sum to 1), aligned with ``data.worker_ids``.
- Entropies are in nats (natural log).
- Undefined statistics are ``NaN`` (in tables) or ``None`` (in the JSON-ready
  :func:`agreement_summary`), never an exception.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .data import CrowdData, as_crowd_data
from .errors import CrowdDataError
from .inference.matrices import diagonals

__all__ = [
    "accuracy", "per_class_accuracy", "worker_matrix_errors", "worker_matrix_error",
    "empirical_confusion", "spammer_score", "worker_stats", "item_stats", "vote_counts",
    "krippendorff_alpha", "fleiss_kappa", "pairwise_cohen_kappa", "agreement_summary",
    "pair_cooccurrence",
]


# --------------------------------------------------------------------------- helpers
def vote_counts(data: CrowdData) -> np.ndarray:
    """Per-item answer counts per class, int64 (N, K): ``[i, c]`` = answers ``c`` on item ``i``."""
    data = as_crowd_data(data)
    N, K = data.n_items, data.n_classes
    return np.bincount(data.item * K + data.label, minlength=N * K).reshape(N, K)


def sparse_vote_counts(data: CrowdData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The non-zero entries of :func:`vote_counts`, sorted by item then class: ``(item, label, count)``.

    What the agreement statistics use instead of the dense (N, K) array: with 1,000 classes the dense
    counts of 20,000 items are 160 MB and their products take minutes; the entries are at most one per
    answer."""
    data = as_crowd_data(data)
    K = data.n_classes
    keys, cnt = np.unique(data.item.astype(np.int64) * K + data.label, return_counts=True)
    return keys // K, keys % K, cnt.astype(np.int64)


def _codes(a, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim == 2:  # probabilities -> argmax
        arr = arr.argmax(axis=1)
    if arr.ndim != 1:
        raise CrowdDataError(f"{name} must be a 1-D array of class codes (or an N x K probability array).")
    return arr


def _check_matrices(T: np.ndarray, name: str, R: int | None = None, K: int | None = None) -> np.ndarray:
    """A dense float64 (R, K, K) array, or a compact :class:`~.inference.matrices.ShrunkMatrices` as it is."""
    from .inference.matrices import ShrunkMatrices
    if not isinstance(T, ShrunkMatrices):
        T = np.asarray(T, dtype=np.float64)
    if T.ndim != 3 or T.shape[1] != T.shape[2]:
        raise CrowdDataError(f"{name} must have shape (workers, K, K), got {T.shape}.")
    if R is not None and T.shape[0] != R:
        raise CrowdDataError(f"{name} has {T.shape[0]} workers, the data has {R}.")
    if K is not None and T.shape[1] != K:
        raise CrowdDataError(f"{name} has {T.shape[1]} classes, the data has {K}.")
    return T


def _check_probas(data: CrowdData, probas) -> np.ndarray:
    P = np.asarray(probas, dtype=np.float64)
    if isinstance(probas, pd.DataFrame):
        P = probas.to_numpy(dtype=np.float64)
    if P.shape != (data.n_items, data.n_classes):
        raise CrowdDataError(f"probas must have shape (items={data.n_items}, classes={data.n_classes}), got {P.shape}.")
    return P


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    out = np.full(np.broadcast(a, b).shape, np.nan)
    np.divide(a, b, out=out, where=b != 0)
    return out


def _none_if_nan(x) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


# --------------------------------------------------------------------------- accuracy
def accuracy(pred, truth, mask=None) -> float:
    """Fraction of items whose predicted class equals the truth.

    Parameters
    ----------
    pred : int array (N,) of class codes, or float array (N, K) (argmax taken)
    truth : int array (N,); codes ``< 0`` (unknown) are ignored
    mask : bool array (N,) or None; only items where it is True count

    Returns NaN when no item counts.
    """
    p, t = _codes(pred, "pred"), _codes(truth, "truth")
    if p.shape != t.shape:
        raise CrowdDataError(f"pred ({p.shape[0]}) and truth ({t.shape[0]}) differ in length.")
    valid = t >= 0 if np.issubdtype(t.dtype, np.number) else ~pd.isna(t)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != t.shape:
            raise CrowdDataError(f"mask must have length {t.shape[0]}, got {mask.shape}.")
        valid = valid & mask
    n = int(valid.sum())
    return float(np.mean(p[valid] == t[valid])) if n else float("nan")


def per_class_accuracy(pred, truth, classes: Sequence) -> pd.Series:
    """Accuracy per true class (recall): for every class ``j``, the fraction of
    items of true class ``j`` predicted as ``j``.

    Returns a Series indexed by ``classes`` (name ``"accuracy"``, index name
    ``"class"``); NaN for classes with no item of known truth.
    """
    p, t = _codes(pred, "pred"), _codes(truth, "truth")
    if p.shape != t.shape:
        raise CrowdDataError(f"pred ({p.shape[0]}) and truth ({t.shape[0]}) differ in length.")
    classes = pd.Index(list(classes), name="class")
    K = len(classes)
    m = t >= 0
    if m.any() and int(t[m].max()) >= K:
        raise CrowdDataError(f"truth codes reach {int(t[m].max())}, but only {K} classes were given.")
    tot = np.bincount(t[m], minlength=K)
    hit = np.bincount(t[m], weights=(p[m] == t[m]).astype(np.float64), minlength=K)
    return pd.Series(_safe_div(hit, tot), index=classes, name="accuracy")


# --------------------------------------------------------------------------- worker matrices
def worker_matrix_errors(T_hat, T_true) -> np.ndarray:
    """Per-worker error ``||T_hat_r - T_r||_1 / K`` (R,).

    The entrywise L1 distance over the K x K matrix divided by K, i.e. the mean
    over rows of the L1 distance between the two answer distributions (0 = same,
    2 = disjoint).  Rows that are NaN in either matrix (a class the worker was
    never seen on, see :func:`empirical_confusion`) are left out and the mean
    taken over the remaining rows; a worker with no usable row gets NaN.
    """
    A = _check_matrices(T_hat, "T_hat")
    B = _check_matrices(T_true, "T_true", R=A.shape[0], K=A.shape[1])
    row = np.abs(A - B).sum(axis=2)  # (R, K); NaN where a row is unknown
    ok = np.isfinite(row)
    return _safe_div(np.where(ok, row, 0.0).sum(axis=1), ok.sum(axis=1))


def worker_matrix_error(T_hat, T_true, min_answers: int | None = None, counts=None) -> float:
    """Worker-expertise error: mean over workers of ``||T_hat_r - T_r||_1 / K``.

    Parameters
    ----------
    T_hat, T_true : float arrays (R, K, K), ``[r, true j, answer c]``
    min_answers : int or None
        Only workers with at least this many answers count (needs ``counts``).
    counts : int array (R,) or None
        Answers per worker (e.g. ``data.answers_per_worker()``); when given
        without ``min_answers``, workers with no answer are left out.

    See :func:`worker_matrix_errors` for the per-worker value and NaN rows.
    Returns NaN when no worker counts.
    """
    err = worker_matrix_errors(T_hat, T_true)
    keep = np.isfinite(err)
    if min_answers is not None and counts is None:
        raise CrowdDataError("min_answers needs counts (answers per worker, e.g. data.answers_per_worker()).")
    if counts is not None:
        counts = np.asarray(counts)
        if counts.shape != err.shape:
            raise CrowdDataError(f"counts must have one entry per worker ({err.shape[0]}), got {counts.shape}.")
        keep &= counts >= (1 if min_answers is None else min_answers)
    return float(err[keep].mean()) if keep.any() else float("nan")


def empirical_confusion(data: CrowdData, truth=None, alpha: float = 0.0) -> np.ndarray:
    """Per-worker confusion matrices counted from known true labels.

    ``T[r, j, c]`` is proportional to ``alpha`` + the number of answers ``c``
    by worker ``r`` on items of true class ``j``; only items with a known truth
    (code ``>= 0``) count.

    Parameters
    ----------
    data : CrowdData
    truth : int array (N,) or None
        True class codes (``-1`` = unknown); default ``data.gold``.
    alpha : float >= 0
        Additive smoothing.

    Returns
    -------
    float64 array (R, K, K), rows sum to 1.  With ``alpha = 0`` a row ``j``
    for which worker ``r`` answered no item of true class ``j`` is all NaN
    (unknown, skipped by :func:`worker_matrix_error`); with ``alpha > 0`` such
    a row is uniform ``1/K``.
    """
    data = as_crowd_data(data)
    if truth is None:
        if data.gold is None:
            raise CrowdDataError("no truth given and the data has no gold labels.",
                                 hint="pass truth=..., or attach gold with CrowdData.with_gold.")
        truth = data.gold
    t = _codes(truth, "truth").astype(np.int64)
    if t.shape != (data.n_items,):
        raise CrowdDataError(f"truth must have one code per item ({data.n_items}), got {t.shape}.")
    K, R = data.n_classes, data.n_workers
    if t.size and t.max() >= K:
        raise CrowdDataError(f"truth codes reach {int(t.max())}, but the data has {K} classes.")
    if alpha < 0:
        raise CrowdDataError(f"alpha must be >= 0, got {alpha}.")
    ti = t[data.item]
    m = ti >= 0
    key = (data.worker[m] * K + ti[m]) * K + data.label[m]
    C = np.bincount(key, minlength=R * K * K).reshape(R, K, K).astype(np.float64) + float(alpha)
    return _safe_div(C, C.sum(axis=2, keepdims=True))


def spammer_score(T) -> np.ndarray:
    """Raykar & Yu's spammer score per worker (R,), in [0, 1].

    ``S_r = ||T_r - 1 m_r^T||_F^2 / (K - 1)`` with ``m_r`` the mean of the rows
    of ``T_r``: the squared Frobenius distance of the matrix to the closest
    matrix with identical rows (the closest row-stochastic rank-one matrix),
    normalised so that a perfect worker (identity, or any permutation) scores 1.
    This equals Raykar & Yu (JMLR 2012, sec. 4) ``1/(K(K-1)) sum_{c<c'} sum_k
    (T[c,k] - T[c',k])^2``.  **0 = spammer**: the answers do not depend on the
    true class (random or always-the-same-label workers).  Adversaries who
    avoid the truth but answer in an item-dependent way score above 0.
    Rows with NaN (classes never seen, see :func:`empirical_confusion`) are
    left out: the formula is applied to the known rows, with ``K - 1`` replaced
    by their number minus one; NaN with fewer than 2 known rows.
    """
    T = _check_matrices(T, "worker matrices")
    if hasattr(T, "spammer_scores"):     # compact matrices (many classes): the same number without K x K arrays
        return T.spammer_scores()
    R, K = T.shape[0], T.shape[-1]
    n_ok = np.zeros(R, dtype=np.int64)
    dev = np.zeros(R)
    # a few workers at a time: the temporaries stay small with 1,000 classes (R x K x K is 8 MB per worker)
    step = max(1, int(1e6 // max(K * K, 1)))
    for lo in range(0, R, step):
        Tc = T[lo:lo + step]
        ok = np.isfinite(Tc).all(axis=2)  # (r, K) known rows
        n_ok[lo:lo + step] = ok.sum(axis=1)
        Tz = np.where(ok[:, :, None], Tc, 0.0)
        mean = _safe_div(Tz.sum(axis=1), n_ok[lo:lo + step, None])  # (r, K)
        Tz -= mean[:, None, :]
        Tz *= ok[:, :, None]
        dev[lo:lo + step] = np.einsum("rjk,rjk->r", Tz, Tz)
    return _safe_div(dev, np.where(n_ok > 1, n_ok - 1, 0))


# --------------------------------------------------------------------------- tables
def worker_stats(data: CrowdData, probas, worker_matrices, prior=None) -> pd.DataFrame:
    """One row per worker: activity, estimated accuracy, agreement, spam score.

    Parameters
    ----------
    data : CrowdData
    probas : float array (N, K) (or DataFrame) — consensus posteriors of a truth-inference method
    worker_matrices : float array (R, K, K) — estimated ``T[r, j, c]``
    prior : float array (K,) or None — class prior for ``accuracy``; default the mean of ``probas``

    Returns
    -------
    DataFrame indexed by worker id (index name ``"worker"``) with columns:

    - ``answers`` (int): answers given by the worker.
    - ``accuracy`` (float): estimated accuracy ``sum_j prior_j T[r, j, j]``.
    - ``agreement`` (float): fraction of the worker's answers equal to the
      consensus ``argmax(probas[i])`` of the item; NaN without answers.
    - ``spammer_score`` (float): :func:`spammer_score`, 0 = spammer, 1 = perfectly informative.
    - ``top_label_share`` (float): fraction of the worker's answers that are its
      most frequent label (1.0 for a worker who always gives the same label).
    - ``gold_answers`` (int) and ``gold_accuracy`` (float, NaN without gold
      answers): only when the data has gold labels; answers on gold items and
      the fraction of them equal to the gold label.
    """
    data = as_crowd_data(data)
    P = _check_probas(data, probas)
    T = _check_matrices(worker_matrices, "worker_matrices", R=data.n_workers, K=data.n_classes)
    R, K = data.n_workers, data.n_classes
    if prior is None:
        pi = P.mean(axis=0)
    else:
        pi = np.asarray(prior, dtype=np.float64)
        if pi.shape != (K,):
            raise CrowdDataError(f"prior must have {K} entries, got {pi.shape}.")
    pi = pi / pi.sum()
    answers = np.bincount(data.worker, minlength=R)
    consensus = P.argmax(axis=1)
    agree = np.bincount(data.worker, weights=(data.label == consensus[data.item]).astype(np.float64), minlength=R)
    per_label = np.bincount(data.worker * K + data.label, minlength=R * K).reshape(R, K)
    cols = {
        "answers": answers,
        "accuracy": diagonals(T) @ pi,
        "agreement": _safe_div(agree, answers),
        "spammer_score": spammer_score(T),
        "top_label_share": _safe_div(per_label.max(axis=1), answers),
    }
    if data.has_gold:
        g = data.gold[data.item]
        m = g >= 0
        ga = np.bincount(data.worker[m], minlength=R)
        gc = np.bincount(data.worker[m], weights=(data.label[m] == g[m]).astype(np.float64), minlength=R)
        cols["gold_answers"] = ga
        cols["gold_accuracy"] = _safe_div(gc, ga)
    return pd.DataFrame(cols, index=pd.Index(data.worker_ids, name="worker"))


def item_stats(data: CrowdData, probas=None) -> pd.DataFrame:
    """One row per item: how many answers, how much they disagree.

    Returns
    -------
    DataFrame indexed by item id (index name ``"item"``) with columns:

    - ``answers`` (int): number of answers on the item.
    - ``distinct`` (int): number of distinct labels among them.
    - ``vote_entropy`` (float, nats): entropy ``-sum_c v_c log v_c`` of the vote
      shares ``v_c = n_ic / answers``; 0 = unanimous, ``log(min(answers, K))`` at most.
    - ``margin`` (float): top vote share minus the second one (1 = unanimous,
      0 = tie between the two leading labels; a single answer gives 1).
    - ``consensus`` (label name) and ``confidence`` (float, ``max probas[i]``):
      only when ``probas`` (N x K) is given; ``consensus`` is ``argmax probas[i]``
      (first class on ties).
    - ``gold`` (label name, missing where unknown): only when the data has gold.

    Items with no answer have NaN entropy and margin.
    """
    data = as_crowd_data(data)
    N = data.n_items
    it, _, cnt = sparse_vote_counts(data)     # (item, class) entries: no N x K array
    n = np.bincount(it, weights=cnt, minlength=N).astype(np.int64)
    v = cnt / np.maximum(n[it], 1)
    ent = -np.bincount(it, weights=v * np.log(v), minlength=N)
    ent = ent + 0.0  # no -0.0
    ent[n == 0] = np.nan
    # the two largest vote shares of each item (0 when the item has a single distinct label)
    order = np.lexsort((-v, it))
    it_s, v_s = it[order], v[order]
    first = np.r_[True, it_s[1:] != it_s[:-1]] if it_s.size else np.zeros(0, bool)
    top1 = np.zeros(N)
    top1[it_s[first]] = v_s[first]
    second = np.r_[False, first[:-1] & ~first[1:]] if it_s.size else np.zeros(0, bool)
    top2 = np.zeros(N)
    top2[it_s[second]] = v_s[second]
    margin = top1 - top2
    if data.n_classes < 2:
        margin = top1 - 0.0
    cols: dict[str, object] = {
        "answers": n,
        "distinct": np.bincount(it, minlength=N),
        "vote_entropy": ent,
        "margin": margin,
    }
    if probas is not None:
        P = _check_probas(data, probas)
        cols["consensus"] = data.classes.take(P.argmax(axis=1))
        cols["confidence"] = P.max(axis=1)
    if data.has_gold:
        g = data.gold
        names = pd.Series(data.classes.take(np.maximum(g, 0)), dtype=object)
        cols["gold"] = names.where(g >= 0, None).to_numpy()
    return pd.DataFrame(cols, index=pd.Index(data.item_ids, name="item"))


# --------------------------------------------------------------------------- agreement
def pair_cooccurrence(data: CrowdData, as_frame: bool = False):
    """How often two answers meet on the same item, by class pair.

    ``M[c, c']`` counts the ordered pairs ``(a, b)`` of two *different* answers
    on the same item with labels ``c`` and ``c'``:
    ``M = C^T C - diag(sum_i C[i])`` with ``C`` the (N, K) vote counts, so
    ``M[c, c'] = sum_i n_ic n_ic'`` off the diagonal and
    ``M[c, c] = sum_i n_ic (n_ic - 1)``.  Symmetric; the total is
    ``sum_i m_i (m_i - 1)``.  Off-diagonal mass = disagreement between classes
    (the dashboard's class x class heatmap).

    Returns int64 array (K, K), or a DataFrame indexed/columned by the class names.
    """
    data = as_crowd_data(data)
    K = data.n_classes
    it, lb, cnt = sparse_vote_counts(data)
    a, b = _pairs_within_groups(it)            # ordered pairs of different classes on the same item
    M = np.bincount(lb[a] * K + lb[b], weights=(cnt[a] * cnt[b]).astype(np.float64),
                    minlength=K * K).astype(np.float64)
    M[np.arange(K) * (K + 1)] += np.bincount(lb, weights=(cnt * (cnt - 1)).astype(np.float64), minlength=K)
    M = np.rint(M).astype(np.int64).reshape(K, K)
    if as_frame:
        idx = pd.Index(data.classes, name="label")
        return pd.DataFrame(M, index=idx, columns=pd.Index(data.classes, name="other_label"))
    return M


def krippendorff_alpha(data: CrowdData) -> float:
    """Krippendorff's alpha for nominal data, any number of coders per item.

    Items with fewer than 2 answers are pairable with nothing and are ignored.
    With ``n_uc`` the answers ``c`` on item ``u`` and ``m_u`` its answers, the
    coincidence matrix is ``o[c, k] = sum_u (n_uc n_uk - [c = k] n_uc) / (m_u - 1)``,
    ``n_c = sum_k o[c, k]``, ``n = sum_c n_c``, and
    ``alpha = 1 - (n - 1) * sum_{c != k} o[c, k] / sum_{c != k} n_c n_k``
    (Krippendorff, *Computing Krippendorff's Alpha-Reliability*, 2011).
    1 = perfect agreement, 0 = chance level, < 0 = systematic disagreement.
    NaN when fewer than 2 pairable values or only one value is used.
    """
    data = as_crowd_data(data)
    K = data.n_classes
    it, lb, cnt = sparse_vote_counts(data)
    m = np.bincount(it, weights=cnt, minlength=data.n_items)
    keep = m[it] >= 2
    it, lb, cnt = it[keep], lb[keep], cnt[keep].astype(np.float64)
    if it.size == 0:
        return float("nan")
    w = 1.0 / (m[it] - 1.0)
    a, b = _pairs_within_groups(it)
    o = np.bincount(lb[a] * K + lb[b], weights=cnt[a] * cnt[b] * w[a], minlength=K * K).astype(np.float64)
    o[np.arange(K) * (K + 1)] += np.bincount(lb, weights=cnt * (cnt - 1.0) * w, minlength=K)
    o = o.reshape(K, K)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    expected = n * n - float((n_c ** 2).sum())
    if n < 2 or expected <= 0:
        return float("nan")
    observed = n - float(np.trace(o))
    return float(1.0 - (n - 1.0) * observed / expected)


def fleiss_kappa(data: CrowdData) -> float:
    """Fleiss' kappa (Fleiss, 1971), generalised to a varying number of raters.

    For each item ``i`` with ``m_i >= 2`` answers, the observed agreement is
    ``P_i = (sum_c n_ic^2 - m_i) / (m_i (m_i - 1))`` (the share of agreeing
    ordered pairs of answers); ``P_bar`` is the unweighted mean of ``P_i``;
    class shares ``p_c = sum_i n_ic / sum_i m_i`` pool every answer of those
    items; ``P_e = sum_c p_c^2`` and ``kappa = (P_bar - P_e) / (1 - P_e)``.
    With the same number of raters on every item this is exactly Fleiss's
    formula.  Items with fewer than 2 answers are ignored; NaN when none is
    left or ``P_e = 1``.
    """
    data = as_crowd_data(data)
    N, K = data.n_items, data.n_classes
    it, lb, cnt = sparse_vote_counts(data)
    cnt = cnt.astype(np.float64)
    m_all = np.bincount(it, weights=cnt, minlength=N)
    keep_items = m_all >= 2
    if not keep_items.any():
        return float("nan")
    sq = np.bincount(it, weights=cnt ** 2, minlength=N)
    m = m_all[keep_items]
    P_i = (sq[keep_items] - m) / (m * (m - 1.0))
    k = keep_items[it]
    p = np.bincount(lb[k], weights=cnt[k], minlength=K) / m.sum()
    P_e = float((p ** 2).sum())
    if P_e >= 1.0:
        return float("nan")
    return float((P_i.mean() - P_e) / (1.0 - P_e))


def _pairs_within_groups(group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All ordered pairs (a, b), a != b, of positions sharing a group id.

    ``group`` must be sorted.  Returns two int64 arrays of positions; total
    length ``sum_g m_g (m_g - 1)``.  Vectorised (no loop per group).
    """
    n = group.shape[0]
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    sizes = np.diff(np.r_[starts, n])
    size_of = np.repeat(sizes, sizes)
    start_of = np.repeat(starts, sizes)
    a = np.repeat(np.arange(n), size_of)
    # partner offsets 0..size-1 inside each element's group
    tot = size_of.sum()
    seg_start = np.repeat(np.cumsum(size_of) - size_of, size_of)
    b = np.repeat(start_of, size_of) + (np.arange(tot) - seg_start)
    keep = a != b
    return a[keep], b[keep]


def pairwise_cohen_kappa(data: CrowdData, top: int = 20) -> pd.DataFrame:
    """Cohen's kappa between each pair of the ``top`` most active workers.

    For workers ``a`` and ``b`` the items both answered form a K x K table;
    ``p_o`` is its diagonal share, ``p_e = sum_c p_a(c) p_b(c)`` from its
    margins and ``kappa = (p_o - p_e) / (1 - p_e)``.  NaN where the two share
    fewer than 2 items or ``p_e = 1`` (both always gave the same single label).
    The diagonal is 1 by definition.  Workers are ordered by answers
    (descending, ties by position in ``data.worker_ids``).

    Returns a square DataFrame (top x top), index and columns = worker ids.
    Vectorised over all pairs of answers the top workers gave on a common item.
    """
    data = as_crowd_data(data)
    K = data.n_classes
    counts = data.answers_per_worker()
    order = np.argsort(-counts, kind="stable")
    order = order[counts[order] > 0][: max(int(top), 0)]
    t = order.shape[0]
    ids = pd.Index(data.worker_ids.take(order), name="worker")
    if t == 0:
        return pd.DataFrame(np.zeros((0, 0)), index=ids, columns=ids)
    slot = np.full(data.n_workers, -1, dtype=np.int64)
    slot[order] = np.arange(t)
    m = slot[data.worker] >= 0
    it, ws, lb = data.item[m], slot[data.worker[m]], data.label[m]
    srt = np.argsort(it, kind="stable")
    it, ws, lb = it[srt], ws[srt], lb[srt]
    a, b = _pairs_within_groups(it)
    # per pair of workers: the number of shared items, the agreements and the two label margins
    # (t x t x K, never the t x t x K x K table: with 1,000 classes that was 3 GB)
    pair = ws[a] * t + ws[b]
    n = np.bincount(pair, minlength=t * t).reshape(t, t).astype(np.float64)
    agree = np.bincount(pair[lb[a] == lb[b]], minlength=t * t).reshape(t, t).astype(np.float64)
    po = _safe_div(agree, n)
    pa = _safe_div(np.bincount(pair * K + lb[a], minlength=t * t * K).reshape(t, t, K).astype(np.float64),
                   n[:, :, None])
    pb = _safe_div(np.bincount(pair * K + lb[b], minlength=t * t * K).reshape(t, t, K).astype(np.float64),
                   n[:, :, None])
    pe = (pa * pb).sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        kappa = np.where((n >= 2) & (pe < 1.0 - 1e-12), (po - pe) / (1.0 - pe), np.nan)
    np.fill_diagonal(kappa, 1.0)
    return pd.DataFrame(kappa, index=ids, columns=pd.Index(data.worker_ids.take(order), name="other_worker"))


def agreement_summary(data: CrowdData, top: int = 20) -> dict:
    """Model-free agreement of the whole crowd, as a JSON-ready dict.

    Keys: ``n_items``, ``n_workers``, ``n_answers``, ``n_classes`` (int);
    ``answers_per_item_mean`` (float), ``answers_per_item_min`` / ``_max`` (int);
    ``items_multi`` (int, items with >= 2 answers); ``percent_agreement``
    (mean over those items of the share of agreeing pairs, Fleiss's P_bar);
    ``unanimous_fraction`` (share of those items where all answers agree);
    ``mean_vote_entropy`` (nats, over those items); ``krippendorff_alpha``;
    ``fleiss_kappa``; ``mean_pairwise_cohen_kappa`` (mean of the finite
    off-diagonal entries of :func:`pairwise_cohen_kappa` with ``top``).
    Undefined values are ``None``.
    """
    data = as_crowd_data(data)
    C = vote_counts(data).astype(np.float64)
    m = C.sum(axis=1)
    multi = m >= 2
    Cm, mm = C[multi], m[multi]
    if Cm.shape[0]:
        P_i = ((Cm ** 2).sum(axis=1) - mm) / (mm * (mm - 1.0))
        V = Cm / mm[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            ent = -np.where(V > 0, V * np.log(np.where(V > 0, V, 1.0)), 0.0).sum(axis=1)
        pct, unan, ment = float(P_i.mean()), float(((Cm > 0).sum(axis=1) == 1).mean()), float(ent.mean())
    else:
        pct = unan = ment = float("nan")
    kap = pairwise_cohen_kappa(data, top=top).to_numpy()
    off = kap[~np.eye(kap.shape[0], dtype=bool)] if kap.size else kap.ravel()
    off = off[np.isfinite(off)]
    return {
        "n_items": int(data.n_items), "n_workers": int(data.n_workers),
        "n_answers": int(data.n_answers), "n_classes": int(data.n_classes),
        "answers_per_item_mean": float(m.mean()) if m.size else None,
        "answers_per_item_min": int(m.min()) if m.size else None,
        "answers_per_item_max": int(m.max()) if m.size else None,
        "items_multi": int(multi.sum()),
        "percent_agreement": _none_if_nan(pct),
        "unanimous_fraction": _none_if_nan(unan),
        "mean_vote_entropy": _none_if_nan(ment),
        "krippendorff_alpha": _none_if_nan(krippendorff_alpha(data)),
        "fleiss_kappa": _none_if_nan(fleiss_kappa(data)),
        "mean_pairwise_cohen_kappa": _none_if_nan(off.mean()) if off.size else None,
    }
