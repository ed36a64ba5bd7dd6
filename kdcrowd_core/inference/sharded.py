"""Truth inference on compact, possibly sharded answers: out of core on one process, data-parallel on many.

The EM methods run on :class:`~kdcrowd_core.io.chunked.CompactAnswers` (int32/int16 arrays).
Each process holds the answers of its own items.  Per EM iteration:

- E-step: local, item block by item block, written in place into one ``N x K``
  float32 array (no per-answer matrix of K floats, no second ``N x K`` array);
- M-step: the per-(worker, answer) sums ``A.T @ q`` (``R*K x K``), the class totals
  (``K``) and the log-likelihood (one number) are summed over the ranks with
  :class:`Communicator` (``torch.distributed.all_reduce``; nothing on one process).

Every rank therefore holds the same worker matrices and prior after every M-step,
stops at the same iteration, and its items get the posteriors one process would give
them.  The M-step and E-step formulas and the schedule are the estimators' own (the
pure functions of :mod:`.dawid_skene`: ``log_confusion``, ``log_prior``, ``center_rows``,
``posteriors``; one-coin's ``coin_log_table``); only the sums across ranks are added here.
The loop keeps two ``N x K`` arrays (posteriors and the next E-step's logits).
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from ..device import resolve_device
from ..errors import CrowdDataError
from ..io.chunked import CompactAnswers
from ._sparse import float_dtype, ones_csr_mm
from .dawid_skene import DawidSkene, center_rows, log_confusion, log_prior, posteriors
from .majority_vote import MajorityVote
from .one_coin import OneCoinDawidSkene, _coin_matrices, coin_log_table

#: answers per E-step block: bounds the temporaries to a few x 8M x 4 bytes
BLOCK_ANSWERS = 1 << 23


class Communicator:
    """Sums across the ranks of the default ``torch.distributed`` group (a no-op on one process).

    Counts what it sends: ``bytes_reduced`` (all-reduce payload bytes per rank) and ``calls``.
    """

    def __init__(self) -> None:
        import torch.distributed as dist
        self._dist = dist
        self.active = dist.is_available() and dist.is_initialized()
        self.world = dist.get_world_size() if self.active else 1
        self.rank = dist.get_rank() if self.active else 0
        self.bytes_reduced = 0
        self.calls = 0
        self.bytes_exchanged = 0  # reading: answers routed to the ranks that own their items
        self.phase = "setup"

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """All-reduce (sum) ``t`` in place and return it."""
        if self.world > 1:
            self._dist.all_reduce(t)
            self.bytes_reduced += t.numel() * t.element_size()
            self.calls += 1
        return t

    def sum_float(self, x: float, device: torch.device) -> float:
        if self.world == 1:
            return float(x)
        return float(self.sum_(torch.tensor([x], dtype=torch.float64, device=device)).item())

    def allgather(self, obj):
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        self._dist.all_gather_object(out, obj)
        return out

    def exchange(self, payloads: list[bytes], more: bool) -> tuple[list[bytes], bool]:
        """All-to-all of bytes: ``payloads[d]`` goes to rank ``d``; returns what every rank sent this one
        (indexed by source rank) and whether any rank said ``more``.  Counted in ``bytes_exchanged``."""
        if self.world == 1:
            return [payloads[0]], more
        dist = self._dist
        # NCCL moves CUDA tensors only: the bytes go through this rank's GPU there
        dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else \
            torch.device("cpu")
        head = torch.tensor([[len(b), int(more)] for b in payloads], dtype=torch.int64).reshape(-1).to(dev)
        got = torch.empty_like(head)
        dist.all_to_all_single(got, head)
        got = got.reshape(self.world, 2).cpu()
        sizes = got[:, 0].tolist()
        send_sizes = [len(b) for b in payloads]
        blob = b"".join(payloads)
        inp = torch.frombuffer(bytearray(blob), dtype=torch.uint8) if blob else torch.empty(0, dtype=torch.uint8)
        out = torch.empty(int(sum(sizes)), dtype=torch.uint8, device=dev)
        if sum(sizes) or sum(send_sizes):
            dist.all_to_all_single(out, inp.to(dev), output_split_sizes=sizes, input_split_sizes=send_sizes)
        self.bytes_exchanged += len(blob)
        raw = out.cpu().numpy().tobytes()
        offs = [0, *np.cumsum(sizes).tolist()]
        return [raw[offs[k]:offs[k + 1]] for k in range(self.world)], bool(got[:, 1].any())


def _csr(crow: torch.Tensor, col: torch.Tensor, val: torch.Tensor, n_rows: int, n_cols: int) -> torch.Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, val, size=(n_rows, n_cols), check_invariants=False)


class _Block:
    """Rows ``i0:i1`` of ``A``: what an estimator's ``_e_step`` needs (``gather_sum``)."""

    def __init__(self, A: torch.Tensor, i0: int, i1: int):
        self.A, self.i0, self.i1 = A, i0, i1
        self.device = A.device

    def gather_sum(self, table: torch.Tensor) -> torch.Tensor:
        return ones_csr_mm(self.A, table)


class ShardOperator:
    """The sparse answer operators of one shard (see ``_sparse.AnswerOperator``), lean on memory.

    ``A`` (items x (R*K)) is kept as row blocks of about :data:`BLOCK_ANSWERS` answers that share
    one column array; ``At`` ((R*K) x items) shares the same all-ones values.  Memory: 12 bytes per
    answer (two int32 column arrays and one float32 values array); building it adds at most one
    block's temporaries.  ``consume=True`` drops ``data.item/worker/label`` as soon as the operators
    hold the answers.  ``scatter_sum`` sums over the ranks.
    """

    def __init__(self, data: CompactAnswers, device: torch.device, dtype: torch.dtype, comm: Communicator,
                 block_answers: int = BLOCK_ANSWERS, consume: bool = False):
        K = data.n_classes
        self.N, self.R, self.K = data.n_items, data.n_workers, K
        self.device, self.dtype, self.comm = device, dtype, comm
        item = data.item  # sorted ascending (the reader's contract)
        n = item.size
        RK = self.R * K
        key = np.empty(n, dtype=np.int32)
        for a in range(0, n, block_answers):
            np.multiply(data.worker[a:a + block_answers], K, out=key[a:a + block_answers], casting="unsafe")
            key[a:a + block_answers] += data.label[a:a + block_answers]
        counts_i = np.bincount(item, minlength=self.N) if n else np.zeros(self.N, dtype=np.int64)
        crow = np.zeros(self.N + 1, dtype=np.int64)
        np.cumsum(counts_i, out=crow[1:])
        #: answers per local item (float, N) and per (worker, answer) row on this rank (R*K)
        self.answers_per_item = torch.from_numpy(counts_i.astype(np.float64)).to(device, dtype)
        del counts_i
        self.val = torch.ones(n, dtype=dtype, device=device)
        col = torch.from_numpy(key).to(device)
        crow_t = torch.from_numpy(crow)
        # row blocks of A
        self.blocks: list[_Block] = []
        i0 = 0
        while i0 < self.N:
            a0 = int(crow[i0])
            i1 = int(np.searchsorted(crow, a0 + block_answers, side="right")) - 1
            i1 = min(max(i1, i0 + 1), self.N)
            a1 = int(crow[i1])
            c = (crow_t[i0:i1 + 1] - a0).to(torch.int32).to(device)
            self.blocks.append(_Block(_csr(c, col[a0:a1], self.val[a0:a1], i1 - i0, RK), i0, i1))
            i0 = i1
        # At: a counting sort of the answers by key = worker*K + answer, block by block (stable)
        counts_k = np.bincount(key, minlength=RK) if n else np.zeros(RK, dtype=np.int64)
        self.key_counts = torch.from_numpy(counts_k.astype(np.float64)).to(device)
        crow_k = np.zeros(RK + 1, dtype=np.int64)
        np.cumsum(counts_k, out=crow_k[1:])
        col_at = np.empty(n, dtype=np.int32)
        ptr = crow_k[:-1].copy()
        for a in range(0, n, block_answers):
            kb = key[a:a + block_answers]
            order = np.argsort(kb.astype(np.uint16) if RK <= 65535 else kb, kind="stable")
            ks = kb[order]
            cnt = np.bincount(ks, minlength=RK)
            first = np.cumsum(cnt) - cnt  # index in this block where each key starts
            pos = ptr[ks] + (np.arange(ks.size) - first[ks])
            col_at[pos] = item[a:a + block_answers][order]
            ptr += cnt
        order = ks = pos = ptr = None  # noqa: F841 - free the last block's temporaries
        if consume:
            data.item = data.worker = data.label = None
            del item
        self.At = _csr(torch.from_numpy(crow_k.astype(np.int32)).to(device), torch.from_numpy(col_at).to(device),
                       self.val, RK, self.N)
        # soft majority vote: per item, the count of each answer = A @ (key -> answer one-hot)
        onehot = torch.zeros(RK, K, dtype=dtype, device=device)
        onehot[torch.arange(RK, device=device), torch.arange(RK, device=device) % K] = 1
        soft = torch.empty(self.N, K, dtype=dtype, device=device)
        for blk in self.blocks:
            soft[blk.i0:blk.i1] = blk.gather_sum(onehot)
        soft /= soft.sum(dim=1, keepdim=True).clamp_min(1)
        self.soft_mv = soft

    def scatter_sum(self, q: torch.Tensor) -> torch.Tensor:
        """``(N, K) -> (R*K, K)`` summed over all ranks."""
        return self.comm.sum_(ones_csr_mm(self.At, q).contiguous())


@dataclass
class ShardResult:
    """What a sharded fit returns for this rank's items.

    ``proba`` (N_local, K) float32 or float64 posteriors; ``worker_matrices`` (R, K, K)
    ``[r, true, answer]`` and ``prior`` (K,) the same on every rank.
    """

    proba: np.ndarray
    worker_matrices: np.ndarray
    prior: np.ndarray | None
    method: str
    loglik_history: list[float] = field(default_factory=list)
    n_iter: int = 0
    converged: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    bytes_reduced: int = 0
    allreduce_calls: int = 0


def _gold_tensors(data: CompactAnswers, use_gold: bool, device: torch.device):
    if not (use_gold and data.has_gold):
        return None, None
    m = data.gold >= 0
    return (torch.from_numpy(np.flatnonzero(m)).to(device),
            torch.from_numpy(data.gold[m].astype(np.int64)).to(device))


def _clamp(q: torch.Tensor, gi, gv) -> torch.Tensor:
    if gi is not None and gi.numel():
        q[gi] = 0
        q[gi, gv] = 1
    return q


class _Threads:
    def __init__(self, n: int | None):
        self.n, self.before = n, None

    def __enter__(self):
        from .threads import steady_threads
        n = steady_threads() if self.n is None else self.n
        if n < 1:
            raise CrowdDataError("num_threads must be at least 1 (or None).")
        self.before = torch.get_num_threads()
        torch.set_num_threads(int(n))

    def __exit__(self, *exc):
        if self.before is not None:
            torch.set_num_threads(self.before)


def fit_sharded(data: CompactAnswers, method, comm: Communicator | None = None,
                callback=None, consume: bool = False) -> ShardResult:
    """Fit ``method`` (a DawidSkene, OneCoinDawidSkene or MajorityVote instance: its settings are used)
    on this rank's answers; collective calls happen in the same order on every rank.

    ``consume=True`` lets Dawid-Skene drop ``data.item/worker/label`` once its operators hold the
    answers (10 bytes per answer less at the peak); ``data`` keeps its ids, classes and gold.
    """
    comm = comm or Communicator()
    if isinstance(method, DawidSkene):
        return _fit_ds(data, method, comm, callback, consume)
    if isinstance(method, OneCoinDawidSkene):
        return _fit_one_coin(data, method, comm, callback)
    if isinstance(method, MajorityVote):
        return _fit_mv(data, method, comm)
    raise CrowdDataError(f"{type(method).__name__} does not run on chunked or distributed answers.",
                         hint="use --method dawid_skene, one_coin_dawid_skene or majority_vote.")


def _fit_ds(data: CompactAnswers, est: DawidSkene, comm: Communicator, callback, consume: bool = False) -> ShardResult:
    if est.initial_matrices is not None:
        raise CrowdDataError("initial_matrices is not supported on chunked or distributed answers.")
    if est.initial_error_strategy is not None:
        raise CrowdDataError("initial_error is not supported on chunked or distributed answers.")
    dev = resolve_device(est.device)
    if dev.type == "mps":
        dev = torch.device("cpu")
    dt = float_dtype(est.dtype)
    K = data.n_classes

    def m_step(op: ShardOperator, q: torch.Tensor) -> torch.Tensor:
        return log_confusion(op.scatter_sum(q), K, est.alpha)
    return _fit_em(data, est, comm, callback, consume, dev, dt, m_step, est.num_threads, est.prior_alpha)


def _fit_one_coin(data: CompactAnswers, est: OneCoinDawidSkene, comm: Communicator, callback) -> ShardResult:
    dev = resolve_device(est.device)
    dt = torch.float32 if dev.type == "mps" else torch.float64
    R, K = data.n_workers, data.n_classes
    n_r = comm.sum_(torch.from_numpy(data.answers_per_worker()).to(dev, dt))
    diag = torch.arange(K, device=dev)

    def m_step(op: ShardOperator, q: torch.Tensor) -> torch.Tensor:
        correct = op.scatter_sum(q).reshape(R, K, K)[:, diag, diag].sum(dim=1)
        skill = (correct + est.alpha) / (n_r + 2 * est.alpha).clamp_min(1e-12)
        m_step.skill = skill
        return coin_log_table(skill, K)
    res = _fit_em(data, est, comm, callback, False, dev, dt, m_step, None, 0.0)
    res.worker_matrices = np.clip(_coin_matrices(m_step.skill.double().cpu().numpy(), K), 1e-10, 1 - 1e-10)
    return res


def _fit_em(data: CompactAnswers, est, comm: Communicator, callback, consume: bool, dev: torch.device,
            dt: torch.dtype, m_step, num_threads: int | None, prior_alpha: float) -> ShardResult:
    """The estimators' EM schedule (see ``DawidSkene._fit_threads``) on row blocks, sums over the ranks."""
    if est.n_iter < 0:
        raise CrowdDataError("n_iter must be 0 or more.")
    with _Threads(num_threads):
        t0 = time.perf_counter()
        op = ShardOperator(data, dev, dt, comm, consume=consume)
        gi, gv = _gold_tensors(data, est.use_gold, dev)
        q = _clamp(op.soft_mv, gi, gv)
        op.soft_mv = None
        extra_w = op.answers_per_item - 1  # Crowd-Kit's loss counts log pi once per answer
        op.answers_per_item = None

        def prior_and_logits(q: torch.Tensor, g: torch.Tensor | None):
            """M-step on ``q``, then the next E-step's logits into ``g``; returns them and this rank's loss."""
            lp = log_prior(q, prior_alpha, total=comm.sum_(q.sum(dim=0)))
            lT = m_step(op, q)
            lTc, shift = center_rows(lT)
            if g is None:
                g = torch.empty_like(q)
            loss = float((op.key_counts * shift.to(torch.float64)).sum())
            for blk in op.blocks:
                gb = blk.gather_sum(lTc)
                gb += lp
                g[blk.i0:blk.i1] = gb
                qb = q[blk.i0:blk.i1]
                loss += float((qb * gb).sum(dtype=torch.float64))
                loss -= float(torch.special.xlogy(qb, qb).sum(dtype=torch.float64))
                loss += float(((extra_w[blk.i0:blk.i1] @ qb) * lp).sum(dtype=torch.float64))
            return lp, lT, g, loss

        log_pi, logT, g, _ = prior_and_logits(q, None)
        t_em = time.perf_counter()
        n_ans = float(data.total_answers)
        hist: list[float] = []
        converged = False
        it = 0
        prev = -float("inf")
        for it in range(1, est.n_iter + 1):
            for blk in op.blocks:
                q[blk.i0:blk.i1] = posteriors(g[blk.i0:blk.i1])
            _clamp(q, gi, gv)
            log_pi, logT, g, loss = prior_and_logits(q, g)
            new = comm.sum_float(loss, dev) / n_ans
            hist.append(new)
            if callback is not None:
                callback(it, new)
            if new - prev < est.tol:
                converged = True
                break
            prev = new
        t_done = time.perf_counter()
        R, K = data.n_workers, data.n_classes
        T = logT.exp().reshape(R, K, K).transpose(1, 2).double().cpu().numpy()
        proba = q.cpu().numpy()
    return ShardResult(proba=proba, worker_matrices=T, prior=log_pi.exp().double().cpu().numpy(),
                       method=est.name, loglik_history=hist, n_iter=it, converged=converged,
                       timings={"setup": t_em - t0, "em": t_done - t_em}, bytes_reduced=comm.bytes_reduced,
                       allreduce_calls=comm.calls)


def _soft_majority(data: CompactAnswers) -> np.ndarray:
    counts = np.bincount(data.item.astype(np.int64) * data.n_classes + data.label,
                         minlength=data.n_items * data.n_classes).reshape(data.n_items, data.n_classes)
    counts = counts.astype(np.float64)
    tot = counts.sum(axis=1, keepdims=True)
    tot[tot == 0] = 1.0
    return counts / tot


def _fit_mv(data: CompactAnswers, est: MajorityVote, comm: Communicator) -> ShardResult:
    t0 = time.perf_counter()
    p = est._fit(data)
    # worker matrices as the estimators report them for MV: alpha = 1 plus expected counts
    op = ShardOperator(data, torch.device("cpu"), torch.float64, comm)
    op.soft_mv = None
    R, K = data.n_workers, data.n_classes
    counts = op.scatter_sum(torch.from_numpy(np.ascontiguousarray(p))).reshape(R, K, K).transpose(1, 2) + 1.0
    T = (counts / counts.sum(dim=2, keepdim=True)).numpy()
    pri = comm.sum_(torch.from_numpy(p.sum(axis=0)))
    return ShardResult(proba=p, worker_matrices=T, prior=(pri / pri.sum()).numpy(), method=est.name,
                       timings={"setup": 0.0, "em": time.perf_counter() - t0},
                       bytes_reduced=comm.bytes_reduced, allreduce_calls=comm.calls)
