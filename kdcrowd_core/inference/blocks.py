"""Item blocks: the EM loop's per-item work cut into blocks that threads take one at a time.

torch's own multi-threaded kernels split every operation evenly over OpenMP threads that spin while
they wait for each other.  When another process holds a core (a shared notebook server, two other
jobs on a 2-core machine) each split waits for its descheduled half and the waiting thread burns the
time its partner needs: Dawid-Skene on 100k answers took 2.5 s with 2 threads instead of 0.26 s with
one (this project's machine, other jobs running).  Here the items are cut into consecutive blocks of
about :data:`BLOCK_ANSWERS` answers; a pool of Python threads takes the blocks one at a time, each
block's operations run single-threaded inside torch (which releases the interpreter lock), and the
threads sleep, not spin, at the one join per step.  A thread that loses its core only delays the
block it holds; the other threads take the rest.

Every block computes rows of a result exactly as the whole-array operation computes them: the
E-step's rows are items (blocks of items, views of ``A``), the M-step's rows are (worker, answer)
pairs (blocks of rows of ``A.T``, each row summed over all its answers as ``A.T @ q`` sums it), and
the sums over all items (class mass) stay whole-array operations.  Results are therefore the same,
bit for bit, with any number of threads and with or without blocks (the loss, a sum over blocks, may
differ in its last digits).  A crowd of fewer than ``1.5 * BLOCK_ANSWERS`` answers is one block.
"""
from __future__ import annotations

import contextlib
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from collections.abc import Callable, Iterator

import torch

from ._sparse import AnswerOperator, ones_csr_mm

#: answers per block of a CPU fit: big enough that the few microseconds of Python per block operation
#: stay small (1M answers: 8 blocks), small enough that a block's N x K rows stay in a core's cache
BLOCK_ANSWERS = 1 << 17


@dataclass
class ItemBlock:
    """Items ``i0 <= i < i1`` and their rows of ``A`` (``A``), and their gold items (local indices and
    labels, or None)."""

    i0: int
    i1: int
    A: torch.Tensor
    gold_idx: torch.Tensor | None = None
    gold_val: torch.Tensor | None = None

    def gather_sum(self, table: torch.Tensor) -> torch.Tensor:
        """``(R*K, K) -> (i1 - i0, K)``: per item of the block, the sum of ``table`` over its answers."""
        return ones_csr_mm(self.A, table)


@dataclass
class KeyBlock:
    """(worker, answer) rows ``k0 <= r*K + c < k1`` of ``A.T`` (``At``)."""

    k0: int
    k1: int
    At: torch.Tensor

    def scatter_sum(self, q: torch.Tensor) -> torch.Tensor:
        """``(N, K) -> (k1 - k0, K)``: the block's rows of ``A.T @ q``, each summed as the whole product sums it."""
        return ones_csr_mm(self.At, q)


def _bounds(crow: torch.Tensor, n_rows: int, n_blocks: int) -> list[int]:
    """Row boundaries cutting a CSR matrix into ``n_blocks`` runs of rows with about equal entries."""
    nnz = int(crow[-1])
    if n_blocks <= 1 or nnz == 0:
        return [0, n_rows]
    targets = (torch.arange(1, n_blocks, dtype=torch.float64) * (nnz / n_blocks)).to(torch.int64)
    cuts = torch.searchsorted(crow.to(torch.int64), targets.to(crow.device)).tolist()
    return sorted({0, n_rows, *(c for c in cuts if 0 < c < n_rows)})


def _row_slice(m: torch.Tensor, r0: int, r1: int) -> torch.Tensor:
    """Rows ``r0:r1`` of a CSR matrix, sharing its index and value arrays."""
    crow = m.crow_indices()
    c0, c1 = int(crow[r0]), int(crow[r1])
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow[r0:r1 + 1] - crow[r0], m.col_indices()[c0:c1], m.values()[c0:c1],
                                       size=(r1 - r0, m.shape[1]), check_invariants=False)


def n_blocks_for(op: AnswerOperator, block_answers: int | None = None) -> int:
    """How many blocks a fit's answers make: about one per ``block_answers`` (default :data:`BLOCK_ANSWERS`)
    answers on the CPU, one elsewhere."""
    nnz = int(op.A.crow_indices()[-1])
    return max(1, round(nnz / (block_answers or BLOCK_ANSWERS))) if op.device.type == "cpu" else 1


def item_blocks(op: AnswerOperator, n_blocks: int, gold_idx: torch.Tensor | None = None,
                gold_val: torch.Tensor | None = None) -> list[ItemBlock]:
    """``op``'s items cut into ``n_blocks`` consecutive blocks of about equal answers (views of ``op.A``)."""
    bounds = _bounds(op.A.crow_indices(), op.N, n_blocks)
    if len(bounds) == 2:
        return [ItemBlock(0, op.N, op.A, gold_idx, gold_val)]
    if gold_idx is not None:
        order = torch.argsort(gold_idx)
        gold_idx, gold_val = gold_idx[order], gold_val[order]
    blocks = []
    for i0, i1 in zip(bounds[:-1], bounds[1:]):
        gi = gv = None
        if gold_idx is not None:
            lo, hi = torch.searchsorted(gold_idx, torch.tensor([i0, i1], device=gold_idx.device)).tolist()
            if hi > lo:
                gi, gv = gold_idx[lo:hi] - i0, gold_val[lo:hi]
        blocks.append(ItemBlock(i0, i1, _row_slice(op.A, i0, i1), gi, gv))
    return blocks


def key_blocks(op: AnswerOperator, n_blocks: int) -> list[KeyBlock]:
    """The (worker, answer) rows of ``op.At`` cut into ``n_blocks`` runs of about equal answers (views)."""
    bounds = _bounds(op.At.crow_indices(), op.R * op.K, n_blocks)
    if len(bounds) == 2:
        return [KeyBlock(0, op.R * op.K, op.At)]
    return [KeyBlock(k0, k1, _row_slice(op.At, k0, k1)) for k0, k1 in zip(bounds[:-1], bounds[1:])]


class BlockRunner:
    """Runs a function over the blocks with ``n_threads`` threads (in the caller's thread when one),
    returning the results in block order.  ``threads``: the CPU threads the loop computes with."""

    def __init__(self, n_threads: int):
        self.n_threads = max(1, int(n_threads))
        self.threads = self.n_threads
        self._pool = ThreadPoolExecutor(self.n_threads, thread_name_prefix="kdcrowd-em") \
            if self.n_threads > 1 else None

    def map(self, fn: Callable, blocks: list) -> list:
        if self._pool is None or len(blocks) == 1:
            return [fn(b) for b in blocks]
        return list(self._pool.map(fn, blocks))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


@contextlib.contextmanager
def block_runner(n_threads: int, n_blocks: int, whole_threads: int | None = None) -> Iterator[BlockRunner]:
    """A :class:`BlockRunner` for ``n_blocks`` blocks; torch's thread setting is restored afterwards.

    Several blocks: ``min(n_threads, n_blocks)`` threads take them, and torch's own operations are
    single-threaded meanwhile (the blocks are the parallel work).  One block: the caller's thread runs
    it with torch's threads, set to ``whole_threads`` when given.
    """
    before = torch.get_num_threads()
    if n_blocks > 1:
        runner = BlockRunner(min(int(n_threads), n_blocks))
        if runner.n_threads > 1 and before != 1:
            torch.set_num_threads(1)  # the pool's threads start with torch's setting of this moment
    else:
        runner = BlockRunner(1)
        if whole_threads is not None and whole_threads != before:
            torch.set_num_threads(int(whole_threads))
        runner.threads = torch.get_num_threads()
    try:
        yield runner
    finally:
        runner.close()
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
