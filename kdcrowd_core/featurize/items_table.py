"""Reading an items table: one row per item with an id column and a content column (a text or an image path).

Formats by extension: CSV, TSV (``.tsv``/``.tab``), ``.txt`` (delimiter sniffed), Parquet, JSON Lines
(``.jsonl``/``.ndjson``/``.json``), each optionally ``.gz``.  An answers file with a text column is an
items table too: its repeated rows (same item, same text) collapse into one, and the report says so.
"""
from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import CrowdDataError
from .common import FeaturizeReport, flag

MAX_TABLE_BYTES = 1 << 30

_ITEM_NAMES = ["item", "item_id", "itemid", "id", "task", "task_id", "taskid", "doc_id", "document_id", "sample",
               "sample_id", "object", "instance", "key", "uid", "name", "filename", "file", "image", "url"]
_TEXT_NAMES = ["text", "texts", "sentence", "content", "body", "review", "comment", "document", "doc", "tweet",
               "utterance", "message", "passage", "title", "question", "prompt", "description", "abstract"]
_PATH_NAMES = ["path", "image_path", "image", "img", "file", "filename", "file_name", "filepath", "file_path",
               "picture", "photo", "image_file", "url", "image_url"]


def _norm(name: Any) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(name).strip().lower()).strip("_")


@dataclass
class ItemsTable:
    """``ids`` and ``values`` (texts or paths) of the rows kept, ``where`` (``line N``) for each, and the report."""

    ids: list[str]
    values: list[str]
    where: list[str]
    report: FeaturizeReport


def _suffixes(name: str) -> list[str]:
    s = [x.lower() for x in Path(name).suffixes]
    if s and s[-1] in (".gz", ".gzip"):
        s = s[:-1]
    return s


def _read_frame(source: Any, name: str) -> tuple[pd.DataFrame, int]:
    """The table as strings, and the line number of its first data row (for messages)."""
    if isinstance(source, pd.DataFrame):
        return source.astype(object), 1
    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if not p.exists():
            raise CrowdDataError("file not found.", path=name, hint="check the path.")
        if p.is_dir():
            raise CrowdDataError("is a folder, not an items table.", path=name,
                                 hint="give a CSV/TSV/Parquet/JSONL file with an item column and a text column.")
        if p.stat().st_size > MAX_TABLE_BYTES:
            raise CrowdDataError(f"the file is larger than {MAX_TABLE_BYTES >> 20} MiB.", path=name,
                                 hint="split it into smaller tables.")
        data = p.read_bytes()
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        data = source.read()
    else:
        raise CrowdDataError(f"cannot read an items table from a {type(source).__name__}.",
                             hint="give a path, bytes or a DataFrame.")
    if data[:2] == b"\x1f\x8b":
        import gzip
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise CrowdDataError(f"the gzip data is corrupt ({e}).", path=name, hint="re-export the file.") from None
    if not data.strip():
        raise CrowdDataError("the file is empty.", path=name, hint="give a table with an item column and a text column.")
    suf = _suffixes(name)
    ext = suf[-1] if suf else ""
    try:
        if ext in (".parquet", ".pq") or data[:4] == b"PAR1":
            return pd.read_parquet(io.BytesIO(data)).astype(object), 1
        if ext in (".jsonl", ".ndjson", ".json") or data.lstrip()[:1] == b"{":
            text = data.decode("utf-8-sig")
            if text.lstrip().startswith("["):
                return pd.read_json(io.StringIO(text), dtype=False).astype(object), 1
            return pd.read_json(io.StringIO(text), lines=True, dtype=False).astype(object), 1
        text = data.decode("utf-8-sig") if _is_utf8(data) else data.decode("latin-1")
        if ext in (".tsv", ".tab"):
            sep = "\t"
        elif ext == ".csv":
            sep = ","
        else:
            try:
                sep = csv.Sniffer().sniff(text[:20000], delimiters=",\t;|").delimiter
            except csv.Error:
                sep = ","
        df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, na_values=[],
                         skipinitialspace=False)
        return df.astype(object), 2
    except CrowdDataError:
        raise
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError, OSError) as e:
        msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise CrowdDataError(f"cannot read the items table ({msg}).", path=name,
                             hint="give CSV, TSV, Parquet or JSON Lines with a header row.") from None


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _pick(df: pd.DataFrame, explicit: Any, names: list[str], exclude: set, name: str, what: str,
          flag: str) -> Any:
    cols = list(df.columns)
    if explicit is not None:
        if explicit in cols:
            return explicit
        if isinstance(explicit, int) and 0 <= explicit < len(cols):
            return cols[explicit]
        for c in cols:
            if _norm(c) == _norm(explicit):
                return c
        raise CrowdDataError(f"there is no column {explicit!r} (columns: {', '.join(map(str, cols))}).", path=name,
                             column=explicit, hint=f"name one of those columns with {flag}.")
    by_norm = {_norm(c): c for c in cols if c not in exclude}
    for n in names:
        if n in by_norm:
            return by_norm[n]
    return None


def read_items_table(source: Any, *, item: Any = None, column: Any = None, kind: str = "texts",
                     name: str | None = None, on_duplicate: str = "error",
                     flags: dict[str, str] | None = None) -> ItemsTable:
    """Read ``(item id, text)`` or ``(item id, image path)`` pairs from a table.

    Parameters
    ----------
    source : path, bytes, file object or DataFrame
    item, column : column names (or 0-based positions); default: detected by name
        (``item``/``id``/``task``... and ``text``/``sentence``/``review``... or
        ``path``/``image``/``file``...), else the first column and the longest text column.
        A table with more than two columns and no id-like column (an answers file
        ``text, annotator, sentiment``), or ``item`` equal to ``column``: the text is the item id.
    kind : "texts" or "images" (the content column holds texts or image paths).
    on_duplicate : "error" (default) or "first": what to do with an item id that appears
        on several rows with *different* contents.  Rows repeating the same item with the
        same content (an answers file with a text column) always collapse into one, counted
        in the report.
    flags : how the caller's interface names the options in messages (keys "item", "column",
        "keep_first"), e.g. ``{"item": "--item", "column": "--text-column"}`` in the CLI.
    """
    if name is None:
        name = str(source) if isinstance(source, (str, os.PathLike)) else getattr(source, "name", None) or "<items>"
    name = str(name)
    item_flag, column_flag = flag(flags, "item"), flag(flags, "column")
    df, first_line = _read_frame(source, name)
    what = "text" if kind == "texts" else "image path"
    report = FeaturizeReport(source=name, kind=kind, items_read=len(df))
    if df.shape[1] < 2 and (item is None or column is None):
        raise CrowdDataError(f"the table has {df.shape[1]} column(s); an item column and a {what} column are needed.",
                             path=name, hint=f"add an item-id column and a {what} column with a header row.")
    df.columns = [str(c) for c in df.columns]
    content_names = _TEXT_NAMES if kind == "texts" else _PATH_NAMES
    col_c = _pick(df, column, content_names, set(), name, what, column_flag)
    col_i = _pick(df, item, _ITEM_NAMES, {col_c} if col_c is not None else set(), name, "item", item_flag)
    if col_i is None and col_c is not None and df.shape[1] > 2:
        # no id column (e.g. an answers file ``text, annotator, sentiment``): each text is its own item id,
        # as when the answers are read with the text column as the item column
        col_i = col_c
        report.notes.append(f"no item-id column: each {what} is its own item id (name an id column with "
                            f"{item_flag})")
    if col_i is None:
        col_i = next(c for c in df.columns if c != col_c)
    if col_c is None:
        rest = [c for c in df.columns if c != col_i]
        if kind == "texts":
            lengths = {c: df[c].map(lambda v: len(str(v)) if isinstance(v, str) else 0).mean() for c in rest}
            col_c = max(rest, key=lambda c: lengths[c])
        else:
            col_c = rest[0]
        report.notes.append(f"no column named like a {what}; used {col_c!r} (name it with {column_flag})")
    report.columns = {"item": col_i, kind[:-1] if kind.endswith("s") else kind: col_c}
    same = col_i == col_c  # the text (or path) is the item id
    label = "row" if first_line == 1 else "line"

    ids, values, where = [], [], []
    missing_id, empty = [], []
    for pos, (raw_id, raw_v) in enumerate(zip(df[col_i].tolist(), df[col_c].tolist())):
        w = f"{label} {pos + first_line}"
        sid = _as_str(raw_v if same else raw_id)
        if sid is None:
            missing_id.append(w)
            continue
        v = _as_str(raw_v, strip=False)
        if v is None or not v.strip():
            empty.append(f"{w} (item {sid!r})")
            continue
        ids.append(sid)
        values.append(v if kind == "texts" else v.strip())
        where.append(w)
    report.skip("rows without an item id", len(missing_id), missing_id)
    report.skip(f"missing or empty {what}s", len(empty), empty)
    ids, values, where = _resolve_duplicates(ids, values, where, report, name, what, on_duplicate, flags)
    if not ids:
        raise CrowdDataError(f"no row has both an item id and a non-empty {what} "
                             f"(columns used: item={col_i!r}, {what}={col_c!r}; {report.n_skipped} rows skipped).",
                             path=name, hint=f"choose the columns with {item_flag} and {column_flag}.")
    return ItemsTable(ids, values, where, report)


def _as_str(v: Any, strip: bool = True) -> str | None:
    if v is None:
        return None
    if isinstance(v, float):
        if v != v:  # NaN
            return None
        if v.is_integer():
            v = int(v)
    s = str(v)
    if strip:
        s = s.strip()
        return s or None
    return s


def _resolve_duplicates(ids, values, where, report, name, what, on_duplicate, flags):
    first: dict[str, int] = {}
    keep = []
    same, conflicts = [], []
    for k, sid in enumerate(ids):
        j = first.get(sid)
        if j is None:
            first[sid] = k
            keep.append(k)
        elif values[j] == values[k]:
            same.append(where[k])
        else:
            conflicts.append((sid, where[j], where[k]))
    if same:
        report.notes.append(f"{len(same)} rows repeat an item with the same {what} (as in an answers file with a "
                            f"{what} column): each item embedded once")
    if conflicts:
        if on_duplicate != "first":
            sid, a, b = conflicts[0]
            raise CrowdDataError(
                f"{len(conflicts)} rows repeat an item id with a different {what}: e.g. item {sid!r} on {a} and {b}.",
                path=name, hint=f"keep one row per item, choose another id column with {flag(flags, 'item')}, or "
                                f"keep the first row of each item ({flag(flags, 'keep_first')}).")
        report.skip(f"rows repeating an item id with a different {what} (kept the first)", len(conflicts),
                    [f"{b}: item {sid!r} (first on {a})" for sid, a, b in conflicts])
    return [ids[k] for k in keep], [values[k] for k in keep], [where[k] for k in keep]
