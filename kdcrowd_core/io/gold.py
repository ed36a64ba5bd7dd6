"""read_gold: true labels of some items (for evaluation, or clamped as known truths)."""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from ..data import ReadReport
from ..errors import CrowdDataError, opt
from ._build import clean_ids, clean_labels, to_plain_index
from ._columns import ALIASES, GOLD_LABEL_TIERS, MTURK_INPUT, _show, is_truth_name, norm, resolve_explicit
from ._source import DEFAULT_MAX_BYTES, DEFAULT_MAX_ROWS, open_source
from .options import ReadOptions
from .options import resolve as resolve_options
from ._table import Table, delimiter_name, drop_nested, records_frame, detect_header, frame_table, read_parquet_table, read_text_table


def _gold_header(rows: list[list[str]]) -> bool:
    return detect_header(rows, names_only=True)


def read_gold(source: Any, *, item: Any = None, label: Any = None, name: str | None = None,
              max_bytes: int = DEFAULT_MAX_BYTES, options: ReadOptions | dict | None = None,
              max_rows: int = DEFAULT_MAX_ROWS) -> pd.Series:
    """Read gold (true) labels: a Series item id -> label.

    Accepted layouts (docs/formats.md, "Gold"):

    * a table with an item column (``item``, ``task``, ``question``, ``id``, ...)
      and a label column (``truth``, ``gold``, ``true_label``, ``label``,
      ``class``, ...), or named with ``item=``/``label=``;
    * two columns without a header: item id, label;
    * one column without a header (one label per line, as LabelMe's
      ``*_Z_*.txt``): item ids are the line numbers 0..n-1;
    * a 1-D ``.npy`` array (ids 0..n-1) or a JSON object ``{item: label}``;
    * an MTurk batch file with a truth-like ``Input.*`` column, a Toloka file
      with ``GOLDEN:*`` columns.

    ``options`` (:class:`~kdcrowd_core.io.options.ReadOptions`): ``gold_item``,
    ``gold_label`` name the columns (``item=``/``label=`` override them); the
    id transform and the label normalisation (label map included) apply as
    for the answers.

    Returns
    -------
    pandas.Series
        Index: item ids (ints when every id is an integer written without
        leading zeros, else text), named ``"item"``.  Values: labels (ints when
        all integer).  Name ``"gold"``.  Items without a label are dropped;
        repeated items must agree.  ``series.attrs["report"]`` is the
        :class:`~kdcrowd_core.data.ReadReport`.
    """
    o = resolve_options(options)
    item = item if item is not None else o.gold_item
    label = label if label is not None else o.gold_label
    if isinstance(source, pd.Series):
        rep = ReadReport(source=name or "<Series>", format="gold")
        return _finish(pd.Series(source.to_numpy(dtype=object)), pd.Series(np.asarray(source.index, dtype=object)),
                       rep, None, lambda p: [f"row {int(x) + 1}" for x in p[:5]], options=o)
    if isinstance(source, pd.DataFrame):
        table = frame_table(source, name)
        rep = ReadReport(source=table.name, format="gold")
        return _from_table(table, rep, item=item, label=label, options=o)
    src = open_source(source, name=name, max_bytes=max_bytes, kinds=("text", "parquet", "json", "npy"), what="gold",
                      max_rows=max_rows)
    rep = ReadReport(source=src.name, format="gold", encoding=src.encoding)
    if src.kind == "npy":
        from .features import load_npy
        arr = load_npy(src)
        if arr.ndim != 1 and not (arr.ndim == 2 and arr.shape[1] == 1):
            raise src.error(f"a gold .npy must be 1-D (one label per item), got shape {arr.shape}.",
                            hint="save the labels with numpy.save(path, labels) where labels has shape (n,).")
        arr = arr.reshape(-1)
        rep.columns = {"item": "<row number>", "label": "<array values>"}
        rep.rows_read = int(arr.size)
        return _finish(pd.Series(arr.astype(object)), pd.Series(np.arange(arr.size, dtype=np.int64)), rep, src.path,
                       lambda p: [f"row {int(x)}" for x in p[:5]], options=o)
    if src.kind == "json":
        try:
            obj = json.loads(src.text.decode("utf-8"))
        except json.JSONDecodeError as e:
            raise src.error(f"malformed JSON: {e.msg} (column {e.colno}).", line=e.lineno,
                            hint="give an object {\"item id\": \"label\", ...} or a list of records.") from None
        if isinstance(obj, dict) and obj and all(not isinstance(v, (dict, list)) for v in obj.values()):
            rep.columns = {"item": "<keys>", "label": "<values>"}
            rep.rows_read = len(obj)
            keys = list(obj)
            return _finish(pd.Series(list(obj.values()), dtype=object), pd.Series(keys, dtype=object), rep, src.path,
                           lambda p: [f"key {keys[int(x)]!r}" for x in p[:5]], options=o)
        if isinstance(obj, list) and obj and all(isinstance(r, dict) for r in obj):
            df, nested = drop_nested(records_frame(obj))
            table = Table(df=df, name=src.name, path=src.path, has_header=True, first_line=None, row_word="record",
                          blank=df.isna().all(axis=1).to_numpy(), nested=nested)
            return _from_table(table, rep, item=item, label=label, options=o)
        raise src.error("gold JSON must be an object {item: label} or a list of records with item and label.",
                        hint="e.g. {\"img1\": \"cat\", \"img2\": \"dog\"}.")
    if src.kind == "parquet":
        table = read_parquet_table(src, what="gold")
    else:
        table, sep = read_text_table(src, header_rule=_gold_header, what="gold")
        rep.delimiter = delimiter_name(sep)
    return _from_table(table, rep, item=item, label=label, options=o)


def _from_table(table: Table, rep: ReadReport, *, item, label, options: ReadOptions) -> pd.Series:
    note = table.nested_note()
    if note:
        rep.notes.append(note)
        try:
            return _from_table_checked(table, rep, item=item, label=label, options=options)
        except CrowdDataError as e:
            raise CrowdDataError(e.message_template + " Note: " + note + ".", path=e.path, line=e.line,
                                 column=e.column, option=e.option, hint=e.hint_template) from None
    return _from_table_checked(table, rep, item=item, label=label, options=options)


def _from_table_checked(table: Table, rep: ReadReport, *, item, label, options: ReadOptions) -> pd.Series:
    df = table.df
    rep.rows_read = int(len(df))
    if len(df) == 0 or table.blank.all():
        raise CrowdDataError("the gold file has no data rows.", path=table.path,
                             hint="add one row per item: item id, label.")
    item_col, label_col = _gold_columns(table, item, label)
    def _cname(c):
        return f"<column {c}>" if not table.has_header else str(c)
    rep.columns = {"item": "<row number>" if item_col is None else _cname(item_col), "label": _cname(label_col)}
    keep = ~table.blank
    labels = df[label_col]
    if item_col is None:
        rep.notes.append("one column: item ids are the row numbers 0..n-1")
        ids = pd.Series(np.arange(len(df), dtype=np.int64))
    else:
        ids = df[item_col]
    if table.blank.any():
        rep.skip("blank line", int(table.blank.sum()), table.where(np.flatnonzero(table.blank)))
    pos = np.flatnonzero(keep)
    return _finish(labels.iloc[pos].reset_index(drop=True), ids.iloc[pos].reset_index(drop=True), rep, table.path,
                   lambda p: table.where(pos[np.asarray(p, dtype=np.int64)]), label_col=label_col,
                   options=options)


def _gold_columns(table: Table, item, label) -> tuple[Any, Any]:
    df = table.df
    cols = list(df.columns)
    path = table.path
    it = resolve_explicit(cols, item, "item", path=path, kwarg="gold_item") if item is not None else None
    lb = resolve_explicit(cols, label, "label", path=path, kwarg="gold_label") if label is not None else None
    if it is not None and lb is not None:
        return it, lb
    if not table.has_header:
        if len(cols) == 1 and it is None:
            return None, lb if lb is not None else cols[0]
        if len(cols) == 2:
            return (it if it is not None else cols[0] if lb != cols[0] else cols[1],
                    lb if lb is not None else cols[1] if it != cols[1] else cols[0])
        raise CrowdDataError(f"a headerless gold file must have 1 column (labels) or 2 (item id, label); "
                             f"this one has {len(cols)}.", path=path, line=1,
                             hint="add a header line such as item,truth.")
    low = [str(c).strip().lower() for c in cols]
    # platform files: MTurk (Input.* truth column), Toloka (GOLDEN:*)
    if lb is None:
        inputs = [c for c in cols if str(c).lower().startswith(MTURK_INPUT) or str(c).upper().startswith("INPUT:")]
        tr = [c for c in inputs if is_truth_name(c)] + [c for c in cols if str(c).upper().startswith("GOLDEN:")]
        if len(tr) == 1:
            lb = tr[0]
            if it is None:
                cand = [c for c in inputs if not is_truth_name(c)]
                if len(cand) == 1:
                    it = cand[0]
                elif "hitid" in low:
                    it = cols[low.index("hitid")]
    if lb is None:
        lb = _pick(cols, GOLD_LABEL_TIERS, [it], "label", path)
    if it is None:
        it = _pick(cols, ALIASES["item"], [lb], "item", path, allow_missing=True)
        if it is None:
            if len(cols) == 1:
                return None, lb
            if len(cols) == 2:
                return [c for c in cols if c != lb][0], lb
            raise CrowdDataError(f"no item column: none of {_show(cols)} is named like one (item, task, question, "
                                 "id, ...).", path=path, hint=f"name it with {opt('gold_item')}.", option="gold_item")
    return it, lb


def _pick(cols, tiers, exclude, role, path, allow_missing=False):
    ex = {str(e) for e in exclude if e is not None}
    for names in tiers:
        found = [c for c in cols if str(c) not in ex and norm(c) in names]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise CrowdDataError(f"{len(found)} columns could be the gold {role}: {_show(found)}.", path=path,
                                 hint=f"name it with {opt('gold_' + role)} (e.g. {str(found[0])!r}).")
    if allow_missing:
        return None
    if len(cols) == 2:
        return [c for c in cols if str(c) not in ex][-1]
    raise CrowdDataError(f"no gold {role} column: none of {_show(cols)} is named like one "
                         f"({', '.join(tiers[0][:6])}, label, class, ...).", path=path,
                         hint=f"name it with {opt('gold_' + role)}.")


def _finish(labels: pd.Series, ids: pd.Series, rep: ReadReport, path, where, label_col=None, *,
            options: ReadOptions) -> pd.Series:
    ic, iu = pd.factorize(ids, use_na_sentinel=True)
    ic = np.asarray(ic, dtype=np.int64)
    id_clean = clean_ids(pd.Index(iu), options.id_transform, rep.notes)
    lc, lu = pd.factorize(labels, use_na_sentinel=True)
    lc = np.asarray(lc, dtype=np.int64)
    lab_clean = clean_labels(pd.Index(lu), options, rep.notes, path)
    id_vals = np.where(ic >= 0, ic, 0)
    idv = id_clean.to_numpy(dtype=object)[id_vals] if len(id_clean) else np.array([None] * len(ic), dtype=object)
    idv[ic < 0] = None
    lv = lab_clean.to_numpy(dtype=object)[np.where(lc >= 0, lc, 0)] if len(lab_clean) else \
        np.array([None] * len(lc), dtype=object)
    lv[lc < 0] = None
    no_id = pd.isna(idv)
    no_lab = pd.isna(lv) & ~no_id
    rep.skip("no item id", int(no_id.sum()), where(np.flatnonzero(no_id)))
    rep.skip("no label", int(no_lab.sum()), where(np.flatnonzero(no_lab)))
    ok = np.flatnonzero(~(no_id | no_lab))
    if ok.size == 0:
        raise CrowdDataError("the gold file has no labelled items.", path=path,
                             hint="fill in the label column (one label per item).")
    s = pd.Series(lv[ok], index=to_plain_index(pd.Index(list(idv[ok]), dtype=object)))
    dup_mask = s.index.duplicated(keep=False)
    if dup_mask.any():
        d = pd.DataFrame({"i": np.asarray(s.index, dtype=object)[dup_mask], "l": s.to_numpy()[dup_mask],
                          "p": ok[dup_mask]})
        conflict = d.groupby("i", sort=False)["l"].nunique()
        bad = conflict[conflict > 1]
        if len(bad):
            first = bad.index[0]
            rows = d.loc[d["i"] == first, "p"].to_numpy()
            first_py = first.item() if isinstance(first, np.generic) else first
            labels_seen = sorted(map(str, d.loc[d["i"] == first, "l"].unique()))
            raise CrowdDataError(
                f"item {first_py!r} has different gold labels {labels_seen} "
                f"({', '.join(where(rows))}); {len(bad)} items disagree like this.", path=path,
                column=label_col, hint="keep one gold label per item.")
        n_rep = int(s.index.duplicated().sum())
        rep.notes.append(f"{n_rep} repeated rows with the same gold label were merged")
        s = s[~s.index.duplicated(keep="first")]
    vals = s.to_numpy(dtype=object)
    if len(vals) and all(isinstance(v, (int, np.integer)) for v in vals):
        s = pd.Series(vals.astype(np.int64), index=s.index)
    s.index.name = "item"
    s.name = "gold"
    rep.answers = int(len(s))
    s.attrs["report"] = rep
    return s
