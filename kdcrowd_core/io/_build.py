"""Answer columns -> CrowdData, vectorised.

Ids and labels are cleaned as the :class:`~kdcrowd_core.io.options.ReadOptions`
say (:mod:`kdcrowd_core.io.normalise`: empty = missing, distinct raw labels
stay distinct unless an option merges them; repeated answers all count unless
``duplicates`` says otherwise); every column is factorised once and the cleaning
runs on the *unique* values,
so a million answers take a fraction of a second, and skipped rows are
reported with their real file line numbers.
"""
from __future__ import annotations

from typing import Any
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from ..data import CrowdData, ReadReport, _sorted_unique
from ..errors import CrowdDataError, opt
from .normalise import clean_ids, clean_labels
from .options import ReadOptions

__all__ = ["build_crowd", "clean_ids", "clean_labels", "to_plain_index", "apply_duplicates"]


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


def to_plain_index(values: pd.Index | Sequence) -> pd.Index:
    """An Index with numpy dtypes: ints as int64, everything else object/str."""
    idx = pd.Index(values)
    if idx.dtype == object and len(idx) and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                                for v in idx):
        return pd.Index(np.asarray(idx, dtype=np.int64))
    if isinstance(idx.dtype, pd.Int64Dtype):
        return pd.Index(idx.to_numpy(dtype=np.int64))
    return idx


def apply_duplicates(item: np.ndarray, worker: np.ndarray, n_workers: int, policy: str) -> np.ndarray:
    """Mask of answers to keep under ``policy`` ("all", "last" or "first") for repeated (item, worker) pairs."""
    if policy == "all":
        return np.ones(item.shape, dtype=bool)
    key = item * np.int64(max(n_workers, 1)) + worker
    return ~pd.Index(key).duplicated(keep="last" if policy == "last" else "first")


def build_crowd(item: Any, worker: Any, label: Any, *, report: ReadReport, where: Callable[[np.ndarray], list[str]],
                columns: dict[str, Any], path: str | None, classes: Sequence | None = None,
                drop_reasons: Sequence[tuple[str, np.ndarray]] = (), min_classes: int = 2,
                options: ReadOptions | None = None, empty_hint: str | None = None) -> CrowdData:
    """Build CrowdData from three equally long columns (one entry per answer row).

    ``drop_reasons``: (reason, mask) pairs of rows to skip before anything
    else (blank lines, rejected assignments), reported in that order.
    ``where(positions)`` turns row positions into "line N" strings.
    ``columns`` names the source column of each role, for messages.
    ``options``: id transform, label normalisation and the duplicates policy
    (:class:`~kdcrowd_core.io.options.ReadOptions`).
    """
    o = options or ReadOptions()
    if classes is None and o.classes is not None:
        classes = list(o.classes)
    n = len(item)
    skip = np.zeros(n, dtype=bool)
    dropped_by: list[tuple[str, int]] = []
    for reason, mask in drop_reasons:
        m = np.asarray(mask, dtype=bool) & ~skip
        report.skip(reason, int(m.sum()), where(np.flatnonzero(m)))
        if m.any():
            dropped_by.append((reason, int(m.sum())))
        skip |= m

    ic, iu = _codes(item)
    ic, iu = _recode(ic, clean_ids(iu, o.id_transform, report.notes, "item ids"))
    wc, wu = _codes(worker)
    wc, wu = _recode(wc, clean_ids(wu, ("strip",) if "strip" in o.id_transform else (), report.notes, "worker ids"))
    lc, lu = _codes(label)
    lc, lu = _recode(lc, clean_labels(lu, o, report.notes, path))

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
        if dropped_by and not (miss_i | miss_w | miss_l).any():
            reasons = "; ".join(f"{r}: {c} row{'s' if c != 1 else ''}" for r, c in dropped_by)
            raise CrowdDataError(f"no usable answers: every row was left out ({reasons}).", path=path,
                                 hint=empty_hint or "give a file whose rows hold answers to use.")
        raise CrowdDataError(
            "no usable answers: every row lacks an item, a worker or a label"
            f" (columns used: item={columns.get('item')!r}, worker={columns.get('worker')!r}, "
            f"label={columns.get('label')!r}).", path=path,
            hint=f"check that these are the right columns and that they are filled in; name them with "
                 f"{opt('item')}, {opt('worker')}, {opt('label')} if not.")
    ic, wc, lc = ic[rows], wc[rows], lc[rows]

    # a worker's repeated answers to one item: all count, or keep the last / first (ReadOptions.duplicates)
    key = ic * np.int64(max(len(wu), 1)) + wc
    repeated = pd.Index(key).duplicated(keep="first")
    n_rep = int(repeated.sum())
    if n_rep:
        if o.duplicates == "all":
            report.notes.append(f"{n_rep} repeated (item, worker) answers all count (duplicates='all'), e.g. "
                                + ", ".join(where(rows[repeated])))
        else:
            kept = apply_duplicates(ic, wc, len(wu), o.duplicates)
            report.duplicates += n_rep
            report.notes.append(f"{n_rep} repeated (item, worker) answers dropped, the {o.duplicates} one of each "
                                f"kept (duplicates={o.duplicates!r}), e.g. " + ", ".join(where(rows[~kept])))
            ic, wc, lc, rows = ic[kept], wc[kept], lc[kept], rows[kept]

    # compact ids in order of first appearance among kept answers
    i2, i_first = pd.factorize(ic)
    w2, w_first = pd.factorize(wc)
    item_ids = to_plain_index(iu.take(np.asarray(i_first)))
    worker_ids = to_plain_index(wu.take(np.asarray(w_first)))

    used = np.unique(lc)
    lab_used = pd.Index(lu.take(used))
    if classes is None and o.label_map:
        order = list(dict.fromkeys(o.label_map.values()))
        classes = [c for c in order if c in set(lab_used)]
    if classes is None:
        cls_index = to_plain_index(_sorted_unique(pd.Series(np.asarray(lab_used, dtype=object))))
    else:
        cls_index = to_plain_index(pd.Index(clean_labels(pd.Index(list(classes), dtype=object), o.replace(
            label_map=None)).dropna().tolist()))
        if cls_index.has_duplicates:
            raise CrowdDataError(f"classes= repeats a class: {list(cls_index[cls_index.duplicated()])}.",
                                 hint="list each class once.", option="classes")
        bad = cls_index.get_indexer(lab_used) < 0
        if bad.any():
            bad_codes = used[bad]
            first_bad = rows[np.isin(lc, bad_codes)]
            raise CrowdDataError(
                f"labels {list(lab_used[bad][:5])} in column {columns.get('label')!r} are not among the declared "
                f"classes {list(cls_index)} (first at {where(first_bad[:1])[0]}).", path=path,
                hint=f"declare every class in {opt('classes')}, or leave it unset to take them from the answers.")
    if len(used) < 2:
        only = lab_used[0]
        raise CrowdDataError(
            f"every answer has the same label ({only!r}, {len(rows)} answers in column {columns.get('label')!r}): "
            "with one class there is nothing to infer.", path=path, column=columns.get("label"),
            hint=f"check that this is the label column (name it with {opt('label')}) and that the file holds "
                 "all answers.")
    map_codes = np.full(len(lu), -1, dtype=np.int64)
    map_codes[used] = cls_index.get_indexer(lab_used)
    data = CrowdData(item=np.asarray(i2, dtype=np.int64), worker=np.asarray(w2, dtype=np.int64),
                     label=map_codes[lc], item_ids=item_ids, worker_ids=worker_ids, classes=cls_index,
                     report=[report])
    report.answers = data.n_answers
    data.validate(min_classes=min_classes)
    return data
