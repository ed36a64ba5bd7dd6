"""Hierarchical Dawid-Skene: worker matrices that borrow strength by how much each worker answered.

Plain Dawid-Skene fits K x (K-1) free numbers per worker; a worker with a handful of answers gets
a matrix made of noise, and on crowds of such workers one-coin DS or majority vote beat it. One-coin
DS fits one number per worker and collapses where workers confuse particular classes. This model
sits between the two and lets the data say where:

- every worker's matrix has a Dirichlet prior whose mean is that worker's **one-coin matrix**:
  ``M_r[j, j] = a_r``, the rest of the row uniform (or the crowd's pooled error pattern, an option),
  where ``a_r`` is the worker's accuracy shrunk towards the crowd's with a Beta prior;
- the M-step is the posterior mean ``T_r[j] = (C_r[j] + s M_r[j]) / (n_rj + s)``: a worker with few
  answers stays near its one-coin matrix, a worker with many answers gets its own full matrix;
- the prior strengths ``s`` and ``k`` are chosen without labels (empirical Bayes by cross-validation):
  on a log grid, the value with the best **leave-one-answer-out information score** — each sampled
  answer predicted from the item's other answers and the worker's other answers, relative to predicting
  it from the class prior — under a three-standard-error rule (the most pooling within noise).

Everything is vectorised over the sparse answers (the same operators as Dawid-Skene); the strength search
costs O(grid x sample x K) at iterations 1-4 and every 5th.  See docs/inference.md for what was measured.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ..data import CrowdData
from ..device import resolve_device
from ..errors import CrowdDataError
from ._sparse import AnswerOperator, clamp_gold, cpu_threads, float_dtype
from .base import BaseInference, register

_EPS = 1e-10

#: Candidate prior strengths (pseudo-answers per matrix row).
STRENGTH_GRID = tuple(2.0 ** e for e in range(-2, 9))   # 0.25 .. 256, exact powers of two
#: Candidate strengths of the accuracy prior: at least 2 pseudo-answers (one-coin DS's Laplace prior); below
#: that, workers with a handful of answers get accuracies of 0 or 1 that the sparse crowds punish.
ACCURACY_STRENGTH_GRID = tuple(v for v in STRENGTH_GRID if v >= 2.0)


def _loo_matrix_score(counts: torch.Tensor, mean: torch.Tensor, q_ans: torch.Tensor, q_loo: torch.Tensor,
                      worker: torch.Tensor, label: torch.Tensor, grid: torch.Tensor,
                      prior: torch.Tensor | None = None) -> torch.Tensor:
    """Leave-one-answer-out log predictive probability of each answer, for every prior strength in ``grid``.

    Answer ``a`` (worker r, label c) is predicted from everything else: the item's posterior without it
    (``q_loo``) and the worker's matrix estimated without it,
    ``T[j, c] = (C[r, j, c] - q_j + s M[r, j, c]) / (n[r, j] - q_j + s)`` (``q`` = what ``a`` added to
    the counts).  Returns (G, A): ``log sum_j q_loo[j] T[j, c]``.  Unlike the marginal likelihood of
    expected counts (which sees soft counts as under-dispersed and always prefers full pooling), this
    measures what a worker's other answers predict about each of its answers.
    """
    cell = counts[worker, :, label]                       # (A, K): C[r, j, c] over true j
    n = counts.sum(dim=2)[worker]                         # (A, K): n[r, j]
    m = mean[worker, :, label]                            # (A, K)
    cell, n = cell - q_ans, n - q_ans
    out = []
    for s in grid:                                        # one (A, K) block at a time: memory A x K
        T = (cell + s * m).clamp_min(_EPS) / (n + s).clamp_min(_EPS)
        pred = (q_loo * T).sum(dim=1).clamp_min(_EPS).log()
        if prior is not None:   # information: how much better the answer is predicted knowing the item
            pred = pred - (prior[None] * T).sum(dim=1).clamp_min(_EPS).log()
        out.append(pred)
    return torch.stack(out)


def _loo_accuracy_score(p_correct: torch.Tensor, p_loo: torch.Tensor, correct: torch.Tensor, total: torch.Tensor,
                        worker: torch.Tensor, crowd_acc: torch.Tensor, K: int, grid: torch.Tensor) -> torch.Tensor:
    """Leave-one-answer-out log predictive of each answer under the one-coin model, for every Beta strength."""
    k = grid[:, None]
    acc = ((correct[worker] - p_correct)[None] + k * crowd_acc) / ((total[worker] - 1.0)[None] + k)
    acc = acc.clamp(1e-6, 1 - 1e-6)
    pred = p_loo[None] * acc + (1 - p_loo)[None] * (1 - acc) / max(K - 1, 1)
    return pred.clamp_min(_EPS).log()


def _one_se_choice(scores: torch.Tensor, grid: torch.Tensor, se_rule: float) -> torch.Tensor:
    """The largest strength whose summed score is within ``se_rule`` standard errors of the best one.

    ``scores`` is (G, A): per-answer scores for every strength.  Larger strength = a simpler model (more
    pooling), so this is the one-standard-error rule of cross-validation (``se_rule`` = 1).
    """
    total = scores.sum(dim=1)
    best = int(total.argmax())
    diff = scores - scores[best][None]
    se = diff.std(dim=1) * diff.shape[1] ** 0.5
    ok = (total >= total[best] - se_rule * se) & (torch.arange(len(grid), device=grid.device) >= best)
    return grid[int(torch.nonzero(ok).max())]


@register("hierarchical_dawid_skene", "adaptive", "hds", "hierarchical_ds")
@dataclass(repr=False)
class HierarchicalDawidSkene(BaseInference):
    """Dawid-Skene with worker matrices shrunk towards one-coin matrices by empirical Bayes.

    Parameters
    ----------
    n_iter : int, default 100
        Maximum number of EM iterations.
    tol : float, default 1e-6
        Tolerance on the change of the mean log-likelihood per answer.
    strength_grid, accuracy_strength_grid : tuple of float
        Candidate strengths (pseudo-answers) of the matrix prior and of the accuracy prior.
    se_rule : float, default 3.0
        Pick the largest strength whose score is within this many standard errors of the best (0 = the best).
        3 rather than the usual 1: on sparse crowds the answers' scores are correlated through the shared
        posteriors, so their standard error understates the noise (with 1, too little pooling cost more
        than 0.5 pt on 3 of 12 sparse simulations; see docs/inference.md).
    error_pattern : {"uniform", "pooled"}, default "uniform"
        Off-diagonal of the prior mean: uniform (one-coin), or the crowd's pooled error pattern
        (experimental: measured, not adopted).
    score : {"information", "predictive"}, default "information"
        Strength criterion: leave-one-out log predictive of each answer minus its log predictive from the
        class prior ("information"), or the plain log predictive (experimental: measured, not adopted).
    min_strength_per_class : float, default 0.0
        Floor of the matrix strength, in pseudo-answers per class (experimental: measured, not adopted).
    max_score_answers : int, default 20,000
        Answers sampled (fixed seed) to score the strengths; fewer when K is large.
    sparse_from_classes : int, default 200
        From this many classes the fit runs on sparse counts (:mod:`.adaptive_sparse`: no R x K x K array,
        the matrices kept as ``matrices_``, a :class:`~.matrices.ShrunkMatrices`); default prior only
        (``error_pattern="uniform"``, ``min_strength_per_class=0``).  0 = never.
    use_gold : bool, default True
        Clamp the posteriors of items with gold labels.
    device : str, default "auto"
    dtype : str, default "float64"
        The grid search compares log-likelihood sums; float64 keeps them exact.
    callback : callable(iteration, mean_loglik) or None

    Fitted attributes
    -----------------
    As :class:`DawidSkene` (``proba_array_``, ``probas_``, ``labels_``, ``worker_matrices_``,
    ``errors_``, ``prior_``, ``priors_``, ``loglik_history_``, ``n_iter_``, ``converged_``), plus
    ``strength_`` (the matrix prior strength chosen at the last M-step), ``accuracy_strength_``,
    ``skills_`` (each worker's shrunk accuracy, a Series) and ``pooled_matrix_`` (K x K).
    """

    n_iter: int = 100
    tol: float = 1e-6
    strength_grid: tuple = STRENGTH_GRID
    accuracy_strength_grid: tuple = ACCURACY_STRENGTH_GRID
    error_pattern: str = "uniform"
    se_rule: float = 3.0
    min_strength_per_class: float = 0.0
    score: str = "information"
    max_score_answers: int = 20_000
    sparse_from_classes: int = 200
    use_gold: bool = True
    device: str = "auto"
    dtype: str = "float64"
    callback: Callable[[int, float], None] | None = field(default=None, compare=False)

    def _fit(self, data: CrowdData) -> np.ndarray:
        # one thread for small fits, idle cores only for large ones (a busy machine: see threads.py)
        with cpu_threads(data.n_answers, None):
            return self._fit_threads(data)

    def _fit_threads(self, data: CrowdData) -> np.ndarray:
        dev = resolve_device(self.device)
        if dev.type == "mps":
            dev = torch.device("cpu")
        dt = float_dtype(self.dtype)
        if self.n_iter < 1:
            raise CrowdDataError("n_iter must be at least 1.")
        for name in ("strength_grid", "accuracy_strength_grid"):
            values = getattr(self, name)
            if len(values) == 0 or min(values) <= 0:
                raise CrowdDataError(f"{name} must hold positive numbers.")
        if self.error_pattern not in ("uniform", "pooled"):
            raise CrowdDataError(f"error_pattern must be 'uniform' or 'pooled', got {self.error_pattern!r}.")
        if self.score not in ("information", "predictive"):
            raise CrowdDataError(f"score must be 'information' or 'predictive', got {self.score!r}.")
        if self._use_sparse(data):
            return self._fit_sparse(data)
        t_start = time.perf_counter()
        op = AnswerOperator(data, dev, dt)
        floor = self.min_strength_per_class * data.n_classes
        grid = sorted({max(float(v), floor) for v in self.strength_grid})
        grid = torch.tensor(grid, dtype=dt, device=dev)
        self._acc_grid = torch.tensor(sorted(self.accuracy_strength_grid), dtype=dt, device=dev)
        def clamp(q: torch.Tensor) -> torch.Tensor:
            return clamp_gold(q, data) if self.use_gold else q

        # the strength scores hold (sample x K) numbers: fewer sampled answers when K is large
        n_score = min(self.max_score_answers, max(2_000, 400_000 // max(data.n_classes, 1)))
        self._sample = _answer_sample(data, n_score, dev)
        n_votes = torch.bincount(torch.from_numpy(data.item).to(dev), minlength=data.n_items).to(dt)
        self._sample_votes = (op.soft_mv * n_votes[:, None])[self._sample[2]]
        self._logT_prev = None
        q = clamp(op.soft_mv.clone())
        n_ans = float(data.n_answers)
        history: list[float] = []
        converged, it = False, 0
        for it in range(1, self.n_iter + 1):
            # the prior strengths settle within a few iterations: search them at 1-4, then every 5th
            logT, log_prior = self._m_step(op, q, grid, search=it <= 4 or it % 5 == 0)
            q, ll = _e_step(op, logT, log_prior)
            q = clamp(q)
            history.append(ll / n_ans)
            if self.callback is not None:
                self.callback(it, history[-1])
            if len(history) > 1 and abs(history[-1] - history[-2]) < self.tol:
                converged = True
                break
        logT, log_prior = self._m_step(op, q, grid, search=True)
        R, K = op.R, op.K
        self.worker_matrices_ = logT.exp().reshape(R, K, K).transpose(1, 2).double().cpu().numpy()
        self.prior_ = log_prior.exp().double().cpu().numpy()
        self.priors_ = pd.Series(self.prior_, index=list(data.classes), name="prior")
        self.skills_ = pd.Series(self._accuracy.double().cpu().numpy(), index=pd.Index(data.worker_ids, name="worker"),
                                 name="skill")
        self.loglik_history_ = history
        self.n_iter_, self.converged_, self.device_ = it, converged, str(dev)
        self.timings_ = {"total": time.perf_counter() - t_start}
        return q.double().cpu().numpy()

    def _use_sparse(self, data: CrowdData) -> bool:
        return (0 < self.sparse_from_classes <= data.n_classes and self.error_pattern == "uniform"
                and self.min_strength_per_class == 0)

    def _fit_sparse(self, data: CrowdData) -> np.ndarray:
        """Many classes: the same model on sparse counts (see :mod:`.adaptive_sparse`)."""
        from .adaptive_sparse import SparseHDSFit
        q = SparseHDSFit(self, data).run()
        M = self.matrices_
        self.pooled_matrix_ = _pooled_from_counts(M, data.n_classes)
        self.priors_ = pd.Series(self.prior_, index=list(data.classes), name="prior")
        self.skills_ = pd.Series(self._accuracy.double().cpu().numpy(), index=pd.Index(data.worker_ids, name="worker"),
                                 name="skill")
        return q

    def _m_step(self, op: AnswerOperator, q: torch.Tensor, grid: torch.Tensor, search: bool = True):
        """Posterior-mean worker matrices under the empirical-Bayes hierarchical prior."""
        R, K = op.R, op.K
        counts = op.scatter_sum(q).reshape(R, K, K).transpose(1, 2)   # C[r, true j, answer c]
        eye = torch.eye(K, dtype=q.dtype, device=q.device, requires_grad=False).bool()
        # the crowd's pooled matrix and its error pattern
        pooled = counts.sum(dim=0) + _EPS
        pooled = pooled / pooled.sum(dim=1, keepdim=True)
        off = pooled.masked_fill(eye, 0.0)
        pattern = off / off.sum(dim=1, keepdim=True).clamp_min(_EPS)  # P[j, c] / (1 - P[j, j])
        if K == 2 or self.error_pattern == "uniform":
            pattern = (~eye).to(q.dtype) / (K - 1)
        # each worker's accuracy, shrunk towards the crowd's (Beta prior, strength by empirical Bayes)
        correct = counts.diagonal(dim1=1, dim2=2).sum(dim=1)
        total = counts.sum(dim=(1, 2))
        crowd_acc = (correct.sum() / total.sum().clamp_min(_EPS)).clamp(1e-3, 1 - 1e-3)
        if search:
            worker, label, item = self._sample
            q_ans = q[item]
            q_loo = self._posterior_without_answer(q_ans, worker, label, K)
            p_correct = q_ans.gather(1, label[:, None])[:, 0]
            p_loo = q_loo.gather(1, label[:, None])[:, 0]
            k = _one_se_choice(_loo_accuracy_score(p_correct, p_loo, correct, total, worker, crowd_acc, K,
                                                   self._acc_grid), self._acc_grid, self.se_rule)
        else:
            k = torch.tensor(self.accuracy_strength_, dtype=q.dtype, device=q.device)
        acc = ((correct + k * crowd_acc) / (total + k)).clamp(1e-4, 1 - 1e-4)
        self._accuracy, self.accuracy_strength_ = acc, float(k)
        # prior means: the worker's one-coin matrix with the crowd's error pattern
        mean = (1 - acc)[:, None, None] * pattern[None]
        mean = torch.where(eye[None], acc[:, None, None].expand(R, K, K), mean)
        mean = mean.clamp_min(1e-6)
        mean = mean / mean.sum(dim=2, keepdim=True)
        if search:
            prior = q.mean(dim=0) if self.score == "information" else None
            s = _one_se_choice(_loo_matrix_score(counts, mean, q_ans, q_loo, worker, label, grid, prior), grid,
                               self.se_rule)
        else:
            s = torch.tensor(self.strength_, dtype=q.dtype, device=q.device)
        self.strength_ = float(s)
        self.pooled_matrix_ = pooled.double().cpu().numpy()
        T = (counts + s * mean) / (counts.sum(dim=2, keepdim=True) + s)
        logT = T.clamp_min(_EPS).log().transpose(1, 2).reshape(R * K, K)   # [r*K + answer c, true j]
        pri = q.sum(dim=0).clamp_min(_EPS)
        self._logT_prev = logT
        return logT, (pri / pri.sum()).log()

    def _posterior_without_answer(self, q_ans: torch.Tensor, worker: torch.Tensor, label: torch.Tensor,
                                  K: int) -> torch.Tensor:
        """Each sampled answer's item posterior with that answer taken out (A, K).

        After an E-step with matrices ``T``: ``q_loo ∝ q / T_r[:, c]``.  Before the first one (``q`` is the
        vote share): the shares of the item's other votes (uniform when it has none).
        """
        if self._logT_prev is None:
            votes = self._sample_votes - torch.nn.functional.one_hot(label, K).to(q_ans.dtype)
            tot = votes.sum(dim=1, keepdim=True)
            return torch.where(tot > 0, votes / tot.clamp_min(_EPS), torch.full_like(votes, 1.0 / K))
        log_q = q_ans.clamp_min(1e-300).log() - self._logT_prev[worker * K + label]
        return torch.softmax(log_q, dim=1)


def _pooled_from_counts(M, K: int) -> np.ndarray:
    """The crowd's pooled matrix (K, K) ``[true j, answer c]`` from a ShrunkMatrices' counts, as the dense fit."""
    pooled = np.zeros((K, K))
    np.add.at(pooled, (M.cols, M.rows % K), M.values)
    pooled += _EPS
    return pooled / pooled.sum(axis=1, keepdims=True)


def _answer_sample(data: CrowdData, limit: int, device: torch.device):
    """(worker, label, item) tensors of the answers that score the prior strengths (a fixed sample past ``limit``)."""
    idx = np.arange(data.n_answers)
    if data.n_answers > limit:
        idx = np.sort(np.random.default_rng(0).choice(data.n_answers, size=limit, replace=False))
    return tuple(torch.from_numpy(np.ascontiguousarray(a[idx])).to(device) for a in (data.worker, data.label, data.item))


def _e_step(op: AnswerOperator, logT: torch.Tensor, log_prior: torch.Tensor):
    """Posteriors and the log-likelihood: ``log q_i = log pi + sum over i's answers of log T_r[:, c]``."""
    logq = op.gather_sum(logT) + log_prior
    lse = torch.logsumexp(logq, dim=1, keepdim=True)
    return (logq - lse).exp(), float(lse.sum())
