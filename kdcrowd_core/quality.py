"""Per-item label quality, relabel-next, and worker actions (flags, intervals, block/bonus lists).

Three questions a user asks once labels are inferred, answered from the sparse
answer triples of a :class:`~kdcrowd_core.data.CrowdData` (no items x workers
array, no Python loop per answer):

- **Which labels are likely wrong?**  :func:`item_quality` gives every item its
  consensus label and a *quality score* in [0, 1]: the probability that the
  consensus label is right under a calibrated crowd model (see below).  Low
  scores come first.  With a training run, the model's class probabilities
  enter as each item's prior (CROWDLAB's idea: a classifier that never saw the
  item's answers is a second opinion on it).
- **What should be relabelled next?**  :func:`relabel_next` ranks items by the
  expected gain in the probability that the item's label is right after one
  more answer from a worker who has not answered it yet (ActiveLab's idea, with
  the workers' estimated confusion matrices), plus half the probability that
  the label is wrong now and the (smoothed) share of answers against it.
- **Which workers to block or reward?**  :func:`worker_report` gives each worker's
  accuracy with a 95 % credible interval and flags from thresholds the user sets;
  :func:`block_list` / :func:`bonus_list` write them in the shapes MTurk and
  Toloka take.

The calibrated crowd model
--------------------------
Dawid-Skene posteriors are famously overconfident: the answers of an item are
treated as independent, and worker matrices estimated from a handful of
answers are taken at face value, so almost every item gets a confidence of
1.00.  :func:`crowd_posterior` fixes both without looking at any gold label:

1. worker matrices are re-estimated from the method's soft labels with a
   Dirichlet prior that pulls each worker's row towards the pool's average row
   (``strength`` pseudo-answers), so a worker with 3 answers is not "perfect";
2. the answers' log-likelihood is tempered by ``tau`` and the prior (class
   shares, or the model's probabilities) weighted by ``w``:
   ``log q_i = w log p_model(i) + (1 - w) log pi + tau * sum_a log T[r_a, :, c_a] + const``;
3. ``tau`` and ``w`` are chosen on the crowd itself: each answer of an item with
   at least two answers is held out in turn, the other answers give the item's
   posterior, and the choice that best predicts the held-out answer
   (``sum_j q_j T[r, j, c]``) wins;
4. workers who err together (a shared distractor on hard items) make an item's
   answers count for less than independent ones: the log-likelihood of item
   ``i``'s ``n_i`` answers is divided by ``1 + (n_i - 1) rho``, ``rho`` fitted on
   the vote counts (:func:`answer_overdispersion`).

Every column of every table here is documented in ``docs/quality.md``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .data import CrowdData, as_crowd_data
from .errors import CrowdDataError

__all__ = [
    "CrowdPosterior", "crowd_posterior", "answer_overdispersion", "item_quality", "relabel_next", "relabel_contested", "relabel_task_list",
    "worker_report", "WorkerThresholds", "block_list", "bonus_list", "accuracy_interval",
    "beta_interval", "run_predictions", "oof_classifier_proba", "labels_table", "gold_accuracy", "quality_scores", "QualityScores", "QUALITY_REASONS",
]

#: Reasons :func:`item_quality` gives, in the order they are listed.
QUALITY_REASONS = ("contested", "low confidence", "model disagrees with crowd", "teacher and student disagree")

_TAUS = (0.15, 0.25, 0.35, 0.5, 0.65, 0.8, 1.0)
_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
_EPS = 1e-12


# ----------------------------------------------------------------- intervals
def accuracy_interval(correct: int | float, total: int | float, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``correct / total`` (NaN, NaN when ``total == 0``).

    Used for every accuracy the dashboard and the CLI print: good coverage even near 0 and 1
    and with few items, unlike the normal approximation.
    """
    n = float(total)
    if n <= 0:
        return float("nan"), float("nan")
    z = _z(level)
    p = float(correct) / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def _z(level: float) -> float:
    if not 0 < level < 1:
        raise CrowdDataError(f"interval level must lie in (0, 1), got {level}.")
    # inverse normal CDF by bisection on erf (no scipy needed)
    from math import erf, sqrt
    target = 0.5 + level / 2
    lo, hi = 0.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if 0.5 * (1 + erf(mid / sqrt(2))) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def beta_interval(a: np.ndarray, b: np.ndarray, level: float = 0.95, draws: int = 4000,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed credible intervals of Beta(a, b) posteriors (vectorised Monte Carlo, seeded).

    ``a``, ``b``: arrays of the same shape (> 0).  Returns ``(low, high)`` arrays; quantiles are
    exact to about 0.005 with the default ``draws``.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    rng = np.random.default_rng(seed)
    lo = np.empty(a.shape)
    hi = np.empty(a.shape)
    q = [(1 - level) / 2, 1 - (1 - level) / 2]
    fa, fb, flo, fhi = a.ravel(), b.ravel(), lo.reshape(-1), hi.reshape(-1)
    step = max(1, 2_000_000 // draws)
    for s in range(0, fa.size, step):
        x = rng.beta(fa[s:s + step, None], fb[s:s + step, None], size=(min(step, fa.size - s), draws))
        flo[s:s + step], fhi[s:s + step] = np.quantile(x, q, axis=1)
    return lo, hi


# ------------------------------------------------------- the calibrated model
@dataclass
class CrowdPosterior:
    """A calibrated posterior over each item's true class (see the module docstring).

    Attributes
    ----------
    proba : float (N, K)
        ``P(true class | answers[, model])`` per item.
    matrices : float (R, K, K), or None
        Shrunk worker matrices ``[r, true j, answer c]`` (None on the compact path, many classes).
    prior : float (K,)
        Class shares (from the soft labels).
    tau, weight : float
        Chosen tempering of the answers and weight of the model's probabilities (0 without a model).
    heldout_loglik : float
        Mean log-probability of a held-out answer under the chosen setting (NaN when no item
        has two answers).
    overdispersion : float
        ``rho``, the correlation between two answers of the same item beyond what the true class
        explains (0 = independent answers); an item's ``n`` answers then count as
        ``n / (1 + (n - 1) rho)`` independent ones (:func:`answer_overdispersion`).
    prior_tempered : bool
        The class shares' log-prior was scaled with the answers' log-likelihood (``temper_prior``).
    activity_pool : float (K, K), or None
        ``sum_r answers_r * matrices[r]``, kept instead of ``matrices`` on the compact path.
    """

    proba: np.ndarray
    matrices: np.ndarray
    prior: np.ndarray
    tau: float
    weight: float
    heldout_loglik: float
    overdispersion: float = 0.0
    activity_pool: np.ndarray | None = None
    prior_tempered: bool = False


def _shrunk_matrices(data: CrowdData, q: np.ndarray, strength: float) -> np.ndarray:
    """Worker matrices from soft labels with a Dirichlet prior centred on the pool's average rows."""
    K, R = data.n_classes, data.n_workers
    key = data.worker * K + data.label
    counts = np.zeros((R * K, K))
    rows = q[data.item]
    import torch
    torch.from_numpy(counts).index_add_(0, torch.from_numpy(key), torch.from_numpy(np.ascontiguousarray(rows)))
    C = counts.reshape(R, K, K).transpose(0, 2, 1)          # [r, j, c] soft counts
    pooled = C.sum(axis=0) + 1.0
    pooled = pooled / pooled.sum(axis=1, keepdims=True)     # pool's average row per true class
    T = C + strength * pooled[None]
    return T / T.sum(axis=2, keepdims=True)


def _answer_loglik(data: CrowdData, logT: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per answer ``log T[r_a, :, c_a]`` (A, K) and per item the sum over its answers (N, K)."""
    la = logT[data.worker, :, data.label]
    L = np.zeros((data.n_items, data.n_classes))
    import torch
    torch.from_numpy(L).index_add_(0, torch.from_numpy(data.item), torch.from_numpy(np.ascontiguousarray(la)))
    return la, L


def _class_prior(q0: np.ndarray) -> np.ndarray:
    """Class shares of :func:`crowd_posterior` (from the soft labels)."""
    prior = q0.mean(axis=0) + 1e-6
    return prior / prior.sum()


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _softmax_(z: np.ndarray) -> np.ndarray:
    """:func:`_softmax` in ``z``'s memory (the same numbers); returns ``z``."""
    z -= z.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


#: Concentrations tried by :func:`answer_overdispersion` (the last one is practically independent answers).
_CONCENTRATIONS = tuple(2.0 ** k for k in range(-2, 11)) + (1e6,)
#: EM steps per concentration when :func:`answer_overdispersion` refits the mixture (measured: 10 and 30 steps
#: choose the same concentration on the 4 real and 14 simulated crowds of the calibration study).
OVERDISPERSION_EM_ITERS = 10


def answer_overdispersion(data: CrowdData, soft_labels: np.ndarray, max_items: int = 50_000,
                          seed: int = 0, refit: bool = True, em_iters: int = OVERDISPERSION_EM_ITERS
                          ) -> tuple[float, float]:
    """How much more the answers of one item agree (or disagree) together than independent answers would.

    Real workers err together on hard items (a shared distractor), which the worker matrices of an
    independent-answers model cannot see, so its posteriors are over-confident.  Label-free: the vote
    counts of every item are modelled as a mixture over the true class ``y`` of Dirichlet-multinomials
    ``DirMult(counts_i | s * M[y])`` (``M`` = the pool's answer distribution per class, ``pi`` = class shares);
    the concentration ``s`` with the highest marginal likelihood of the counts is kept (a grid from 0.25 to
    1024, and 1e6 = independent answers).  Returns ``(rho, s)`` with ``rho = 1 / (1 + s)``, the intra-item
    correlation of two answers (0 when independent answers fit best, and above ``RELABEL_POOL_MAX_CLASSES``
    classes, where it is not fitted).  At most ``max_items`` items with two or more answers are used (a
    seeded sample): one number needs no more.

    ``refit`` (default): ``M`` and ``pi`` are refitted by EM for each ``s`` (``em_iters`` steps from the soft
    labels, :func:`_dirmult_em`), not read off the soft labels.  The soft labels' ``M`` counts every item's
    own answers towards its own class (their consensus), so it is too diagonal and the counts look *less*
    dispersed than they are: on face the refit finds ``rho`` 0.20 instead of 0.11 (docs/quality.md,
    "Label-free calibration"); on independent answers both find 0.
    """
    data = as_crowd_data(data)
    N, K = data.n_items, data.n_classes
    if K > RELABEL_POOL_MAX_CLASSES:                # (items, K) tables per concentration: taken as independent
        return 0.0, float("inf")
    q = np.asarray(soft_labels, dtype=np.float64)
    C = np.bincount(data.item * K + data.label, minlength=N * K).reshape(N, K).astype(np.float64)
    keep = C.sum(axis=1) >= 2                       # items with one answer carry no information on s
    if keep.sum() < 10:
        return 0.0, float("inf")
    keep = np.flatnonzero(keep)
    if keep.size > max_items:
        keep = np.sort(np.random.default_rng(seed).choice(keep, size=int(max_items), replace=False))
    C, q = C[keep], q[keep]
    counts = _VoteCounts(C)
    best = (-np.inf, _CONCENTRATIONS[-1])
    for conc in _CONCENTRATIONS:
        if refit:
            total = _dirmult_em(counts, q, conc, em_iters)[0]
        else:
            total = counts.marginal(*_mixture_params(counts, q), conc)[0]
        if total > best[0] + 1e-9:
            best = (total, conc)
    conc = best[1]
    rho = 0.0 if conc >= _CONCENTRATIONS[-1] else 1.0 / (1.0 + conc)
    return float(rho), float(conc)


class _VoteCounts:
    """Sparse vote counts (items x classes) and the DirMult mixture's per-item log-likelihood from them."""

    def __init__(self, C: np.ndarray):
        self.n_items, self.K = C.shape
        self.nz_item, self.nz_class = np.nonzero(C)
        self.nz_count = C[self.nz_item, self.nz_class].astype(np.int64)
        n = C.sum(axis=1)
        self.n_values, self.n_index = np.unique(n, return_inverse=True)
        self.count_values = np.arange(1, int(self.nz_count.max()) + 1, dtype=np.float64)
        from scipy.sparse import csr_matrix
        self.sparse = csr_matrix((self.nz_count.astype(np.float64), (self.nz_item, self.nz_class)), shape=C.shape)
        self.scatter = _scatter_rows(self.nz_item, self.n_items)      # sums (nnz, K) rows per item

    def class_totals(self, r: np.ndarray) -> np.ndarray:
        """``M[y, c] = sum_i r[i, y] C[i, c]`` (K, K) from the nonzero counts."""
        return np.asarray(self.sparse.T @ r).T

    def marginal(self, M: np.ndarray, pi: np.ndarray, conc: float) -> tuple[float, np.ndarray]:
        """Total log marginal likelihood and the (items, K) joint log-likelihoods ``log pi_y + log DirMult``."""
        from scipy.special import gammaln
        a = conc * M                                # (K y, K c)
        A = a.sum(axis=1)
        ll = (gammaln(A)[None] - gammaln(A[None] + self.n_values[:, None]))[self.n_index]          # (N, K y)
        # only the non-zero vote counts carry a term (gammaln(a + 0) - gammaln(a) = 0): tables per count value
        table = gammaln(a.T[None] + self.count_values[:, None, None]) - gammaln(a.T)[None]         # (count, c, y)
        terms = np.ascontiguousarray(table[self.nz_count - 1, self.nz_class])                     # (nnz, K y)
        ll += self.scatter @ terms
        ll += np.log(pi)[None]
        mx = ll.max(axis=1, keepdims=True)
        total = float((mx[:, 0] + np.log(np.exp(ll - mx).sum(axis=1))).sum())
        return total, ll


def _mixture_params(counts: _VoteCounts, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    M = counts.class_totals(r) + 1e-3
    M = M / M.sum(axis=1, keepdims=True)            # [true y, answer c]
    pi = r.mean(axis=0) + 1e-9
    return M, pi / pi.sum()


def _dirmult_em(counts: _VoteCounts, q: np.ndarray, conc: float, iters: int) -> tuple[float, np.ndarray]:
    """EM for the mixture of ``DirMult(s M[y])`` at a fixed concentration ``s``, started from soft labels ``q``.

    The M-step takes ``M[y] ∝ sum_i r_iy counts_i`` (the exact maximiser as ``s`` grows, a close one at the
    concentrations that win; every step is kept only when the marginal likelihood does not drop).  Returns
    the best marginal log-likelihood and the responsibilities.
    """
    r = q
    best = counts.marginal(*_mixture_params(counts, r), conc)
    for _ in range(int(iters)):
        ll = best[1]
        r_new = np.exp(ll - ll.max(axis=1, keepdims=True))
        r_new /= r_new.sum(axis=1, keepdims=True)
        cand = counts.marginal(*_mixture_params(counts, r_new), conc)
        if cand[0] < best[0] + 1e-6:
            break
        best, r = cand, r_new
    return best[0], r


def crowd_posterior(data: CrowdData, soft_labels: np.ndarray, model_proba: np.ndarray | None = None, *,
                    strength: float | None = None, tau: float | None = None, weight: float | None = None,
                    overdispersion: float | None = None, max_heldout: int = 100_000,
                    seed: int = 0, compact: bool | None = None,
                    likelihood: AnswerLikelihood | None = None, temper_prior: bool = False) -> CrowdPosterior:
    """The calibrated posterior of every item's true class.

    Parameters
    ----------
    data : the answers.
    soft_labels : (N, K) probabilities of a truth-inference method (e.g. Dawid-Skene's).
    model_proba : (N, K) a classifier's probabilities for the items (out of fold when possible), or None.
    strength : pseudo-answers of the Dirichlet prior per matrix row (default ``K``).
    tau, weight : fix the tempering / model weight instead of choosing them on held-out answers.
    overdispersion : ``rho`` (0 = independent answers); default: :func:`answer_overdispersion`.  An item's
        answers' log-likelihood is further divided by ``1 + (n_i - 1) rho`` (the design effect of ``n_i``
        correlated answers).
    max_heldout : at most this many held-out answers are scored per candidate setting (a seeded sample;
        with more than ``COMPACT_POSTERIOR_FROM_CLASSES`` classes at most ``max(1000, 10**7 // K)``).
    temper_prior : scale the class shares' log-prior by the same ``tau / (1 + (n_i - 1) rho)`` as the answers
        (temperature scaling of the crowd's posterior: its most probable class stays; a model's probabilities,
        when given, are not scaled).  :func:`quality_scores` uses it with the tempering of
        :func:`heldout_refit_tau`: with the prior untempered, strong tempering let the class shares outvote the
        answers (face: the posterior's most probable class left the consensus on 13.5 % of the items).
    compact : build the matrices' columns per chunk of answers from sparse counts (no (R, K, K) matrices,
        no (answers, K) array; ``matrices`` is then None and ``activity_pool`` holds what
        :func:`expected_gain` needs).  Default: above ``COMPACT_POSTERIOR_FROM_CLASSES`` classes.  The same
        numbers as the dense path up to rounding.
    likelihood : the answers' likelihood from :func:`answer_likelihood` for the same ``data``, ``soft_labels``,
        ``strength`` and ``compact`` (computed once for several posteriors, e.g. by :func:`quality_scores`);
        default: computed here.
    """
    data = as_crowd_data(data)
    N, K = data.n_items, data.n_classes
    q0 = np.asarray(soft_labels, dtype=np.float64)
    if q0.shape != (N, K):
        raise CrowdDataError(f"soft labels must have shape (items={N}, classes={K}), got {q0.shape}.")
    strength = float(K if strength is None else strength)
    prior = _class_prior(q0)
    base = np.broadcast_to(np.log(prior), (N, K))
    logm = None
    if model_proba is not None:
        P = np.asarray(model_proba, dtype=np.float64)
        if P.shape != (N, K):
            raise CrowdDataError(f"model probabilities must have shape (items={N}, classes={K}), got {P.shape}.",
                                 hint="use the run trained on these answers.")
        logm = np.log(np.clip(P, 1e-6, None))
    compact = K > COMPACT_POSTERIOR_FROM_CLASSES if compact is None else bool(compact)
    lik = likelihood or answer_likelihood(data, q0, strength=strength, compact=compact)
    if (lik.strength, lik.compact, lik.L is None) != (strength, compact, False):
        raise CrowdDataError("the likelihood given to crowd_posterior was computed with another strength or "
                             "path, or was already used up (reusable=False).",
                             hint="compute it with answer_likelihood(data, soft_labels, strength=, compact=).")
    cols, T, la, L = lik.columns, lik.matrices, lik.answer_loglik, lik.L
    if compact:                 # no (R, K, K) matrices, no (answers, K) array: columns built per chunk of answers
        max_heldout = min(max_heldout, max(1000, 10_000_000 // K))

    taus = _TAUS if tau is None else (float(tau),)
    weights = (0.0,) if logm is None else (_WEIGHTS if weight is None else (float(weight),))
    # held-out answers: those on items with >= 2 answers (a seeded sample of them)
    n_per = data.answers_per_item()
    cand = np.flatnonzero(n_per[data.item] >= 2)
    if cand.size > max_heldout:
        cand = np.sort(np.random.default_rng(seed).choice(cand, size=max_heldout, replace=False))
    best = (-np.inf, taus[-1], weights[0])
    grid = [(w, t) for w in weights for t in taus] if len(taus) > 1 or len(weights) > 1 else \
        [(weights[0], taus[0])]
    if cand.size and compact:
        sums = np.zeros(len(grid))
        for part in np.array_split(cand, max(1, -(-cand.size * K // _COMPACT_BLOCK))):
            it = data.item[part]
            Tcol = cols.columns(part)                            # P(held-out answer | true j)
            rest = L[it] - np.log(np.clip(Tcol, _EPS, None))     # the other answers of the item
            for g, (w, t) in enumerate(grid):             # in place: one (n, K) array per setting, not five
                qh = t * rest
                qh += base[0] if logm is None else (1 - w) * base[it] + w * logm[it]
                _softmax_(qh)
                qh *= Tcol
                sums[g] += float(np.log(np.clip(qh.sum(axis=1), _EPS, None)).sum())
        for g, (w, t) in enumerate(grid):
            if sums[g] / cand.size > best[0]:
                best = (sums[g] / cand.size, t, w)
    elif cand.size and (len(taus) > 1 or len(weights) > 1):
        it, wk, lb = data.item[cand], data.worker[cand], data.label[cand]
        rest = L[it] - la[cand]                                 # the other answers of the item
        Tcol = T[wk, :, lb]                                     # P(held-out answer | true j)
        for w in weights:
            pri = base[it] if logm is None else (1 - w) * base[it] + w * logm[it]
            for t in taus:
                qh = _softmax(pri + t * rest)
                ll = float(np.log(np.clip((qh * Tcol).sum(axis=1), _EPS, None)).mean())
                if ll > best[0]:
                    best = (ll, t, w)
    elif cand.size:
        it, wk, lb = data.item[cand], data.worker[cand], data.label[cand]
        w, t = weights[0], taus[0]
        pri = base[it] if logm is None else (1 - w) * base[it] + w * logm[it]
        qh = _softmax(pri + t * (L[it] - la[cand]))
        best = (float(np.log(np.clip((qh * T[wk, :, lb]).sum(axis=1), _EPS, None)).mean()), t, w)
    ll, t, w = best
    pri = base if logm is None else (1 - w) * base + w * logm
    rho = answer_overdispersion(data, q0)[0] if overdispersion is None else float(overdispersion)
    scale = t / (1.0 + np.maximum(n_per - 1, 0) * rho)
    if lik.reusable:
        q = scale[:, None] * L                  # the softmax below in place: one (N, K) array, not four
    else:                                       # the likelihood's last use: its (N, K) table becomes q
        q, lik.L = L, None
        q *= scale[:, None]
    if temper_prior:        # the class shares tempered with the answers: temperature scaling of the crowd's posterior
        q += scale[:, None] * (base if logm is None else (1 - w) * base)
        if logm is not None:
            q += w * logm
    else:
        q += pri
    _softmax_(q)
    return CrowdPosterior(proba=q, matrices=T, prior=prior, tau=float(t), weight=float(w),
                          heldout_loglik=float(ll) if np.isfinite(ll) else float("nan"), overdispersion=float(rho),
                          activity_pool=cols.activity_pool() if compact else None, prior_tempered=bool(temper_prior))


@dataclass
class AnswerLikelihood:
    """What :func:`crowd_posterior` computes from the answers and soft labels before choosing its settings
    (:func:`answer_likelihood`); several posteriors of the same data and soft labels can share it.

    ``L`` (N, K): per item the sum over its answers of ``log T[r_a, :, c_a]``; ``matrices`` and
    ``answer_loglik`` (A, K) on the dense path, ``columns`` (:class:`_AnswerColumns`) on the compact path.
    With ``reusable=False`` the next :func:`crowd_posterior` builds its posterior in ``L``'s memory and sets
    ``L`` to None (one (N, K) array less at once).
    """

    strength: float
    compact: bool
    L: np.ndarray | None
    matrices: np.ndarray | None = None
    answer_loglik: np.ndarray | None = None
    columns: _AnswerColumns | None = None
    reusable: bool = True


def answer_likelihood(data: CrowdData, soft_labels: np.ndarray, *, strength: float | None = None,
                      compact: bool | None = None) -> AnswerLikelihood:
    """The shrunk worker matrices' likelihood of every item's answers (see :func:`crowd_posterior` for
    ``strength``, default ``K``, and ``compact``)."""
    data = as_crowd_data(data)
    K = data.n_classes
    q0 = np.asarray(soft_labels, dtype=np.float64)
    strength = float(K if strength is None else strength)
    compact = K > COMPACT_POSTERIOR_FROM_CLASSES if compact is None else bool(compact)
    if compact:
        cols = _AnswerColumns(data, q0, strength)
        return AnswerLikelihood(strength, True, cols.item_loglik(), columns=cols)
    T = _shrunk_matrices(data, q0, strength)
    la, L = _answer_loglik(data, np.log(np.clip(T, _EPS, None)))
    return AnswerLikelihood(strength, False, L, matrices=T, answer_loglik=la)


#: From this many classes :func:`crowd_posterior` keeps no (R, K, K) matrices and no (answers, K) array.
COMPACT_POSTERIOR_FROM_CLASSES = 64
_COMPACT_BLOCK = 500_000        # numbers per (answers, K) chunk on the compact path (4 MB in float64)


class _AnswerColumns:
    """The shrunk matrices' columns ``T[r_a, :, c_a]`` of chosen answers, built from sparse vote counts.

    ``T[r, j, c] = (C[r, j, c] + s * pooled[j, c]) / (n[r, j] + s)`` (as :func:`_shrunk_matrices`), with
    ``C[r, :, c]`` the sum of the soft labels of the items worker ``r`` labelled ``c``: one sparse
    (worker, label) pairs x items matrix times the soft labels, a chunk of answers at a time.  Memory:
    the soft labels, (R, K) and (K, K) tables and one chunk (``_COMPACT_BLOCK`` numbers), never R x K x K.
    """

    def __init__(self, data: CrowdData, q: np.ndarray, strength: float, max_block: int = _COMPACT_BLOCK):
        from scipy.sparse import csr_matrix
        self.data, self.q, self.s = data, q, float(strength)
        self._pool: np.ndarray | None = None
        N, K, R = data.n_items, data.n_classes, data.n_workers
        self.chunk = max(1, int(max_block) // K)
        keys, self.pair = np.unique(data.worker.astype(np.int64) * K + data.label, return_inverse=True)
        ones = np.ones(data.item.size)
        self.S = csr_matrix((ones, (self.pair, data.item)), shape=(keys.size, N))      # pairs x items
        self.n = np.asarray(csr_matrix((ones, (data.worker, data.item)), shape=(R, N)) @ q)   # (R, K) row sums
        V = csr_matrix((ones, (data.item, data.label)), shape=(N, K))                   # vote counts
        pooled = np.asarray(V.T @ q).T + 1.0                                            # [j, c]
        self.pooled = pooled / pooled.sum(axis=1, keepdims=True)
        # the pairs with the most items (a worker who gives one label to hundreds of items) summed once, not
        # once per answer: at most max_block * 4 numbers and N / 4 rows (a 1,000-class crowd: 77 % of the work
        # in 6 pairs)
        per_pair = np.diff(self.S.indptr)
        heavy = np.argsort(-per_pair, kind="stable")[: max(1, min(4 * int(max_block) // K, N // 4))]
        heavy = np.sort(heavy[per_pair[heavy] >= 2])
        self.heavy_row = np.full(keys.size, -1, dtype=np.int64)
        self.heavy_row[heavy] = np.arange(heavy.size)
        self.heavy_sums = np.asarray(self.S[heavy] @ q) if heavy.size else np.zeros((0, K))

    def columns(self, answers: np.ndarray) -> np.ndarray:
        """(len(answers), K): ``T[worker_a, :, label_a]`` for each answer index ``a``."""
        d = self.data
        pair = self.pair[answers]
        hr = self.heavy_row[pair]
        light = hr < 0
        C = np.empty((pair.size, d.n_classes))
        C[light] = self.S[pair[light]] @ self.q         # row by row the same sums as the heavy pairs' (same order)
        C[~light] = self.heavy_sums[hr[~light]]
        return (C + self.s * self.pooled[:, d.label[answers]].T) / (self.n[d.worker[answers]] + self.s)

    def _chunks(self):
        A = self.data.item.size
        for s in range(0, A, self.chunk):
            idx = np.arange(s, min(A, s + self.chunk))
            yield idx, self.columns(idx)

    def item_loglik(self) -> np.ndarray:
        """(N, K): per item the sum over its answers of ``log T[r_a, :, c_a]``."""
        d = self.data
        L = np.zeros((d.n_items, d.n_classes))
        for idx, Tc in self._chunks():      # a sparse (items x chunk) sum: torch's index_add_ took 7 s here
            _add_rows(L, d.item[idx], np.log(np.clip(Tc, _EPS, None)))
        return L

    def activity_pool(self) -> np.ndarray:
        """(K, K): ``sum_r answers_r * T[r]`` (what :func:`expected_gain` reads from dense matrices)."""
        if self._pool is None:                          # once per likelihood (shared by its posteriors)
            self._pool = self._activity_pool()
        return self._pool

    def _activity_pool(self) -> np.ndarray:
        d = self.data
        act = d.answers_per_worker().astype(np.float64)
        K = d.n_classes
        # sum_r act_r C[r, j, c] / (n[r, j] + s): per answer, q_i * act_r / (n_r + s) in column c
        acc = np.zeros((K, K))                                         # [c, j]
        w = act[:, None] / (self.n + self.s)                          # (R, K)
        for s in range(0, d.item.size, self.chunk):
            sl = slice(s, s + self.chunk)
            _add_rows(acc, d.label[sl], self.q[d.item[sl]] * w[d.worker[sl]])
        prior_part = self.s * self.pooled * w.sum(axis=0)[:, None]     # sum_r act_r s pooled[j, c] / (n_rj + s)
        return acc.T + prior_part


def _scatter_rows(target: np.ndarray, n_rows: int):
    """A sparse (n_rows, len(target)) matrix summing row ``a`` of its right operand into row ``target[a]``."""
    from scipy.sparse import csr_matrix
    m = target.size
    return csr_matrix((np.ones(m), (target, np.arange(m))), shape=(n_rows, m))


def _add_rows(out: np.ndarray, target: np.ndarray, rows: np.ndarray) -> None:
    """``out[target[a]] += rows[a]`` for every ``a`` (repeated targets summed), touching only the target rows:
    a sparse sum over the distinct targets, not an ``out``-sized product per call (with 10,000 items x 1,000
    classes that was an 80 MB array written per chunk of answers).  The same sums, in the same order, as
    ``out += _scatter_rows(target, len(out)) @ rows``."""
    uniq, inv = np.unique(target, return_inverse=True)
    out[uniq] += _scatter_rows(inv.ravel(), uniq.size) @ rows


# ------------------------------------------------------------------ labels
def labels_table(data: CrowdData, proba: np.ndarray) -> pd.DataFrame:
    """The inferred labels as ``kdcrowd aggregate`` writes them: ``item``, ``label``, ``confidence``
    (max probability), ``prob_<class>`` per class; one row per item in the answers' order."""
    data = as_crowd_data(data)
    q = np.asarray(proba, dtype=np.float64)
    out = pd.DataFrame({"item": data.item_ids, "label": data.classes.take(q.argmax(axis=1)),
                        "confidence": q.max(axis=1)})
    # one block, not one column insert per class (slow and fragmented with 1,000 classes)
    probs = pd.DataFrame(q, columns=[f"prob_{c}" for c in data.classes], index=out.index)
    return pd.concat([out, probs], axis=1)


def labels_table_head(data: CrowdData, proba: np.ndarray, n: int, max_classes: int | None = None) -> pd.DataFrame:
    """The first ``n`` rows of :func:`labels_table`, without the ``prob_`` columns past ``max_classes`` classes."""
    data = as_crowd_data(data)
    q = np.asarray(proba[:n], dtype=np.float64)
    out = pd.DataFrame({"item": data.item_ids[:n], "label": data.classes.take(q.argmax(axis=1)),
                        "confidence": q.max(axis=1)})
    if max_classes is None or data.n_classes <= max_classes:
        probs = pd.DataFrame(q, columns=[f"prob_{c}" for c in data.classes], index=out.index)
        out = pd.concat([out, probs], axis=1)
    return out


def gold_accuracy(data: CrowdData, proba: np.ndarray, level: float = 0.95) -> dict | None:
    """Accuracy of ``argmax proba`` on the gold items with its Wilson interval:
    ``{"accuracy", "low", "high", "n"}``, or None without gold."""
    if not data.has_gold:
        return None
    m = data.gold_mask
    right = int((np.asarray(proba).argmax(axis=1)[m] == data.gold[m]).sum())
    n = int(m.sum())
    lo, hi = accuracy_interval(right, n, level)
    return {"accuracy": right / n, "low": lo, "high": hi, "n": n}


# ----------------------------------------------------------------- run views
@dataclass
class RunView:
    """What :func:`item_quality` needs from a training run (all (N, K), aligned with the answers)."""

    model_proba: np.ndarray | None = None     # the classifier used as second opinion
    model_source: str = ""                    # which one: "out-of-fold classifier", "student classifier", ...
    label_proba: np.ndarray | None = None     # the recommended model's probabilities (its label is shown)
    label_source: str = ""
    teacher: np.ndarray | None = None
    student: np.ndarray | None = None
    stage2: np.ndarray | None = None


def run_predictions(result, data: CrowdData) -> RunView:
    """Align a KD-Crowd result (``KDResult``) with ``data``'s items; raise CrowdDataError when they don't match.

    The model's second opinion is, in order of preference: out-of-fold classifier probabilities
    (``result.oof_probas``: the cross-fit teacher folds' classifiers, each on the items it never saw), else the student classifier's probabilities.  The label
    shown is the recommended model's (``summary()["final_model"]`` when the run has it), else stage 2's.
    """
    ids = pd.Index(result.item_ids)
    if [str(c) for c in result.classes] != [str(c) for c in data.classes]:
        raise CrowdDataError(f"the run's classes {list(result.classes)[:8]} differ from the answers' classes "
                             f"{list(data.classes)[:8]}.", hint="give the run trained on these answers.")
    pos = pd.Index([str(i) for i in ids]).get_indexer([str(i) for i in data.item_ids])
    if (pos < 0).mean() > 0.5:
        raise CrowdDataError(f"only {int((pos >= 0).sum())} of the {data.n_items} items of the answers are in "
                             "the run.", hint="give the run trained on these answers.")
    K = data.n_classes

    def align(P):
        if P is None:
            return None
        P = np.asarray(P, dtype=np.float64)
        out = np.full((data.n_items, K), 1.0 / K)
        out[pos >= 0] = P[pos[pos >= 0]]
        return out

    pr = dict(result.probas)
    view = RunView()
    oof = getattr(result, "oof_probas", None)
    if oof is None:
        oof = pr.get("oof")
    if oof is not None:
        view.model_proba, view.model_source = align(oof), "out-of-fold classifier (the run's cross-fit teacher folds)"
    elif "student" in pr:
        view.model_proba, view.model_source = align(pr["student"]), "student classifier (in-sample)"
    final = None
    try:
        s = result.summary() or {}
        final = s.get("final") or s.get("final_model")
        if isinstance(final, dict):   # final_model is the record of the choice (kd/recommend.py)
            final = final.get("name")
    except Exception:  # noqa: BLE001 - an old result without summary fields
        final = None
    for name in ([final] if final else []) + ["stage2", "teacher"]:
        if name in pr:
            view.label_proba, view.label_source = align(pr[name]), name
            break
    view.teacher, view.student, view.stage2 = align(pr.get("teacher")), align(pr.get("student")), \
        align(pr.get("stage2"))
    return view


# ------------------------------------------------------- out-of-fold classifier
def oof_classifier_proba(features: np.ndarray, soft_labels: np.ndarray, *, folds: int = 5, epochs: int = 200,
                         hidden: int = 0, weight_decay: float = 1e-3, seed: int = 0) -> np.ndarray:
    """Out-of-fold class probabilities (N, K) of a classifier trained on the items' features and soft labels.

    CROWDLAB's second opinion: every item's probabilities come from a model trained on the *other* folds
    only, so the item's own answers never reach its own prediction.  The model is a softmax regression
    (``hidden > 0``: one hidden layer) on standardised features, fitted full-batch with Adam on the soft
    labels' cross-entropy; seeded, CPU.
    """
    import torch
    X = np.asarray(features, dtype=np.float32)
    q = np.asarray(soft_labels, dtype=np.float32)
    N, K = q.shape
    if X.ndim != 2 or X.shape[0] != N:
        raise CrowdDataError(f"features must have one row per item ({N}), got shape {X.shape}.")
    if not np.all(np.isfinite(X)):
        raise CrowdDataError("features contain NaN or infinite values.")
    folds = max(2, min(int(folds), N))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)           # small full-batch problems: one thread is fastest (and fair on a busy box)
    try:
        return _oof(X, q, folds, epochs, hidden, weight_decay, seed)
    finally:
        torch.set_num_threads(threads)


def _oof(X: np.ndarray, q: np.ndarray, folds: int, epochs: int, hidden: int, weight_decay: float,
         seed: int) -> np.ndarray:
    import torch
    N, K = q.shape
    g = torch.Generator().manual_seed(int(seed))
    fold_of = torch.randperm(N, generator=g).numpy() % folds
    out = np.zeros((N, K))
    Xt_all = torch.from_numpy(X)
    qt_all = torch.from_numpy(q)
    for f in range(folds):
        tr, ho = np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)
        mu, sd = Xt_all[tr].mean(0), Xt_all[tr].std(0).clamp_min(1e-6)
        Xtr, Xho = (Xt_all[tr] - mu) / sd, (Xt_all[ho] - mu) / sd
        torch.manual_seed(int(seed) * 1009 + f)
        d = X.shape[1]
        model = torch.nn.Linear(d, K) if hidden <= 0 else torch.nn.Sequential(
            torch.nn.Linear(d, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, K))
        opt = torch.optim.Adam(model.parameters(), lr=0.05 if hidden <= 0 else 0.01, weight_decay=weight_decay)
        y = qt_all[tr]
        for _ in range(int(epochs)):
            opt.zero_grad()
            loss = -(y * torch.log_softmax(model(Xtr), 1)).sum(1).mean()
            loss.backward()
            opt.step()
        with torch.no_grad():
            out[ho] = torch.softmax(model(Xho), 1).double().numpy()
    return out


# --------------------------------------------------------------- item quality
#: Default weight of the posteriors (vs. plain vote agreement) in the ranking score, kept unless the held-out
#: answers clearly prefer another (:func:`heldout_choice`); measured in benchmarks/quality.py on simulated crowds
#: and the real crowds (docs/benchmarks_quality.md).
RANK_POSTERIOR_WEIGHT = 0.95
_RANK_BLOCK = 1_000_000         # numbers per block of rows in :func:`_rank_score` (8 MB in float64)
#: Gold items needed before the quality score is calibrated on gold rather than on held-out answers.
MIN_GOLD_FOR_CALIBRATION = 30
#: Items with two or more answers needed to hold answers out (:func:`heldout_choice`); below it, and without
#: gold, nothing checks the quality (one answer per item: every worker looks right) and ``calibration`` says so.
MIN_ITEMS_TO_HOLD_OUT = 10
UNCHECKED_CALIBRATION = (f"nothing: fewer than {MIN_ITEMS_TO_HOLD_OUT} items have two or more answers, so no "
                         "answer could be held out and no gold was given; the workers' accuracy cannot be estimated from one answer per "
                         "item, so read the quality as an order only, not as a probability")


@dataclass
class QualityScores:
    """Per-item scores behind :func:`item_quality` (all (N,), aligned with the answers' items).

    ``consensus`` (codes), ``agreement`` (share of answers equal to it), ``rank_score`` (what orders the
    items: ``w * P(consensus) + (1 - w) * agreement``, ``P`` the mean of the method's, plain Dawid-Skene's
    and a shrunk-matrix posterior, with a model's probabilities as a second opinion when given; ``w`` =
    ``rank_weight``, ``RANK_POSTERIOR_WEIGHT`` unless the held-out answers chose another, and the shrinkage
    ``rank_strength``, both by :func:`heldout_choice`; ties between
    saturated posteriors broken by the posterior's log-odds, see :func:`_rank_score`),
    ``quality`` (``rank_score`` mapped to a probability by a logistic fit), ``calibration`` (on what the
    fit was made: ``"gold (n items)"``, ``"held-out answers"``, or ``UNCHECKED_CALIBRATION`` when no gold was
    given and too few items have two answers to hold one out), ``posterior`` (the
    calibrated :class:`CrowdPosterior`).
    """

    consensus: np.ndarray
    agreement: np.ndarray
    rank_score: np.ndarray
    quality: np.ndarray
    calibration: str
    posterior: CrowdPosterior
    rank_weight: float = RANK_POSTERIOR_WEIGHT
    rank_strength: float = float("nan")


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))          # no overflow for large |z|


def _platt(x: np.ndarray, y: np.ndarray, iters: int = 100) -> tuple[float, float]:
    """Logistic fit ``P = sigmoid(a x + b)`` to targets ``y`` in [0, 1]: damped Newton on the standardised
    ``x`` (every step lowers the regularised log-loss), returned on the original scale."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    mu, sd = float(x.mean()), float(x.std()) or 1.0
    z = (x - mu) / sd
    lam = 1e-3 * max(len(z), 1)

    def loss(w):
        p = np.clip(_sigmoid(w[0] * z + w[1]), 1e-12, 1 - 1e-12)
        return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).sum() + 0.5 * lam * w[0] ** 2)

    w = np.array([1.0, 0.0])
    cur = loss(w)
    Z = np.stack([z, np.ones_like(z)], axis=1)
    for _ in range(iters):
        p = _sigmoid(w[0] * z + w[1])
        g = Z.T @ (p - y) + np.array([lam * w[0], 0.0])
        H = (Z * (p * (1 - p))[:, None]).T @ Z + np.diag([lam, 1e-9])
        step = np.linalg.solve(H, g)
        t = 1.0
        while t > 1e-4:
            cand = w - t * step
            new = loss(cand)
            if new <= cur:
                break
            t /= 2
        if t <= 1e-4 or abs(cur - new) < 1e-10:
            break
        w, cur = cand, new
    return float(w[0] / sd), float(w[1] - w[0] * mu / sd)


def _rank_score(posteriors: list[np.ndarray], cons: np.ndarray, agree: np.ndarray,
                model_proba: np.ndarray | None, post: CrowdPosterior, sharp: np.ndarray,
                rank_weight: float = RANK_POSTERIOR_WEIGHT) -> np.ndarray:
    """The ranking score in logit units (N,): ``logit(w P(cons) + (1 - w) agreement)``, ``w = rank_weight``, plus
    a tie-break below 1e-3 from ``sharp``'s log-odds of the consensus (``sharp``: the shrunk-matrix posterior, untempered;
    it still tells 4 unanimous answers from 1 where the method's posterior saturates at 1.0, e.g. majority vote).

    ``P`` is the mean of the ``posteriors``' probabilities of the consensus (the method's, plain
    Dawid-Skene's and, when :func:`heldout_choice` made its choice, the shrunk-matrix posterior); with a
    model, each is first updated by it: ``log P = log q + post.weight * (log p_model -
    log prior)`` (the model as a second opinion, with the weight chosen on held-out answers by
    :func:`crowd_posterior`).  ``sharp`` may also be given as its log-odds of the consensus (N,)
    (:func:`_consensus_log_odds`).
    """
    N = cons.shape[0]
    p_cons = np.zeros(N)
    lo = np.empty(N)
    logm = None
    if model_proba is not None and post.weight > 0:
        logm = np.asarray(model_proba, dtype=np.float64)
    K = posteriors[0].shape[1]
    step = max(1, _RANK_BLOCK // max(K, 1))      # rows at a time: no (N, K) temporaries (80 MB each)
    for s in range(0, N, step):
        sl = slice(s, s + step)
        rows = np.arange(min(N, s + step) - s)
        c = cons[sl]
        term = None
        for k, q in enumerate(posteriors):
            if term is None or q is not posteriors[k - 1]:      # the same array twice: the same term
                p = np.clip(q[sl], 1e-300, None)
                np.log(p, out=p)
                if logm is not None:
                    p += post.weight * (np.log(np.clip(logm[sl], 1e-6, None)) - np.log(post.prior)[None])
                p -= p.max(axis=1, keepdims=True)
                np.exp(p, out=p)
                term = p[rows, c] / p.sum(axis=1)
            p_cons[sl] += term / len(posteriors)
        if sharp.ndim == 2:
            lo[sl] = _log_odds_rows(np.clip(sharp[sl], 1e-300, None), c)
        else:
            lo[sl] = sharp[sl]
    score = np.clip(rank_weight * p_cons + (1 - rank_weight) * agree, 1e-9, 1 - 1e-9)
    return np.log(score) - np.log1p(-score) + 1e-3 * np.tanh(lo / 50.0)


#: Temperings of the answers tried by :func:`heldout_refit_tau`.
REFIT_TAUS = tuple(round(0.15 + 0.05 * k, 2) for k in range(18))          # 0.15, 0.20, ..., 1.00
#: Folds and repeats of :func:`heldout_refit_tau` (4 x 3 = 12 refits of the default method).  Past
#: ``REFIT_SMALL_ANSWERS`` answers (in the sampled items) the repeats drop to ``max(1, 3 * REFIT_SMALL_ANSWERS //
#: answers)`` (their held-out log-likelihood is less noisy) and the refits stop at the tolerance ``REFIT_TOL``
#: instead of the method's 1e-6: 10,000 items x 8 classes x 5,000 workers (35,000 answers), 10.8 -> 1.5 s of CPU;
#: on sims E the looser tolerance alone moved the ECE 0.055 -> 0.083, so small crowds keep both.
REFIT_FOLDS = 4
REFIT_REPEATS = 3
REFIT_SMALL_ANSWERS = 20_000
REFIT_TOL = 1e-4
#: At most this many items (a seeded sample, with all their answers) enter the refits.
REFIT_MAX_ITEMS = 10_000


def heldout_splits(data: CrowdData, *, folds: int, repeats: int, rng: np.random.Generator):
    """Yield ``(held_out, rest)`` ``repeats * folds`` times: per repeat one random answer of every item with two
    or more answers is drawn and those items split in ``folds``; ``held_out`` holds one fold's drawn answers
    (indices into ``data``'s answers) and ``rest`` is ``data`` without them (same items, workers, classes)."""
    item = data.item
    N = data.n_items
    eligible = np.flatnonzero(np.bincount(item, minlength=N) >= 2)
    for _ in range(int(repeats)):
        order = rng.permutation(item.size)
        held = np.full(N, -1)
        held[item[order[::-1]]] = order[::-1]             # one random answer per item
        fold = rng.permutation(eligible.size) % int(folds)
        for f in range(int(folds)):
            out = held[eligible[fold == f]]
            keep = np.ones(item.size, dtype=bool)
            keep[out] = False
            yield out, CrowdData.from_arrays(item[keep], data.worker[keep], data.label[keep], n_items=N,
                                             n_workers=data.n_workers, n_classes=data.n_classes, validate=False)


#: The ranking's third posterior: worker matrices shrunk by ``m * K`` pseudo-answers per row, ``m`` the one of these
#: whose posterior best predicts the held-out answers (:func:`heldout_choice`).
RANK_STRENGTHS = (1, 2, 4, 8, 16)
#: Weights of the posteriors against vote agreement the held-out answers may choose instead of
#: ``RANK_POSTERIOR_WEIGHT``: one is taken only when its AUROC for "the held-out answer equals the refit's
#: consensus" beats the default's by ``RANK_WEIGHT_Z`` bootstrap standard errors (``RANK_WEIGHT_BOOTSTRAPS``
#: resamples), on at least ``RANK_WEIGHT_MIN_ANSWERS`` held-out answers of items with two answers left.
RANK_WEIGHTS = (0.0, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9)
RANK_WEIGHT_Z = 1.64
RANK_WEIGHT_BOOTSTRAPS = 100
RANK_WEIGHT_MIN_ANSWERS = 100


@dataclass
class HeldoutChoice:
    """What :func:`heldout_choice` chose on answers the model never saw.

    ``tau`` (the tempering that best predicts them) and ``curve`` (mean held-out log-likelihood per tried tau);
    ``strength`` (pseudo-answers per row of the ranking's shrunk-matrix posterior) and ``weight`` (of the
    posteriors against vote agreement in the ranking score, see :func:`_rank_score`).
    """

    tau: float
    curve: np.ndarray
    strength: float
    weight: float


def _auroc_counts(score: np.ndarray, y: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """AUROC of ``score`` for ``y`` (ties count half) under each row of ``counts`` (resampling multiplicities,
    (B, n)); one sort for all rows."""
    _, group = np.unique(score, return_inverse=True)
    G = int(group.max()) + 1
    out = np.empty(counts.shape[0])
    for b, c in enumerate(counts):
        pos = np.bincount(group, weights=c * y, minlength=G)
        neg = np.bincount(group, weights=c * (1 - y), minlength=G)
        below = np.cumsum(neg) - neg
        out[b] = float((pos * (below + 0.5 * neg)).sum() / max(pos.sum() * neg.sum(), 1e-12))
    return out


def _choose_rank_weight(p: np.ndarray, agree: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> float:
    """The weight of ``RANK_WEIGHTS`` whose score ``w p + (1 - w) agree`` finds the held-out answers that disagree
    with the consensus best, when clearly better than ``RANK_POSTERIOR_WEIGHT`` (see ``RANK_WEIGHTS``)."""
    y = y.astype(np.float64)
    if y.size < RANK_WEIGHT_MIN_ANSWERS or y.min() == y.max():
        return RANK_POSTERIOR_WEIGHT
    counts = np.vstack([np.ones(y.size)] + [np.bincount(rng.integers(0, y.size, y.size), minlength=y.size)
                                            for _ in range(RANK_WEIGHT_BOOTSTRAPS)])

    def aucs(w):
        return _auroc_counts(w * p + (1 - w) * agree + 1e-6 * p, y, counts)     # the posterior breaks ties

    base = aucs(RANK_POSTERIOR_WEIGHT)
    best, best_w = base[0], RANK_POSTERIOR_WEIGHT
    for w in RANK_WEIGHTS:
        gain = aucs(w) - base
        if gain[0] > RANK_WEIGHT_Z * gain[1:].std() and base[0] + gain[0] > best:
            best, best_w = base[0] + gain[0], w
    return float(best_w)


def _loglik_sum(q: np.ndarray, col: np.ndarray) -> float:
    """Summed log-probability of held-out answers: ``sum_i log sum_j q_ij col_ij`` (``col``: P(answer | true j))."""
    return float(np.log(np.clip((q * col).sum(axis=1), _EPS, None)).sum())


def heldout_choice(data: CrowdData, *, strength: float | None = None, folds: int = REFIT_FOLDS,
                   repeats: int = REFIT_REPEATS, taus: tuple[float, ...] = REFIT_TAUS,
                   max_items: int = REFIT_MAX_ITEMS, seed: int = 0) -> HeldoutChoice | None:
    """Choices made on answers the model never saw: the tempering ``tau`` of the calibrated posterior, and the
    ranking's shrinkage strength and weight (:class:`HeldoutChoice`).

    Label-free.  One answer of every item with two or more answers is held out, the items split in
    ``folds``; for each fold its items' held-out answers are removed, the default truth-inference method
    (``DEFAULT_METHOD``, gold not used) and plain Dawid-Skene are refitted on the rest, the shrunk worker
    matrices (``strength`` pseudo-answers per row, default ``K``, and its ``RANK_STRENGTHS`` multiples) are
    re-estimated from the method's soft labels, and each held-out answer ``c`` of worker ``r`` on item ``i`` is
    scored ``log sum_j q_ij(tau) T[r, j, c]``, ``q_i(tau) ∝ pi * exp(tau * sum_a log T[r_a, :, c_a])`` over the
    item's remaining answers, the class shares ``pi`` tempered with them (temperature scaling: the most
    probable class does not change, ``crowd_posterior(..., temper_prior=True)``); ``repeats`` draws of the
    held-out answers.

    - ``tau``: the best of ``taus`` at ``strength``; ``curve`` the mean held-out log-likelihood per ``tau``.
    - ``strength``: the multiple of ``strength`` whose untempered posterior predicts the held-out answers best
      (sparse crowds with noisy matrices want more shrinkage).
    - ``weight``: see ``RANK_WEIGHTS``; the score of a held-out answer is the refit's mean probability of its
      item's consensus under the three posteriors, and the share of the item's remaining answers that gave it.

    Unlike the choice :func:`crowd_posterior` makes by itself (each answer left out of its item's posterior
    but not of the soft labels and worker matrices it is scored with, which have seen it), here the model
    never saw the held-out answers: a worker's matrix fitted on an answer predicts that answer too well and
    rewards sharp posteriors, so the in-sample choice stays at ``tau`` near 1 where the refit finds 0.25-0.75
    on the real crowds (docs/quality.md, "Label-free calibration").  Returns None (no choice) when fewer than
    ``MIN_ITEMS_TO_HOLD_OUT`` items have two answers or above ``RELABEL_POOL_MAX_CLASSES`` classes.
    """
    from .inference import DEFAULT_METHOD, get_method
    data = as_crowd_data(data)
    N, K = data.n_items, data.n_classes
    n_per = data.answers_per_item()
    if K > RELABEL_POOL_MAX_CLASSES or int((n_per >= 2).sum()) < MIN_ITEMS_TO_HOLD_OUT:
        return None
    rng = np.random.default_rng(seed)
    item, worker, label = data.item, data.worker, data.label
    if N > max_items:                                   # a seeded sample of items, with all their answers
        pick = np.zeros(N, dtype=bool)
        pick[rng.choice(N, size=int(max_items), replace=False)] = True
        new_index = np.cumsum(pick) - 1
        keep = pick[item]
        item, worker, label = new_index[item[keep]], worker[keep], label[keep]
        N = int(max_items)
    s = float(K if strength is None else strength)
    taus_arr = np.asarray(taus, dtype=np.float64)
    sums = np.zeros(taus_arr.size)
    strength_sums = np.zeros(len(RANK_STRENGTHS))
    held_p = [[] for _ in RANK_STRENGTHS]
    held_agree, held_same, held_left = [], [], []
    count = 0
    small = item.size <= REFIT_SMALL_ANSWERS
    if not small:
        repeats = max(1, min(int(repeats), REFIT_REPEATS * REFIT_SMALL_ANSWERS // item.size))
    refit_options = {} if small else {"tol": REFIT_TOL}
    sample = CrowdData.from_arrays(item, worker, label, n_items=N, n_workers=data.n_workers, n_classes=K,
                                   validate=False)
    for out, rest in heldout_splits(sample, folds=folds, repeats=repeats, rng=rng):
        q = get_method(DEFAULT_METHOD, use_gold=False, **refit_options).fit(rest).proba_array_
        q_ds = get_method("dawid_skene", use_gold=False, **refit_options).fit(rest).proba_array_
        log_prior = np.log(_class_prior(q))
        it = item[out]
        cons = q.argmax(axis=1)
        c, rows = cons[it], np.arange(it.size)
        for m, mult in enumerate(RANK_STRENGTHS):
            T = _shrunk_matrices(rest, q, mult * s)
            _, L = _answer_loglik(rest, np.log(np.clip(T, _EPS, None)))
            col = T[worker[out], :, label[out]]           # P(held-out answer | true j)
            if mult == 1:
                for k, t in enumerate(taus_arr):
                    sums[k] += _loglik_sum(_softmax(t * (log_prior[None] + L[it])), col)
            qh = _softmax(log_prior[None] + L[it])
            strength_sums[m] += _loglik_sum(qh, col)
            held_p[m].append((q[it, c] + q_ds[it, c] + qh[rows, c]) / 3)
        left = rest.answers_per_item()[it]
        same = np.bincount(rest.item, weights=rest.label == cons[rest.item], minlength=N)[it]
        held_agree.append(same / np.maximum(left, 1))
        held_same.append(label[out] == c)
        held_left.append(left)
        count += out.size
    curve = sums / max(count, 1)
    best = int(np.argmax(strength_sums))
    two = np.concatenate(held_left) >= 2
    weight = _choose_rank_weight(np.concatenate(held_p[best])[two], np.concatenate(held_agree)[two],
                                 np.concatenate(held_same)[two], rng)
    return HeldoutChoice(tau=float(taus_arr[int(np.argmax(curve))]), curve=curve,
                         strength=float(RANK_STRENGTHS[best] * s), weight=weight)


def heldout_refit_tau(data: CrowdData, **options) -> tuple[float, np.ndarray]:
    """``(tau, curve)`` of :func:`heldout_choice` (same options), ``(nan, empty)`` when it makes no choice."""
    choice = heldout_choice(data, **options)
    return (float("nan"), np.zeros(0)) if choice is None else (choice.tau, choice.curve)


def _log_odds_rows(others: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Per row the log-odds of class ``c`` under the probabilities ``others`` (clipped; overwritten)."""
    rows = np.arange(others.shape[0])
    np.log(others, out=others)
    ls_cons = others[rows, c].copy()
    others[rows, c] = -np.inf
    mx = others.max(axis=1, keepdims=True)
    others -= mx
    np.exp(others, out=others)
    return ls_cons - (mx[:, 0] + np.log(others.sum(axis=1)))


def _consensus_log_odds(L: np.ndarray, prior: np.ndarray, cons: np.ndarray) -> np.ndarray:
    """The log-odds of the consensus under ``softmax(log prior + L)`` (N,), a block of rows at a time: the
    untempered posterior of :func:`crowd_posterior` without a model (``tau=1``, no overdispersion), never
    whole (the same numbers as :func:`_rank_score` reading that posterior's ``proba``)."""
    N, K = L.shape
    log_prior = np.log(prior)
    lo = np.empty(N)
    step = max(1, _RANK_BLOCK // max(K, 1))
    for s in range(0, N, step):
        q = 1.0 * L[s:s + step]                 # crowd_posterior's final step on these rows (scale 1)
        q += log_prior
        np.clip(_softmax_(q), 1e-300, None, out=q)
        lo[s:s + step] = _log_odds_rows(q, cons[s:s + step])
    return lo


def quality_scores(data: CrowdData, soft_labels: np.ndarray, model_proba: np.ndarray | None = None, *,
                   use_gold: bool = True, overdispersion: float | None = None, reference: np.ndarray | None = None,
                   heldout_refit: bool = True, seed: int = 0) -> QualityScores:
    """Consensus, agreement, ranking score and calibrated quality of every item (see :class:`QualityScores`).

    Calibration: with at least ``MIN_GOLD_FOR_CALIBRATION`` gold items (and ``use_gold``), a logistic
    map (two parameters, increasing: the order of the items is kept) from the ranking score to "the
    consensus label is right" is fitted on the gold items; otherwise it is fitted to the calibrated
    posterior's probability of the consensus label (no label needed).  Pass ``use_gold=False`` when the
    gold labels were clamped during inference (they are then right by construction).  ``overdispersion``:
    see :func:`crowd_posterior` (default: fitted on the vote counts).  ``reference``: a second
    truth-inference posterior (N, K) averaged with ``soft_labels`` in the ranking score (default: plain
    Dawid-Skene fitted on the answers, gold not used, up to ``RELABEL_POOL_MAX_CLASSES`` classes; two models'
    agreement ranks wrong labels better than either: docs/benchmarks_quality.md).
    """
    data = as_crowd_data(data)
    q0 = np.asarray(soft_labels, dtype=np.float64)
    N, K = data.n_items, data.n_classes
    lik = answer_likelihood(data, q0)                # the answers' likelihood, shared by both posteriors
    gold_calibrated = use_gold and data.gold is not None and int((data.gold >= 0).sum()) >= MIN_GOLD_FOR_CALIBRATION
    choice = heldout_choice(data, seed=seed) if heldout_refit else None
    refit_tau = choice.tau if choice is not None and not gold_calibrated else float("nan")
    cons = q0.argmax(axis=1)
    sharp_lo = None
    if model_proba is None and lik.compact and not np.isfinite(refit_tau):
        # many classes: the tie-break's untempered posterior (no model weight to wait for) first, a block of
        # rows at a time, so that the calibrated posterior then takes the likelihood's memory (one (N, K) less)
        sharp_lo = _consensus_log_odds(lik.L, _class_prior(q0), cons)
        lik.reusable = False
    post = crowd_posterior(data, q0, model_proba, overdispersion=overdispersion, seed=seed, likelihood=lik)
    if np.isfinite(refit_tau):  # the same model weight (the ranking does not change), the refitted tempering
        post = crowd_posterior(data, q0, model_proba, tau=refit_tau, weight=post.weight if model_proba is not None
                               else None, overdispersion=post.overdispersion, seed=seed, likelihood=lik,
                               temper_prior=True)
    n = np.bincount(data.item, minlength=N)                                  # no (N, K) vote table
    votes_cons = np.bincount(data.item, weights=(data.label == cons[data.item]), minlength=N)
    agree = np.divide(votes_cons, n, out=np.zeros(N), where=n > 0)
    if sharp_lo is None:
        lik.reusable = False
        sharp_lo = crowd_posterior(data, q0, model_proba, tau=1.0, overdispersion=0.0, seed=seed, likelihood=lik,
                                   weight=post.weight if model_proba is not None else None).proba
    del lik
    if reference is None and K <= RELABEL_POOL_MAX_CLASSES:
        from .inference import get_method
        reference = get_method("dawid_skene", use_gold=False).fit(data).proba_array_
    elif reference is None:          # many classes: dense Dawid-Skene matrices would be large; the method alone
        reference = q0
    reference = np.asarray(reference, dtype=np.float64)
    if reference.shape != (N, K):
        raise CrowdDataError(f"the reference posterior must have shape (items={N}, classes={K}), "
                             f"got {reference.shape}.")
    posteriors, weight = [q0, reference], RANK_POSTERIOR_WEIGHT
    if choice is not None:          # the shrunk-matrix posterior at the strength the held-out answers chose
        posteriors.append(crowd_posterior(data, q0, strength=choice.strength, tau=1.0, overdispersion=0.0,
                                          seed=seed).proba)
        weight = choice.weight
    x = _rank_score(posteriors, cons, agree, model_proba, post, sharp_lo, weight)
    rank = _sigmoid(x)
    gold = data.gold if data.gold is not None else np.full(N, -1)
    known = np.flatnonzero(gold >= 0)
    if use_gold and known.size >= MIN_GOLD_FOR_CALIBRATION:
        a, b = _platt(x[known], (cons[known] == gold[known]).astype(np.float64))
        how = f"gold ({known.size} items)"
    else:
        a, b = _platt(x, post.proba[np.arange(N), cons])
        how = "held-out answers" if int((n >= 2).sum()) >= MIN_ITEMS_TO_HOLD_OUT else UNCHECKED_CALIBRATION
    if not a > 0:          # a degenerate fit (e.g. every gold item right): keep the order, scale by the posterior
        a, b = _platt(x, post.proba[np.arange(N), cons])
    quality = _sigmoid(a * x + b)
    agree_nan = np.where(n > 0, agree, np.nan)
    return QualityScores(consensus=cons, agreement=agree_nan, rank_score=rank, quality=quality,
                         calibration=how, posterior=post, rank_weight=weight,
                         rank_strength=choice.strength if choice is not None else float("nan"))


def item_quality(data: CrowdData, soft_labels: np.ndarray, run: RunView | None = None, *,
                 contested_below: float = 0.6, low_quality_below: float = 0.7,
                 class_probas: bool = True, scores: QualityScores | None = None) -> pd.DataFrame:
    """Every item's consensus label and how likely it is to be right, likely-wrong first.

    Parameters
    ----------
    data : the answers (with gold, ``gold``/``consensus_correct`` and fixed/broke columns appear).
    soft_labels : (N, K) the truth-inference method's probabilities; the consensus label is their argmax.
    run : a :class:`RunView` of a training run (:func:`run_predictions`), or None.
    contested_below : an item with >= 2 answers is "contested" when its agreement is below this.
    low_quality_below : "low confidence" when the quality score is below this.
    class_probas : add ``prob_<class>`` columns (the calibrated posterior) and, with a run,
        ``model_prob_<class>`` columns.

    Returns a DataFrame indexed by item id, sorted by ``quality`` ascending; columns in docs/quality.md.
    """
    data = as_crowd_data(data)
    q0 = np.asarray(soft_labels, dtype=np.float64)
    sc = scores or quality_scores(data, q0, None if run is None else run.model_proba)
    post = sc.posterior
    cons = sc.consensus
    n = np.bincount(data.item, minlength=data.n_items)
    agree = sc.agreement
    quality = sc.quality
    cls = data.classes
    df = pd.DataFrame({
        "consensus": cls.take(cons),
        "quality": quality,
        "agreement": agree,
        "answers": n,
        "votes": _votes_text_sparse(data),
        "method_confidence": q0.max(axis=1),
    }, index=pd.Index(data.item_ids, name="item"))
    reasons = [np.where((n >= 2) & (np.nan_to_num(agree, nan=1.0) < contested_below), "contested", ""),
               np.where(quality < low_quality_below, "low confidence", "")]
    if run is not None:
        lab = run.label_proba if run.label_proba is not None else run.model_proba
        if lab is not None:
            ml = lab.argmax(axis=1)
            df["model_label"] = cls.take(ml)
            df["model_confidence"] = lab.max(axis=1)
            df["model_prob_consensus"] = lab[np.arange(data.n_items), cons]
            reasons.append(np.where(ml != cons, "model disagrees with crowd", ""))
        for name in ("teacher", "student", "stage2"):
            P = getattr(run, name)
            if P is not None:
                df[name] = cls.take(P.argmax(axis=1))
        if run.teacher is not None and run.student is not None:
            reasons.append(np.where(run.teacher.argmax(1) != run.student.argmax(1),
                                    "teacher and student disagree", ""))
    df["reason"] = _join_reasons(reasons)
    if data.has_gold:
        g = data.gold
        known = g >= 0
        df["gold"] = pd.Series(cls.take(np.maximum(g, 0)), dtype=object).where(known, None).to_numpy()
        df["consensus_correct"] = pd.array(np.where(known, cons == g, False), dtype="boolean")
        df.loc[~known, "consensus_correct"] = pd.NA
        if run is not None and run.teacher is not None:
            t_ok = run.teacher.argmax(1) == g
            for name in ("student", "stage2"):
                P = getattr(run, name)
                if P is None:
                    continue
                ok = P.argmax(1) == g
                df[f"fixed_{name}"] = known & ~t_ok & ok
                df[f"broke_{name}"] = known & t_ok & ~ok
    if class_probas:            # one block per family, not one column insert per class (1,000 classes)
        blocks = [df, pd.DataFrame(post.proba, columns=[f"prob_{c}" for c in cls], index=df.index)]
        if run is not None and run.label_proba is not None:
            blocks.append(pd.DataFrame(run.label_proba, columns=[f"model_prob_{c}" for c in cls], index=df.index))
        attrs = dict(df.attrs)
        df = pd.concat(blocks, axis=1)
        df.attrs.update(attrs)
    df.attrs.update(tau=post.tau, weight=post.weight, heldout_loglik=post.heldout_loglik,
                    calibration=sc.calibration,
                    model_source="" if run is None else run.model_source,
                    label_source="" if run is None else run.label_source)
    order = np.lexsort((-n, sc.rank_score))
    return df.iloc[order]


def _votes_text_sparse(data: CrowdData, top: int = 4) -> np.ndarray:
    """:func:`_votes_text` from the answers' (item, label) counts, without the (items, K) vote table."""
    K, N = data.n_classes, data.n_items
    keys, cnt = np.unique(data.item.astype(np.int64) * K + data.label, return_counts=True)
    it, lab = keys // K, keys % K
    order = np.lexsort((lab, -cnt, it))                     # per item: most votes first, then class order
    it, lab, cnt = it[order], lab[order], cnt[order]
    start = np.searchsorted(it, np.arange(N))
    pos = np.arange(it.size) - start[it]
    names = np.asarray([str(c) for c in data.classes], dtype=object)
    out = np.full(N, "", dtype=object)
    for j in range(min(top, K)):
        sel = pos == j
        piece = np.full(N, "", dtype=object)
        piece[it[sel]] = names[lab[sel]] + "×" + cnt[sel].astype(str)
        sep = np.where((out != "") & (piece != ""), ", ", "")
        out = out + sep + piece
    return out


def _votes_text(C: np.ndarray, classes: pd.Index, top: int = 4) -> np.ndarray:
    """Per item "cat×3, dog×1" (the ``top`` most voted labels)."""
    K = C.shape[1]
    order = np.argsort(-C, axis=1, kind="stable")[:, : min(top, K)]
    names = np.asarray([str(c) for c in classes], dtype=object)
    out = np.full(C.shape[0], "", dtype=object)
    for j in range(order.shape[1]):
        k = order[:, j]
        cnt = C[np.arange(C.shape[0]), k]
        piece = np.where(cnt > 0, names[k] + "×" + cnt.astype(str), "")
        sep = np.where((out != "") & (piece != ""), ", ", "")
        out = out + sep + piece
    return out


def _join_reasons(parts: list[np.ndarray]) -> np.ndarray:
    out = np.full(parts[0].shape[0], "", dtype=object)
    for p in parts:
        p = np.asarray(p, dtype=object)
        sep = np.where((out != "") & (p != ""), "; ", "")
        out = out + sep + p
    return out


# ------------------------------------------------------------- relabel next
def relabel_next(data: CrowdData, soft_labels: np.ndarray, budget: int, run: RunView | None = None, *,
                 scores: QualityScores | None = None, exclude_gold: bool = True,
                 candidates: np.ndarray | None = None) -> pd.DataFrame:
    """The ``budget`` items where one more answer is expected to help most (ActiveLab's idea, with worker quality).

    Each item's ``priority`` is ``expected_gain + RELABEL_WRONG_WEIGHT * (1 - quality)
    + RELABEL_CONTESTED_WEIGHT * disagreement``:
    ``expected_gain`` (:func:`expected_gain`) is the expected increase in the probability that the item's
    label is right after one more answer from a worker who has not answered it yet (belief: the quality
    score for the consensus, the calibrated posterior for the other classes; the answer's effect through
    that worker pool's matrix), ``1 - quality`` the probability that the label is wrong now, and
    ``disagreement = 1 - (votes + 1) / (answers + 2)`` the share of the item's answers against its label,
    smoothed (:func:`relabel_contested`: one answer is not unanimity): on real crowds workers err
    together, so the model's own expected gain under-counts the items an answer turns, and split votes
    say so without a model.  Highest priority first; ties by the lower ranking score.  Items with a gold label are
    skipped unless ``exclude_gold=False``; ``candidates`` (bool (N,)) limits the choice further (e.g. to
    the items a platform can still send out).

    Returns a DataFrame indexed by item id (best first) with ``rank``, ``priority``, ``expected_gain``, ``quality``,
    ``consensus``, ``agreement``, ``answers``, ``votes``, ``reason``.
    """
    data = as_crowd_data(data)
    budget = int(budget)
    if budget < 1:
        raise CrowdDataError(f"the budget must be at least 1 item, got {budget}.", hint="use --budget 1 or more.")
    eligible = np.ones(data.n_items, dtype=bool) if candidates is None else np.asarray(candidates, dtype=bool).copy()
    if exclude_gold and data.has_gold:
        eligible &= ~data.gold_mask
    n_elig = int(eligible.sum())
    if budget > n_elig:
        raise CrowdDataError(f"the budget ({budget}) is larger than the {n_elig} items that can be relabelled"
                             + (" (items with gold are left out)" if exclude_gold and data.has_gold else "") + ".",
                             hint=f"use a budget of at most {n_elig}.")
    q0 = np.asarray(soft_labels, dtype=np.float64)
    sc = scores or quality_scores(data, q0, None if run is None else run.model_proba)
    gain = expected_gain(data, sc.posterior, sc.quality, sc.consensus)
    contested = relabel_contested(sc.agreement, data.answers_per_item())
    priority = gain + RELABEL_WRONG_WEIGHT * (1.0 - sc.quality) + RELABEL_CONTESTED_WEIGHT * contested
    order = np.lexsort((sc.rank_score, -np.round(priority, 9)))
    order = order[eligible[order]][:budget]
    table = item_quality(data, q0, run, scores=sc, class_probas=False)
    out = table.loc[data.item_ids.take(order), ["consensus", "quality", "agreement", "answers", "votes", "reason"]]
    out.insert(0, "expected_gain", gain[order])
    out.insert(0, "priority", priority[order])
    out.insert(0, "rank", np.arange(1, len(order) + 1))
    return out


#: Weight of "the label is probably wrong" (1 - quality) next to the expected gain in the relabel priority;
#: chosen on simulated crowds and 20 repeats of the real crowds' protocol (benchmarks/quality.py).
RELABEL_WRONG_WEIGHT = 0.5
def relabel_contested(agreement: np.ndarray, answers: np.ndarray) -> np.ndarray:
    """The share of an item's answers against its label, Laplace-smoothed: ``1 - (votes + 1) / (answers + 2)``
    (``votes = agreement * answers``; 0.5 without answers).  One answer for the label gives 1/3, two of two 1/4,
    one of two 1/2, none of two 3/4: a single answer is not taken for unanimity, so items with few answers are
    not pushed behind split ones (on the simulated crowd with 1-5 answers per item, sim A, the unsmoothed share
    with the weight 0.5 gave up single-answer items whose extra answer gained most: -0.033 items per answer)."""
    n = np.asarray(answers, dtype=np.float64)
    votes = np.nan_to_num(np.asarray(agreement, dtype=np.float64), nan=0.0) * n
    return 1.0 - (votes + 1.0) / (n + 2.0)


#: Weight of "the answers disagree" (:func:`relabel_contested`) in the relabel priority;
#: chosen like RELABEL_WRONG_WEIGHT.  On real crowds the posteriors are over-confident exactly where the answers
#: disagree (dog, 2 answers per item: quality 0.72 on items whose consensus no answer gave, right 28 % of the time;
#: 0.80 on split items, right 58 %), so the model-based terms under-rate them.  1.0 on the smoothed share (the
#: same order on two answers per item as 0.5 on the plain share; was 0.25 on the plain share): every item whose
#: consensus no answer supports came before every unanimous one (one answer cannot turn a 2-0 item) in all 80
#: development starts of the real crowds (with 0.25 not in 45); on the development seeds 0-19 +0.022 items per
#: answer on dog, within +-0.011 on face, LabelMe and Music; on the simulated crowds -0.014 to +0.026 against 0.5
#: on the plain share and -0.007 to -0.033 against 0.25 on it (docs/quality.md).
RELABEL_CONTESTED_WEIGHT = 1.0
#: Largest number of classes for which the next worker is drawn from each item's own available workers
#: (an (items, K, K) computation); above it, from the whole pool.
RELABEL_POOL_MAX_CLASSES = 64


def expected_gain(data: CrowdData, post: CrowdPosterior, quality: np.ndarray | None = None,
                  consensus: np.ndarray | None = None, max_block: int = 4_000_000,
                  top_classes: int | None = None) -> np.ndarray:
    """Per item, the expected gain in the probability that the item's label is right after one more answer (N,).

    The next answer comes from a worker who has not answered the item yet, drawn in proportion to the
    workers' activity: its matrix is ``T_i``, the activity-weighted average of those workers' shrunk matrices
    (the whole pool's when ``K > RELABEL_POOL_MAX_CLASSES``).  With the item's belief ``q`` (the calibrated
    posterior; with ``quality`` and ``consensus``, ``q[consensus] = quality`` and the rest shared as in the
    posterior), an answer ``c`` has probability ``sum_j q_j T_i[j, c]`` and gives ``q'(c) ∝ q * T_i[:, c]^tau``;
    the gain is ``E_c[max_j q'_j(c)] - q[consensus]`` (the label after the answer is the most probable one).
    Above ``RELABEL_TOP_FROM_CLASSES`` classes (or with ``top_classes``; pool matrix only) the belief is cut to
    each item's ``RELABEL_TOP_CLASSES`` most probable classes, renormalised: (items, m, K) work, not
    (items, K, K).
    """
    N, K = post.proba.shape
    cons = post.proba.argmax(axis=1) if consensus is None else np.asarray(consensus)
    act = data.answers_per_worker().astype(np.float64)
    pool = post.activity_pool if post.matrices is None else np.tensordot(act, post.matrices, axes=1)  # (K, K)
    per_item = K <= RELABEL_POOL_MAX_CLASSES and post.matrices is not None
    m = min(K, RELABEL_TOP_CLASSES) if top_classes is None and K > RELABEL_TOP_FROM_CLASSES else top_classes
    if not per_item and m is not None and m < K:          # the belief a few items at a time: no (N, K) copy
        qual = None if quality is None else np.asarray(quality, dtype=np.float64)
        return _expected_gain_top(post.proba, cons, np.clip(pool / max(act.sum(), _EPS), _EPS, None), post.tau,
                                  int(m), max_block, quality=qual)
    q = _belief(post.proba, cons, quality)
    if per_item:                                                         # minus the item's own workers
        import torch
        seen = torch.zeros(N, K * K, dtype=torch.float64)
        wm = torch.from_numpy(np.ascontiguousarray(post.matrices.reshape(-1, K * K)))
        seen.index_add_(0, torch.from_numpy(data.item), wm[torch.from_numpy(data.worker)]
                        * torch.from_numpy(act[data.worker])[:, None])
        seen = seen.numpy().reshape(N, K, K)
        left = act.sum() - np.bincount(data.item, weights=act[data.worker], minlength=N)
    out = np.empty(N)
    chunk = max(1, int(max_block) // (K * K))
    for s in range(0, N, chunk):
        qs = q[s:s + chunk]                                              # (n, j)
        if per_item:
            lft = left[s:s + chunk]
            Ti = np.where(lft[:, None, None] > 0, (pool[None] - seen[s:s + chunk])
                          / np.clip(lft, _EPS, None)[:, None, None], pool[None] / max(act.sum(), _EPS))
        else:
            Ti = np.broadcast_to(pool / max(act.sum(), _EPS), (qs.shape[0], K, K))
        Ti = np.clip(Ti, _EPS, None)
        pc = np.einsum("nj,njc->nc", qs, Ti)                             # P(next answer = c)
        upd = qs[:, :, None] * Ti ** post.tau                            # (n, j, c) unnormalised q'
        upd = upd / np.clip(upd.sum(axis=1, keepdims=True), _EPS, None)
        out[s:s + chunk] = (pc * upd.max(axis=1)).sum(axis=1) - qs[np.arange(qs.shape[0]), cons[s:s + chunk]]
    return out


#: From this many classes :func:`expected_gain` keeps each item's ``RELABEL_TOP_CLASSES`` most probable classes.
RELABEL_TOP_FROM_CLASSES = 200
RELABEL_TOP_CLASSES = 32


def _belief(proba: np.ndarray, cons: np.ndarray, quality: np.ndarray | None) -> np.ndarray:
    """The belief of :func:`expected_gain` (a new array): ``proba`` with ``quality`` for the consensus and the
    rest shared as in ``proba`` (``proba`` itself without ``quality``); row by row, so any block of rows."""
    q = proba.copy()
    if quality is None:
        return q
    K = q.shape[1]
    rows = np.arange(q.shape[0])
    q[rows, cons] = 0.0                         # in place: no (N, K) temporaries (1,000 classes: 80 MB each)
    tot = q.sum(axis=1, keepdims=True)
    q /= np.clip(tot, _EPS, None)
    empty = tot[:, 0] <= 0
    if empty.any():
        q[empty] = 1.0 / max(K - 1, 1)
        q[empty, cons[empty]] = 0.0
    q *= (1.0 - np.asarray(quality, dtype=np.float64))[:, None]
    q[rows, cons] = quality
    return q


def _expected_gain_top(q: np.ndarray, cons: np.ndarray, P: np.ndarray, tau: float, m: int,
                       max_block: int, quality: np.ndarray | None = None) -> np.ndarray:
    """:func:`expected_gain` with one next-worker matrix ``P`` (K, K) and each item's belief cut to its ``m``
    most probable classes (the consensus always among them), renormalised; ``q`` is the belief, or with
    ``quality`` the posterior that :func:`_belief` turns into it a few items at a time.

    A few items at a time (``_GAIN_CACHE_BLOCK`` numbers per (items, m, K) array, which stay in the CPU's
    cache: 10,000 items x 1,000 classes 3.1 -> 1.3 s), and ``P``'s rows gathered once when ``P ** tau`` is ``P``
    (``tau = 1``); the same numbers item by item as whole blocks of ``max_block``."""
    N, K = q.shape
    Pt = P ** tau
    same = bool(np.array_equal(Pt, P))
    out = np.empty(N)
    chunk = max(1, min(int(max_block), _GAIN_CACHE_BLOCK) // (m * K))
    for s in range(0, N, chunk):
        c = cons[s:s + chunk]
        qs = _belief(q[s:s + chunk], c, None if quality is None else quality[s:s + chunk])
        r = np.arange(qs.shape[0])
        q_cons = qs[r, c].copy()
        qs[r, c] = np.inf                                                  # the consensus stays
        idx = np.argpartition(-qs, m - 1, axis=1)[:, :m]                   # (n, m)
        qs[r, c] = q_cons
        qm = np.take_along_axis(qs, idx, axis=1)
        qm = qm / np.clip(qm.sum(axis=1, keepdims=True), _EPS, None)
        Pi = P[idx]                                                        # (n, m, c)
        pc = np.einsum("nm,nmc->nc", qm, Pi)                              # P(next answer = c)
        upd = Pi if same else Pt[idx]
        upd *= qm[:, :, None]                                              # unnormalised q' (in place)
        upd /= np.clip(upd.sum(axis=1, keepdims=True), _EPS, None)
        qc = (qm * (idx == c[:, None])).sum(axis=1)
        out[s:s + chunk] = (pc * upd.max(axis=1)).sum(axis=1) - qc
    return out


#: Numbers per (items, m, K) array in :func:`_expected_gain_top` (1 MB in float64: a few items at a time).
_GAIN_CACHE_BLOCK = 131_072


def relabel_task_list(table: pd.DataFrame, content: pd.Series | None = None) -> pd.DataFrame:
    """A platform task list from :func:`relabel_next`: one row per item, ``item_id`` first.

    Columns: ``item_id``, ``content`` (when known), ``current_label``, ``quality``, ``answers``, ``reason``.
    MTurk's batch upload and Toloka's task upload both take a CSV whose columns become the task's inputs.
    """
    out = pd.DataFrame({"item_id": table.index.astype(str)})
    if content is not None:
        c = content.copy()
        c.index = c.index.astype(str)
        out["content"] = c.reindex(out["item_id"]).fillna("").to_numpy()
    out["current_label"] = table["consensus"].astype(str).to_numpy()
    out["quality"] = np.round(table["quality"].to_numpy(dtype=float), 4)
    out["answers"] = table["answers"].to_numpy()
    out["reason"] = table["reason"].to_numpy()
    return out


# ------------------------------------------------------------- worker report
@dataclass
class WorkerThresholds:
    """The user's thresholds for worker flags (defaults in docs/quality.md).

    min_answers : workers with fewer answers are never flagged ("too few answers").
    block_accuracy : flag "low accuracy" when the accuracy interval's *upper* bound is below this
        (the worker is confidently worse, not merely unlucky on 5 answers).
    block_spammer : flag "spammer" when the spammer score is below this.
    bonus_accuracy : "bonus" when the interval's *lower* bound is at least this.
    """

    min_answers: int = 10
    block_accuracy: float = 0.5
    block_spammer: float = 0.1
    bonus_accuracy: float = 0.85


def _soft_count_summary(data: CrowdData, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The diagonal ``C[r, j, j]`` and the row sums ``sum_c C[r, j, c]`` (both (R, K)) of the expected counts
    ``C[r, true j, answer c]`` of each worker's answers under soft labels ``q``, without the (R, K, K) array."""
    import torch
    K, R = data.n_classes, data.n_workers
    diag = np.bincount(data.worker * K + data.label, weights=q[data.item, data.label],
                       minlength=R * K).reshape(R, K)
    ones = torch.ones(data.n_answers, dtype=torch.float64)
    idx = torch.stack([torch.from_numpy(data.worker), torch.from_numpy(data.item)])
    answered = torch.sparse_coo_tensor(idx, ones, (R, data.n_items), check_invariants=False).coalesce()
    rows = torch.sparse.mm(answered, torch.from_numpy(np.ascontiguousarray(q)))   # (R, K)
    return diag, rows.numpy()


#: Pseudo-answers per matrix row of the worker-accuracy prior (centred on the pool's average row).
WORKER_PRIOR_STRENGTH = 2.0
#: From this effective number of classes (``1 / sum pi_j^2``) the accuracy interval is the normal one with the
#: exact mean and variance instead of Monte-Carlo draws.
NORMAL_INTERVAL_CLASSES = 100
#: Above this many Beta draws (workers x classes x draws) the interval is the moment-matched Beta's (4.6 s of CPU
#: time for 5,000 workers x 8 classes x 2,000 draws before).
MONTE_CARLO_MAX_DRAWS = 16_000_000


def matrix_accuracy_posterior(counts: np.ndarray, prior: np.ndarray, level: float = 0.95, draws: int = 2000,
                              seed: int = 0, strength: float = WORKER_PRIOR_STRENGTH
                              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Posterior mean and equal-tailed credible interval of each worker's accuracy ``sum_j pi_j T[j, j]``.

    Each row ``j`` of a worker's matrix has a ``Dirichlet(strength * m_j + counts[r, j, :])`` posterior,
    ``m_j`` being the pool's average row (all workers' counts pooled): a worker with no answer on class
    ``j`` is assumed as good as the pool there, with wide uncertainty.  Its diagonal entry is then a Beta;
    rows are independent.  The interval comes from ``draws`` seeded Monte-Carlo draws (quantiles good to
    about 0.005), or, from :data:`NORMAL_INTERVAL_CLASSES` effective classes on, from the normal law with
    the sum's exact mean and variance; past :data:`MONTE_CARLO_MAX_DRAWS` draws in all (many workers), from
    the Beta law with the sum's exact mean and variance.
    """
    counts = np.asarray(counts, dtype=np.float64)
    return _accuracy_posterior(np.einsum("rjj->rj", counts), counts.sum(axis=2), prior, level=level, draws=draws,
                               seed=seed, strength=strength)


def _accuracy_posterior(diag: np.ndarray, rows: np.ndarray, prior: np.ndarray, level: float = 0.95,
                        draws: int = 2000, seed: int = 0, strength: float = WORKER_PRIOR_STRENGTH
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`matrix_accuracy_posterior` from the counts' diagonals and row sums (R, K): all it reads."""
    R, K = diag.shape
    # the pool's average row (counts + 1/K per cell) only enters through its diagonal
    pooled_diag = (diag.sum(axis=0) + 1.0 / K) / (rows.sum(axis=0) + 1.0)
    a = diag + strength * pooled_diag[None]
    b = rows + strength - a
    pi = np.asarray(prior, dtype=np.float64)
    mean = (a / (a + b)) @ pi
    qs = [(1 - level) / 2, 1 - (1 - level) / 2]
    if 1.0 / max(float((pi ** 2).sum()), 1e-300) >= NORMAL_INTERVAL_CLASSES:
        # a weighted sum of this many independent Betas is normal to well within the Monte-Carlo error,
        # and R x K x draws Beta draws would take seconds with 1,000 classes
        from statistics import NormalDist
        sd = np.sqrt((pi ** 2 * a * b / ((a + b) ** 2 * (a + b + 1))).sum(axis=1))
        z = NormalDist().inv_cdf(qs[1])
        return mean, np.clip(mean - z * sd, 0.0, 1.0), np.clip(mean + z * sd, 0.0, 1.0)
    if R * K * draws > MONTE_CARLO_MAX_DRAWS:
        # many workers: a Beta with the sum's exact mean and variance (the sum lies in [0, 1]); on a 200-worker,
        # 8-class test it is closer to 200,000 draws' quantiles than 2,000 draws are (mean gap 0.0007 vs 0.0037)
        from scipy.special import betaincinv
        var = np.clip((pi ** 2 * a * b / ((a + b) ** 2 * (a + b + 1))).sum(axis=1), 1e-300, None)
        nu = np.clip(mean * (1 - mean) / var - 1.0, 1e-9, None)
        al, be = np.clip(mean * nu, 1e-12, None), np.clip((1 - mean) * nu, 1e-12, None)
        return mean, betaincinv(al, be, qs[0]), betaincinv(al, be, qs[1])
    lo, hi = np.empty(R), np.empty(R)
    rng = np.random.default_rng(seed)
    step = max(1, 4_000_000 // (K * draws))
    for s in range(0, R, step):
        x = rng.beta(a[s:s + step, :, None], b[s:s + step, :, None], size=(min(step, R - s), K, draws))
        acc = np.einsum("rjd,j->rd", x, pi)
        lo[s:s + step], hi[s:s + step] = np.quantile(acc, qs, axis=1)
    return mean, lo, hi


def worker_report(data: CrowdData, soft_labels: np.ndarray, matrices: np.ndarray,
                  thresholds: WorkerThresholds | None = None, *, work_seconds: pd.Series | None = None,
                  level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Every worker (never filtered): accuracy with a credible interval, statistics, flags and action.

    ``accuracy`` is the posterior mean of ``sum_j pi_j T[j, j]`` (``pi`` = class shares of the soft labels)
    when each row of the worker's matrix has a Dirichlet(1 + expected counts) posterior;
    ``accuracy_low``/``accuracy_high`` its equal-tailed ``level`` credible interval
    (:func:`matrix_accuracy_posterior`): a worker with 5 answers gets a wide one.  ``method_accuracy`` is
    the truth-inference method's own point estimate (its matrices).  With gold, ``gold_accuracy`` on the
    gold items the worker answered, with a Wilson interval.  ``work_seconds``: a Series worker id ->
    median seconds per answer (e.g. MTurk's ``WorkTimeInSeconds``).  Columns: docs/quality.md.
    """
    from .metrics import worker_stats
    data = as_crowd_data(data)
    th = thresholds or WorkerThresholds()
    q = np.asarray(soft_labels, dtype=np.float64)
    base = worker_stats(data, q, matrices)
    prior = q.mean(axis=0)
    prior = prior / prior.sum()
    mean, lo, hi = _accuracy_posterior(*_soft_count_summary(data, q), prior, level=level, seed=seed)
    df = pd.DataFrame({"answers": base["answers"].astype(np.int64), "accuracy": mean, "accuracy_low": lo,
                       "accuracy_high": hi}, index=base.index)
    df["method_accuracy"] = base["accuracy"]
    for col in ("agreement", "spammer_score", "top_label_share"):
        df[col] = base[col]
    if "gold_answers" in base:
        df["gold_answers"] = base["gold_answers"].astype(np.int64)
        df["gold_accuracy"] = base["gold_accuracy"]
        ci = [accuracy_interval(round(acc * m), m, level) if m > 0 else (np.nan, np.nan)
              for acc, m in zip(base["gold_accuracy"].fillna(0).to_numpy(), base["gold_answers"].to_numpy())]
        df["gold_accuracy_low"] = [c[0] for c in ci]
        df["gold_accuracy_high"] = [c[1] for c in ci]
    if work_seconds is not None:
        ws = work_seconds.copy()
        ws.index = ws.index.astype(str)
        df["median_seconds"] = ws.reindex(df.index.astype(str)).to_numpy(dtype=float)
    return apply_flags(df, th)


def apply_flags(report: pd.DataFrame, thresholds: WorkerThresholds) -> pd.DataFrame:
    """(Re)compute ``flags`` and ``action`` of a :func:`worker_report` table for new thresholds."""
    th = thresholds
    df = report.copy()
    enough = df["answers"].to_numpy() >= int(th.min_answers)
    low = enough & (df["accuracy_high"].to_numpy() < th.block_accuracy)
    spam = enough & (df["spammer_score"].to_numpy() < th.block_spammer)
    good = enough & (df["accuracy_low"].to_numpy() >= th.bonus_accuracy) & ~spam
    flags = _join_reasons([np.where(~enough, "too few answers", ""), np.where(low, "low accuracy", ""),
                           np.where(spam, "spammer", "")])
    df["flags"] = flags
    df["action"] = np.where(low | spam, "block", np.where(good, "bonus", ""))
    return df


def block_list(report: pd.DataFrame, platform: str = "mturk", reason: str | None = None) -> pd.DataFrame:
    """Workers whose ``action`` is "block", in a platform's shape.

    - ``"mturk"``: the requester site's worker CSV (Manage > Workers > upload): ``Worker ID``,
      ``UPDATE-BlockStatus`` (= ``Block``), ``BLOCK_REASON``.
    - ``"toloka"``: user restrictions: ``user_id``, ``scope`` (= ``ALL_PROJECTS``), ``private_comment``.
    """
    sel = report[report["action"] == "block"]
    why = [reason or f"kdcrowd: {f}" for f in sel["flags"].astype(str)]
    ids = sel.index.astype(str)
    if platform == "mturk":
        return pd.DataFrame({"Worker ID": ids, "UPDATE-BlockStatus": "Block", "BLOCK_REASON": why})
    if platform == "toloka":
        return pd.DataFrame({"user_id": ids, "scope": "ALL_PROJECTS", "private_comment": why})
    raise CrowdDataError(f"unknown platform {platform!r}.", hint="use 'mturk' or 'toloka'.")


def bonus_list(report: pd.DataFrame, platform: str = "mturk", amount: float = 1.0,
               message: str = "Thank you for your accurate work.") -> pd.DataFrame:
    """Workers whose ``action`` is "bonus", in a platform's shape.

    - ``"mturk"``: the fields of MTurk's SendBonus: ``WorkerId``, ``AssignmentId`` (empty: fill in one
      of the worker's assignments), ``BonusAmount``, ``Reason``.
    - ``"toloka"``: user bonuses: ``user_id``, ``amount``, ``public_title``, ``public_message``.
    """
    sel = report[report["action"] == "bonus"]
    ids = sel.index.astype(str)
    amt = f"{float(amount):.2f}"
    if platform == "mturk":
        return pd.DataFrame({"WorkerId": ids, "AssignmentId": "", "BonusAmount": amt, "Reason": message})
    if platform == "toloka":
        return pd.DataFrame({"user_id": ids, "amount": amt, "public_title": "Bonus", "public_message": message})
    raise CrowdDataError(f"unknown platform {platform!r}.", hint="use 'mturk' or 'toloka'.")


WORK_TIME_COLUMN = "WorkTimeInSeconds"
_WORKER_COLUMNS = ("WorkerId", "WorkerID", "worker", "worker_id")


def work_seconds_from_file(path, worker_column: str | None = None) -> pd.Series | None:
    """Median ``WorkTimeInSeconds`` per worker from an MTurk batch results file, or None without that column.

    Reads only the worker and time columns (the answers reader does not keep them).  The file may be
    a CSV/TSV, gzip-compressed or a zip holding it (see :func:`work_seconds_from_bytes`).
    """
    from pathlib import Path
    p = Path(path)
    try:
        with p.open("rb") as f:
            start = f.read(65536)
            if not start.startswith((b"\x1f\x8b", b"PK\x03\x04")) and WORK_TIME_COLUMN.encode() not in start:
                return None              # a plain table without the column: do not read the rest
            data = start + f.read()
    except OSError:
        return None
    return work_seconds_from_bytes(data, worker_column, name=p.name)


def work_seconds_from_bytes(data: bytes, worker_column: str | int | None = None,
                            name: str = "answers") -> pd.Series | None:
    """Median ``WorkTimeInSeconds`` per worker (index: worker id) from the bytes of an answers file.

    None when the file has no such column, no worker column (``worker_column``, else one of
    WorkerId/WorkerID/worker/worker_id) or is not a text table.  Non-numeric times are ignored.
    MTurk writes one row per assignment, so this is the median time of the worker's assignments
    (one answer each in the usual one-item-per-HIT batch).
    """
    import csv
    import io
    from .io._source import _GZIP_MAGIC, decompress
    if data.startswith(_GZIP_MAGIC) or data.startswith(b"PK\x03\x04"):
        try:
            _, _, data = decompress(name, data, max_bytes=1 << 31)
        except CrowdDataError:
            return None
    first = data[:65536].split(b"\n", 1)[0].decode("utf-8-sig", errors="replace")
    if WORK_TIME_COLUMN not in first:
        return None
    sep = "\t" if first.count("\t") > first.count(",") else ","
    head = [h.strip() for h in next(csv.reader([first], delimiter=sep), [])]
    if isinstance(worker_column, int) and 0 <= worker_column < len(head):
        worker_column = head[worker_column]
    wcol = worker_column if worker_column in head else next((c for c in _WORKER_COLUMNS if c in head), None)
    if wcol is None or WORK_TIME_COLUMN not in head:
        return None
    try:
        df = pd.read_csv(io.BytesIO(data), sep=sep, usecols=[wcol, WORK_TIME_COLUMN], dtype={wcol: str},
                         encoding="utf-8-sig", skipinitialspace=True)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError):
        return None
    t = pd.to_numeric(df[WORK_TIME_COLUMN], errors="coerce")
    s = t.groupby(df[wcol].astype(str).str.strip()).median()
    s.index.name = "worker"
    return s.rename("median_seconds")
