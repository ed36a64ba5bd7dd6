"""Streaming reader: a long answers table read in chunks into compact arrays.

:func:`read_answers_chunked` reads a long table (one row per answer: item, worker,
label) from a CSV/TSV file (optionally ``.gz``/``.bz2``), a Parquet file or a folder
of Parquet files (a partitioned dataset), batch by batch, and keeps only

- ``item`` and ``worker`` codes as ``int32`` and ``label`` codes as ``int16``
  (``int32`` past 32,767 classes): 10 bytes per answer instead of the 24 of
  :class:`~kdcrowd_core.data.CrowdData` and the hundreds of a DataFrame;
- the id maps (``item_ids``, ``worker_ids``, ``classes``).

The rules are those of :func:`~kdcrowd_core.io.read_answers` for a long table, with the same
:class:`~kdcrowd_core.io.options.ReadOptions` (columns, id transform, label normalisation and map,
classes, duplicates policy): cleaning runs on each column's unique values, empty cells are skipped
and counted, repeated (item, worker) answers all count or keep the last/first (counted).  Only the
order of ``item_ids``/``worker_ids`` may differ (first appearance in the file rather than among kept
answers).

Sharding (``rank``/``world``): every rank streams the file but keeps only the
answers of the items it owns (a hash of the cleaned item id, so an item's
answers always land on one rank); worker and class codes are made global with
``allgather`` (``torch.distributed.all_gather_object`` under torchrun), so
per-worker statistics can be all-reduced.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd

from ..data import AnswerSizes, CrowdData, ReadReport, _coerce_like, _normalise_labels, _sorted_unique
from ..errors import CrowdDataError, opt
from ._build import to_plain_index
from ._columns import detect_roles
from .normalise import clean_ids, clean_labels
from .options import ReadOptions, resolve

#: rows per batch: ~2M rows keep a batch's temporaries around 100 MB
DEFAULT_BATCH_ROWS = 1 << 21
_CANON_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,17})")
_TEXT_EXTS = {".csv", ".tsv", ".tab", ".txt"}
_PARQUET_EXTS = {".parquet", ".pq"}
_COMPRESSED = {".gz", ".bz2"}

AllGather = Callable[[Any], list]


def _single(obj: Any) -> list:
    return [obj]


@dataclass
class CompactAnswers(AnswerSizes):
    """Answers of one shard as compact arrays (duck-compatible with :class:`CrowdData` for inference).

    Attributes
    ----------
    item : int32 (n_answers,)  codes into ``item_ids`` (this shard's items), sorted ascending
    worker : int32 (n_answers,)  codes into ``worker_ids`` (the same on every rank)
    label : int16 or int32 (n_answers,)  codes into ``classes`` (the same on every rank)
    gold : int32 (n_items,) or None, ``-1`` = unknown
    total_answers : answers on all ranks together
    """

    item: np.ndarray
    worker: np.ndarray
    label: np.ndarray
    item_ids: pd.Index
    worker_ids: pd.Index
    classes: pd.Index
    gold: np.ndarray | None = None
    report: list[ReadReport] = field(default_factory=list)
    total_answers: int = 0
    rank: int = 0
    world: int = 1

    @property
    def nbytes(self) -> int:
        return int(self.item.nbytes + self.worker.nbytes + self.label.nbytes)

    def to_crowd_data(self) -> CrowdData:
        """The same answers as a :class:`CrowdData` (int64 arrays: for small data and tests)."""
        return CrowdData(item=self.item.astype(np.int64), worker=self.worker.astype(np.int64),
                         label=self.label.astype(np.int64), item_ids=self.item_ids, worker_ids=self.worker_ids,
                         classes=self.classes,
                         gold=None if self.gold is None else self.gold.astype(np.int64), report=list(self.report))


# ------------------------------------------------------------------ sources
def source_kind(path: str | Path) -> str:
    """``"parquet"`` (file or folder) or ``"text"``; raises CrowdDataError for anything else."""
    p = Path(path)
    if not p.exists():
        raise CrowdDataError("the answers file does not exist.", path=str(p),
                             hint="check the path (relative paths start from the current folder).")
    if p.is_dir():
        if not any(q.suffix.lower() in _PARQUET_EXTS for q in p.rglob("*") if q.is_file()):
            raise CrowdDataError("the folder holds no .parquet files.", path=str(p),
                                 hint="give a CSV/TSV/Parquet file or a folder of Parquet files.")
        return "parquet"
    suf = [s.lower() for s in p.suffixes]
    ext = suf[-2] if len(suf) >= 2 and suf[-1] in _COMPRESSED else (suf[-1] if suf else "")
    if ext in _PARQUET_EXTS:
        return "parquet"
    if ext in _TEXT_EXTS:
        return "text"
    raise CrowdDataError(f"the chunked reader reads CSV/TSV and Parquet, not {p.suffix!r}.", path=str(p),
                         hint="convert the file to CSV or Parquet, or read it without --chunked.")


def can_stream(path: Any) -> bool:
    """True when ``path`` is a file or folder the chunked reader handles."""
    try:
        return isinstance(path, (str, Path)) and source_kind(path) in ("parquet", "text")
    except CrowdDataError:
        return False


def _text_delimiter(p: Path) -> str:
    name = p.name.lower()
    if any(name.endswith(e) or name.endswith(e + c) for e in (".tsv", ".tab") for c in ("", ".gz", ".bz2")):
        return "\t"
    import pyarrow as pa
    with pa.input_stream(str(p), compression="detect") as f:
        head = f.read(1 << 16).decode("utf-8", errors="replace")
    first = head.splitlines()[0] if head else ""
    counts = {d: first.count(d) for d in (",", "\t", ";", "|")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _columns_of(path: Path, kind: str) -> tuple[list[str], str | None]:
    import pyarrow as pa
    if kind == "parquet":
        import pyarrow.dataset as pds
        return list(_dataset(path, pds).schema.names), None
    sep = _text_delimiter(path)
    import pyarrow.csv as pcsv
    try:
        reader = pcsv.open_csv(str(path), parse_options=pcsv.ParseOptions(delimiter=sep),
                               read_options=pcsv.ReadOptions(block_size=1 << 16))
        names = list(reader.schema.names)
        reader.close()
    except (pa.ArrowInvalid, UnicodeDecodeError) as e:
        raise CrowdDataError(f"cannot read the header line: {e}.", path=str(path), line=1,
                             hint="the file must be a CSV/TSV table with a header line.") from None
    return names, sep


def _dataset(path: Path, pds):
    try:
        return pds.dataset(str(path), format="parquet", partitioning="hive")
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for bad files
        raise CrowdDataError(f"cannot open as Parquet: {e}.", path=str(path),
                             hint="check that the file (or every file in the folder) is a Parquet file.") from None


def iter_batches(path: str | Path, columns: list[str], *, batch_rows: int = DEFAULT_BATCH_ROWS,
                 kind: str | None = None, delimiter: str | None = None,
                 share: tuple[int, int] | None = None) -> Iterator[Any]:
    """Yield pyarrow RecordBatches holding ``columns`` (text columns read as strings).

    ``share=(rank, world)``: only this rank's share of the rows (see :mod:`.shares`); a compressed text
    file cannot be split, so rank 0 reads all of it and the others nothing.
    """
    import pyarrow as pa
    p = Path(path)
    kind = kind or source_kind(p)
    if kind == "parquet":
        import pyarrow.dataset as pds
        ds = _dataset(p, pds)
        try:
            if share is not None:
                from .shares import iter_parquet_share
                yield from iter_parquet_share(ds, columns, share[0], share[1], batch_rows)
                return
            # little read-ahead: memory stays a few batches whatever the file size
            yield from ds.to_batches(columns=columns, batch_size=batch_rows, batch_readahead=1,
                                     fragment_readahead=1)
        except pa.ArrowInvalid as e:
            raise CrowdDataError(f"cannot read the Parquet data: {e}.", path=str(p),
                                 hint="check that every file has the same columns.") from None
        return
    import pyarrow.csv as pcsv
    sep = delimiter or _text_delimiter(p)
    source: Any = str(p)
    start = 0
    if share is not None and share[1] > 1:
        if p.suffix.lower() in _COMPRESSED:
            if share[0] != 0:
                return
        else:
            from .shares import open_text_share
            source, start = open_text_share(p, *share)
    def parse_error(e: Exception, rows: int) -> CrowdDataError:
        if start:
            from .shares import share_error
            return share_error(p, start, rows - 1, e)
        return CrowdDataError(f"cannot parse the table after line {rows}: {e}.", path=str(p),
                              hint="every line needs the same number of fields as the header.")

    rows = 1
    try:
        reader = pcsv.open_csv(
            source, parse_options=pcsv.ParseOptions(delimiter=sep),
            read_options=pcsv.ReadOptions(block_size=64 << 20),
            convert_options=pcsv.ConvertOptions(include_columns=columns,
                                                column_types={c: pa.string() for c in columns},
                                                strings_can_be_null=True, quoted_strings_can_be_null=True))
    except pa.ArrowInvalid as e:  # the first block is parsed on opening
        raise parse_error(e, rows) from None
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            break
        except pa.ArrowInvalid as e:
            raise parse_error(e, rows) from None
        rows += batch.num_rows
        yield batch


# ----------------------------------------------------------------- encoding
def _encode(arr: Any) -> tuple[np.ndarray, np.ndarray]:
    """One column of a batch -> (int64 codes, -1 for null; numpy uniques)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    if (pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type)) and arr.null_count == 0:
        codes, uniq = pd.factorize(arr.to_numpy(zero_copy_only=False))
        return np.asarray(codes, dtype=np.int64), np.asarray(uniq)
    d = arr if pa.types.is_dictionary(arr.type) else pc.dictionary_encode(arr)
    codes = d.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return codes, d.dictionary.to_numpy(zero_copy_only=False)


def partition_of(uniq: np.ndarray, world: int) -> np.ndarray:
    """Rank owning each item id: ``id mod world`` for integer ids (also integer text), else a stable hash.

    Computed on the id as cleaned by the reader (stripped; ``"7"``, ``7`` and ``7.0`` are one id),
    so all answers of an item land on one rank whatever batch or file they come from.
    """
    if world == 1:
        return np.zeros(len(uniq), dtype=np.int64)
    out = np.zeros(len(uniq), dtype=np.int64)
    if np.issubdtype(uniq.dtype, np.integer):
        return np.mod(uniq.astype(np.int64), world)
    if np.issubdtype(uniq.dtype, np.floating):
        f = uniq.astype(np.float64)
        integral = np.isfinite(f) & (np.mod(f, 1) == 0) & (np.abs(f) < 2 ** 53)
        out[integral] = np.mod(f[integral].astype(np.int64), world)
        if (~integral).any():
            out[~integral] = _hash_text(pd.Series(f[~integral]).astype(str), world)
        return out
    s = pd.Series(uniq, dtype=object).map(lambda v: None if v is None else str(v).strip())
    s = s.astype("string")
    is_int = s.str.fullmatch(_CANON_INT).fillna(False).to_numpy(dtype=bool)
    if is_int.any():
        out[is_int] = np.mod(s[is_int].astype("int64").to_numpy(), world)
    rest = ~is_int
    if rest.any():
        out[rest] = _hash_text(s[rest].fillna(""), world)
    return out


def _hash_text(values: pd.Series, world: int) -> np.ndarray:
    h = pd.util.hash_array(np.asarray(values.astype(str), dtype=object))  # fixed key: same on every host
    return (h % np.uint64(world)).astype(np.int64)


class _Column:
    """Per-batch codes and uniques of one column, made global at the end.

    Codes go into one int32 buffer (sized from the file's row count when known, else grown), so the
    reader holds 4 bytes per row and column and no list of per-batch arrays.
    """

    def __init__(self, capacity: int = 0) -> None:
        self.buf = np.empty(max(capacity, 1 << 16), dtype=np.int32)
        self.n = 0
        self.uniques: list[np.ndarray] = []
        self.offset = 0

    def add(self, codes: np.ndarray, uniq: np.ndarray) -> None:
        m = codes.size
        if self.n + m > self.buf.size:
            grown = np.empty(max(2 * self.buf.size, self.n + m), dtype=np.int32)
            grown[:self.n] = self.buf[:self.n]
            self.buf = grown
        out = self.buf[self.n:self.n + m]
        np.add(codes, self.offset, out=out, casting="unsafe")
        out[codes < 0] = -1
        self.n += m
        self.uniques.append(uniq)
        self.offset += len(uniq)

    def raw_uniques(self) -> tuple[np.ndarray, np.ndarray]:
        """(global raw uniques, map from batch-unique position to raw code)."""
        if not self.uniques:
            return np.array([], dtype=object), np.zeros(0, dtype=np.int64)
        try:
            allu = np.concatenate(self.uniques)
        except (TypeError, ValueError):
            allu = np.concatenate([u.astype(object) for u in self.uniques])
        self.uniques = []
        if allu.dtype.kind in "US":
            allu = allu.astype(object)
        g, gu = pd.factorize(allu)
        return np.asarray(gu), np.asarray(g, dtype=np.int64)

    def take_codes(self, mapping: np.ndarray) -> np.ndarray:
        """Map every row's batch-unique position through ``mapping`` (-1 stays -1), in place, block by block."""
        codes = self.buf[:self.n] if self.n == self.buf.size else self.buf[:self.n].copy()
        self.buf = np.empty(0, dtype=np.int32)
        m = np.append(mapping, -1).astype(np.int32)  # position -1 -> the appended -1
        step = 1 << 22
        for a in range(0, codes.size, step):
            codes[a:a + step] = m[codes[a:a + step]]
        return codes


def _return_freed_memory_to_the_os() -> None:
    """glibc keeps freed large blocks for reuse once its mmap threshold has grown; pin the threshold so
    that the reader's per-batch temporaries go back to the system (Linux/glibc only; no-op elsewhere)."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD = 1 MiB
    except (OSError, AttributeError):
        pass


def _clean_map(raw: np.ndarray, cleaner: Callable[[pd.Index], pd.Series]) -> tuple[np.ndarray, pd.Index]:
    """raw uniques -> (code of each raw unique after cleaning (-1 = missing), cleaned uniques)."""
    cleaned = cleaner(pd.Index(raw)) if len(raw) else pd.Series([], dtype=object)
    c, u = pd.factorize(cleaned, use_na_sentinel=True)
    return np.asarray(c, dtype=np.int64), pd.Index(u)


# -------------------------------------------------------------------- reader
def read_answers_chunked(path: str | Path, *, item: Any = None, worker: Any = None, label: Any = None,
                         options: ReadOptions | dict | None = None,
                         gold: Any = None, allow_unknown_items: bool = False,
                         batch_rows: int = DEFAULT_BATCH_ROWS, rank: int = 0, world: int = 1,
                         allgather: AllGather | None = None, exchange: Any = None) -> CompactAnswers:
    """Read a long answers table in batches into :class:`CompactAnswers`.

    Parameters
    ----------
    path : CSV/TSV file (``.gz``/``.bz2`` allowed), Parquet file, or folder of Parquet files
    item, worker, label : column names (default: detected by name, as :func:`read_answers` does)
    options : :class:`ReadOptions` (format must be auto or long); item/worker/label override its columns
    gold : gold labels (a path read with :func:`read_gold`, or a Series item id -> label), optional
    batch_rows : rows per batch
    rank, world, allgather : this process's share (see the module docstring); ``allgather(obj)``
        returns the list of every rank's ``obj`` (default: one process)
    exchange : with ``world > 1``, ``Communicator.exchange``: each rank reads only its share of the input
        (:mod:`.shares`) and sends every answer to the rank owning its item; without it every rank
        scans the whole input and keeps its items' answers

    Raises
    ------
    CrowdDataError
        Unreadable file, missing or ambiguous columns, no usable answers, one class only.
    """
    allgather = allgather or _single
    o = resolve(options, item=item, worker=worker, label=label)
    if o.format not in ("auto", "long"):
        raise CrowdDataError(f"the chunked reader reads a long table (one row per answer), not format {o.format!r}.",
                             hint=f"drop {opt('format')}, or convert the file to a long CSV/Parquet table.",
                             option="format")
    p = Path(path)
    kind = source_kind(p)
    names, sep = _columns_of(p, kind)
    roles = detect_roles(names, item=o.item, worker=o.worker, label=o.label, path=str(p), call="read_answers")
    cols = [roles["item"], roles["worker"], roles["label"]]
    rep = ReadReport(source=str(p), format="long", columns={k: str(v) for k, v in roles.items()},
                     delimiter=sep)
    routed = world > 1 and exchange is not None
    rep.notes.append("read in chunks (compact arrays)" + (f"; rank {rank} of {world} keeps its items' answers"
                                                         if world > 1 else ""))
    _return_freed_memory_to_the_os()
    capacity = _row_count(p, kind) if world == 1 else 0
    ci, cw, cl = _Column(capacity), _Column(capacity), _Column(capacity)
    rows_read = 0
    import pyarrow as pa
    pool = pa.default_memory_pool()
    batches: Iterator[tuple[int, Any]]
    counts: dict[str, int] = {}
    source: list[np.ndarray] = []  # routed: source rank of each kept row (input order = source order)
    if routed:
        from .shares import routed_batches

        def owner_of(b: Any) -> np.ndarray:
            codes, uniq = _encode(b.column(0))
            cleaned = clean_ids(pd.Index(uniq), o.id_transform).to_numpy()
            return np.append(partition_of(cleaned, world), 0)[codes]  # null items: counted on rank 0

        batches = routed_batches(iter_batches(p, cols, batch_rows=batch_rows, kind=kind, delimiter=sep,
                                              share=(rank, world)), owner_of, rank, world, exchange, counts)
    else:
        batches = ((rank, b) for b in iter_batches(p, cols, batch_rows=batch_rows, kind=kind, delimiter=sep))
    for k, (src, batch) in enumerate(batches):
        rows_read += batch.num_rows
        if k % 4 == 3:
            pool.release_unused()  # mimalloc/jemalloc keep freed batches resident otherwise
        codes, uniq = _encode(batch.column(0))
        if routed:
            source.append(np.full(batch.num_rows, src, dtype=np.int16))
        elif world > 1:
            cleaned = clean_ids(pd.Index(uniq), o.id_transform).to_numpy()
            owner = np.append(partition_of(cleaned, world), 0)  # null items: counted on rank 0
            mine = owner[codes] == rank
            if not mine.all():
                import pyarrow as pa
                batch = batch.filter(pa.array(mine))
                codes, uniq = _encode(batch.column(0))
        ci.add(codes, uniq)
        cw.add(*_encode(batch.column(1)))
        cl.add(*_encode(batch.column(2)))
    if routed:
        rows_read = counts.get("rows_read", 0)
        rep.notes.append(f"rank {rank} of {world} read {rows_read} rows (its share of the input) and kept "
                         f"{counts.get('rows_kept', 0)} rows of its items from all ranks")
    rep.rows_read = rows_read
    batch = None
    pool.release_unused()

    # items: local; make the int-vs-text decision the same on every rank
    i_raw, i_pos = ci.raw_uniques()
    i_map, item_u = _clean_map(i_raw, lambda u: clean_ids(u, o.id_transform, rep.notes, "item ids"))
    kinds = allgather(_id_kind(item_u))
    if len(set(k for k in kinds if k != "empty")) > 1 and _id_kind(item_u) == "int":
        item_u = pd.Index([str(v) for v in item_u], dtype=object)
    item = ci.take_codes(i_map[i_pos])
    # workers and labels: global (gather every rank's raw uniques, clean them together)
    w_steps = ("strip",) if "strip" in o.id_transform else ()
    worker, worker_u = _global_codes(cw, lambda u: clean_ids(u, w_steps, rep.notes, "worker ids"), allgather, rank)
    label, label_u = _global_codes(cl, lambda u: clean_labels(u, o, rep.notes, str(p)), allgather, rank)

    miss_i = item < 0
    miss_w = (worker < 0) & ~miss_i
    miss_l = (label < 0) & ~miss_i & ~miss_w
    rep.skip(f"no item id (column {roles['item']!r} empty)", int(miss_i.sum()))
    rep.skip(f"no worker id (column {roles['worker']!r} empty)", int(miss_w.sum()))
    rep.skip(f"no label (column {roles['label']!r} empty)", int(miss_l.sum()))
    rep.missing_labels += int(miss_l.sum())
    bad = miss_i | miss_w | miss_l
    del miss_i, miss_w, miss_l
    src = np.concatenate(source) if source else None
    source.clear()
    if bad.any():
        keep = ~bad
        item, worker, label = item[keep], worker[keep], label[keep]
        src = src[keep] if src is not None else None
        del keep
    del bad
    if src is not None and src.size > 1 and not bool(np.all(src[1:] >= src[:-1])):
        order = np.argsort(src, kind="stable")  # routed rows back in input order (shares follow it)
        item, worker, label = item[order], worker[order], label[order]
        del order
    del src

    # classes: labels used anywhere, sorted as read_answers sorts them
    used_here = np.zeros(len(label_u), dtype=bool)
    used_here[np.unique(label)] = True
    used = np.logical_or.reduce(allgather(used_here)) if len(label_u) else used_here
    classes = _classes(label_u[used], o, roles["label"], str(p))
    total = int(sum(allgather(int(item.size))))
    if total == 0:
        raise CrowdDataError(
            "no usable answers: every row lacks an item, a worker or a label"
            f" (columns used: item={roles['item']!r}, worker={roles['worker']!r}, label={roles['label']!r}).",
            path=str(p), hint="check that these are the right columns and that they are filled in; name them "
                              "with --item, --worker, --label if not.")
    if len(classes) < 2:
        raise CrowdDataError(
            f"every answer has the same label ({classes[0]!r} in column {roles['label']!r}): with one class there "
            "is nothing to infer.", path=str(p), column=roles["label"],
            hint="check that this is the label column (name it with --label) and that the file holds all answers.")
    lab_map = np.full(len(label_u) + 1, -1, dtype=np.int32)
    lab_map[np.flatnonzero(used)] = classes.get_indexer(label_u[used])
    ldt = np.int16 if len(classes) <= np.iinfo(np.int16).max else np.int32
    label = lab_map[label].astype(ldt)
    del lab_map

    item, worker, label, n_dup = _sort_and_dedup(item, worker, label, len(item_u), len(worker_u), o.duplicates)
    if n_dup and o.duplicates == "all":
        rep.notes.append(f"{n_dup} repeated (item, worker) answers all count (duplicates='all')")
    elif n_dup:
        rep.duplicates += n_dup
        rep.notes.append(f"{n_dup} repeated (item, worker) answers dropped, the {o.duplicates} one of each kept "
                         f"(duplicates={o.duplicates!r})")
    # items / workers left without answers (all their rows skipped): renumber
    item, item_ids = _compact_codes(item, item_u)
    w_here = np.zeros(len(worker_u), dtype=bool)
    w_here[np.unique(worker)] = True
    w_used = np.logical_or.reduce(allgather(w_here)) if len(worker_u) else w_here
    worker, worker_ids = _compact_codes(worker, worker_u, used=w_used)
    rep.answers = int(item.size)
    data = CompactAnswers(item=item, worker=worker, label=label, item_ids=to_plain_index(item_ids),
                          worker_ids=to_plain_index(worker_ids), classes=classes, report=[rep],
                          total_answers=int(sum(allgather(int(item.size)))), rank=rank, world=world)
    if gold is not None:
        data = attach_gold(data, gold, allow_unknown_items=allow_unknown_items, allgather=allgather, options=o)
    return data


def _row_count(p: Path, kind: str) -> int:
    if kind != "parquet":
        return 0
    try:
        import pyarrow.dataset as pds
        return int(_dataset(p, pds).count_rows())
    except Exception:  # noqa: BLE001 - only a size hint
        return 0


def _id_kind(ids: pd.Index) -> str:
    if len(ids) == 0:
        return "empty"
    if pd.api.types.is_integer_dtype(ids.dtype):
        return "int"
    return "float" if pd.api.types.is_float_dtype(ids.dtype) else "text"


def _global_codes(col: _Column, cleaner, allgather: AllGather, rank: int) -> tuple[np.ndarray, pd.Index]:
    raw, pos = col.raw_uniques()
    parts = allgather(raw)
    if len(parts) > 1:
        try:
            allraw = np.concatenate(parts)
        except (TypeError, ValueError):
            allraw = np.concatenate([np.asarray(x, dtype=object) for x in parts])
        if allraw.dtype.kind in "US":
            allraw = allraw.astype(object)
        g, graw = pd.factorize(allraw)
        start = sum(len(x) for x in parts[:rank])
        local_to_global_raw = np.asarray(g[start:start + len(raw)], dtype=np.int64)
        c, u = _clean_map(np.asarray(graw), cleaner)
        mapping = c[local_to_global_raw][pos] if len(pos) else np.zeros(0, dtype=np.int64)
    else:
        c, u = _clean_map(raw, cleaner)
        mapping = c[pos] if len(pos) else np.zeros(0, dtype=np.int64)
    return col.take_codes(mapping), u


def _compact_codes(codes: np.ndarray, uniq: pd.Index, used: np.ndarray | None = None) -> tuple[np.ndarray, pd.Index]:
    if used is None:
        used = np.bincount(codes, minlength=len(uniq)) > 0 if codes.size else np.zeros(len(uniq), dtype=bool)
    if used.all():
        return codes, uniq
    new = np.cumsum(used, dtype=np.int64) - 1
    return new.astype(np.int32)[codes], uniq[used]


def _classes(used_labels: pd.Index, o: ReadOptions, label_col: Any, path: str) -> pd.Index:
    """The class list as :func:`read_answers` makes it: declared classes, label-map order, or sorted."""
    lab_used = pd.Index(used_labels)
    classes = list(o.classes) if o.classes is not None else None
    if classes is None and o.label_map:
        order = list(dict.fromkeys(o.label_map.values()))
        classes = [c for c in order if c in set(lab_used)]
    if classes is None:
        return to_plain_index(_sorted_unique(pd.Series(np.asarray(lab_used, dtype=object))))
    cls_index = to_plain_index(pd.Index(clean_labels(pd.Index(list(classes), dtype=object),
                                                     o.replace(label_map=None)).dropna().tolist()))
    if cls_index.has_duplicates:
        raise CrowdDataError(f"classes= repeats a class: {list(cls_index[cls_index.duplicated()])}.",
                             hint="list each class once.", option="classes")
    bad = cls_index.get_indexer(lab_used) < 0
    if bad.any():
        raise CrowdDataError(
            f"labels {list(lab_used[bad][:5])} in column {label_col!r} are not among the declared classes "
            f"{list(cls_index)}.", path=path,
            hint=f"declare every class in {opt('classes')}, or leave it unset to take them from the answers.")
    return cls_index


def _sort_and_dedup(item: np.ndarray, worker: np.ndarray, label: np.ndarray, n_items: int, n_workers: int,
                    policy: str = "all", block: int = 1 << 22) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Sort answers by item (stable), count repeats of an (item, worker) pair and, unless ``policy`` is
    ``"all"``, keep the last / first of each; block by block (a few items' answers at a time)."""
    if item.size > 1 and not bool(np.all(item[1:] >= item[:-1])):
        import torch
        order = torch.argsort(torch.from_numpy(item), stable=True).numpy()
        item, worker, label = item[order], worker[order], label[order]
        del order
    n = item.size
    keep = None
    start = 0
    n_rep = 0
    R = np.int64(max(n_workers, 1))
    while start < n:
        end = min(n, start + block)
        if end < n:
            end = int(np.searchsorted(item, item[end - 1], side="right"))
        key = (item[start:end].astype(np.int64) - int(item[start])) * R + worker[start:end]
        order = np.argsort(key, kind="stable")
        ks = key[order]
        same = ks[:-1] == ks[1:]
        earlier = order[:-1][same] if policy != "first" else order[1:][same]
        n_rep += int(same.sum())
        if earlier.size and policy != "all":
            if keep is None:
                keep = np.ones(n, dtype=bool)
            keep[start + earlier] = False
        start = end
    if keep is None:
        return item, worker, label, n_rep
    return item[keep], worker[keep], label[keep], n_rep


def attach_gold(data: CompactAnswers, gold: Any, *, allow_unknown_items: bool = False,
                allgather: AllGather | None = None, options: ReadOptions | None = None) -> CompactAnswers:
    """Gold labels (a path or a Series item id -> label) as int32 codes per item of this shard.

    Gold for items no rank holds is an error (or ignored with ``allow_unknown_items``); a gold label
    no worker gave adds a class, on every rank alike.
    """
    allgather = allgather or _single
    if isinstance(gold, pd.Series):
        g, source = gold, None
    else:
        from .gold import read_gold
        g, source = read_gold(gold, options=options), str(gold)
    g = g.dropna()
    vals = _normalise_labels(pd.Series(g.to_numpy(), dtype=object))
    pos = data.item_ids.get_indexer(_coerce_like(g.index, data.item_ids))
    here = pos >= 0
    known = np.logical_or.reduce(allgather(here)) if len(here) else here
    if (~known).any() and not allow_unknown_items:
        ex = list(g.index[~known][:5])
        raise CrowdDataError(f"gold labels for {int((~known).sum())} items that have no answers, e.g. {ex}.",
                             path=source, hint="check that gold item ids match the answers' item ids.")
    classes = data.classes
    kv = vals[known]
    new = pd.unique(kv[~kv.isin(classes)])
    if len(new):
        classes = classes.append(pd.Index(list(new)))
        data.report.append(ReadReport(source=source or "<gold>", format="gold",
                                      notes=[f"gold adds classes no worker used: {list(new)}"]))
    codes = np.full(data.n_items, -1, dtype=np.int32)
    codes[pos[here]] = classes.get_indexer(vals[here])
    data.gold = codes
    data.classes = classes
    return data


# -------------------------------------------------------------------- writer
def write_posteriors(path: str | Path, item_ids: pd.Index, classes: pd.Index, proba: np.ndarray, *,
                     rows_per_chunk: int = 1 << 20, header: bool = True, guard: bool = True) -> Path:
    """Write the aggregate table (item, label, confidence, prob_<class>...) chunk by chunk.

    Parquet (``.parquet``/``.pq``) or CSV/TSV by extension; written to a temporary file and renamed
    into place.  Memory: one chunk of ``rows_per_chunk`` rows at a time.  CSV cells that would start
    a spreadsheet formula get a leading ``'`` unless ``guard=False`` (see :mod:`.csv_guard`).
    """
    import os
    import tempfile

    p = Path(path)
    ext = p.suffix.lower()
    if ext not in _PARQUET_EXTS and ext not in (".csv", ".tsv", ".tab", ".txt"):
        raise CrowdDataError(f"cannot tell the output format from the extension {p.suffix!r}.", path=str(p),
                             hint="name the output .parquet or .csv (or .tsv).")
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.close(fd)
    names = [f"prob_{c}" for c in classes]
    cls_arr = np.asarray(classes, dtype=object)
    cls_text = None
    try:
        writer = None
        for r0 in range(0, max(len(item_ids), 1), rows_per_chunk):
            q = np.asarray(proba[r0:r0 + rows_per_chunk])
            lab = q.argmax(axis=1) if len(q) else np.zeros(0, dtype=np.int64)
            conf = q.max(axis=1).astype(np.float64) if len(q) else np.zeros(0)
            ids = item_ids[r0:r0 + rows_per_chunk]
            if ext in _PARQUET_EXTS:
                import pyarrow as pa
                import pyarrow.parquet as pq
                if cls_text is None:  # labels as text unless every class is an int (as write_table writes them)
                    ints = all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in cls_arr)
                    cls_text = pa.array(np.asarray(cls_arr, dtype=np.int64) if ints else [str(c) for c in cls_arr])
                cols = {"item": pa.array(np.asarray(ids) if ids.dtype != object else [str(v) for v in ids]),
                        "label": cls_text.take(pa.array(lab)), "confidence": pa.array(conf)}
                q_cols = np.empty((q.shape[1], len(q)), dtype=np.float64)
                q_cols[:] = q.T   # one pass: every class's column contiguous
                for k, nm in enumerate(names):
                    cols[str(nm)] = pa.array(q_cols[k])
                table = pa.table(cols)
                if writer is None:  # dictionary encoding only for the label: on ids and floats it is wasted work
                    writer = pq.ParquetWriter(tmp, table.schema, use_dictionary=["label"])
                writer.write_table(table)
            else:
                df = pd.DataFrame({"item": ids, "label": cls_arr[lab], "confidence": conf})
                df = pd.concat([df, pd.DataFrame(q.astype(np.float64, copy=False), columns=names)], axis=1)
                sep = "," if ext == ".csv" else "\t"
                if guard:
                    from .csv_guard import guard_frame
                    df = guard_frame(df, index=False)
                df.to_csv(tmp, mode="w" if r0 == 0 else "a", header=header and r0 == 0, index=False, sep=sep,
                          lineterminator="\n")
        if writer is not None:
            writer.close()
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return p


def merge_parts(parts: list[Path], out: str | Path) -> Path:
    """Concatenate per-rank result files (same columns) into ``out``, streaming."""
    import os
    import tempfile

    p = Path(out)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.close(fd)
    try:
        if p.suffix.lower() in _PARQUET_EXTS:
            import pyarrow.parquet as pq
            writer = None
            for part in parts:
                f = pq.ParquetFile(str(part))
                if f.metadata.num_rows == 0:
                    continue
                for b in f.iter_batches(batch_size=1 << 20):
                    if writer is None:
                        writer = pq.ParquetWriter(tmp, b.schema)
                    writer.write_batch(b)
            if writer is not None:
                writer.close()
        else:
            with open(tmp, "wb") as fo:
                for k, part in enumerate(parts):
                    with open(part, "rb") as fi:
                        first = fi.readline()
                        if k == 0:
                            fo.write(first)
                        while chunk := fi.read(1 << 24):
                            fo.write(chunk)
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return p
