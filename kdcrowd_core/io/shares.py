"""Each rank reads only its share of an answers table, then answers go to the rank that owns their item.

Used by :func:`~kdcrowd_core.io.chunked.read_answers_chunked` under ``--distributed``:

- **Parquet** (a file or a folder, Hive partitions allowed): the row groups of all files, in the
  dataset's order, are cut into ``world`` contiguous runs of about equal row counts; a rank reads only
  its run (a file with one row group is read by one rank).
- **CSV/TSV** (uncompressed): the bytes after the header line are cut into ``world`` ranges, each
  boundary moved to the start of the next line; a rank reads the header plus its range.  Like the rest
  of the chunked reader, a value may not hold a line break.  A compressed file (``.gz``, ``.bz2``)
  cannot be split: rank 0 reads it and routes the answers.

:func:`routed_batches` then sends every row to the rank that owns its item
(:func:`~kdcrowd_core.io.chunked.partition_of` of the cleaned item id), one batch per rank per round
(Arrow IPC bytes, an all-to-all over the process group), so each item's answers end up on one rank
whatever share held them.  Every batch comes with its source rank: shares follow the input's order,
so sorting by source (stable) restores the input order where it matters (duplicates ``first``/``last``).
"""
from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CrowdDataError

#: ``exchange(payloads, more) -> (received, anyone_has_more)``, see ``Communicator.exchange``
Exchange = Callable[[list, bool], tuple[list, bool]]


# ------------------------------------------------------------------ Parquet
def parquet_share(ds: Any, rank: int, world: int) -> list[tuple[Any, list[int]]]:
    """This rank's (fragment, row-group ids) pairs: contiguous runs of row groups of about equal rows."""
    units: list[tuple[Any, int, int]] = []
    for frag in ds.get_fragments():
        groups = frag.row_groups
        if groups is None:
            frag.ensure_complete_metadata()
            groups = frag.row_groups
        units.extend((frag, g.id, g.num_rows) for g in groups)
    total = sum(u[2] for u in units)
    mine: list[tuple[Any, list[int]]] = []
    before = 0
    for frag, gid, n in units:
        owner = min(world - 1, int((before + n / 2) * world // max(total, 1)))
        before += n
        if owner != rank:
            continue
        if mine and mine[-1][0] is frag:
            mine[-1][1].append(gid)
        else:
            mine.append((frag, [gid]))
    return mine


def iter_parquet_share(ds: Any, columns: list[str], rank: int, world: int, batch_rows: int) -> Iterator[Any]:
    for frag, groups in parquet_share(ds, rank, world):
        yield from frag.subset(row_group_ids=groups).to_batches(columns=columns, schema=ds.schema,
                                                                 batch_size=batch_rows)


# ---------------------------------------------------------------------- text
def text_share(path: Path, rank: int, world: int) -> tuple[bytes, int, int]:
    """(header line bytes, start, end) of this rank's byte range; boundaries at line starts."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        header = f.readline()
        body = len(header)

        def boundary(k: int) -> int:
            if k <= 0:
                return body
            if k >= world:
                return size
            b = body + (size - body) * k // world
            f.seek(b - 1)
            if f.read(1) == b"\n":
                return b
            f.readline()  # the rest of the line that straddles b
            return min(f.tell(), size)

        return header, boundary(rank), boundary(rank + 1)


class _RangeStream(io.RawIOBase):
    """The header line, then bytes [start, end) of a file: what pyarrow's CSV reader parses."""

    def __init__(self, path: Path, header: bytes, start: int, end: int) -> None:
        self._f = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._f.seek(start)
        self._head = memoryview(header)
        self._left = end - start

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        view = memoryview(buf)
        if len(self._head):
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        n = min(len(view), self._left)
        if n <= 0:
            return 0
        got = self._f.readinto(view[:n])
        self._left -= got
        return got

    def close(self) -> None:
        self._f.close()
        super().close()


def open_text_share(path: Path, rank: int, world: int) -> tuple[Any, int]:
    """A binary stream of this rank's share (header + its lines) and the byte offset where it starts."""
    header, start, end = text_share(path, rank, world)
    return io.BufferedReader(_RangeStream(path, header, start, end), buffer_size=1 << 20), start


def line_of_offset(path: Path, offset: int) -> int:
    """1-based line number of the line starting at byte ``offset`` (error messages only: reads the prefix)."""
    lines = 1
    with open(path, "rb") as f:
        left = offset
        while left > 0:
            chunk = f.read(min(left, 1 << 24))
            if not chunk:
                break
            lines += chunk.count(b"\n")
            left -= len(chunk)
    return lines


# ------------------------------------------------------------------ routing
def _to_ipc(batch: Any) -> bytes:
    import pyarrow as pa
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as w:
        w.write_batch(batch)
    return sink.getvalue().to_pybytes()


def _from_ipc(raw: bytes) -> Any:
    import pyarrow as pa
    with pa.ipc.open_stream(pa.py_buffer(raw)) as r:
        batches = list(r)
    return batches[0] if len(batches) == 1 else pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


def routed_batches(batches: Iterator[Any], owner_of: Callable[[Any], np.ndarray], rank: int, world: int,
                   exchange: Exchange, counts: dict) -> Iterator[tuple[int, Any]]:
    """Yield ``(source rank, batch)``: the rows of every rank's batches whose item this rank owns.

    One round per batch of the rank with the most batches; in each round every rank sends each other
    rank the rows it owns (empty when it has none or has run out).  ``counts`` gets ``rows_read`` (rows
    this rank read from the input) and ``rows_kept`` (rows of its items, from all ranks).
    """
    import pyarrow as pa
    it = iter(batches)
    counts.setdefault("rows_read", 0)
    counts.setdefault("rows_kept", 0)
    while True:
        batch = next(it, None)
        parts: list[Any] = [None] * world
        if batch is not None and batch.num_rows:
            counts["rows_read"] += batch.num_rows
            owner = owner_of(batch)
            for d in range(world):
                sel = owner == d
                if sel.all():
                    parts[d] = batch
                elif sel.any():
                    parts[d] = batch.filter(pa.array(sel))
        payloads = [b"" if d == rank or parts[d] is None else _to_ipc(parts[d]) for d in range(world)]
        received, more = exchange(payloads, batch is not None)
        for src in range(world):
            got = parts[rank] if src == rank else (_from_ipc(received[src]) if received[src] else None)
            if got is not None and got.num_rows:
                counts["rows_kept"] += got.num_rows
                yield src, got
        if not more:
            return


def share_error(path: Path, start: int, rows_before: int, e: Exception) -> CrowdDataError:
    """The parse error of a share, with the line number in the whole file."""
    line = line_of_offset(path, start) - 1 + rows_before
    return CrowdDataError(f"cannot parse the table after line {line}: {e}.", path=str(path),
                          hint="every line needs the same number of fields as the header.")
