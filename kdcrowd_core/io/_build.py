"""Answer columns -> CrowdData, vectorised.

Same rules as :meth:`CrowdData.from_frame` (strip text, empty = missing,
integer-looking labels become ints, duplicates keep the last answer), but
every column is factorised once and the cleaning runs on the *unique* values,
so a million answers take a fraction of a second, and skipped rows are
reported with their real file line numbers.
"""
from __future__ import annotations

import re
from typing import Any
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from ..data import CrowdData, ReadReport, _normalise_labels, _sorted_unique
from ..errors import CrowdDataError

_CANON_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,17})")


def _codes(values: Any) -> tuple[np.ndarray, pd.Index]:
    codes, uniq = pd.factorize(values, use_na_sentinel=True)
    return np.asarray(codes, dtype=np.int64), pd.Index(uniq)


def _recode(codes: np.ndarray, clean: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Map codes through cleaned unique values (cleaning may merge values or make them missing)."""
    c2, u2 = pd.factorize(clean, use_na_sentinel=True)
    c2 = np.asarray(c2, dtype=np.int64)
    out = np.full(codes.shape, -1, dtype=np.int64)
    ok = codes >= 0
    out[ok] = c2[codes[ok]]
    return out, pd.Index(u2)


def clean_ids(uniq: pd.Index) -> pd.Series:
    """Ids as the user wrote them: text stripped ("" -> missing); all canonical integers -> int64.

    ``"007"`` stays the text ``"007"``; ``"7"`` becomes the int 7 only when every id is such an integer.
    Integral floats (``3.0``, as Parquet may store ids) become ints.
    """
    if len(uniq) == 0:
        return pd.Series([], dtype=object)
    if pd.api.types.is_bool_dtype(uniq.dtype):
        return pd.Series(uniq.astype(str), dtype=object)
    if pd.api.types.is_integer_dtype(uniq.dtype):
        return pd.Series(np.asarray(uniq, dtype=np.int64))
    if pd.api.types.is_float_dtype(uniq.dtype):
        v = np.asarray(uniq, dtype=np.float64)
        if np.all(np.isfinite(v)) and np.all(np.mod(v, 1) == 0) and np.all(np.abs(v) < 2 ** 53):
            return pd.Series(v.astype(np.int64))
        return pd.Series(v)
    s = pd.Series(uniq).astype("string").str.strip()
    s = s.mask(s == "")
    nn = s.dropna()
    if len(nn) and bool(nn.str.fullmatch(_CANON_INT).all()):
        out = pd.Series(np.full(len(s), -1, dtype=np.int64))
        out[s.notna().to_numpy()] = nn.astype("int64").to_numpy()
        if s.isna().any():
            out = out.astype(object)
            out[s.isna().to_numpy()] = None
        return out
    return pd.Series(s.astype(object).where(s.notna(), None).to_numpy(), dtype=object)


def clean_labels(uniq: pd.Index) -> pd.Series:
    """Labels as CrowdData stores them (see ``data._normalise_labels``), NA where empty."""
    if len(uniq) == 0:
        return pd.Series([], dtype=object)
    s = pd.Series(np.asarray(uniq, dtype=object)) if not pd.api.types.is_numeric_dtype(uniq.dtype) else pd.Series(uniq)
    if s.dtype == object and not all(isinstance(v, str) for v in s.dropna()):
        # mixed python objects (e.g. from JSON): compare as text
        s = s.map(lambda v: v if (v is None or isinstance(v, str)) else (str(v) if not isinstance(v, float)
                                                                          or not np.isnan(v) else None))
    out = _normalise_labels(s)
    if isinstance(out.dtype, pd.Int64Dtype) or str(out.dtype) == "Int64":
        out = out.astype(object).where(out.notna(), None)
        return pd.Series([None if v is None else int(v) for v in out], dtype=object)
    return out.astype(object).where(out.notna(), None)


def to_plain_index(values: pd.Index | Sequence) -> pd.Index:
    """An Index with numpy dtypes: ints as int64, everything else object/str."""
    idx = pd.Index(values)
    if idx.dtype == object and len(idx) and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                                for v in idx):
        return pd.Index(np.asarray(idx, dtype=np.int64))
    if isinstance(idx.dtype, pd.Int64Dtype):
        return pd.Index(idx.to_numpy(dtype=np.int64))
    return idx


def build_crowd(item: Any, worker: Any, label: Any, *, report: ReadReport, where: Callable[[np.ndarray], list[str]],
                columns: dict[str, Any], path: str | None, classes: Sequence | None = None,
                drop: np.ndarray | None = None, drop_reasons: Sequence[tuple[str, np.ndarray]] = (),
                min_classes: int = 2) -> CrowdData:
    """Build CrowdData from three equally long columns (one entry per answer row).

    ``drop_reasons``: (reason, mask) pairs of rows to skip before anything
    else (blank lines, rejected assignments), reported in that order.
    ``where(positions)`` turns row positions into "line N" strings.
    ``columns`` names the source column of each role, for messages.
    """
    n = len(item)
    skip = np.zeros(n, dtype=bool)
    for reason, mask in drop_reasons:
        m = np.asarray(mask, dtype=bool) & ~skip
        report.skip(reason, int(m.sum()), where(np.flatnonzero(m)))
        skip |= m

    ic, iu = _codes(item)
    ic, iu = _recode(ic, clean_ids(iu))
    wc, wu = _codes(worker)
    wc, wu = _recode(wc, clean_ids(wu))
    lc, lu = _codes(label)
    lc, lu = _recode(lc, clean_labels(lu))

    miss_i = (ic < 0) & ~skip
    miss_w = (wc < 0) & ~skip & ~miss_i
    miss_l = (lc < 0) & ~skip & ~miss_i & ~miss_w
    report.skip(f"no item id (column {columns.get('item')!r} empty)", int(miss_i.sum()), where(np.flatnonzero(miss_i)))
    report.skip(f"no worker id (column {columns.get('worker')!r} empty)", int(miss_w.sum()),
                where(np.flatnonzero(miss_w)))
    report.skip(f"no label (column {columns.get('label')!r} empty)", int(miss_l.sum()), where(np.flatnonzero(miss_l)))
    report.missing_labels += int(miss_l.sum())
    keep = ~(skip | miss_i | miss_w | miss_l)
    rows = np.flatnonzero(keep)
    if rows.size == 0:
        raise CrowdDataError(
            "no usable answers: every row lacks an item, a worker or a label"
            f" (columns used: item={columns.get('item')!r}, worker={columns.get('worker')!r}, "
            f"label={columns.get('label')!r}).", path=path,
            hint="check that these are the right columns and that they are filled in; name them with "
                 "item=, worker=, label= if not.")
    ic, wc, lc = ic[rows], wc[rows], lc[rows]

    # duplicates: keep the last answer of each (item, worker)
    key = ic * np.int64(max(len(wu), 1)) + wc
    dup = pd.Index(key).duplicated(keep="last")
    n_dup = int(dup.sum())
    if n_dup:
        report.duplicates += n_dup
        report.notes.append("repeated (item, worker) answers (the earlier ones were dropped) at e.g. "
                            + ", ".join(where(rows[dup])))
        ic, wc, lc, rows = ic[~dup], wc[~dup], lc[~dup], rows[~dup]

    # compact ids in order of first appearance among kept answers
    i2, i_first = pd.factorize(ic)
    w2, w_first = pd.factorize(wc)
    item_ids = to_plain_index(iu.take(np.asarray(i_first)))
    worker_ids = to_plain_index(wu.take(np.asarray(w_first)))

    used = np.unique(lc)
    lab_used = pd.Index(lu.take(used))
    if classes is None:
        cls_index = to_plain_index(_sorted_unique(pd.Series(np.asarray(lab_used, dtype=object))))
    else:
        cls_index = to_plain_index(pd.Index(clean_labels(pd.Index(list(classes), dtype=object)).dropna().tolist()))
        if cls_index.has_duplicates:
            raise CrowdDataError(f"classes= repeats a class: {list(cls_index[cls_index.duplicated()])}.",
                                 hint="list each class once.")
        bad = cls_index.get_indexer(lab_used) < 0
        if bad.any():
            bad_codes = used[bad]
            first_bad = rows[np.isin(lc, bad_codes)]
            raise CrowdDataError(
                f"labels {list(lab_used[bad][:5])} in column {columns.get('label')!r} are not among the declared "
                f"classes {list(cls_index)} (first at {where(first_bad[:1])[0]}).", path=path,
                hint="declare every class in classes=, or leave classes unset to take them from the answers.")
    if len(used) < 2:
        only = lab_used[0]
        raise CrowdDataError(
            f"every answer has the same label ({only!r}, {len(rows)} answers in column {columns.get('label')!r}): "
            "with one class there is nothing to infer.", path=path, column=columns.get("label"),
            hint="check that this is the label column (name it with label=) and that the file holds all answers.")
    map_codes = np.full(len(lu), -1, dtype=np.int64)
    map_codes[used] = cls_index.get_indexer(lab_used)
    data = CrowdData(item=np.asarray(i2, dtype=np.int64), worker=np.asarray(w2, dtype=np.int64),
                     label=map_codes[lc], item_ids=item_ids, worker_ids=worker_ids, classes=cls_index,
                     report=[report])
    report.answers = data.n_answers
    data.validate(min_classes=min_classes)
    return data
