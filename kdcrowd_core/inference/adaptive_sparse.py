"""Hierarchical Dawid-Skene with many classes: the same model on sparse counts (no R x K x K array).

The dense fit (:mod:`.adaptive`) holds every worker's K x K matrix and its temporaries: at K = 1,000
and 50 workers that is 400 MB per array and about 12 s per EM iteration.  But a worker's answers
touch few cells of its matrix, and the model's posterior-mean matrices are

    ``T_r[j, c] = (C_r[j, c] + s m_r[j, c]) / (n_r[j] + s)``,  ``m_r`` = ``d_r`` on the diagonal, ``b_r`` off it

so ``log T_r[j, c] = log(s b_r) - log(n_r[j] + s) + E_r[c, j]`` where the correction
``E_r[c, j] = log((C_r[j, c] + s m_r[j, c]) / (s b_r))`` is nonzero only where the worker has counts
or on the diagonal.  This module runs the EM on that form:

- **M-step**: the expected counts ``C`` come from posteriors kept sparse — each item's classes with
  probability at least :data:`PRUNE` (its top class always), renormalised; the strength searches are the
  dense fit's (same sample, same scores, same one-standard-error rule) on the sampled answers' cells.
- **E-step**: each item's posterior is computed exactly on its *candidate classes* (the classes its
  answers or its workers' counts point to); the mass of all other classes is one number per item,
  ``(sum of their priors) * prod over answers of exp(-mean_j log(n_r[j] + s))`` — the per-class
  denominators replaced by each worker's prior-weighted mean.
- **Output**: the posteriors returned are exact for the fitted matrices (one dense E-step at the end);
  the matrices are a :class:`~.matrices.ShrunkMatrices` (``worker_matrices_`` builds the dense array
  only when read).

The two approximations (pruned counts, pooled denominators outside the candidates) are measured against
the dense fit in tests/inference/test_adaptive_sparse.py and docs/inference.md.  Only the default prior
(``error_pattern="uniform"``, no strength floor) has this form; other settings use the dense fit.
"""
from __future__ import annotations

import time
import warnings

import numpy as np
import torch

from ..data import CrowdData
from .matrices import ShrunkMatrices

_EPS = 1e-10
#: posterior entries below this are dropped (the item's top class always stays) before counting
PRUNE = 1e-4
#: up to this many workers the E-step sums run as a sampled dense product (faster), else by expansion
DENSE_W_WORKERS = 256


def _csr(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """CSR from (row, col, value) triples, duplicates summed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, shape, check_invariants=False).coalesce()
        return coo.to_sparse_csr()


def _parts(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row, column and value of every stored entry of a CSR tensor."""
    crow = m.crow_indices()
    rows = torch.repeat_interleave(torch.arange(crow.numel() - 1), crow[1:] - crow[:-1])
    return rows, m.col_indices(), m.values()


def _matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return a @ b


def _expand(start: torch.Tensor, count: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For segments ``[start[k], start[k] + count[k])``: (segment of each position, position)."""
    seg = torch.repeat_interleave(torch.arange(count.numel()), count)
    offset = torch.cumsum(count, 0) - count
    pos = start[seg] + torch.arange(seg.numel()) - offset[seg]
    return seg, pos


class SparseHDSFit:
    """One fit of :class:`~.adaptive.HierarchicalDawidSkene` on sparse counts (CPU, float64).

    ``run()`` returns the (N, K) posteriors and sets the model's fitted attributes like the dense fit.
    """

    def __init__(self, model, data: CrowdData):
        from .adaptive import STRENGTH_GRID  # noqa: F401  (the grids come from the model)
        self.m, self.data = model, data
        self.N, self.R, self.K = data.n_items, data.n_workers, data.n_classes
        N, R, K = self.N, self.R, self.K
        dt = torch.float64
        item = torch.from_numpy(data.item).long()
        worker = torch.from_numpy(data.worker).long()
        label = torch.from_numpy(data.label).long()
        key = worker * K + label
        ones = torch.ones(item.numel(), dtype=dt)
        self.A = _csr(item, key, ones, (N, R * K))          # item x (worker, answer), counts
        self.At = _csr(key, item, ones, (R * K, N))
        self.Wt = _csr(worker, item, ones, (R, N))          # worker x item, counts
        self.W = _csr(item, worker, ones, (N, R))
        self.used_keys = torch.unique(key)
        self.item, self.worker, self.label = item, worker, label
        # the answers grouped by item: sums over an item's workers
        order = torch.argsort(item, stable=True)
        self.worker_by_item = worker[order]
        self.n_per_item = torch.bincount(item, minlength=N)
        self.item_start = torch.cumsum(self.n_per_item, 0) - self.n_per_item
        self.n_per_worker = torch.bincount(worker, minlength=R).to(dt)
        self.votes = _csr(item, label, ones, (N, K))          # vote counts per (item, class)
        # few workers: the per-item sums over workers as one sampled product (W dense, N x R)
        self.W_dense = self.W.to_dense() if R <= DENSE_W_WORKERS and N * R <= 8_000_000 else None
        gold = data.gold if (model.use_gold and data.has_gold) else None
        self.gold_items = None if gold is None else torch.from_numpy(np.flatnonzero(gold >= 0)).long()
        self.gold_labels = None if gold is None else torch.from_numpy(gold[gold >= 0]).long()

    # --------------------------------------------------------------- helpers
    def _sum_over_workers(self, items: torch.Tensor, classes: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """``sum over the answers of items[e] of table[worker, classes[e]]`` for every entry e."""
        seg, pos = _expand(self.item_start[items], self.n_per_item[items])
        vals = table[self.worker_by_item[pos], classes[seg]]
        return torch.zeros(items.numel(), dtype=table.dtype).index_add_(0, seg, vals)

    def _clamp(self, qi: torch.Tensor, qj: torch.Tensor, qv: torch.Tensor):
        if self.gold_items is None:
            return qi, qj, qv
        is_gold = torch.zeros(self.N, dtype=torch.bool)
        is_gold[self.gold_items] = True
        keep = ~is_gold[qi]
        qi = torch.cat([qi[keep], self.gold_items])
        qj = torch.cat([qj[keep], self.gold_labels])
        qv = torch.cat([qv[keep], torch.ones(self.gold_items.numel(), dtype=qv.dtype)])
        order = torch.argsort(qi * self.K + qj)
        return qi[order], qj[order], qv[order]

    # ------------------------------------------------------------------ run
    def run(self) -> np.ndarray:
        from .adaptive import _answer_sample
        m, data, K = self.m, self.data, self.K
        dt = torch.float64
        t_start = time.perf_counter()
        grid = torch.tensor(sorted({float(v) for v in m.strength_grid}), dtype=dt)
        self.acc_grid = torch.tensor(sorted(m.accuracy_strength_grid), dtype=dt)
        n_score = min(m.max_score_answers, max(2_000, 400_000 // max(K, 1)))
        self.sample = _answer_sample(data, n_score, torch.device("cpu"))
        self.prev = None
        # start: the vote shares (sparse), gold clamped
        vi, vj, vv = _parts(self.votes)
        q = self._clamp(vi, vj, vv / self.n_per_item[vi].to(dt))
        n_ans = float(data.n_answers)
        history: list[float] = []
        converged, it = False, 0
        for it in range(1, m.n_iter + 1):
            self._m_step(q, grid, search=it <= 4 or it % 5 == 0)
            q, ll = self._e_step()
            history.append(ll / n_ans)
            if m.callback is not None:
                m.callback(it, history[-1])
            if len(history) > 1 and abs(history[-1] - history[-2]) < m.tol:
                converged = True
                break
        out = self._dense_posteriors()          # exact, for the matrices of the last E-step
        self._m_step(q, grid, search=True)
        st = self.prev
        m.worker_matrices_ = None
        m.matrices_ = ShrunkMatrices(st["rows"].numpy(), st["cols"].numpy(), st["vals"].numpy(), st["n"].numpy(),
                                     st["s"], st["d"].numpy(), st["b"].numpy())
        pri = st["prior"]
        m.prior_ = pri.numpy()
        m._accuracy = st["acc"]
        m.loglik_history_ = history
        m.n_iter_, m.converged_, m.device_ = it, converged, "cpu"
        m.timings_ = {"total": time.perf_counter() - t_start}
        return out

    # ---------------------------------------------------------------- M-step
    def _m_step(self, q, grid: torch.Tensor, search: bool) -> None:
        from .adaptive import _loo_accuracy_score, _one_se_choice
        m, R, K = self.m, self.R, self.K
        qi, qj, qv = q
        dt = torch.float64
        Q = _csr(qi, qj, qv, (self.N, K))
        C = _matmul(self.At, Q)                                   # [(r, answer c), true j]
        rows, cols, vals = _parts(C)
        n = _matmul(self.Wt, Q).to_dense()                        # n_r[j]
        r_of = rows // K
        on = cols == rows % K
        correct = torch.zeros(R, dtype=dt).index_add_(0, r_of[on], vals[on])
        total = self.n_per_worker
        crowd_acc = (correct.sum() / total.sum().clamp_min(_EPS)).clamp(1e-3, 1 - 1e-3)
        if search:
            worker = self.sample[0]
            cells = self._sample_cells(Q, C, n)
            k = _one_se_choice(_loo_accuracy_score(cells["p_correct"], cells["p_loo"], correct, total, worker,
                                                   crowd_acc, K, self.acc_grid), self.acc_grid, m.se_rule)
        else:
            k = torch.tensor(m.accuracy_strength_, dtype=dt)
        acc = ((correct + k * crowd_acc) / (total + k)).clamp(1e-4, 1 - 1e-4)
        m.accuracy_strength_ = float(k)
        # the prior mean: the one-coin matrix (uniform errors), floored and renormalised as the dense fit does
        d = acc.clamp_min(1e-6)
        b = ((1 - acc) / (K - 1)).clamp_min(1e-6)
        z = d + (K - 1) * b
        d, b = d / z, b / z
        pri = torch.zeros(K, dtype=dt).index_add_(0, qj, qv).clamp_min(_EPS)
        if search:
            prior = pri / pri.sum() if m.score == "information" else None
            s = _one_se_choice(self._matrix_score(cells, n, d, b, grid, prior), grid, m.se_rule)
        else:
            s = torch.tensor(m.strength_, dtype=dt)
        m.strength_ = float(s)
        self.prev = {"C": C, "rows": rows, "cols": cols, "vals": vals, "n": n, "s": float(s), "d": d, "b": b,
                     "prior": pri / pri.sum(), "acc": acc}

    def _sample_cells(self, Q: torch.Tensor, C: torch.Tensor, n: torch.Tensor) -> dict:
        """The sampled answers' nonzero cells: for answer a = (r, c, item i), every class j where ``q_i``, the
        count ``C_r[j, c]`` or the item's votes is nonzero, or ``j = c``; with those values and ``q_loo``."""
        worker, label, item = self.sample
        K, A = self.K, worker.numel()
        parts = []
        for mat, rows, slot in ((Q, item, 0), (C, worker * K + label, 1), (self.votes, item, 2)):
            crow, col, val = mat.crow_indices(), mat.col_indices(), mat.values()
            seg, pos = _expand(crow[rows], crow[rows + 1] - crow[rows])
            v = torch.zeros(seg.numel(), 3, dtype=val.dtype)
            v[:, slot] = val[pos]
            parts.append((seg * K + col[pos], v))
        parts.append((torch.arange(A) * K + label, torch.zeros(A, 3, dtype=torch.float64)))
        flat = torch.cat([p[0] for p in parts])
        uniq, inv = torch.unique(flat, return_inverse=True)
        v = torch.zeros(uniq.numel(), 3, dtype=torch.float64).index_add_(0, inv, torch.cat([p[1] for p in parts]))
        a, j = uniq // K, uniq % K
        q_val, c_val, votes = v[:, 0], v[:, 1], v[:, 2]
        r = worker[a]
        is_c = j == label[a]
        uniform = torch.zeros(A, dtype=torch.bool)
        if self.prev is None:
            # before any E-step: the shares of the item's other votes (uniform when it has none)
            other = votes - is_c.to(votes.dtype)
            tot = torch.zeros(A, dtype=torch.float64).index_add_(0, a, other)
            uniform = tot <= 0
            q_loo = torch.where(uniform[a], torch.zeros_like(other), other / tot.clamp_min(_EPS)[a])
        else:
            # q_loo ∝ q / T_r[:, c] (the previous M-step's matrices) on the item's classes
            st = self.prev
            key_prev = st["rows"] * K + st["cols"]
            want = (r * K + label[a]) * K + j
            hit = torch.searchsorted(key_prev, want).clamp_max(max(key_prev.numel() - 1, 0))
            c_prev = torch.where(key_prev[hit] == want, st["vals"][hit], torch.zeros_like(q_val)) \
                if key_prev.numel() else torch.zeros_like(q_val)
            m_prev = torch.where(is_c, st["d"][r], st["b"][r])
            T_prev = ((c_prev + st["s"] * m_prev) / (st["n"][r, j] + st["s"])).clamp_min(_EPS)
            has_q = q_val > 0
            logit = torch.where(has_q, q_val.clamp_min(1e-300).log() - T_prev.log(), torch.full_like(q_val, -torch.inf))
            top = torch.full((A,), -torch.inf, dtype=torch.float64).scatter_reduce(0, a, logit, "amax")
            e = torch.where(has_q, (logit - top[a]).exp(), torch.zeros_like(q_val))
            q_loo = e / torch.zeros(A, dtype=torch.float64).index_add_(0, a, e)[a]
        p_correct = torch.zeros(A, dtype=torch.float64).index_add_(0, a[is_c], q_val[is_c])
        p_loo = torch.zeros(A, dtype=torch.float64).index_add_(0, a[is_c], q_loo[is_c])
        p_loo = torch.where(uniform, torch.full_like(p_loo, 1.0 / K), p_loo)
        return {"a": a, "j": j, "r": r, "is_c": is_c, "q": q_val, "cell": c_val - q_val,
                "n": n[r, j] - q_val, "q_loo": q_loo, "uniform": uniform, "p_correct": p_correct, "p_loo": p_loo}

    def _matrix_score(self, cells: dict, n: torch.Tensor, d: torch.Tensor, b: torch.Tensor, grid: torch.Tensor,
                      prior: torch.Tensor | None) -> torch.Tensor:
        """:func:`.adaptive._loo_matrix_score` on the sampled answers' nonzero cells (G, A).

        Outside its cells an answer's column is ``T[j, c] = s b_r / (n_r[j] + s)``: sums over those classes
        come from per-worker totals ``sum_j w_j / (n_r[j] + s)``.
        """
        worker = self.sample[0]
        A, K = worker.numel(), self.K
        a, j, r, is_c = cells["a"], cells["j"], cells["r"], cells["is_c"]
        mean = torch.where(is_c, d[r], b[r])
        w_all = torch.full((K,), 1.0 / K, dtype=torch.float64)
        out = []
        for s in grid:
            T = (cells["cell"] + s * mean).clamp_min(_EPS) / (cells["n"] + s).clamp_min(_EPS)
            T_out = s * b[r] / (n[r, j] + s)                       # what the per-worker totals count for j
            pred = torch.zeros(A, dtype=torch.float64).index_add_(0, a, cells["q_loo"] * T)
            if bool(cells["uniform"].any()):
                tot = s * b * (w_all[None] / (n + s)).sum(dim=1)
                extra = torch.zeros(A, dtype=torch.float64).index_add_(0, a, w_all[j] * (T - T_out))
                pred = torch.where(cells["uniform"], tot[worker] + extra, pred)
            pred = pred.clamp_min(_EPS).log()
            if prior is not None:
                tot = s * b * (prior[None] / (n + s)).sum(dim=1)
                info = tot[worker] + torch.zeros(A, dtype=torch.float64).index_add_(0, a, prior[j] * (T - T_out))
                pred = pred - info.clamp_min(_EPS).log()
            out.append(pred)
        return torch.stack(out)

    # ---------------------------------------------------------------- E-step
    def _corrections(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per item, the candidate classes and ``sum over answers of E_r[c, j]``; and ``log(n + s)``."""
        st, K = self.prev, self.K
        s, d, b = st["s"], st["d"], st["b"]
        keys = self.used_keys
        rows = torch.cat([st["rows"], keys])
        cols = torch.cat([st["cols"], keys % K])
        vals = torch.cat([st["vals"], torch.zeros(keys.numel(), dtype=torch.float64)])
        E = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (self.R * K, K), check_invariants=False)
        E = E.coalesce()
        (er, ec), ev = E.indices(), E.values()
        r = er // K
        mean = torch.where(ec == er % K, d[r], b[r])
        ev = (ev + s * mean).log() - (s * b[r]).log()
        Ecsr = _csr(er, ec, ev, (self.R * K, K))
        M = _matmul(self.A, Ecsr)                                  # (N, K) sparse: sum of corrections
        return M, (st["n"] + s).log()

    def _e_step(self):
        st, N = self.prev, self.N
        dt = torch.float64
        M, L = self._corrections()
        mi, mj, mv = _parts(M)
        log_pi = st["prior"].log()
        if self.W_dense is not None:   # corrections - sum over answers of log(n_r[j] + s), at the candidates
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                logit = torch.sparse.sampled_addmm(M, self.W_dense, L, beta=1.0, alpha=-1.0).values()
        else:
            logit = mv - self._sum_over_workers(mi, mj, L)
        logit = logit + log_pi[mj]
        # every other class of the item: one number (prior mass outside the candidates, pooled denominators)
        pi_in = torch.zeros(N, dtype=dt).index_add_(0, mi, st["prior"][mj])
        L_mean = L @ st["prior"]                                    # (R,)
        rest = (1 - pi_in).clamp_min(0).log() - torch.zeros(N, dtype=dt).index_add_(0, self.item, L_mean[self.worker])
        top = torch.full((N,), -torch.inf, dtype=dt).scatter_reduce(0, mi, logit, "amax")
        top = torch.maximum(top, rest)
        z = torch.zeros(N, dtype=dt).index_add_(0, mi, (logit - top[mi]).exp()) + (rest - top).exp()
        lse = top + z.log()
        base = (st["s"] * st["b"]).log()                            # log(s b_r), the same for every class
        ll = float(lse.sum() + base[self.worker].sum())
        qv = (logit - lse[mi]).exp()
        # keep the classes that matter (the top one always), renormalised: the next M-step's counts
        row_max = torch.zeros(N, dtype=dt).scatter_reduce(0, mi, qv, "amax")
        keep = (qv >= PRUNE) | (qv >= row_max[mi])
        qi, qj, qv = mi[keep], mj[keep], qv[keep]
        qv = qv / torch.zeros(N, dtype=dt).index_add_(0, qi, qv)[qi]
        self.last = (mi, mj, mv, L, log_pi)
        return self._clamp(qi, qj, qv), ll

    def _dense_posteriors(self) -> np.ndarray:
        """Exact (N, K) posteriors for the matrices of the last E-step (gold clamped), float64."""
        mi, mj, mv, L, log_pi = self.last
        g = _matmul(self.W, L).neg_()                                # -sum over answers of log(n_r[j] + s)
        g += log_pi
        g.index_put_((mi, mj), mv, accumulate=True)
        g -= g.amax(dim=1, keepdim=True)
        g.exp_()
        g /= g.sum(dim=1, keepdim=True)
        if self.gold_items is not None:
            g[self.gold_items] = 0
            g[self.gold_items, self.gold_labels] = 1
        return g.numpy()
