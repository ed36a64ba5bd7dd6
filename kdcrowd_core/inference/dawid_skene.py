"""Dawid-Skene EM, in log space, on sparse answer triples with torch (CPU or GPU)."""
from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Callable

import numpy as np
import torch

from ..data import CrowdData
from ..device import resolve_device
from ..errors import CrowdDataError
from ._sparse import AnswerOperator
from .base import BaseInference, register
from .threads import steady_threads

_EPS = 1e-12


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


@register("dawid_skene", "ds", "dawid-skene", "dawidskene")
@dataclass(repr=False)
class DawidSkene(BaseInference):
    """Dawid & Skene (1979) worker confusion matrices and true-label posteriors.

    Model: ``P(worker r answers c | true class j) = T_r[j, c]``, class prior ``pi``.

    - Initialisation: soft majority vote (or ``initial_matrices``).
    - M-step: ``T_r[j, c] ∝ alpha + sum over answers (i, r, c) of q_i[j]``;
      ``pi ∝ sum_i q_i`` (plus ``prior_alpha``).
    - E-step (log space): ``log q_i[j] = log pi_j + sum over answers (i, r, c) of log T_r[j, c]``, normalised.
    - Items with a gold label have ``q`` clamped to it (``use_gold``).
    - Stops when the log-likelihood per answer changes by less than ``tol``
      between iterations, or after ``n_iter`` iterations.

    Parameters
    ----------
    n_iter : int, default 100
        Maximum number of EM iterations.
    tol : float, default 1e-5
        Tolerance on the change of the mean log-likelihood per answer.
    alpha : float, default 0.01
        Dirichlet smoothing added to every confusion count (0 = plain ML, as Crowd-Kit).
    prior_alpha : float, default 0.0
        Smoothing added to the class counts of the prior.
    use_gold : bool, default True
        Clamp the posteriors of items with gold labels.
    initial_matrices : array (R, K, K) or None
        Start from these worker matrices (E-step first) instead of majority vote.
    device : str, default "auto"
        "auto" (cuda, mps, cpu), "cpu", "cuda", ...
    dtype : str, default "float32"
        "float32" (fast) or "float64".
    callback : callable(iteration, mean_loglik) or None
        Called after every EM iteration (progress bars).
    num_threads : int or None
        CPU threads for this fit.  None: torch's setting capped at the cores idle when the fit
        starts (``threads.steady_threads``): a multi-threaded step waits for its slowest thread,
        so on a busy machine fewer threads are faster.

    Fitted attributes
    -----------------
    proba_array_ (N, K), probas_, labels_, worker_matrices_ (R, K, K) ``[r, true, answer]``,
    errors_ (Crowd-Kit layout), prior_ (K,), priors_ (pandas Series), loglik_history_ (list of
    float: mean log-likelihood per answer after each E-step), n_iter_ (iterations run), converged_,
    timings_ (seconds for setup, EM iterations and the copy back to host memory).
    """

    n_iter: int = 100
    tol: float = 1e-5
    alpha: float = 0.01
    prior_alpha: float = 0.0
    use_gold: bool = True
    initial_matrices: np.ndarray | None = field(default=None)
    device: str = "auto"
    dtype: str = "float32"
    callback: Callable[[int, float], None] | None = field(default=None, compare=False)
    num_threads: int | None = None

    def _fit(self, data: CrowdData) -> np.ndarray:
        n_threads = steady_threads() if self.num_threads is None else self.num_threads
        if n_threads < 1:
            raise CrowdDataError("num_threads must be at least 1 (or None).")
        before = torch.get_num_threads()
        torch.set_num_threads(int(n_threads))
        try:
            return self._fit_threads(data)
        finally:
            torch.set_num_threads(before)

    def _fit_threads(self, data: CrowdData) -> np.ndarray:
        dev = resolve_device(self.device)
        if dev.type == "mps" and self.dtype == "float64":
            dev = torch.device("cpu")
        dt = {"float32": torch.float32, "float64": torch.float64}.get(self.dtype)
        if dt is None:
            raise CrowdDataError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}.")
        if self.n_iter < 1:
            raise CrowdDataError("n_iter must be at least 1.")
        import time
        t_start = time.perf_counter()
        R, K = data.n_workers, data.n_classes
        op = AnswerOperator(data, dev, dt)
        gold_idx = gold_val = None
        if self.use_gold and data.has_gold:
            m = data.gold >= 0
            gold_idx = torch.from_numpy(np.nonzero(m)[0]).to(dev)
            gold_val = torch.from_numpy(data.gold[m]).to(dev)

        def clamp(q: torch.Tensor) -> torch.Tensor:
            if gold_idx is not None:
                q[gold_idx] = 0
                q[gold_idx, gold_val] = 1
            return q

        history: list[float] = []
        if self.initial_matrices is not None:
            T0 = np.asarray(self.initial_matrices, dtype=np.float64)
            if T0.shape != (R, K, K):
                raise CrowdDataError(f"initial_matrices must have shape (R, K, K) = {(R, K, K)}, got {T0.shape}.")
            T0 = np.clip(T0, _EPS, None)
            T0 = T0 / T0.sum(axis=2, keepdims=True)
            logT = torch.from_numpy(np.log(T0).transpose(0, 2, 1).reshape(R * K, K)).to(dev, dt)
            log_prior = torch.full((K,), -np.log(K), dtype=dt, device=dev)
            q, ll = self._e_step(op, logT, log_prior)
            q = clamp(q)
        else:
            q = clamp(op.soft_mv.clone())
        _sync(dev)
        t_em = time.perf_counter()
        n_ans = float(data.n_answers)
        converged = False
        it = 0
        for it in range(1, self.n_iter + 1):
            logT, log_prior = self._m_step(op, q)
            q, ll = self._e_step(op, logT, log_prior)
            q = clamp(q)
            history.append(ll / n_ans)
            if self.callback is not None:
                self.callback(it, history[-1])
            if len(history) > 1 and abs(history[-1] - history[-2]) < self.tol:
                converged = True
                break
        # final M-step so that matrices and prior match the returned posteriors
        logT, log_prior = self._m_step(op, q)
        _sync(dev)
        t_done = time.perf_counter()
        T = logT.exp().reshape(R, K, K).transpose(1, 2)  # [r, true j, answer c]
        self.worker_matrices_ = T.double().cpu().numpy()
        self.prior_ = log_prior.exp().double().cpu().numpy()
        import pandas as pd
        self.priors_ = pd.Series(self.prior_, index=list(data.classes), name="prior")
        self.loglik_history_ = history
        self.n_iter_ = it
        self.converged_ = converged
        self.device_ = str(dev)
        out = q.double().cpu().numpy()
        #: seconds: building the sparse operators, the EM iterations, copying results back
        self.timings_ = {"setup": t_em - t_start, "em": t_done - t_em,
                         "to_host": time.perf_counter() - t_done}
        return out

    def _m_step(self, op: AnswerOperator, q: torch.Tensor):
        R, K = op.R, op.K
        counts = op.scatter_sum(q).reshape(R, K, K)  # [r, answer c, true j]
        counts = counts + self.alpha
        counts = counts.clamp_min(_EPS)
        logT = (counts / counts.sum(dim=1, keepdim=True)).log().reshape(R * K, K)
        pri = q.sum(dim=0) + self.prior_alpha
        pri = pri.clamp_min(_EPS)
        log_prior = (pri / pri.sum()).log()
        return logT, log_prior

    def _e_step(self, op: AnswerOperator, logT: torch.Tensor, log_prior: torch.Tensor):
        logq = op.gather_sum(logT)
        logq += log_prior
        # normalise in place: q = exp(logq - max) / sum; log-likelihood = sum(max + log(sum))
        m = logq.amax(dim=1, keepdim=True)
        logq -= m
        q = logq.exp_()
        z = q.sum(dim=1, keepdim=True)
        q /= z
        ll = float((m + z.log()).sum())
        return q, ll
