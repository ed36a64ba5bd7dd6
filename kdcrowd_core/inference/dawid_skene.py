"""Dawid-Skene EM, in log space, on sparse answer triples with torch (CPU or GPU).

The EM steps are small pure functions over an :class:`~._sparse.AnswerOperator`
(``confusion_counts``, ``log_confusion``, ``log_prior``, ``center_rows``,
``e_step_logits``, ``posteriors``, ``softmax_entropy``, ``elbo``) so that chunked and distributed
versions can reuse them: counts and prior sums add up across chunks/ranks.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from ..data import CrowdData
from ..device import resolve_device
from ..errors import CrowdDataError
from ._sparse import AnswerOperator, cpu_threads, float_dtype
from .blocks import BlockRunner, ItemBlock, KeyBlock, block_runner, item_blocks, key_blocks, n_blocks_for
from .base import BaseInference, register

#: floor of confusion counts and priors before taking logs (Crowd-Kit's ``_EPS``)
EPS = 1e-10
_STRATEGIES = ("assign", "addition")


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


# ----------------------------------------------------------------- EM steps
def confusion_counts(op: AnswerOperator, q: torch.Tensor) -> torch.Tensor:
    """``(N, K) -> (R*K, K)``: row ``r*K + c``, column ``j`` = sum of ``q[i, j]`` over r's answers c."""
    return op.scatter_sum(q)


def log_confusion(counts: torch.Tensor, K: int, alpha: float = 0.0) -> torch.Tensor:
    """Counts ``(R*K, K)`` -> ``log T`` in the same layout: ``T[r*K+c, j] = P(answer c | true j)``.

    ``alpha`` is added to every count (Dirichlet smoothing; 0 = maximum likelihood, as
    Crowd-Kit), counts are floored at :data:`EPS`, then normalised over the answers c.
    """
    R = counts.shape[0] // K
    c = counts + alpha if alpha else counts
    c = c.clamp_min(EPS).reshape(R, K, K)
    return (c / c.sum(dim=1, keepdim=True)).log().reshape(R * K, K)


def log_prior(q: torch.Tensor, prior_alpha: float = 0.0, total: torch.Tensor | None = None) -> torch.Tensor:
    """Class prior from posteriors: ``log((sum_i q_i + prior_alpha) / (N + K prior_alpha))``, floored at EPS.

    ``total`` replaces ``q.sum(0)`` when the sum comes from several chunks or ranks.
    """
    s = q.sum(dim=0) if total is None else total
    s = s + prior_alpha
    return (s / s.sum()).clamp_min(EPS).log()


def center_rows(logT: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``log T - max_j log T`` per (worker, answer) row, and the row maxima.

    Subtracting a per-answer constant does not change the posteriors, but it keeps the
    per-item sums small: an item with 30,000 answers sums 30,000 log-ratios close to 0
    instead of 30,000 logs of about -1, so float32 keeps the differences between classes.
    """
    shift = logT.amax(dim=1, keepdim=True)
    return logT - shift, shift.squeeze(1)


def e_step_logits(op: AnswerOperator, logT_centered: torch.Tensor, log_pi: torch.Tensor) -> torch.Tensor:
    """Unnormalised log posteriors ``(N, K)``: ``log pi_j + sum over answers of log T[r*K+c, j]`` (centred)."""
    g = op.gather_sum(logT_centered)
    g += log_pi
    return g


def exp_floor(dtype: torch.dtype, K: int) -> float:
    """The lowest centred logit ``g - max g`` that :func:`posteriors` passes to ``exp``.

    Below it ``exp`` (and then the division by the row sum, at most K) gives subnormal numbers or
    zero, which torch's CPU kernels compute 10-30x slower than normal ones (measured: ``exp`` of
    200k float32 values in [-100, -88] took 6.2 ms instead of 0.21 ms).  On a sparse crowd half the
    entries of a confident item fall there, which made ``exp`` most of a 100k-answer fit.  Raising
    them to the floor changes posteriors below ``exp(floor) / K`` (3e-37 in float32 with K = 10,
    2e-307 in float64) to that value: nothing downstream sees the difference (confusion counts are
    floored at :data:`EPS`, row sums are at least one).
    """
    return math.log(torch.finfo(dtype).tiny) + math.log(max(int(K), 1)) + 1.0


def posteriors(g: torch.Tensor, out: torch.Tensor | None = None, with_lse: bool = False):
    """Softmax over classes of the logits ``g`` (N, K) into ``out`` (a new array if None); ``g`` is kept.

    ``with_lse``: also return the per-item log normaliser ``logsumexp(g)`` (N,).
    Centred logits below :func:`exp_floor` are raised to it before ``exp`` (speed; see there).
    """
    m = g.amax(dim=1, keepdim=True)
    q = torch.sub(g, m, out=out) if out is not None else g - m
    q.clamp_(min=exp_floor(q.dtype, q.shape[1]))
    q.exp_()
    z = q.sum(dim=1, keepdim=True)
    q /= z
    if with_lse:
        return q, (m + z.log()).squeeze(1)
    return q


def softmax_entropy(q: torch.Tensor, g: torch.Tensor, lse: torch.Tensor, work: torch.Tensor | None = None) -> float:
    """``-sum q log q`` for ``q = softmax(g)`` without a log per entry: ``sum lse - sum q * g``."""
    return float(lse.sum()) - float(torch.mul(q, g, out=work).sum() if work is not None else (q * g).sum())


def elbo(q: torch.Tensor, g: torch.Tensor, shift_total: float, log_pi: torch.Tensor | None = None,
         extra_prior_weight: torch.Tensor | None = None, work: torch.Tensor | None = None,
         entropy: float | None = None) -> float:
    """Evidence lower bound ``sum q * (log pi + sum log T) + H(q)`` (float64 accumulation).

    ``g`` are the centred logits and ``shift_total`` the sum over answers of the row maxima
    taken out by :func:`center_rows` (each item's q sums to one, so it adds back as is).
    Crowd-Kit's loss counts ``log pi`` once per answer instead of once per item: pass
    ``log_pi`` and ``extra_prior_weight`` = answers per item minus one to get its value.
    """
    # torch's sums are cascaded (accurate in float32); ``work`` (N, K) saves two allocations
    joint = float(torch.mul(q, g, out=work).sum() if work is not None else (q * g).sum())
    if entropy is None:  # else given by softmax_entropy, cheaper
        entropy = -float(torch.special.xlogy(q, q, out=work).sum() if work is not None
                         else torch.special.xlogy(q, q).sum())
    extra = 0.0
    if extra_prior_weight is not None:
        extra = float(((extra_prior_weight @ q) * log_pi).sum(dtype=torch.float64))
    return joint + entropy + shift_total + extra


def _shift_total(op: AnswerOperator, shift: torch.Tensor) -> float:
    return float((op.key_counts.to(torch.float64) * shift.to(torch.float64)).sum())


# ------------------------------------------------------------ initial errors
def initial_error_table(initial_error: pd.DataFrame, data: CrowdData) -> tuple[np.ndarray, np.ndarray]:
    """Crowd-Kit's ``initial_error`` (index (worker, label), columns true labels) as a ``(R*K, K)`` table.

    Returns the table (0 where the frame has no row) and a mask of the rows it gives.
    Workers, labels and columns not in ``data`` are ignored.
    """
    if list(initial_error.index.names) != ["worker", "label"]:
        raise CrowdDataError(f"The index of initial_error must be: ['worker', 'label'], "
                             f"but got: {list(initial_error.index.names)}.",
                             hint="index initial_error by (worker, label), one column per true label.")
    R, K = data.n_workers, data.n_classes
    w = data.worker_ids.get_indexer(initial_error.index.get_level_values("worker"))
    c = data.classes.get_indexer(initial_error.index.get_level_values("label"))
    j = data.classes.get_indexer(initial_error.columns)
    ok = (w >= 0) & (c >= 0)
    table = np.zeros((R * K, K))
    given = np.zeros(R * K, dtype=bool)
    vals = initial_error.to_numpy(dtype=np.float64)[ok][:, j >= 0]
    rows = w[ok] * K + c[ok]
    table[np.ix_(rows, j[j >= 0])] = vals
    given[rows] = True
    return table, given


def apply_initial_error(counts: np.ndarray, initial_error: pd.DataFrame | None, strategy: str | None,
                        data: CrowdData, used_rows: np.ndarray) -> np.ndarray:
    """Crowd-Kit's initial-error strategies on the first M-step's counts ``(R*K, K)``.

    ``"addition"`` adds the frame's counts; ``"assign"`` replaces the counts by the frame
    (which must cover every (worker, label) pair in the answers and, if it holds
    probabilities, sum to one per worker and true label).
    """
    if strategy is None or initial_error is None:
        return counts
    if strategy not in _STRATEGIES:
        raise CrowdDataError(f"Invalid initial_error_strategy: {strategy!r}, should be 'assign' or 'addition'.")
    table, given = initial_error_table(initial_error, data)
    if strategy == "addition":
        return counts + table
    missing = used_rows & ~given
    if missing.any():
        workers = data.worker_ids[np.unique(np.flatnonzero(missing) // data.n_classes)]
        raise CrowdDataError(
            f"All the workers in data should be in initial_error: can not find {len(workers)} workers' error "
            f"matrix in initial_error (e.g. {list(workers[:3])}).",
            hint="give an error matrix for every worker, or use initial_error_strategy='addition'.")
    vals = initial_error.to_numpy(dtype=np.float64)
    if (vals <= 1.0).all():
        sums = initial_error.groupby(level="worker", sort=False).sum().to_numpy(dtype=np.float64)
        if not np.allclose(sums, 1.0):
            raise CrowdDataError("The sum of each worker's error matrix in initial_error should be 1.0 "
                                 "(per true label column).",
                                 hint="normalise each worker's columns, or pass counts (values above 1).")
    return table


@register("dawid_skene", "ds", "dawid-skene", "dawidskene", defaults={"alpha": 0.01})
@dataclass(repr=False)
class DawidSkene(BaseInference):
    """Dawid & Skene (1979) worker confusion matrices and true-label posteriors.

    With default arguments this is Crowd-Kit's ``DawidSkene`` (same initialisation,
    steps, loss and stopping rule; results within float32 precision).  ``get_method("dawid_skene")``
    (the product's entry) adds ``alpha=0.01`` smoothing.

    Model: ``P(worker r answers c | true class j) = T_r[j, c]``, class prior ``pi``.

    - Initialisation: majority-vote shares ``q`` (gold clamped), ``pi`` = mean of ``q``,
      ``T`` from one M-step (plus ``initial_error``); or ``initial_matrices``.
    - Each iteration: E-step ``log q_i[j] = log pi_j + sum over answers (i, r, c) of log T_r[j, c]``
      (gold clamped); ``pi`` = mean of ``q``; M-step ``T_r[j, c] ∝ alpha + sum over answers (i, r, c) of q_i[j]``;
      loss = Crowd-Kit's evidence lower bound per answer (it counts ``log pi`` once per answer);
      stop when it improves by less than ``tol``.
    - Every answer counts, a worker's repeated answers to one task included.

    Parameters
    ----------
    n_iter : int, default 100
        Maximum number of EM iterations (0 = majority vote and one M-step).
    tol : float, default 1e-5
        Stop when the loss (ELBO per answer) improves by less than this.
    initial_error_strategy : {"assign", "addition"} or None
        How ``fit(..., initial_error=)`` enters the first M-step (see Crowd-Kit):
        ``"addition"`` adds historical counts, ``"assign"`` replaces the counts.
    alpha : float, default 0.0
        Dirichlet smoothing added to every confusion count (0 = Crowd-Kit).
    prior_alpha : float, default 0.0
        Smoothing added to the class counts of the prior.
    use_gold : bool, default True
        Clamp the posteriors of items with gold labels (CrowdData gold or ``true_labels``).
    initial_matrices : array (R, K, K) or None
        Start from these worker matrices (E-step first, uniform prior) instead of majority vote.
    device : str, default "auto"
        "auto" (cuda, mps, cpu), "cpu", "cuda", ...
    dtype : str, default "float32"
        "float32" (fast; sums are centred so that any number of answers per item is safe)
        or "float64".
    callback : callable(iteration, loss) or None
        Called after every EM iteration (progress bars).
    num_threads : int or None
        CPU threads for this fit.  None: one thread below 100,000 answers (threads cost more
        than they save there), else torch's setting capped at the cores idle when the fit starts
        (``threads.steady_threads``): a multi-threaded step waits for its slowest thread, so on a
        busy machine fewer threads are faster.

    Fitted attributes
    -----------------
    proba_array_ (N, K), probas_, labels_, worker_matrices_ (R, K, K) ``[r, true, answer]``,
    errors_ (Crowd-Kit layout; ordered like ``initial_error`` when one is given), prior_ (K,),
    priors_ (Series indexed by label, name ``prior``), loss_history_ (ELBO per answer after each
    iteration; ``loglik_history_`` is the same list), n_iter_, converged_, timings_, num_threads_ (the CPU threads
    the fit used).
    """

    n_iter: int = 100
    tol: float = 1e-5
    initial_error_strategy: str | None = None
    alpha: float = 0.0
    prior_alpha: float = 0.0
    use_gold: bool = True
    initial_matrices: np.ndarray | None = field(default=None)
    device: str = "auto"
    dtype: str = "float32"
    callback: Callable[[int, float], None] | None = field(default=None, compare=False)
    num_threads: int | None = None

    def fit(self, data: CrowdData | pd.DataFrame, true_labels: pd.Series | None = None,
            initial_error: pd.DataFrame | None = None) -> DawidSkene:
        """Fit; ``true_labels`` (Series indexed by task) clamps gold, ``initial_error`` as in Crowd-Kit."""
        self._initial_error = initial_error
        try:
            self._fit_frame(data, true_labels)
        finally:
            del self._initial_error
        if self.data_ is None:
            self.priors_ = pd.Series(dtype=float, name="prior")
            self.loss_history_ = []
            return self
        if initial_error is not None and self.initial_error_strategy is not None:
            self.errors_ = _order_like(self.errors_, initial_error)
        return self

    def _fit(self, data: CrowdData) -> np.ndarray:
        if self.num_threads is not None and self.num_threads < 1:
            raise CrowdDataError("num_threads must be at least 1 (or None).")
        em_threads = int(self.num_threads or torch.get_num_threads())
        with cpu_threads(data.n_answers, self.num_threads):
            return self._fit_threads(data, em_threads)

    def _fit_threads(self, data: CrowdData, em_threads: int = 1) -> np.ndarray:
        dev = resolve_device(self.device)
        if dev.type == "mps" and self.dtype == "float64":
            dev = torch.device("cpu")
        dt = float_dtype(self.dtype)
        if self.n_iter < 0:
            raise CrowdDataError("n_iter must be 0 or more.")
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

        q = clamp(op.soft_mv.clone())
        if self.initial_matrices is not None:
            T0 = np.asarray(self.initial_matrices, dtype=np.float64)
            if T0.shape != (R, K, K):
                raise CrowdDataError(f"initial_matrices must have shape (R, K, K) = {(R, K, K)}, got {T0.shape}.")
            T0 = np.clip(T0, EPS, None)
            T0 = T0 / T0.sum(axis=2, keepdims=True)
            logT = torch.from_numpy(np.log(T0).transpose(0, 2, 1).reshape(R * K, K)).to(dev, dt)
            log_pi = torch.full((K,), -math.log(K), dtype=dt, device=dev)
        else:
            counts = confusion_counts(op, q)
            alpha = self.alpha
            init_err = getattr(self, "_initial_error", None)
            if init_err is not None and self.initial_error_strategy is not None:
                used = op.key_counts.cpu().numpy() > 0
                table = apply_initial_error(counts.double().cpu().numpy(), init_err, self.initial_error_strategy,
                                            data, used)
                counts = torch.from_numpy(table).to(dev, dt)
                if self.initial_error_strategy == "assign":
                    alpha = 0.0
            logT = log_confusion(counts, K, alpha)
            log_pi = log_prior(q, self.prior_alpha)
        logTc, shift = center_rows(logT)
        g = e_step_logits(op, logTc, log_pi)
        _sync(dev)
        t_em = time.perf_counter()
        n_ans = float(data.n_answers)
        n_blocks = n_blocks_for(op)
        items, keys = item_blocks(op, n_blocks, gold_idx, gold_val), key_blocks(op, n_blocks)
        with block_runner(em_threads, n_blocks, 1 if self.num_threads is None else None) as run:
            self.num_threads_ = run.threads
            q, logT, log_pi, history, it, converged = self._em(op, items, keys, run, q, g, logT, log_pi, n_ans)
        _sync(dev)
        t_done = time.perf_counter()
        T = logT.exp().reshape(R, K, K).transpose(1, 2)  # [r, true j, answer c]
        self.worker_matrices_ = T.double().cpu().numpy()
        self.prior_ = log_pi.exp().double().cpu().numpy()
        self.priors_ = pd.Series(self.prior_, index=pd.Index(data.classes, name="label"), name="prior")
        self.loss_history_ = history
        self.loglik_history_ = history
        self.n_iter_ = it
        self.converged_ = converged
        self.device_ = str(dev)
        out = q.double().cpu().numpy()
        #: seconds: building the sparse operators, the EM iterations, copying results back
        self.timings_ = {"setup": t_em - t_start, "em": t_done - t_em,
                         "to_host": time.perf_counter() - t_done}
        return out


    def _em(self, op: AnswerOperator, blocks: list[ItemBlock], keys: list[KeyBlock], run: BlockRunner,
            q: torch.Tensor, g: torch.Tensor, logT: torch.Tensor, log_pi: torch.Tensor, n_ans: float):
        """The EM iterations, block by block (one block: the whole-array operations).

        Per iteration three passes, each block on whichever thread is free (:mod:`.blocks`): item blocks
        make the posteriors from the logits, their entropy and the gold clamping; (worker, answer) blocks
        the confusion counts; after the M-step, item blocks the next logits and the ELBO's ``sum q * g``.
        Each block computes its rows as the whole-array operation does, so neither the thread count nor
        the blocks change the posteriors or the matrices.
        """
        K = op.K
        history: list[float] = []
        converged, it, loss = False, 0, -math.inf
        if not self.n_iter:
            return q, logT, log_pi, history, it, converged
        whole = len(blocks) == 1
        work = torch.empty_like(g)
        q = torch.empty_like(g)
        counts = torch.empty(op.R * K, K, dtype=g.dtype, device=g.device) if len(keys) > 1 else None
        state: dict[str, torch.Tensor] = {"g": g}

        def posterior_step(b: ItemBlock):
            g = state["g"]
            gb, wb = g[b.i0:b.i1], work[b.i0:b.i1]
            qb, lse = posteriors(gb, out=q[b.i0:b.i1], with_lse=True)
            ent = softmax_entropy(qb, gb, lse, wb)
            if b.gold_idx is not None:  # clamped rows are one-hot: no entropy
                ent -= softmax_entropy(qb[b.gold_idx], gb[b.gold_idx], lse[b.gold_idx])
                qb[b.gold_idx] = 0
                qb[b.gold_idx, b.gold_val] = 1
            return ent

        def counts_step(b: KeyBlock):
            counts[b.k0:b.k1] = confusion_counts(b, q)

        def logits_step(b: ItemBlock):
            gb = e_step_logits(b, state["logTc"], state["log_pi"])
            if whole:
                state["g"] = gb
            else:
                state["g"][b.i0:b.i1] = gb
            # the ELBO's sum of q * (log pi + sum log T) over the block
            return float(torch.mul(q[b.i0:b.i1], gb, out=work[b.i0:b.i1]).sum())

        for it in range(1, self.n_iter + 1):
            ent = sum(run.map(posterior_step, blocks))
            q_mass = q.sum(dim=0)
            if len(keys) == 1:
                counts = confusion_counts(keys[0], q)
            else:
                run.map(counts_step, keys)
            log_pi = log_prior(q, self.prior_alpha, total=q_mass)
            logT = log_confusion(counts, K, self.alpha)
            state["logTc"], shift = center_rows(logT)
            state["log_pi"] = log_pi
            joint = sum(run.map(logits_step, blocks))
            # Crowd-Kit counts log pi once per answer: the extra (answers - 1) per item, summed over items,
            # is the answers' posterior mass (column sums of the small counts table) minus the items' mass
            extra = float(((counts.sum(dim=0) - q_mass) * log_pi).sum(dtype=torch.float64))
            new_loss = (joint + ent + _shift_total(op, shift) + extra) / n_ans
            history.append(new_loss)
            if self.callback is not None:
                self.callback(it, new_loss)
            if new_loss - loss < self.tol:
                converged = True
                break
            loss = new_loss
        return q, logT, log_pi, history, it, converged


def _order_like(errors: pd.DataFrame, initial_error: pd.DataFrame) -> pd.DataFrame:
    """``errors_`` with the rows and columns of ``initial_error`` first, in its order."""
    rows = initial_error.index[initial_error.index.isin(errors.index)]
    rest = errors.index[~errors.index.isin(rows)]
    cols = [c for c in initial_error.columns if c in errors.columns]
    cols += [c for c in errors.columns if c not in cols]
    out = errors.reindex(rows.append(rest) if len(rest) else rows)
    return out[cols]
