"""read_answers: crowd answers from long, wide, MTurk, Toloka and Label Studio files.

See docs/formats.md for every layout, the column-name rules and the report.
"""
from __future__ import annotations

import json
from typing import Any
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..data import CrowdData, ReadReport
from ..errors import CrowdDataError, opt
from ._build import build_crowd, clean_ids, clean_labels
from ._columns import (ALIASES, MTURK_ANSWER, MTURK_INPUT, _show, candidates, detect_roles, is_id_like,
                       is_truth_name, norm,
                       resolve_explicit, strip_prefix)
from ._source import DEFAULT_MAX_BYTES, DEFAULT_MAX_ROWS, Source, open_source
from .options import FORMATS, ReadOptions, check_format  # noqa: F401 - FORMATS re-exported
from .options import resolve as resolve_options
from ._table import Table, delimiter_name, drop_nested, records_frame, detect_header, frame_table, is_numberish, read_parquet_table, \
    read_text_table

#: wide cells that mean "this worker did not label this item"
WIDE_MISSING = ("", "-1", "-1.0", "nan", "NaN", "NAN", "None", "none", "null", "NULL")


def _check_format(fmt: str) -> str:
    return check_format(fmt)


def read_answers(source: Any, *, format: str | None = None, item: Any = None, worker: Any = None,
                 label: Any = None, classes: Sequence | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
                 name: str | None = None, options: ReadOptions | dict | None = None,
                 max_rows: int = DEFAULT_MAX_ROWS) -> CrowdData:
    """Read crowd answers into a :class:`~kdcrowd_core.data.CrowdData`.

    Parameters
    ----------
    source : str, Path, bytes, binary file object or pandas.DataFrame
        The answers file.  For bytes and file objects ``name`` (else the
        object's ``.name``) is used for messages and to recognise the type.
    format : {"auto", "long", "wide", "mturk", "toloka", "labelstudio"}
        Layout; ``"auto"`` detects it from the extension, the columns and the
        content (docs/formats.md).
    item, worker, label : str or int, optional
        Column names (or 0-based positions) for long/MTurk/Toloka files when
        detection by name fails or is ambiguous.  For Label Studio, ``item``
        names a key of ``task["data"]`` to use as item id instead of the task
        id and ``label`` the ``from_name`` of the choices control.
    classes : sequence, optional
        Every class, in the order to use; answers outside it are an error.
        Default: the labels that occur, numbers in numeric order, text in
        alphabetical order.
    max_bytes : int
        Refuse files bigger than this (default 1 GiB), also once decompressed.
    max_rows : int
        Refuse tables with more rows than this (default 10 million) before parsing them.
    options : ReadOptions, optional
        Every reading choice in one object (columns, format, id transform,
        label normalisation, duplicates; docs/formats.md, "Reading options").
        The keyword arguments above, when given, override its fields.

    Returns
    -------
    CrowdData
        ``data.report[0]`` is the :class:`~kdcrowd_core.data.ReadReport`:
        source, format, rows read, columns used, encoding, delimiter, rows
        skipped with reasons and line numbers, duplicates, notes.  Toloka
        files with ``GOLDEN:*`` columns also come with ``data.gold``.

    Raises
    ------
    CrowdDataError
        Anything wrong with the file; the message names the file, the line or
        column, what was expected and how to fix it.
    """
    options = resolve_options(options, format=format, item=item, worker=worker, label=label, classes=classes)
    fmt = options.format
    item, worker, label = options.item, options.worker, options.label
    classes = list(options.classes) if options.classes is not None else None
    if isinstance(source, pd.DataFrame):
        table = frame_table(source, name)
        rep = ReadReport(source=table.name)
        return _dispatch_table(table, fmt, rep, item=item, worker=worker, label=label, classes=classes, options=options)
    src = open_source(source, name=name, max_bytes=max_bytes, kinds=("text", "parquet", "json"), what="answers",
                      max_rows=max_rows)
    rep = ReadReport(source=src.name, encoding=src.encoding)
    if src.kind == "json" or fmt == "labelstudio":
        if src.kind != "json":
            raise src.error("the Label Studio layout expects a Label Studio JSON export.",
                            hint=f"export the project from Label Studio as JSON, or pick another {opt('format')}.")
        return _read_json(src, fmt, rep, item=item, worker=worker, label=label, classes=classes, options=options,
                          max_rows=max_rows)
    if src.kind == "parquet":
        table = read_parquet_table(src, what="answers")
    else:
        header_rule = None
        if fmt == "wide":
            header_rule = detect_header
        table, sep = read_text_table(src, header_rule=header_rule, what="answers")
        rep.delimiter = delimiter_name(sep)
    return _dispatch_table(table, fmt, rep, item=item, worker=worker, label=label, classes=classes, options=options)


# ----------------------------------------------------------------- format detection
def _is_toloka(cols: Sequence[Any]) -> bool:
    up = [str(c).upper() for c in cols]
    return any(c.startswith("ASSIGNMENT:") for c in up) and any(c.startswith(("INPUT:", "OUTPUT:")) for c in up)


def _is_mturk(cols: Sequence[Any]) -> bool:
    low = [str(c).strip().lower() for c in cols]
    has_worker = "workerid" in low
    return has_worker and (any(c.startswith(MTURK_ANSWER) for c in low) or "hitid" in low)


def detect_format(table: Table, *, item=None, worker=None, label=None) -> str:
    """The layout of a parsed table (see docs/formats.md, "Detection")."""
    cols = list(table.df.columns)
    if not table.has_header:
        return "long" if (worker is not None or label is not None) else "wide"
    if _is_toloka(cols):
        return "toloka"
    if _is_mturk(cols):
        return "mturk"
    if worker is not None or label is not None:
        return "long"
    found = {r: _name_found(cols, r) for r in ("worker", "label")}
    if found["worker"] or found["label"]:
        return "long"
    n_item = 1 if _name_found(cols, "item") else 0
    if len(cols) - n_item >= 2:
        return "wide"
    return "long"


def _name_found(cols: Sequence[Any], role: str) -> bool:
    names = {n for tier in ALIASES[role] for n in tier}
    return any(norm(c) in names and not (role == "label" and is_truth_name(c)) for c in cols)


def _dispatch_table(table: Table, fmt: str, rep: ReadReport, *, item, worker, label, classes, options) -> CrowdData:
    note = table.nested_note()
    if note:
        rep.notes.append(note)
    if table.renamed:
        rep.notes.append(_renamed_note(table.renamed))
    try:
        return _dispatch_checked(table, fmt, rep, item=item, worker=worker, label=label, classes=classes,
                                 options=options)
    except CrowdDataError as e:
        if not note:
            raise
        raise CrowdDataError(e.message_template + " Note: " + note + ".", path=e.path, line=e.line,
                             column=e.column, option=e.option,
                             hint=(e.hint_template or "") + " Flatten nested values to one plain value per field "
                                  "(for example item.id rather than item: {id: ...}).") from None


def _renamed_note(renamed: dict) -> str:
    groups: dict = {}
    for new, orig in renamed.items():
        groups.setdefault(orig, []).append(new)
    parts = [f"{orig!r} ({len(news) + 1} columns, read as {', '.join(repr(x) for x in [orig, *news])})"
             for orig, news in groups.items()]
    return ("repeated column names: " + "; ".join(parts) + ". In a wide file each is a separate worker; rename the "
            "columns if they are different workers, or merge them if they are one")


def _dispatch_checked(table: Table, fmt: str, rep: ReadReport, *, item, worker, label, classes,
                      options) -> CrowdData:
    if len(table.df) == 0 or table.blank.all():
        raise CrowdDataError("the file has a header but no data rows." if table.has_header and len(table.df.columns)
                             else "the file has no data rows.", path=table.path,
                             line=None if table.first_line is None else table.first_line,
                             hint="add one row per answer (or per item for wide files) below the header.")
    auto = fmt == "auto"
    if auto:
        fmt = detect_format(table, item=item, worker=worker, label=label)
        if fmt == "wide" and table.has_header and not _looks_wide(table, item):
            fmt = "long"  # reading it as long raises the clear missing-column error
        if not table.has_header and (item, worker, label) == (None, None, None):
            _check_headerless(table)
    rep.format = fmt
    rep.rows_read = int(len(table.df))
    if fmt == "long":
        return _read_long(table, rep, item=item, worker=worker, label=label, classes=classes, options=options)
    if fmt == "wide":
        if worker is not None or label is not None:
            raise CrowdDataError("a worker or label column names columns of long files, but this file is read as "
                                 "wide (one row per item, one column per worker).", path=table.path,
                                 hint=f"set {opt('format')} to long if the file has one row per answer.",
                                 option="format")
        return _read_wide(table, rep, item=item, classes=classes, auto=auto, options=options)
    if fmt == "mturk":
        return _read_mturk(table, rep, item=item, worker=worker, label=label, classes=classes, options=options)
    if fmt == "toloka":
        return _read_toloka(table, rep, item=item, worker=worker, label=label, classes=classes, options=options)
    raise CrowdDataError(f"format {fmt!r} does not apply to a table.", path=table.path,  # labelstudio on a table
                         hint=f"Label Studio exports are JSON files; pick another {opt('format')}.")


def _looks_wide(table: Table, item) -> bool:
    """A few unnamed columns whose value sets are disjoint are a long file's worker and label, not workers."""
    df = table.df
    item_col = _pick_wide_item(table, item)  # once: it looks at every column
    cols = [c for c in df.columns if c != item_col]
    if len(cols) > 6:
        return True
    sets = []
    for c in cols:
        v = df[c].dropna().astype("string").str.strip()
        v = pd.Series(v[~v.isin(WIDE_MISSING)].unique(), dtype=object)
        num = pd.to_numeric(v, errors="coerce")
        u = {(float(n) if pd.notna(n) else t) for t, n in zip(v, num)}  # 1 and 1.0 are the same label
        if len(u) >= 2:
            sets.append(u)
    return not any(not (a & b) for k, a in enumerate(sets) for b in sets[k + 1:])


def _check_headerless(table: Table) -> None:
    """A headerless file is read as wide only when that is the one sensible reading."""
    df = table.df
    body = df.iloc[:, 1:] if df.shape[1] > 1 else df
    if not is_probably_numeric_table(body):
        raise CrowdDataError(
            "the file has no header line and its cells are not class numbers, so it is neither a wide "
            "file (one row per item, class numbers or -1 per worker) nor a long file the reader can map.",
            path=table.path, line=1,
            hint="add a header line such as item,worker,label (long) or item,<worker ids...> (wide), "
                 f"or set {opt('format')} and give {opt('item')}, {opt('worker')}, {opt('label')} as 0-based "
                 "column positions.")
    if df.shape[1] == 3 and not (df.isna().any().any() or df.astype("string").isin(["-1"]).any().any()):
        raise CrowdDataError(
            "the file has no header line and three full columns of numbers: it could be long "
            "(item, worker, label per row) or wide (three workers per item).",
            path=table.path, line=1,
            hint=f"add a header line (item,worker,label for long), or set {opt('format')} to long with "
                 f"{opt('item')} 0, {opt('worker')} 1, {opt('label')} 2, or to wide.", option="format")


def _unused_note(rep: ReadReport, cols: Sequence[Any], used: Sequence[Any], call_item: Any = None) -> None:
    truth = [c for c in cols if c not in used and is_truth_name(c)]
    for t in truth:
        rep.notes.append(f"column {t!r} looks like true labels: it is NOT used as an answer; evaluate against it "
                         f"by giving this file as gold with {opt('gold_label')} {str(t)!r}.")
    other = [c for c in cols if c not in used and c not in truth]
    if other:
        rep.notes.append(f"columns not used: {_show(other, 12)}")


# ----------------------------------------------------------------- long
def _read_long(table: Table, rep: ReadReport, *, item, worker, label, classes, options, call="read_answers") -> CrowdData:
    df = table.df
    if not table.has_header and not any(v is not None for v in (item, worker, label)):
        raise CrowdDataError("the file has no header line, so the item, worker and label columns cannot be found.",
                             path=table.path, line=1,
                             hint="add a header line such as item,worker,label, or give the columns by "
                                  "position: item=0, worker=1, label=2.")
    roles = detect_roles(df.columns, item=item, worker=worker, label=label, path=table.path, call=call)
    rep.columns = {"item": str(roles["item"]), "worker": str(roles["worker"]), "label": str(roles["label"])}
    _unused_note(rep, list(df.columns), list(roles.values()), roles["item"])
    return build_crowd(df[roles["item"]], df[roles["worker"]], df[roles["label"]], report=rep, where=table.where,
                       columns=roles, path=table.path, classes=classes, options=options,
                       drop_reasons=[("blank line", table.blank)])


# ----------------------------------------------------------------- wide
def _pick_wide_item(table: Table, item) -> Any:
    df = table.df
    cols = list(df.columns)
    if item is not None:
        return resolve_explicit(cols, item, "item", path=table.path, kwarg="item")
    if table.has_header:
        named = [c for c in cols if norm(c) in {n for t in ALIASES["item"] for n in t}]
        if len(named) == 1:
            return named[0]
        if len(named) > 1:
            raise CrowdDataError(f"{len(named)} columns could be the item column: {_show(named)}.",
                                 path=table.path, hint=f"name it with {opt('item')} (e.g. {str(named[0])!r}).")
        first = cols[0]
        if str(first).strip() == "" or str(first).lower().startswith("unnamed"):
            return first
    first = cols[0]
    col = df[first].dropna()
    if len(col) == 0:
        return None
    as_text = col.astype("string").str.strip()
    nonnum = pd.to_numeric(as_text, errors="coerce").isna() & (as_text != "")
    if bool(nonnum.any()) and not set(as_text[nonnum].unique()) <= set(WIDE_MISSING):
        return first
    if len(col) == len(df) - int(table.blank.sum()) and col.is_unique and len(cols) > 1:
        others: set = set()
        for c in cols[1:]:  # per worker column, stopping as soon as the labels outnumber the rows
            others.update(df[c].dropna().astype("string").str.strip().unique())
            if len(others) >= len(col):
                return None
        if len(col) > max(len(others), 2):
            return first
    return None


_FLOAT_INT = r"\s*-?\d+\.0+\s*"


def _float_column_as_ints(col: pd.Series) -> pd.Series:
    """A worker column written as floats (``1.0``: pandas does so for a column with gaps) -> integers.

    Only when *every* cell of the column has that form, so ``1`` and ``1.0`` inside one column stay distinct.
    """
    if pd.api.types.is_float_dtype(col.dtype):
        v = col.to_numpy(dtype=np.float64)
        if np.all(np.isfinite(v)) and np.all(np.mod(v, 1) == 0):
            return pd.Series(v.astype(np.int64), index=col.index)
        return col
    if pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype):
        return col
    txt = col.astype("string")
    if len(txt) and bool(txt.str.fullmatch(_FLOAT_INT).all()):
        return txt.str.strip().str.replace(r"\.0+$", "", regex=True)
    return col


def _wide_cells(df: pd.DataFrame, cols: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The answered cells of a wide table in row-major order: (row, column, stripped value).

    One vectorised pass per worker column (never per cell); only answered cells are converted.
    """
    rows, cidx, vals = [], [], []
    for j, c in enumerate(cols):
        col = df[c]
        if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
            keep = (col.notna() & (col != -1)).to_numpy()
        else:
            keep = (col.notna() & ~col.isin(WIDE_MISSING)).to_numpy()
        idx = np.flatnonzero(keep)
        if idx.size:
            rows.append(idx)
            cidx.append(np.full(idx.size, j, dtype=np.int64))
            vals.append(_float_column_as_ints(col.iloc[idx]).to_numpy(dtype=object))
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, object)
    r, c, v = np.concatenate(rows), np.concatenate(cidx), np.concatenate(vals)
    order = np.argsort(r * len(cols) + c, kind="stable")
    r, c, v = r[order], c[order], v[order]
    raw = pd.Series(v, dtype=object).astype("string")
    txt = raw.str.strip()  # padded cells such as " -1" are missing too
    ok = (txt.notna() & ~txt.isin(WIDE_MISSING)).to_numpy()
    return r[ok], c[ok], raw[ok].to_numpy(dtype=object)  # labels as written: normalised by build_crowd


def _read_wide(table: Table, rep: ReadReport, *, item, classes, options, auto: bool) -> CrowdData:
    df = table.df.loc[~table.blank] if table.blank.any() else table.df
    row_pos = np.flatnonzero(~table.blank)  # file rows of the kept rows
    item_col = _pick_wide_item(table, item)
    ans_cols = [c for c in df.columns if c != item_col]
    if not ans_cols:
        raise CrowdDataError("a wide file needs at least one worker column besides the item column.", path=table.path,
                             hint=f"one row per item, one column per worker; or set {opt('format')} to long.")
    n, m = len(df), len(ans_cols)
    r, c, labels = _wide_cells(df, ans_cols)
    if table.has_header:
        worker_ids = clean_ids(pd.Index([str(x) for x in ans_cols]))
        wname = "<column headers>"
    else:
        worker_ids = pd.Series(np.arange(m, dtype=np.int64))
        wname = "<column number>"
    if item_col is None:
        items = np.arange(n, dtype=np.int64)
        iname = "<row number>"
    else:
        items = df[item_col].to_numpy(dtype=object)
        iname = str(item_col)
    rep.columns = {"item": iname, "worker": wname, "label": "<cell values>"}
    if item_col is None:
        rep.notes.append("no item-id column: items are numbered by row, 0 to n-1 (blank lines not counted).")
    if auto and table.has_header:
        rep.notes.append("read as wide: one row per item, one column per worker; if the file has one row per "
                         f"answer, set {opt('format')} to long.")
    answered = np.bincount(r, minlength=n) > 0
    if (~answered).any():
        rep.skip("row has no answers (every worker cell empty or -1)", int((~answered).sum()),
                 table.where(row_pos[~answered]))
    if table.blank.any():
        rep.skip("blank line", int(table.blank.sum()), table.where(np.flatnonzero(table.blank)))
    if len(r) == 0:
        raise CrowdDataError("no answers: every worker cell is empty or -1.", path=table.path,
                             hint="a wide file has one row per item and one column per worker, -1 or empty "
                                  "where the worker gave no answer.")
    it = pd.Series(items[r])
    wk = pd.Series(worker_ids.to_numpy(dtype=object)[c]) if table.has_header else pd.Series(c.astype(np.int64))
    pos = row_pos[r]
    data = build_crowd(it, wk, pd.Series(labels, dtype=object), report=rep,
                       where=lambda p: table.where(pos[np.asarray(p, dtype=np.int64)]),
                       columns={"item": iname, "worker": wname, "label": "<cell values>"}, path=table.path,
                       classes=classes, options=options)
    rep.rows_read = int(n)
    if auto and data.n_classes > max(30, data.n_answers // 2):
        raise CrowdDataError(
            f"read as wide (one row per item, one column per worker), the file would have {data.n_classes} "
            f"different labels for {data.n_answers} answers, which does not look like class labels.",
            path=table.path,
            hint=f"if the file has one row per answer, set {opt('format')} to long and name the columns with "
                 f"{opt('item')}, {opt('worker')}, {opt('label')}.", option="format")
    return data


# ----------------------------------------------------------------- MTurk
def _prefixed(cols: Sequence[Any], prefix: str) -> list[Any]:
    p = prefix.lower()
    return [c for c in cols if str(c).strip().lower().startswith(p)]


def _one(cols: Sequence[Any], low: str) -> Any:
    for c in cols:
        if str(c).strip().lower() == low:
            return c
    return None


def _pick_input_item(table: Table, inputs: list[Any], fallback: Any, rep: ReadReport, platform: str) -> Any:
    """Item column among ``Input.*``/``INPUT:*`` columns (truth-like ones excluded); see docs/formats.md."""
    cands = [c for c in inputs if not is_truth_name(c)]
    if len(cands) == 1:
        rep.notes.append(f"item = {cands[0]!r} (the only {platform} input column)")
        return cands[0]
    idl = [c for c in cands if is_id_like(c)]
    if len(idl) == 1:
        rep.notes.append(f"item = {idl[0]!r} (the id-like one of the input columns {_show(cands)})")
        return idl[0]
    if fallback is not None:
        rep.notes.append(f"item = {fallback!r} ({len(cands)} input columns, none clearly an id; "
                         f"name one with {opt('item')} to use it instead)" if cands else f"item = {fallback!r}")
        return fallback
    if cands:
        rep.notes.append(f"item = the combination of the input columns {_show(cands)} (no single id column); "
                         f"name one with {opt('item')} to use it instead")
        return list(cands)
    raise CrowdDataError(f"no item column: no {platform} input column (and no HITId) among {_show(table.df.columns)}.",
                         path=table.path, hint=f"name the item column with {opt('item')}.")


def _pick_output(table: Table, outputs: list[Any], platform: str, prefix: str) -> Any:
    if len(outputs) == 1:
        return outputs[0]
    if not outputs:
        found, _ = candidates([c for c in table.df.columns if not is_truth_name(c)], "label")
        if len(found) == 1:
            return found[0]
        raise CrowdDataError(f"no label column: no {prefix}* column among {_show(table.df.columns)}.",
                             path=table.path, hint=f"name the label column with {opt('label')}.")
    label_names = {n for t in ALIASES["label"] for n in t}
    named = [c for c in outputs if norm(strip_prefix(c)) in label_names]
    if len(named) == 1:
        return named[0]
    raise CrowdDataError(f"{len(outputs)} {platform} answer columns could be the label: {_show(outputs)}.",
                         path=table.path, hint=f"name it with {opt('label')} (e.g. {str(outputs[0])!r}).")


def _item_values(df: pd.DataFrame, item_col: Any) -> pd.Series:
    if isinstance(item_col, list):
        parts = [df[c].astype("string").str.strip().fillna("") for c in item_col]
        key = parts[0]
        for p in parts[1:]:
            key = key + " | " + p
        return key.mask(key.str.replace("|", "", regex=False).str.strip() == "")
    return df[item_col]


def _status_drop(df: pd.DataFrame, col: Any, bad: tuple[str, ...]) -> np.ndarray:
    if col is None:
        return np.zeros(len(df), dtype=bool)
    s = df[col].astype("string").str.strip().str.lower()
    return s.isin(bad).fillna(False).to_numpy(dtype=bool)


_TICKED = {"true", "1", "yes", "on", "x", "checked", "t", "y"}
_UNTICKED = {"false", "0", "no", "off", "", "f", "n", "unchecked"}


def _is_boolean_column(col: pd.Series) -> bool:
    v = col.dropna().astype("string").str.strip().str.lower()
    return len(v) > 0 and bool(v.isin(_TICKED | _UNTICKED).all())


def _checkbox_groups(df: pd.DataFrame, answer_cols: list) -> dict[str, list[tuple[str, Any]]]:
    """MTurk radio/checkbox answers: question -> [(choice, column)] from ``Answer.<q>.<choice>.on`` columns
    (or ``Answer.<q>.<choice>`` columns holding only true/false)."""
    groups: dict[str, list[tuple[str, Any]]] = {}
    for c in answer_cols:
        parts = strip_prefix(c).split(".")
        if len(parts) >= 3 and parts[-1].strip().lower() == "on":
            q, choice = ".".join(parts[:-2]), parts[-2]
        elif len(parts) >= 2 and _is_boolean_column(df[c]):
            q, choice = ".".join(parts[:-1]), parts[-1]
        else:
            continue
        groups.setdefault(q, []).append((choice, c))
    return {q: ch for q, ch in groups.items() if len(ch) >= 2 or str(ch[0][1]).lower().endswith(".on")}


def _decode_checkboxes(df: pd.DataFrame, choices: list[tuple[str, Any]]) -> tuple[pd.Series, np.ndarray]:
    """One label per row: the ticked choice (missing when none is ticked), and the rows with several ticked."""
    ticked = np.column_stack([df[c].astype("string").str.strip().str.lower().isin(_TICKED).fillna(False)
                              .to_numpy(dtype=bool) for _ch, c in choices])
    n_ticked = ticked.sum(axis=1)
    names = np.asarray([ch for ch, _c in choices], dtype=object)
    labels = pd.Series(np.where(n_ticked == 1, names[ticked.argmax(axis=1)], None), dtype=object)
    return labels, n_ticked > 1


def _read_mturk(table: Table, rep: ReadReport, *, item, worker, label, classes, options) -> CrowdData:
    df = table.df
    cols = list(df.columns)
    wk = resolve_explicit(cols, worker, "worker", path=table.path, kwarg="worker") if worker is not None \
        else _one(cols, "workerid")
    if wk is None:
        raise CrowdDataError(f"no WorkerId column among {_show(cols)}.", path=table.path,
                             hint=f"name the worker column with {opt('worker')}.")
    answer_cols = [c for c in _prefixed(cols, MTURK_ANSWER) if not is_truth_name(c)]
    groups = _checkbox_groups(df, answer_cols)
    group = None
    if label is not None:
        wanted = strip_prefix(str(label)).strip().lower()
        match = [q for q in groups if q.lower() == wanted]
        if match:
            group = match[0]
        else:
            lb = resolve_explicit(cols, label, "label", path=table.path, kwarg="label")
    elif groups:
        if len(groups) > 1:
            qs = sorted(groups)
            raise CrowdDataError(f"the answers hold {len(groups)} radio/checkbox questions {qs}.", path=table.path,
                                 hint=f"pick one with {opt('label')} (e.g. {qs[0]!r}).", option="label")
        group = next(iter(groups))
    else:
        lb = _pick_output(table, answer_cols, "MTurk", "Answer.")
    if item is not None:
        it = resolve_explicit(cols, item, "item", path=table.path, kwarg="item")
    else:
        it = _pick_input_item(table, _prefixed(cols, MTURK_INPUT), _one(cols, "hitid"), rep, "MTurk")
    status = _one(cols, "assignmentstatus")
    it_name = " + ".join(map(str, it)) if isinstance(it, list) else str(it)
    several = np.zeros(len(df), dtype=bool)
    if group is not None:
        choices = groups[group]
        labels, several = _decode_checkboxes(df, choices)
        lb = f"Answer.{group}.* ({len(choices)} choices)"
        rep.notes.append(f"label = the ticked choice of the radio/checkbox question {group!r} "
                         f"({', '.join(repr(ch) for ch, _c in choices[:8])}{', ...' if len(choices) > 8 else ''})")
        label_values = labels
    else:
        label_values = df[lb]
    rep.columns = {"item": it_name, "worker": str(wk), "label": str(lb)}
    truth = [c for c in _prefixed(cols, MTURK_INPUT) + _prefixed(cols, MTURK_ANSWER) if is_truth_name(c) and c != lb]
    for t in truth:
        rep.notes.append(f"column {t!r} looks like true labels: it is NOT used as an answer; evaluate against it "
                         f"by giving this file as gold with {opt('gold_label')} {str(t)!r}.")
    rejected = _status_drop(df, status, ("rejected",))
    return build_crowd(_item_values(df, it), df[wk], label_values, report=rep, where=table.where,
                       columns={"item": it_name, "worker": wk, "label": lb}, path=table.path, classes=classes,
                       options=options,
                       drop_reasons=[("blank line", table.blank),
                                     ("assignment rejected (AssignmentStatus = Rejected)", rejected),
                                     ("several choices ticked (one label per answer is needed)", several)],
                       empty_hint="the batch holds no answer to use: download the results again after approving "
                                  "assignments, or give the batch whose answers were accepted (rejected "
                                  "assignments are never used).")


# ----------------------------------------------------------------- Toloka
def _read_toloka(table: Table, rep: ReadReport, *, item, worker, label, classes, options) -> CrowdData:
    df = table.df
    cols = list(df.columns)
    wk = resolve_explicit(cols, worker, "worker", path=table.path, kwarg="worker") if worker is not None \
        else _one(cols, "assignment:worker_id")
    if wk is None:
        raise CrowdDataError(f"no ASSIGNMENT:worker_id column among {_show(cols)}.", path=table.path,
                             hint=f"name the worker column with {opt('worker')}.")
    lb = resolve_explicit(cols, label, "label", path=table.path, kwarg="label") if label is not None \
        else _pick_output(table, _prefixed(cols, "OUTPUT:"), "Toloka", "OUTPUT:")
    if item is not None:
        it = resolve_explicit(cols, item, "item", path=table.path, kwarg="item")
    else:
        it = _pick_input_item(table, _prefixed(cols, "INPUT:"), None, rep, "Toloka")
    it_name = " + ".join(map(str, it)) if isinstance(it, list) else str(it)
    status = _one(cols, "assignment:status")
    rep.columns = {"item": it_name, "worker": str(wk), "label": str(lb)}
    golden = _prefixed(cols, "GOLDEN:")
    gcol = None
    if golden:
        same = [g for g in golden if norm(strip_prefix(g)) == norm(strip_prefix(lb))]
        gcol = same[0] if same else (golden[0] if len(golden) == 1 else None)
    items = _item_values(df, it)
    data = build_crowd(items, df[wk], df[lb], report=rep, where=table.where,
                       columns={"item": it_name, "worker": wk, "label": lb}, path=table.path, classes=classes, options=options,
                       drop_reasons=[("blank line", table.blank),
                                     ("assignment rejected (ASSIGNMENT:status = REJECTED)",
                                      _status_drop(df, status, ("rejected",)))])
    if gcol is not None:
        g = pd.DataFrame({"i": items, "g": df[gcol]}).dropna()
        g = g[g["g"].astype("string").str.strip() != ""]
        if len(g):
            ids = clean_ids(pd.Index(g["i"].astype("string").to_numpy()), options.id_transform)
            vals = clean_labels(pd.Index(g["g"].to_numpy(dtype=object)), options, path=table.path)
            gs = pd.Series(vals.to_numpy(), index=pd.Index(ids.to_numpy()))
            pos = g.index.to_numpy()[gs.notna().to_numpy()]
            gs = gs.dropna()
            _refuse_conflicting_gold(gs, pos, table, gcol)
            n_rep = int(gs.index.duplicated().sum())
            if n_rep:
                rep.notes.append(f"{n_rep} repeated {gcol!r} labels (the same label for an item again) merged")
            gs = gs[~gs.index.duplicated(keep="first")]
            known = data.item_ids.get_indexer(gs.index) >= 0
            data = data.with_gold(gs[known], source=table.path)
            data.report[0].columns["gold"] = str(gcol)
            rep.notes.append(f"gold labels for {int(known.sum())} items from {gcol!r} (control tasks)")
    return data


def _refuse_conflicting_gold(gs: pd.Series, pos: np.ndarray, table: Table, gcol: Any) -> None:
    """Different GOLDEN labels for one item are an error, as in a gold file (read_gold)."""
    dup = gs.index.duplicated(keep=False)
    if not dup.any():
        return
    d = pd.DataFrame({"i": np.asarray(gs.index, dtype=object)[dup], "l": gs.to_numpy(dtype=object)[dup],
                      "p": pos[dup]})
    n_lab = d.groupby("i", sort=False)["l"].nunique()
    bad = n_lab[n_lab > 1]
    if len(bad):
        first = bad.index[0]
        rows = d.loc[d["i"] == first, "p"].to_numpy()
        seen = sorted(map(str, d.loc[d["i"] == first, "l"].unique()))
        raise CrowdDataError(f"item {first!r} has different gold labels {seen} in {gcol!r} "
                             f"({', '.join(table.where(rows))}); {len(bad)} item{'s' if len(bad) != 1 else ''} "
                             "disagree like this.", path=table.path, column=str(gcol),
                             hint="correct the control tasks so that each item has one gold label.")


# ----------------------------------------------------------------- JSON
def _load_json(src: Source) -> Any:
    text = src.text.decode("utf-8")
    if src.ext in (".jsonl", ".ndjson"):
        out = []
        for k, ln in enumerate(text.splitlines(), start=1):
            if not ln.strip():
                continue
            try:
                out.append(json.loads(ln))
            except json.JSONDecodeError as e:
                raise src.error(f"malformed JSON ({e.msg}, column {e.colno}).", line=k,
                                hint="each line must be one JSON object.") from None
        return out
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise src.error(f"malformed JSON: {e.msg} (column {e.colno}).", line=e.lineno,
                        hint="check the file is a complete JSON export (not truncated, no trailing commas).") from None
    except RecursionError:
        raise src.error("malformed JSON: nested too deeply.", hint="give a Label Studio JSON export.") from None


def _read_json(src: Source, fmt: str, rep: ReadReport, *, item, worker, label, classes, options,
               max_rows: int = DEFAULT_MAX_ROWS) -> CrowdData:
    obj = _load_json(src)
    if isinstance(obj, list) and len(obj) > max_rows:
        raise src.error(f"the JSON list holds {len(obj):,} records, over the limit of {max_rows:,}.",
                        hint=f"raise {opt('max_rows')} if it is meant to be this big, or split it.", option="max_rows")
    if isinstance(obj, dict):
        for key in ("tasks", "data", "results", "annotations", "records"):
            if isinstance(obj.get(key), list):
                obj = obj[key]
                break
        else:
            obj = [obj]
    if not isinstance(obj, list):
        raise src.error(f"expected a JSON list of tasks, got a {type(obj).__name__}.",
                        hint="give a Label Studio JSON export (a list of tasks) or a list of answer records.")
    if not obj:
        raise src.error("the JSON list is empty: no tasks.", hint="export a project that has annotations.")
    first = next((t for t in obj if isinstance(t, dict)), None)
    if first is None:
        raise src.error("the JSON list holds no objects.", hint="give a Label Studio JSON export.")
    is_ls = any(isinstance(t, dict) and ("annotations" in t or "completions" in t) for t in obj[:100])
    if fmt == "labelstudio" or (fmt == "auto" and is_ls):
        return _read_labelstudio(src, obj, rep, item=item, label=label, classes=classes, options=options)
    # a list of flat records: a long table
    bad = [k for k, t in enumerate(obj[:1000]) if not isinstance(t, dict)]
    if bad:
        raise src.error(f"element {bad[0]} of the JSON list is not an object.",
                        hint="give a list of objects such as {\"item\": 1, \"worker\": \"a\", \"label\": \"cat\"}.")
    try:
        df, nested = drop_nested(records_frame(obj))
    except Exception as e:  # noqa: BLE001
        raise src.error(f"cannot turn the JSON records into a table: {e}.") from None
    table = Table(df=df, name=src.name, path=src.path, has_header=True, first_line=None, row_word="record",
                  blank=df.isna().all(axis=1).to_numpy(), nested=nested)
    return _dispatch_table(table, "long" if fmt == "auto" else fmt, rep, item=item, worker=worker, label=label,
                           classes=classes, options=options)


def _first_choice(result: Any, from_name: Any) -> tuple[Any, Any, int]:
    """(choice, from_name, number of choices) of the first choices result, or (None, None, 0)."""
    if not isinstance(result, list):
        return None, None, 0
    for r in result:
        if not isinstance(r, dict):
            continue
        if from_name is not None and r.get("from_name") != from_name:
            continue
        val = r.get("value")
        ch = val.get("choices") if isinstance(val, dict) else None
        if r.get("type", "choices") == "choices" and isinstance(ch, list) and ch:
            return ch[0], r.get("from_name"), len(ch)
    return None, None, 0


def _read_labelstudio(src: Source, tasks: list, rep: ReadReport, *, item, label, classes, options) -> CrowdData:
    rep.format = "labelstudio"
    items: list[Any] = []
    workers: list[Any] = []
    labels: list[Any] = []
    where: list[str] = []
    cancelled: list[str] = []
    nochoice: list[str] = []
    noworker: list[str] = []
    from_names: set = set()
    multi = 0
    no_ann = 0
    n_ann = 0
    for k, task in enumerate(tasks):
        if not isinstance(task, dict):
            raise src.error(f"task {k} (0-based) of the JSON list is not an object.",
                            hint="give a Label Studio JSON export.")
        tid = task.get("id", k)
        if item is not None:
            d = task.get("data") if isinstance(task.get("data"), dict) else {}
            if item not in d:
                raise src.error(f"task {tid} has no data field {item!r} (item=).",
                                hint=f"data fields are {sorted(d)}; leave item unset to use task ids.")
            tid_val = d[item]
        else:
            tid_val = tid
        anns = task.get("annotations", task.get("completions")) or []
        if not isinstance(anns, list):
            raise src.error(f"task {tid}: 'annotations' is not a list.", hint="give a Label Studio JSON export.")
        if not anns:
            no_ann += 1
        for a_k, ann in enumerate(anns):
            n_ann += 1
            here = f"task {tid} annotation {a_k + 1}"
            if not isinstance(ann, dict):
                nochoice.append(here)
                continue
            if ann.get("was_cancelled"):
                cancelled.append(here)
                continue
            cb = ann.get("completed_by")
            if isinstance(cb, dict):
                cb = cb.get("id", cb.get("email"))
            if cb is None or cb == "":
                noworker.append(here)
                continue
            ch, fn, nch = _first_choice(ann.get("result"), label)
            if ch is None:
                nochoice.append(here)
                continue
            if fn is not None:
                from_names.add(fn)
            multi += nch > 1
            items.append(tid_val)
            workers.append(cb)
            labels.append(ch)
            where.append(here)
    rep.rows_read = n_ann
    rep.skip("annotation cancelled (was_cancelled)", len(cancelled), cancelled)
    rep.skip("annotation has no choice", len(nochoice), nochoice)
    rep.skip("annotation has no completed_by (worker)", len(noworker), noworker)
    if no_ann:
        rep.notes.append(f"{no_ann} tasks have no annotations")
    if multi:
        rep.notes.append(f"{multi} annotations chose several options: the first one is used")
    if len(from_names) > 1 and label is None:
        raise src.error(f"the annotations answer several choice questions {sorted(map(str, from_names))}.",
                        hint=f"pick one with {opt('label')} (the from_name, e.g. "
                             f"{sorted(map(str, from_names))[0]!r}).")
    rep.columns = {"item": f"data.{item}" if item is not None else "task id", "worker": "completed_by",
                   "label": f"result choices ({', '.join(map(str, sorted(map(str, from_names))))})"}
    if not items:
        raise src.error("no usable annotations: every annotation is cancelled or has no choice.",
                        hint="export a project whose annotations use a Choices control.")
    where_arr = np.asarray(where, dtype=object)
    return build_crowd(pd.Series(items, dtype=object), pd.Series(workers, dtype=object),
                       pd.Series(labels, dtype=object), report=rep,
                       where=lambda p: list(where_arr[np.asarray(p, dtype=np.int64)][:5]),
                       columns={"item": rep.columns["item"], "worker": "completed_by", "label": "choices"},
                       path=src.path, classes=classes, options=options)


def is_probably_numeric_table(df: pd.DataFrame) -> bool:
    """Every cell a number or empty (headerless wide files)."""
    sample = df.head(200).to_numpy(dtype=object).ravel()
    return all(v is None or (isinstance(v, float) and np.isnan(v)) or is_numberish(str(v)) for v in sample)
