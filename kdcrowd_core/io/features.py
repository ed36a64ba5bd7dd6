"""read_features: a numeric feature vector per item, from CSV/TSV/Parquet or .npy (+ ids)."""
from __future__ import annotations

import io
import os
from typing import Any

import numpy as np
import pandas as pd

from ..data import ReadReport
from ..errors import CrowdDataError, opt
from ._build import clean_ids, to_plain_index
from ._columns import ALIASES, _show, is_label_like, norm, resolve_explicit
from ._source import DEFAULT_MAX_BYTES, DEFAULT_MAX_ROWS, Source, open_source
from .options import ReadOptions
from .options import resolve as resolve_options
from ._table import Table, delimiter_name, frame_table, head_lines, is_numberish, read_parquet_table, \
    read_text_table, sniff_delimiter, _split


class Features(tuple):
    """``(X, ids, feature_names)`` — unpacks like a 3-tuple — plus ``.report``.

    X : float32 ndarray (n, d); ids : pandas.Index of n item ids;
    feature_names : list of d str; report : ReadReport (notes about excluded columns etc.).
    """

    def __new__(cls, X: np.ndarray, ids: pd.Index, names: list[str], report: ReadReport):
        self = super().__new__(cls, (X, ids, names))
        self.report = report
        return self

    def __getnewargs__(self):  # pickling/copying (st.cache_data) rebuilds through __new__
        return (self[0], self[1], self[2], self.report)

    @property
    def X(self) -> np.ndarray:  # noqa: N802 - conventional name
        return self[0]

    @property
    def ids(self) -> pd.Index:
        return self[1]

    @property
    def names(self) -> list[str]:
        return self[2]


def read_features(source: Any, *, ids: Any = None, item: Any = None, name: str | None = None,
                  max_bytes: int = DEFAULT_MAX_BYTES, options: ReadOptions | dict | None = None,
                  max_rows: int = DEFAULT_MAX_ROWS) -> Features:
    """Read item features.

    Parameters
    ----------
    source : path, bytes, binary file object, DataFrame or ndarray
        A table (CSV/TSV/TXT/Parquet) with an item-id column and numeric
        columns, or a ``.npy`` array of shape (n, d) (more dimensions are
        flattened to (n, prod)).
    ids : sequence or path, optional
        For ``.npy``/ndarray: the item id of each row, as a sequence or a
        text file with one id per line.  Default: rows are items 0..n-1.
    item : str or int, optional
        The item-id column of a table (default: detected by name; else the
        first column when it is not numeric; else rows are items 0..n-1).

    options : ReadOptions, optional
        ``features_item`` and ``feature_ids`` stand for ``item=`` and ``ids=``
        (which override them); the id transform applies to the ids.

    Returns
    -------
    Features
        ``X`` float32 (n, d), ``ids`` pandas.Index (n), ``feature_names``
        list of d str; unpacks as ``X, ids, names = read_features(...)``.
        Label-like columns (``class``, ``label``, ``truth``, ...) are left
        out and noted in ``.report.notes``.
    """
    o = resolve_options(options)
    item = item if item is not None else o.features_item
    ids = ids if ids is not None else o.feature_ids
    steps = o.id_transform
    if isinstance(source, np.ndarray):
        rep = ReadReport(source=name or "<array>", format="features")
        return _from_array(source, ids, rep, None, max_bytes, steps)
    if isinstance(source, pd.DataFrame):
        table = frame_table(source, name)
        rep = ReadReport(source=table.name, format="features")
        return _from_table(table, rep, item=item, ids=ids, steps=steps)
    src = open_source(source, name=name, max_bytes=max_bytes, kinds=("text", "parquet", "npy"), what="features",
                      max_rows=max_rows)
    rep = ReadReport(source=src.name, format="features", encoding=src.encoding)
    if src.kind == "npy":
        if item is not None:
            raise src.error("an item column was named, but a .npy array has no columns.",
                            hint=f"clear {opt('features_item')} and give the row ids with {opt('feature_ids')} "
                                 "(a text file with one id per line).", option="feature_ids")
        return _from_array(load_npy(src), ids, rep, src, max_bytes, steps)
    if src.kind == "parquet":
        table = read_parquet_table(src, what="features")
    else:
        lines = head_lines(src)
        sep = sniff_delimiter(lines, src.ext)
        rows = _split([ln for ln in lines if ln.strip()][:200], sep)
        first = rows[0] if rows else []
        # a header names the feature columns: some field after the first (the id) is not a number
        header = any(not is_numberish(f) for f in first[1:]) or (len(first) == 1 and not is_numberish(first[0]))
        dtype = None
        if header:
            names, _ = read_text_table(src, header=True, sep=sep, dtype=str, what="features", nrows=0)
            it = _item_by_name(list(names.df.columns), item, names.path)
            if it is not None:
                dtype = {it: str}  # keep ids such as 007 intact
        elif item is not None:
            dtype = {item: str} if isinstance(item, int) else None
        table, sep = read_text_table(src, header=header, sep=sep, dtype=dtype, what="features")
        rep.delimiter = delimiter_name(sep)
    if ids is not None:
        raise CrowdDataError("ids are given for .npy arrays only; a table names its item column.", path=table.path,
                             hint=f"clear {opt('feature_ids')}; name the table's item column with "
                                  f"{opt('features_item')} if it is not found.", option="feature_ids")
    return _from_table(table, rep, item=item, ids=None, steps=steps)


def load_npy(src: Source) -> np.ndarray:
    try:
        arr = np.load(io.BytesIO(src.data), allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e) or "Object arrays" in str(e):
            raise src.error("the .npy holds Python objects, which are never loaded (unsafe).",
                            hint="save a numeric array: numpy.save(path, X.astype('float32')).") from None
        raise src.error(f"not a readable .npy file ({e}).", hint="save the array with numpy.save.") from None
    except (OSError, EOFError) as e:
        raise src.error(f"not a readable .npy file ({e}).",
                        hint="check that the file is complete; save the array with numpy.save.") from None
    if not isinstance(arr, np.ndarray):  # pragma: no cover - np.load of .npy always gives an array
        raise src.error("not a .npy array.", hint="save the array with numpy.save.")
    return arr


def _read_ids(ids: Any, n: int, max_bytes: int, where: str | None, steps: tuple = ()) -> pd.Index:
    if isinstance(ids, (str, os.PathLike)) or hasattr(ids, "read") or isinstance(ids, (bytes, bytearray)):
        src = open_source(ids, name=None, max_bytes=max_bytes, kinds=("text",), what="item ids")
        lines = src.text.decode("utf-8").splitlines()
        while lines and not lines[-1].strip():
            lines.pop()
        blank = [k + 1 for k, ln in enumerate(lines) if not ln.strip()]
        if blank:
            raise src.error("blank line in the ids file (one item id per line expected).", line=blank[0],
                            hint="remove the blank line, or write the missing id.")
        vals = pd.Index(clean_ids(pd.Index(lines), steps).to_numpy(dtype=object))
        label = src.name
    else:
        try:
            raw = list(ids)
        except TypeError:
            raise CrowdDataError(f"ids= must be a sequence of item ids or a path, not {type(ids).__name__}.",
                                 path=where) from None
        vals = pd.Index(clean_ids(pd.Index([str(v) if not isinstance(v, (int, np.integer)) else int(v)
                                            for v in raw], dtype=object), steps).to_numpy(dtype=object))
        label = "ids="
    if len(vals) != n:
        raise CrowdDataError(f"{label} gives {len(vals)} item ids but the features have {n} rows.", path=where,
                             hint="give exactly one id per feature row, in row order.")
    return to_plain_index(vals)


def _from_array(arr: np.ndarray, ids: Any, rep: ReadReport, src: Source | None, max_bytes: int,
                steps: tuple = ()) -> Features:
    where = None if src is None else src.path
    if arr.dtype.kind not in "biuf":
        raise CrowdDataError(f"features must be numbers; the array has dtype {arr.dtype}.", path=where,
                             hint="save a numeric array: numpy.save(path, X.astype('float32')).")
    if arr.ndim == 1:
        raise CrowdDataError(f"features must be a 2-D array (items x features), got shape {arr.shape}.", path=where,
                             hint="reshape a single feature to (n, 1): X.reshape(-1, 1).")
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise CrowdDataError("the feature array has no rows.", path=where, hint="save one row per item.")
    if arr.ndim > 2:
        rep.notes.append(f"array of shape {arr.shape} flattened to ({arr.shape[0]}, {int(np.prod(arr.shape[1:]))})")
        arr = arr.reshape(arr.shape[0], -1)
    X = np.ascontiguousarray(arr, dtype=np.float32)
    n, d = X.shape
    bad = ~np.isfinite(X)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise CrowdDataError(f"features contain {int(bad.sum())} NaN or infinite values, first at row {int(r)}, "
                             f"column {int(c)}.", path=where, hint="fill or drop the missing feature values.")
    index = pd.Index(np.arange(n, dtype=np.int64)) if ids is None else _read_ids(ids, n, max_bytes, where, steps)
    if ids is None:
        rep.notes.append("no ids given: rows are items 0..n-1")
    _check_unique(index, where, lambda p: [f"row {int(x)}" for x in p[:5]])
    rep.columns = {"item": "<row number>" if ids is None else "<ids>", "features": f"{d} columns"}
    rep.rows_read = rep.answers = int(n)
    return Features(X, index, [f"f{j}" for j in range(d)], rep)


def _py(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _check_unique(index: pd.Index, path, where) -> None:
    if index.has_duplicates:
        dup = index.duplicated(keep=False)
        first = index[dup][0]
        rows = np.flatnonzero(np.asarray(index == first))
        raise CrowdDataError(f"item {_py(first)!r} has several feature rows ({', '.join(where(rows))}); "
                             f"{int(index.duplicated().sum())} repeated ids in all.", path=path,
                             hint="give each item one feature row.")


def _item_by_name(cols: list, item, path) -> Any:
    if item is not None:
        return resolve_explicit(cols, item, "item", path=path, kwarg="features_item")
    for names in ALIASES["item"]:
        found = [c for c in cols if norm(c) in names]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise CrowdDataError(f"{len(found)} columns could be the item id: {_show(found)}.", path=path,
                                 hint=f"name it with {opt('features_item')} (e.g. {str(found[0])!r}).")
    first = cols[0]
    if str(first).strip() == "" or str(first).lower().startswith("unnamed"):
        return first
    return None


def _pick_item(table: Table, item) -> Any:
    cols = list(table.df.columns)
    if item is not None:
        return resolve_explicit(cols, item, "item", path=table.path, kwarg="features_item")
    if not table.has_header:
        first = table.df[cols[0]]
        return cols[0] if not pd.api.types.is_numeric_dtype(first.dtype) else None
    named = _item_by_name(cols, None, table.path)
    if named is not None:
        return named
    first = cols[0]
    col = table.df[first]
    if not pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        return first
    return None


def _from_table(table: Table, rep: ReadReport, *, item, ids, steps: tuple = ()) -> Features:
    if table.nested:
        rep.notes.append(table.nested_note())
    df = table.df
    path = table.path
    if len(df) == 0 or table.blank.all():
        raise CrowdDataError("the features file has no data rows.", path=path, line=table.first_line,
                             hint="add one row per item: item id, then the feature values.")
    item_col = _pick_item(table, item)
    excluded = [c for c in df.columns if c != item_col and is_label_like(c)]
    feat_cols = [c for c in df.columns if c != item_col and c not in excluded]
    for c in excluded:
        rep.notes.append(f"column {c!r} looks like labels: left out of the features "
                         f"(give this file as gold with {opt('gold_label')} {str(c)!r} to use it as gold)")
    if not feat_cols:
        raise CrowdDataError(f"no feature columns: the columns are {_show(df.columns)}.", path=path,
                             hint="give the item id column and one column per numeric feature.")
    if table.blank.any():
        rep.skip("blank line", int(table.blank.sum()), table.where(np.flatnonzero(table.blank)))
        df = df.loc[~table.blank]
    pos = np.flatnonzero(~table.blank)
    # non-numeric columns: name the first one, its first bad value and line
    for c in feat_cols:
        col = df[c]
        if pd.api.types.is_bool_dtype(col.dtype) or pd.api.types.is_numeric_dtype(col.dtype):
            continue
        txt = col.astype("string").str.strip()
        num = pd.to_numeric(txt.str.replace(",", ".", regex=False) if _decimal_comma(txt) else txt, errors="coerce")
        badm = (num.isna() & txt.notna() & (txt != "")).to_numpy()
        if not badm.any():
            if df is table.df:
                df = df.copy()
            df[c] = num.to_numpy(dtype=np.float64, na_value=np.nan)
            continue
        k = int(np.flatnonzero(badm)[0])
        line = table.line(int(pos[k]))
        hint = ("features must be numbers; drop text columns other than the item id"
                + (f", or name the item-id column with {opt('features_item')}" if item is None else "") + ".")
        raise CrowdDataError(f"non-numeric feature value {str(txt.iloc[k])!r} ({int(badm.sum())} such values in this "
                             "column).", path=path, line=line, column=c, hint=hint)
    try:
        X = df[feat_cols].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as e:  # pragma: no cover - guarded above
        raise CrowdDataError(f"features are not numeric: {e}", path=path) from None
    bad = ~np.isfinite(X)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise CrowdDataError(f"missing or infinite feature value ({int(bad.sum())} in all).", path=path,
                             line=table.line(int(pos[r])), column=feat_cols[c],
                             hint="fill in every feature value, or drop the rows / columns with gaps.")
    X32 = X.astype(np.float32)
    if not np.all(np.isfinite(X32)):
        r, c = np.argwhere(~np.isfinite(X32))[0]
        raise CrowdDataError("feature value too large for float32.", path=path, line=table.line(int(pos[r])),
                             column=feat_cols[c], hint="rescale the feature.")
    if item_col is None:
        index = pd.Index(np.arange(len(df), dtype=np.int64))
        rep.notes.append("no item-id column: rows are items 0..n-1; name the id column with "
                         f"{opt('features_item')} if there is one")
    else:
        raw = df[item_col]
        ids_clean = clean_ids(pd.Index(raw.astype("string").to_numpy(dtype=object)
                                       if not pd.api.types.is_numeric_dtype(raw.dtype) else raw.to_numpy()), steps, rep.notes)
        vals = ids_clean.to_numpy(dtype=object)
        miss = pd.isna(vals)
        if miss.any():
            k = int(np.flatnonzero(miss)[0])
            raise CrowdDataError("empty item id in a feature row.", path=path, line=table.line(int(pos[k])),
                                 column=item_col, hint="give every feature row its item id.")
        index = to_plain_index(pd.Index(list(vals), dtype=object))
    _check_unique(index, path, lambda p: table.where(pos[np.asarray(p, dtype=np.int64)]))
    rep.columns = {"item": "<row number>" if item_col is None else str(item_col),
                   "features": f"{len(feat_cols)} columns ({feat_cols[0]} .. {feat_cols[-1]})"}
    rep.rows_read = int(len(table.df))
    rep.answers = int(len(index))
    names = [str(c) for c in feat_cols] if table.has_header else [f"f{j}" for j in range(len(feat_cols))]
    return Features(np.ascontiguousarray(X32), index, names, rep)


_DEC_COMMA = r"[-+]?\d+(,\d+)?([eE][-+]?\d+)?"


def _decimal_comma(txt: pd.Series) -> bool:
    """Values such as ``0,5`` (decimal comma, from ``;``-separated European CSV)."""
    s = txt.dropna()
    s = s[s != ""]
    return len(s) > 0 and bool(s.str.fullmatch(_DEC_COMMA).all()) and bool(s.str.contains(",", regex=False).any())

