"""Worker confusion matrices stored compactly when there are many classes.

With K classes each worker's matrix is K x K: at K = 1,000 and 50 workers the dense (R, K, K)
float64 array takes 400 MB, while a worker's answers touch only a few of its cells.  The
hierarchical Dawid-Skene model (:mod:`.adaptive`) gives every matrix the form

    ``T_r[j, c] = (C_r[j, c] + s * m_r[j, c]) / (n_r[j] + s)``

with ``C_r`` the worker's (sparse) expected counts, ``n_r[j] = sum_c C_r[j, c]``, ``s`` the prior
strength and ``m_r`` a one-coin matrix (``d_r`` on the diagonal, ``b_r`` elsewhere).
:class:`ShrunkMatrices` keeps exactly these pieces and builds dense blocks on demand: one worker,
a few workers, a page of classes.  ``numpy.asarray(M)`` gives the full dense array when a caller
needs it (the trainer at moderate sizes).

Functions here accept a dense ``(R, K, K)`` array or a :class:`ShrunkMatrices` alike
(:func:`diagonals`, :func:`block`, :func:`worker_chunks`).
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class ShrunkMatrices:
    """``(R, K, K)`` worker matrices ``[r, true j, answer c]`` from sparse counts and a one-coin prior.

    Parameters
    ----------
    rows, cols, values : arrays (nnz,)
        The nonzero expected counts: ``C_r[j, c] = values`` at ``rows = r * K + c`` (worker, answer)
        and ``cols = j`` (true class).
    n : float array (R, K)
        ``n_r[j]``: row sums of each worker's counts.
    strength : float
        ``s``, pseudo-answers of the prior per matrix row.
    diag, off : float arrays (R,)
        ``d_r`` and ``b_r``: the prior mean's diagonal and off-diagonal entries (``d + (K-1) b = 1``).
    """

    ndim = 3

    def __init__(self, rows: np.ndarray, cols: np.ndarray, values: np.ndarray, n: np.ndarray, strength: float,
                 diag: np.ndarray, off: np.ndarray):
        self.n = np.asarray(n, dtype=np.float64)
        R, K = self.n.shape
        self.R, self.K = R, K
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        self.rows, self.cols = rows[order], np.asarray(cols, dtype=np.int64)[order]
        self.values = np.asarray(values, dtype=np.float64)[order]
        # the counts of worker r are rows[lo[r]:lo[r + 1]]
        self._start = np.searchsorted(self.rows, np.arange(R + 1, dtype=np.int64) * K)
        self.strength = float(strength)
        self.diag = np.asarray(diag, dtype=np.float64)
        self.off = np.asarray(off, dtype=np.float64)

    # ------------------------------------------------------------ array face
    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.R, self.K, self.K)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float64)

    @property
    def nbytes(self) -> int:
        """Bytes held (the dense array would take ``R * K * K * 8``)."""
        return int(self.rows.nbytes + self.cols.nbytes + self.values.nbytes + self.n.nbytes + self._start.nbytes
                   + self.diag.nbytes + self.off.nbytes)

    def __len__(self) -> int:
        return self.R

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self.take(np.arange(self.R))
        return out if dtype is None else out.astype(dtype, copy=False)

    def __getitem__(self, index):
        """``M[r]`` (K, K), ``M[a:b]`` / ``M[codes]`` (n, K, K); other indexing on that dense selection."""
        rest = ()
        if isinstance(index, tuple):
            index, rest = index[0], index[1:]
        if isinstance(index, (int, np.integer)):
            r = int(index) + (self.R if int(index) < 0 else 0)
            if not 0 <= r < self.R:
                raise IndexError(f"worker {index} out of range for {self.R} workers")
            out = self.worker(r)
        elif isinstance(index, slice):
            out = self.take(np.arange(self.R)[index])
        else:
            codes = np.asarray(index)
            if codes.dtype == bool:
                codes = np.flatnonzero(codes)
            if codes.ndim != 1:   # broadcast fancy indexing: the workers named, then numpy's rules
                uniq = np.unique(codes)
                return self.take(uniq)[(np.searchsorted(uniq, codes),) + rest]
            out = self.take(codes)
            if rest:
                return out[(slice(None),) + rest]
        return out[rest] if rest else out

    # --------------------------------------------------------------- blocks
    def worker(self, r: int, classes: np.ndarray | None = None) -> np.ndarray:
        """Worker ``r``'s matrix ``(K, K)`` (or its ``classes x classes`` block), float64."""
        K, s = self.K, self.strength
        lo, hi = self._start[r], self._start[r + 1]
        c, j, v = self.rows[lo:hi] - r * K, self.cols[lo:hi], self.values[lo:hi]
        if classes is None:
            M = np.full((K, K), s * self.off[r])
            np.fill_diagonal(M, s * self.diag[r])
            np.add.at(M, (j, c), v)
            M /= (self.n[r] + s)[:, None]
            return M
        classes = np.asarray(classes, dtype=np.int64)
        pos = np.full(K, -1, dtype=np.int64)
        pos[classes] = np.arange(classes.size)
        k = classes.size
        M = np.full((k, k), s * self.off[r])
        np.fill_diagonal(M, s * self.diag[r])
        keep = (pos[j] >= 0) & (pos[c] >= 0)
        np.add.at(M, (pos[j[keep]], pos[c[keep]]), v[keep])
        M /= (self.n[r, classes] + s)[:, None]
        return M

    def take(self, workers: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
        """Dense ``(len(workers), K, K)`` (or ``(len(workers), k, k)`` over ``classes``) float64."""
        workers = np.asarray(workers, dtype=np.int64).ravel()
        k = self.K if classes is None else len(classes)
        out = np.empty((workers.size, k, k))
        for i, r in enumerate(workers):
            out[i] = self.worker(int(r), classes)
        return out

    def diagonals(self) -> np.ndarray:
        """``T_r[j, j]`` as an (R, K) float64 array."""
        K, s = self.K, self.strength
        on = self.cols == self.rows % K
        D = np.zeros((self.R, K))
        np.add.at(D, (self.rows[on] // K, self.cols[on]), self.values[on])
        D += s * self.diag[:, None]
        return D / (self.n + s)


    def spammer_scores(self) -> np.ndarray:
        """:func:`kdcrowd_core.metrics.spammer_score` of every worker (R,) in O(R K + counts), no K x K array.

        With ``T[j, c] = a_j (s b + X[j, c])`` (``a_j = 1 / (n_j + s)``, ``X`` the counts plus ``s (d - b)`` on
        the diagonal): ``sum (T - column means)^2 = sum_j a_j^2 (K (s b)^2 + 2 s b R_j + Q_j) - sum_c M_c^2 / K``
        with ``R_j, Q_j`` the sum and the sum of squares of row ``j`` of ``X`` and ``M_c = s b sum_j a_j +
        sum_j a_j X[j, c]``.
        """
        R, K, s = self.R, self.K, self.strength
        r, c, j, v = self.rows // K, self.rows % K, self.cols, self.values
        on = j == c
        x_diag = np.zeros((R, K))
        np.add.at(x_diag, (r[on], j[on]), v[on])
        x_diag += (s * (self.diag - self.off))[:, None]
        off = ~on
        a = 1.0 / (self.n + s)
        row_sum = x_diag.copy()
        np.add.at(row_sum, (r[off], j[off]), v[off])
        row_sq = x_diag ** 2
        np.add.at(row_sq, (r[off], j[off]), v[off] ** 2)
        col = a * x_diag
        np.add.at(col, (r[off], c[off]), a[r[off], j[off]] * v[off])
        sb = (s * self.off)[:, None]
        sum_t2 = (a ** 2 * (K * sb ** 2 + 2 * sb * row_sum + row_sq)).sum(axis=1)
        sum_m2 = ((sb * a.sum(axis=1, keepdims=True) + col) ** 2).sum(axis=1) / K
        return np.maximum(sum_t2 - sum_m2, 0.0) / max(K - 1, 1)


def diagonals(T) -> np.ndarray:
    """``T[r, j, j]`` as an (R, K) array, for a dense array or a :class:`ShrunkMatrices`."""
    if isinstance(T, ShrunkMatrices):
        return T.diagonals()
    return np.diagonal(np.asarray(T), axis1=1, axis2=2)


def block(T, workers, classes: np.ndarray | None = None) -> np.ndarray:
    """Dense ``(n, k, k)`` matrices of ``workers`` over ``classes`` (all classes when None)."""
    workers = np.asarray(workers, dtype=np.int64)
    if isinstance(T, ShrunkMatrices):
        return T.take(workers, classes)
    T = np.asarray(T)
    if classes is None:
        return T[workers]
    classes = np.asarray(classes, dtype=np.int64)
    return T[workers[:, None, None], classes[None, :, None], classes[None, None, :]]


def worker_chunks(T, max_cells: int = 4_000_000) -> Iterator[tuple[int, np.ndarray]]:
    """``(first worker, dense (r, K, K) float64 chunk)`` over all workers, about ``max_cells`` numbers each."""
    R, K = T.shape[0], T.shape[-1]
    step = max(1, int(max_cells // max(K * K, 1)))
    for lo in range(0, R, step):
        yield lo, np.asarray(T[lo:lo + step], dtype=np.float64)
