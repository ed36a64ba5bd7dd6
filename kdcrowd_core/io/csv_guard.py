"""CSV formula guard: exported cells never start a spreadsheet formula.

A cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
is run as a formula by Excel, LibreOffice and Google Sheets (OWASP "CSV
injection").  Every CSV/TSV the CLI writes and every CSV the dashboard offers
for download goes through :func:`guard_frame`: such a text cell gets a leading
``'`` (shown as text by spreadsheets), while numbers stay numbers — numeric
columns are untouched and a text cell that is a plain number (``-2``,
``+1.5e3``) is left as it is.  Column names and a written index are guarded the
same way.  Turn it off with ``guard=False`` (CLI ``--no-csv-guard``) when the
file feeds a program rather than a spreadsheet.
"""
from __future__ import annotations

import csv
import re
from typing import Any

import numpy as np
import pandas as pd

#: first characters that make a spreadsheet cell a formula (OWASP)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def is_dangerous(value: Any) -> bool:
    """True for text that a spreadsheet would run as a formula (plain numbers are safe)."""
    return isinstance(value, str) and value.startswith(FORMULA_START) and not _NUMBER.fullmatch(value)


def guard_value(value: Any) -> Any:
    return "'" + value if is_dangerous(value) else value


def _guard_index(idx: pd.Index) -> pd.Index:
    if isinstance(idx, pd.MultiIndex):
        return pd.MultiIndex.from_arrays([_guard_index(idx.get_level_values(k)) for k in range(idx.nlevels)],
                                         names=[guard_value(n) for n in idx.names])
    if pd.api.types.is_numeric_dtype(idx.dtype) or pd.api.types.is_bool_dtype(idx.dtype):
        return idx.rename(guard_value(idx.name))
    return pd.Index([guard_value(v) for v in idx], dtype=object, name=guard_value(idx.name))


def _guard_column(col: pd.Series) -> pd.Series:
    dt = col.dtype
    if pd.api.types.is_numeric_dtype(dt) or pd.api.types.is_bool_dtype(dt) or \
            pd.api.types.is_datetime64_any_dtype(dt) or pd.api.types.is_timedelta64_dtype(dt):
        return col
    vals = col.to_numpy(dtype=object)
    starts = np.fromiter((isinstance(v, str) and v[:1] in FORMULA_START for v in vals), dtype=bool, count=len(vals))
    if not starts.any():
        return col
    out = vals.copy()
    for k in np.flatnonzero(starts):
        out[k] = guard_value(out[k])
    return pd.Series(out, index=col.index, name=col.name, dtype=object)


def guard_frame(df: pd.DataFrame, *, index: bool = True) -> pd.DataFrame:
    """A copy of ``df`` whose text cells, column names (and index) cannot start a formula."""
    out = df.copy()
    for k in range(out.shape[1]):
        col = out.iloc[:, k]
        g = _guard_column(col)
        if g is not col:
            out.isetitem(k, g)
    out.columns = _guard_index(out.columns)
    if index:
        out.index = _guard_index(out.index)
    return out


def csv_bytes(df: pd.DataFrame, *, guard: bool = True, index: bool = False, sep: str = ",") -> bytes:
    """``df`` as UTF-8 CSV bytes (for downloads), guarded unless ``guard=False``."""
    frame = guard_frame(df, index=index) if guard else df
    kw: dict[str, Any] = {}
    if _has_carriage_return(frame):  # pandas leaves a field with a bare CR unquoted: quote text fields then
        kw["quoting"] = csv.QUOTE_NONNUMERIC
    return frame.to_csv(index=index, sep=sep, lineterminator="\n", **kw).encode("utf-8")


def _has_carriage_return(df: pd.DataFrame) -> bool:
    for k in range(df.shape[1]):
        col = df.iloc[:, k]
        if col.dtype == object or pd.api.types.is_string_dtype(col.dtype):
            if col.map(lambda v: isinstance(v, str) and "\r" in v).any():
                return True
    return False


def write_csv(df: pd.DataFrame, path: Any, *, guard: bool = True, index: bool = False) -> Any:
    """Write ``df`` as CSV/TSV (by extension) atomically, guarded unless ``guard=False``."""
    from .writers import write_table
    return write_table(df, path, index=index, guard=guard)
