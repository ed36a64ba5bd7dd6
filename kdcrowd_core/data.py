"""The data model: crowd answers as three int arrays plus index maps.

A :class:`CrowdData` never holds a dense items x workers array.  Answers are
the triples ``(item[a], worker[a], label[a])`` for ``a`` in ``range(n_answers)``;
``item_ids``, ``worker_ids`` and ``classes`` map the integer codes back to the
user's own item ids, worker ids and label names.  Optional per-item
``features`` (N x d float32) and ``gold`` (N int codes, ``-1`` = unknown)
travel with it.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from .errors import CrowdDataError, MissingColumnError

NO_GOLD = -1

#: What happens when a worker answers the same item more than once:
#: ``"all"`` every answer counts (as in Crowd-Kit; the default), ``"last"`` / ``"first"``
#: keep one answer per (item, worker).  Reports note the repeats either way
#: (``ReadReport.duplicates`` counts the answers dropped).
DUPLICATE_POLICIES = ("all", "last", "first")


def _note_repeats(rep: ReadReport, n_repeat: int, n_drop: int, policy: str) -> None:
    """Report repeated (item, worker) answers the way the readers do."""
    if not n_repeat:
        return
    rep.duplicates += n_drop
    if policy == "all":
        rep.notes.append(f"{n_repeat} repeated (item, worker) answers all count (duplicates='all')")
    else:
        rep.notes.append(f"{n_repeat} repeated (item, worker) answers dropped, the {policy} one of each kept "
                         f"(duplicates={policy!r})")


def duplicate_mask(item: np.ndarray, worker: np.ndarray, n_workers: int, policy: str = "all"
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Repeated (item, worker) answers under a duplicates policy.

    Returns ``(repeat, drop)``: ``repeat`` marks every answer after the first of its
    (item, worker) pair (what the reading report counts), ``drop`` the answers the
    policy removes (none for ``"all"``).
    """
    if policy not in DUPLICATE_POLICIES:
        raise CrowdDataError(f"duplicates must be one of {', '.join(map(repr, DUPLICATE_POLICIES))}; "
                             f"got {policy!r}.", hint='use "all" (every answer counts), "last" or "first".')
    key = pd.Index(np.asarray(item, dtype=np.int64) * np.int64(max(n_workers, 1)) + np.asarray(worker))
    repeat = np.asarray(key.duplicated(keep="first"))
    if policy == "all" or not repeat.any():
        return repeat, np.zeros(len(key), dtype=bool)
    drop = repeat if policy == "first" else np.asarray(key.duplicated(keep="last"))
    return repeat, drop


@dataclass
class ReadReport:
    """What a reader read, what it skipped and why.

    ``skipped`` is a list of ``{"reason": str, "count": int, "examples": [str]}``;
    examples are short "line N: ..." strings so a user can find the rows.
    """

    source: str = "<memory>"
    format: str = "long"
    rows_read: int = 0
    answers: int = 0
    duplicates: int = 0
    missing_labels: int = 0
    columns: dict[str, str] = field(default_factory=dict)
    encoding: str | None = None
    delimiter: str | None = None
    skipped: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def skip(self, reason: str, count: int, examples: Iterable[str] = ()) -> None:
        if count:
            self.skipped.append({"reason": reason, "count": int(count), "examples": list(examples)[:5]})

    @property
    def n_skipped(self) -> int:
        return int(sum(s["count"] for s in self.skipped))

    def to_dict(self, interface: str = "library") -> dict[str, Any]:
        """Plain types; notes and reasons name options as ``interface`` does ("library", "cli", "dashboard")."""
        from .errors import render_text
        return {
            "source": self.source, "format": self.format, "rows_read": self.rows_read,
            "answers": self.answers, "duplicates": self.duplicates,
            "missing_labels": self.missing_labels, "columns": dict(self.columns),
            "encoding": self.encoding, "delimiter": self.delimiter,
            "skipped": [{**s, "reason": render_text(s["reason"], interface)} for s in self.skipped],
            "notes": [render_text(n, interface) for n in self.notes],
        }

    def to_text(self, interface: str = "library") -> str:
        """Human-readable summary, one fact per line.

        The first line counts what was kept in the words of the file's kind:
        "N gold labels kept" for ``format="gold"``, "N feature rows" for
        ``format="features"``, "N answers kept" for every answers format.
        """
        n = self.answers
        if self.format == "gold":
            kept = f"{n} gold label{'' if n == 1 else 's'} kept"
        elif self.format == "features":
            kept = f"{n} feature row{'' if n == 1 else 's'}"
        else:
            kept = f"{n} answers kept"
        lines = [f"{self.source} ({self.format}): {self.rows_read} rows read, {kept}"]
        if self.columns:
            lines.append("  columns: " + ", ".join(f"{k}={v!r}" for k, v in self.columns.items()))
        if self.encoding or self.delimiter:
            lines.append(f"  encoding={self.encoding or '?'} delimiter={self.delimiter!r}")
        if self.duplicates:
            lines.append(f"  {self.duplicates} repeated (item, worker) answers dropped (one kept of each)")
        from .errors import render_text
        for s in self.skipped:
            ex = ("; e.g. " + "; ".join(s["examples"])) if s.get("examples") else ""
            lines.append(f"  skipped {s['count']}: {render_text(s['reason'], interface)}{ex}")
        for n in self.notes:
            lines.append(f"  note: {render_text(n, interface)}")
        return "\n".join(lines)


def _sorted_unique(values: pd.Series | np.ndarray) -> pd.Index:
    """Unique values in a stable, human order: numeric sort when all numeric, else string sort."""
    uniq = pd.unique(pd.Series(values).dropna())
    try:
        num = pd.to_numeric(pd.Series(uniq), errors="raise")
        order = np.argsort(num.to_numpy(), kind="stable")
        return pd.Index(uniq[order])
    except (ValueError, TypeError):
        return pd.Index(sorted(uniq, key=lambda v: str(v)))


def _normalise_labels(values: pd.Series) -> pd.Series:
    """Make label values comparable: integral floats -> int, strings stripped."""
    s = values
    if s.dtype == object or pd.api.types.is_string_dtype(s):
        s = s.astype("string").str.strip()
        s = s.mask(s == "", pd.NA)
        # numeric-looking strings stay strings unless they all are integers
        num = pd.to_numeric(s, errors="coerce")
        if num.notna().sum() == s.notna().sum() and s.notna().any():
            if np.all(np.mod(num.dropna().to_numpy(), 1) == 0):
                return num.astype("Int64")
            return num
        return s.astype(object).where(s.notna(), None)
    if pd.api.types.is_float_dtype(s):
        nn = s.dropna()
        if len(nn) and np.all(np.mod(nn.to_numpy(), 1) == 0):
            return s.astype("Int64")
    return s


class AnswerSizes:
    """Sizes and counts derived from the answer arrays (``item``, ``worker``, ``gold``) and the index maps
    (``item_ids``, ``worker_ids``, ``classes``); shared by :class:`CrowdData` and the chunked reader's shards."""

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_workers(self) -> int:
        return len(self.worker_ids)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def n_answers(self) -> int:
        return int(self.item.shape[0])

    @property
    def has_gold(self) -> bool:
        return self.gold is not None and bool(np.any(self.gold >= 0))

    @property
    def gold_mask(self) -> np.ndarray:
        if self.gold is None:
            return np.zeros(self.n_items, dtype=bool)
        return self.gold >= 0

    def answers_per_item(self) -> np.ndarray:
        return np.bincount(self.item, minlength=self.n_items)

    def answers_per_worker(self) -> np.ndarray:
        return np.bincount(self.worker, minlength=self.n_workers)


@dataclass
class CrowdData(AnswerSizes):
    """Crowd answers, sparse and long.

    Attributes
    ----------
    item, worker, label : int64 arrays of shape (n_answers,)
        Codes into ``item_ids``, ``worker_ids`` and ``classes``.
    item_ids, worker_ids, classes : pandas.Index
        The user's item ids, worker ids and label names.
    gold : int64 array (n_items,) or None
        Gold class code per item, ``-1`` where unknown.
    features : float32 array (n_items, d) or None
    feature_names : list of str or None
    report : list of ReadReport
    """

    item: np.ndarray
    worker: np.ndarray
    label: np.ndarray
    item_ids: pd.Index
    worker_ids: pd.Index
    classes: pd.Index
    gold: np.ndarray | None = None
    features: np.ndarray | None = None
    feature_names: list[str] | None = None
    report: list[ReadReport] = field(default_factory=list)


    def label_counts(self) -> np.ndarray:
        return np.bincount(self.label, minlength=self.n_classes)

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        extra = []
        if self.features is not None:
            extra.append(f"features={self.features.shape[1]}")
        if self.has_gold:
            extra.append(f"gold={int(self.gold_mask.sum())}")
        return (f"CrowdData(items={self.n_items}, workers={self.n_workers}, classes={self.n_classes}, "
                f"answers={self.n_answers}{', ' + ', '.join(extra) if extra else ''})")

    # ----------------------------------------------------------- construction
    @classmethod
    def from_arrays(cls, item, worker, label, *, n_items=None, n_workers=None, n_classes=None,
                    item_ids=None, worker_ids=None, classes=None, gold=None, features=None,
                    feature_names=None, validate: bool = True) -> CrowdData:
        """Build from integer codes (no copies of the user's ids needed).

        Missing id maps default to ``0..n-1``.
        """
        item = np.ascontiguousarray(item, dtype=np.int64)
        worker = np.ascontiguousarray(worker, dtype=np.int64)
        label = np.ascontiguousarray(label, dtype=np.int64)
        if not (item.shape == worker.shape == label.shape) or item.ndim != 1:
            raise CrowdDataError("item, worker and label arrays must be 1-D and of equal length.")
        def _n(arr, n, ids):
            if ids is not None:
                return len(ids)
            if n is not None:
                return int(n)
            return int(arr.max()) + 1 if arr.size else 0
        ni, nw, nk = _n(item, n_items, item_ids), _n(worker, n_workers, worker_ids), _n(label, n_classes, classes)
        data = cls(
            item=item, worker=worker, label=label,
            item_ids=pd.Index(item_ids if item_ids is not None else np.arange(ni)),
            worker_ids=pd.Index(worker_ids if worker_ids is not None else np.arange(nw)),
            classes=pd.Index(classes if classes is not None else np.arange(nk)),
            gold=None if gold is None else np.asarray(gold, dtype=np.int64),
            features=None if features is None else np.ascontiguousarray(features, dtype=np.float32),
            feature_names=feature_names,
        )
        if validate:
            data.validate()
        return data

    @classmethod
    def from_frame(cls, df: pd.DataFrame, *, item: str = "task", worker: str = "worker",
                   label: str = "label", classes: Sequence | None = None,
                   report: ReadReport | None = None, line_offset: int = 2,
                   min_classes: int = 2, duplicates: str = "all") -> CrowdData:
        """Build from a long table with one row per answer.

        Rows with no label are dropped (counted in the report); repeated
        ``(item, worker)`` answers follow ``duplicates`` (:data:`DUPLICATE_POLICIES`:
        ``"all"`` keeps every answer, ``"last"``/``"first"`` one per pair; counted
        either way).  Text ids and labels are stripped here (use
        :meth:`from_answers_frame` to keep them exactly).  ``line_offset``
        converts a row position into a file line number for messages
        (2 = header line plus 1-based numbering).
        """
        rep = report if report is not None else ReadReport(source="<DataFrame>")
        for role, col in (("item", item), ("worker", worker), ("label", label)):
            if col not in df.columns:
                raise MissingColumnError(f"no {role} column {col!r}; columns are {list(df.columns)}.",
                                     path=None if rep.source.startswith("<") else rep.source,
                                     hint=f"name the {role} column explicitly.")
        rep.rows_read = rep.rows_read or int(len(df))
        it = df[item]
        wk = df[worker]
        lb = _normalise_labels(df[label])
        it_s = it.astype("string").str.strip() if (it.dtype == object or pd.api.types.is_string_dtype(it)) else it
        wk_s = wk.astype("string").str.strip() if (wk.dtype == object or pd.api.types.is_string_dtype(wk)) else wk
        missing_item = it_s.isna() | (it_s.astype("string") == "")
        missing_worker = wk_s.isna() | (wk_s.astype("string") == "")
        missing_label = lb.isna()
        pos = np.arange(len(df))
        def _ex(mask):
            idx = pos[np.asarray(mask)][:5]
            return [f"line {int(i) + line_offset}" for i in idx]
        n_mi = int(missing_item.sum())
        n_mw = int((missing_worker & ~missing_item).sum())
        n_ml = int((missing_label & ~missing_item & ~missing_worker).sum())
        rep.skip("no item id", n_mi, _ex(missing_item))
        rep.skip("no worker id", n_mw, _ex(missing_worker & ~missing_item))
        rep.skip("no label (empty answer)", n_ml, _ex(missing_label & ~missing_item & ~missing_worker))
        rep.missing_labels += n_ml
        keep = np.asarray(~(missing_item | missing_worker | missing_label))
        it_k = pd.Series(np.asarray(it_s.astype(object))[keep])
        wk_k = pd.Series(np.asarray(wk_s.astype(object))[keep])
        lb_k = pd.Series(np.asarray(lb.astype(object))[keep])
        if len(it_k) == 0:
            raise CrowdDataError("no usable answers: every row lacks an item, a worker or a label.",
                                 path=None if rep.source.startswith("<") else rep.source,
                                 hint="check that the item, worker and label columns are filled in.")
        ic0, _ = pd.factorize(it_k, sort=False)
        wc0, wu0 = pd.factorize(wk_k, sort=False)
        repeat, dup = duplicate_mask(ic0, wc0, len(wu0), duplicates)
        _note_repeats(rep, int(repeat.sum()), int(dup.sum()), duplicates)
        if dup.any():
            it_k, wk_k, lb_k = it_k[~dup], wk_k[~dup], lb_k[~dup]
        item_codes, item_ids = pd.factorize(it_k, sort=False)
        worker_codes, worker_ids = pd.factorize(wk_k, sort=False)
        if classes is None:
            cls_index = _sorted_unique(lb_k)
        else:
            cls_index = pd.Index(list(classes))
            unknown = ~lb_k.isin(cls_index)
            if unknown.any():
                bad = pd.unique(lb_k[unknown])[:5]
                raise CrowdDataError(f"labels {list(bad)} are not among the declared classes {list(cls_index)}.",
                                     hint="declare every class, or leave classes unset to infer them.")
        label_codes = cls_index.get_indexer(lb_k)
        data = cls(item=item_codes.astype(np.int64), worker=worker_codes.astype(np.int64),
                   label=label_codes.astype(np.int64), item_ids=pd.Index(item_ids),
                   worker_ids=pd.Index(worker_ids), classes=cls_index, report=[rep])
        rep.answers = data.n_answers
        data.validate(min_classes=min_classes)
        return data

    @classmethod
    def from_answers_frame(cls, df: pd.DataFrame, *, item: str = "task", worker: str = "worker",
                           label: str = "label", duplicates: str = "all") -> CrowdData:
        """Build from a Crowd-Kit answers table, keeping ids and labels exactly as given.

        This is the Crowd-Kit face: ids and labels keep their values and dtypes
        (int task ids stay ints, bool labels stay bools, ``' t1'`` and ``'t1'`` stay
        two items), every answer counts (``duplicates="all"``), and a crowd that
        used a single class is accepted.  Items and workers are numbered in order
        of first appearance; classes are sorted (the order Crowd-Kit's tests fix
        for ties), falling back to sorting their text when values do not compare.
        Rows with a missing task, worker or label are left out and counted in the
        report.  A missing column raises :class:`~kdcrowd_core.errors.MissingColumnError`
        (a ``KeyError``, as in Crowd-Kit).  The frame must have at least one usable row.
        """
        missing = [c for c in (item, worker, label) if c not in df.columns]
        if missing:
            raise MissingColumnError(
                f"no column {missing[0]!r} in the answers; columns are {list(df.columns)}.",
                column=missing[0], hint=f"give the answers columns {item!r}, {worker!r} and {label!r}.")
        rep = ReadReport(source="<DataFrame>", format="long", rows_read=int(len(df)))
        it, wk, lb = df[item], df[worker], df[label]
        na_i, na_w, na_l = it.isna().to_numpy(), wk.isna().to_numpy(), lb.isna().to_numpy()
        rep.skip("no task id", int(na_i.sum()))
        rep.skip("no worker id", int((na_w & ~na_i).sum()))
        rep.skip("no label", int((na_l & ~na_i & ~na_w).sum()))
        rep.missing_labels = int((na_l & ~na_i & ~na_w).sum())
        keep = ~(na_i | na_w | na_l)
        if not keep.all():
            it, wk, lb = it[keep], wk[keep], lb[keep]
        if len(it) == 0:
            raise CrowdDataError("no usable answers: every row lacks a task, a worker or a label.",
                                 hint="fill in the task, worker and label columns.")
        ic, item_ids = pd.factorize(it, sort=False)
        wc, worker_ids = pd.factorize(wk, sort=False)
        uniq = pd.Index(pd.unique(lb))
        try:
            classes = uniq.sort_values()
        except TypeError:
            classes = pd.Index(sorted(uniq, key=str), dtype=object)
        lc = classes.get_indexer(lb)
        repeat, drop = duplicate_mask(ic, wc, len(worker_ids), duplicates)
        _note_repeats(rep, int(repeat.sum()), int(drop.sum()), duplicates)
        if drop.any():
            ic, wc, lc = ic[~drop], wc[~drop], lc[~drop]
        data = cls(item=np.asarray(ic, dtype=np.int64), worker=np.asarray(wc, dtype=np.int64),
                   label=np.asarray(lc, dtype=np.int64), item_ids=pd.Index(item_ids), worker_ids=pd.Index(worker_ids),
                   classes=classes, report=[rep])
        if drop.any():  # an item or worker may have lost all its answers: renumber
            data = data._compact()
        rep.answers = data.n_answers
        return data.validate(min_classes=1)

    def _compact(self) -> CrowdData:
        """Drop items and workers without answers (codes renumbered, order kept)."""
        iu = np.unique(self.item)
        wu = np.unique(self.worker)
        if iu.size == self.n_items and wu.size == self.n_workers:
            return self
        imap = np.full(self.n_items, -1, dtype=np.int64)
        imap[iu] = np.arange(iu.size)
        wmap = np.full(self.n_workers, -1, dtype=np.int64)
        wmap[wu] = np.arange(wu.size)
        return replace(self, item=imap[self.item], worker=wmap[self.worker], item_ids=self.item_ids[iu],
                       worker_ids=self.worker_ids[wu], gold=None if self.gold is None else self.gold[iu],
                       features=None if self.features is None else self.features[iu])

    def with_true_labels(self, true_labels: pd.Series) -> CrowdData:
        """Attach gold given the Crowd-Kit way: a Series indexed by task, values exactly as in the answers.

        Tasks without answers are ignored (as in Crowd-Kit); a gold label no worker
        gave adds a class.  Values are matched exactly (no stripping or number parsing).
        """
        if not isinstance(true_labels, pd.Series):
            raise CrowdDataError(f"true_labels must be a pandas Series indexed by task, got "
                                 f"{type(true_labels).__name__}.", hint="pass pd.Series(labels, index=task_ids).")
        g = true_labels.dropna()
        pos = self.item_ids.get_indexer(g.index)
        g = g[pos >= 0]
        pos = pos[pos >= 0]
        classes = self.classes
        new = pd.Index(pd.unique(g.to_numpy()))
        new = new[classes.get_indexer(new) < 0] if len(new) else new
        if len(new):
            classes = classes.append(new)
        codes = np.full(self.n_items, NO_GOLD, dtype=np.int64) if self.gold is None else self.gold.copy()
        codes[pos] = classes.get_indexer(pd.Index(g.to_numpy()))
        return replace(self, gold=codes, classes=classes, report=list(self.report))

    # ---------------------------------------------------------------- checks
    def validate(self, min_classes: int = 2) -> CrowdData:
        src = self.report[0].source if self.report else None
        src = None if (src is None or src.startswith("<")) else src
        if self.n_answers == 0:
            raise CrowdDataError("there are no answers.", path=src, hint="upload a file with at least one answer per item.")
        for name, arr, n in (("item", self.item, self.n_items), ("worker", self.worker, self.n_workers),
                             ("label", self.label, self.n_classes)):
            if arr.size and (arr.min() < 0 or arr.max() >= n):
                raise CrowdDataError(f"{name} codes must lie in [0, {n}).")
        used = np.unique(self.label)
        if self.n_classes < min_classes or used.size < min(min_classes, 2):
            raise CrowdDataError(
                f"only one class ({self.classes[int(used[0])]!r}) occurs in the answers; "
                "nothing can be inferred from a single class.",
                path=src, hint="check the label column: is it the right one?")
        if self.gold is not None and self.gold.shape != (self.n_items,):
            raise CrowdDataError(f"gold must have one entry per item ({self.n_items}).")
        if self.features is not None:
            if self.features.ndim != 2 or self.features.shape[0] != self.n_items:
                raise CrowdDataError(f"features must be a (n_items={self.n_items}, d) array.")
            if not np.all(np.isfinite(self.features)):
                raise CrowdDataError("features contain NaN or infinite values.")
        return self

    # ------------------------------------------------------------- attaching
    def with_gold(self, gold: pd.Series, *, source: str | None = None, allow_unknown_items: bool = False) -> CrowdData:
        """Attach gold labels: a Series item id -> label name, for any subset of items.

        Gold for items that have no answers is an error (or, with
        ``allow_unknown_items``, dropped and noted).  A gold label no worker
        ever gave adds a class.
        """
        gold = gold.dropna()
        g_vals = _normalise_labels(pd.Series(gold.to_numpy(), dtype=object))
        g_vals.index = gold.index
        pos = self.item_ids.get_indexer(_coerce_like(gold.index, self.item_ids))
        unknown = pos < 0
        if unknown.any():
            ex = list(gold.index[unknown][:5])
            if not allow_unknown_items:
                raise CrowdDataError(
                    f"gold labels for {int(unknown.sum())} items that have no answers, e.g. {ex}.",
                    path=source, hint="check that gold item ids match the answers' item ids.")
        classes = self.classes
        vals = g_vals[~unknown]
        new = pd.unique(vals[~vals.isin(classes)])
        if len(new):
            classes = classes.append(pd.Index(list(new)))
        codes = np.full(self.n_items, NO_GOLD, dtype=np.int64)
        codes[pos[~unknown]] = classes.get_indexer(vals)
        out = replace(self, gold=codes, classes=classes, report=list(self.report))
        if len(new):
            out.report.append(ReadReport(source=source or "<gold>", format="gold",
                                         notes=[f"gold adds classes no worker used: {list(new)}"]))
        return out

    def with_features(self, features: np.ndarray, ids: Sequence | pd.Index, *,
                      feature_names: list[str] | None = None, source: str | None = None) -> CrowdData:
        """Attach features given as rows ``features[k]`` for item ``ids[k]``.

        Every answered item needs a row; extra rows (e.g. unlabeled items) are
        ignored here — keep them for prediction.
        """
        X = np.asarray(features)
        if X.ndim != 2:
            raise CrowdDataError("features must be a 2-D table (items x features).", path=source)
        if not np.issubdtype(X.dtype, np.number):
            raise CrowdDataError("features must be numeric.", path=source,
                                 hint="remove text columns other than the item id.")
        ids = pd.Index(ids)
        if ids.has_duplicates:
            d = list(ids[ids.duplicated()][:5])
            raise CrowdDataError(f"feature rows repeat item ids, e.g. {d}.", path=source,
                                 hint="give each item one feature row.")
        pos = ids.get_indexer(_coerce_like(self.item_ids, ids))
        missing = pos < 0
        if missing.any():
            ex = list(self.item_ids[missing][:5])
            raise CrowdDataError(f"features are missing for {int(missing.sum())} of {self.n_items} answered items, "
                                 f"e.g. {ex}.", path=source,
                                 hint="add a feature row for every item that has answers.")
        Xs = np.ascontiguousarray(X[pos], dtype=np.float32)
        if not np.all(np.isfinite(Xs)):
            bad = np.where(~np.isfinite(Xs).all(axis=1))[0][:5]
            raise CrowdDataError(f"features contain NaN or infinite values for items {list(self.item_ids[bad])}.",
                                 path=source, hint="fill or drop the missing feature values.")
        return replace(self, features=Xs, feature_names=feature_names, report=list(self.report))

    def without_items(self, ids: Sequence | pd.Index, *, drop_empty_workers: bool = True) -> CrowdData:
        """A copy without the given items and their answers (ids not present are ignored).

        Workers left without any answer are dropped too (``drop_empty_workers=False`` keeps every
        worker, so worker codes stay those of ``self``); gold and features follow their items.
        Use it to keep validation items out of training: a model that fitted an item's crowd
        answers scores too well on it, which biases model selection.
        """
        pos = self.item_ids.get_indexer(_coerce_like(pd.Index(ids), self.item_ids))
        drop = np.zeros(self.n_items, dtype=bool)
        drop[pos[pos >= 0]] = True
        if not drop.any():
            return self
        keep_items = np.flatnonzero(~drop)
        if keep_items.size == 0:
            raise CrowdDataError("every item would be left out; nothing is left to train on.",
                                 hint="use a validation set that is only part of the answered items.")
        new_item = np.full(self.n_items, -1, dtype=np.int64)
        new_item[keep_items] = np.arange(keep_items.size)
        a = ~drop[self.item]
        worker_used = np.zeros(self.n_workers, dtype=bool)
        worker_used[self.worker[a]] = True
        if not drop_empty_workers:
            worker_used[:] = True
        keep_workers = np.flatnonzero(worker_used)
        new_worker = np.full(self.n_workers, -1, dtype=np.int64)
        new_worker[keep_workers] = np.arange(keep_workers.size)
        out = replace(
            self, item=new_item[self.item[a]], worker=new_worker[self.worker[a]], label=self.label[a].copy(),
            item_ids=self.item_ids[keep_items], worker_ids=self.worker_ids[keep_workers],
            gold=None if self.gold is None else self.gold[keep_items],
            features=None if self.features is None else self.features[keep_items],
            report=list(self.report))
        out.report.append(ReadReport(source="<selection>", format="subset", notes=[
            f"left out {int(drop.sum())} items ({int((~a).sum())} answers) and "
            f"{self.n_workers - keep_workers.size} workers left without answers"]))
        return out

    # ---------------------------------------------------------------- output
    def to_frame(self) -> pd.DataFrame:
        """Long DataFrame with the user's ids: columns ``task, worker, label``."""
        return pd.DataFrame({
            "task": self.item_ids.take(self.item),
            "worker": self.worker_ids.take(self.worker),
            "label": self.classes.take(self.label),
        })

    def gold_series(self) -> pd.Series:
        """Gold labels as a Series item id -> label name (known items only)."""
        m = self.gold_mask
        return pd.Series(self.classes.take(self.gold[m]), index=self.item_ids[m], name="gold")


def _coerce_like(values: pd.Index, target: pd.Index) -> pd.Index:
    """Make ids from another file comparable with ``target`` (ints read as str and vice versa)."""
    values = pd.Index(values)
    if len(target) == 0 or len(values) == 0:
        return values
    t_num = pd.api.types.is_numeric_dtype(target.dtype)
    v_num = pd.api.types.is_numeric_dtype(values.dtype)
    if t_num and not v_num:
        conv = pd.to_numeric(pd.Series(values.astype(str).str.strip()), errors="coerce")
        if conv.notna().all():
            return pd.Index(conv.to_numpy()).astype(target.dtype, copy=False)
    if not t_num:
        tv = target.map(lambda v: isinstance(v, str)).all() if len(target) else True
        if tv:
            return values.map(lambda v: str(v).strip() if not isinstance(v, str) else v.strip())
    return values


def as_crowd_data(data: CrowdData | pd.DataFrame) -> CrowdData:
    """Accept a CrowdData or a Crowd-Kit style DataFrame (task, worker, label)."""
    if isinstance(data, CrowdData):
        return data
    if isinstance(data, pd.DataFrame):
        cols = {c.lower(): c for c in data.columns}
        item = cols.get("task") or cols.get("item")
        if item is None or "worker" not in cols or "label" not in cols:
            raise MissingColumnError(f"expected columns task, worker, label; got {list(data.columns)}.",
                                 hint="rename the columns, or read the file with kdcrowd_core.io.read_answers.")
        return CrowdData.from_frame(data, item=item, worker=cols["worker"], label=cols["label"])
    raise CrowdDataError(f"expected CrowdData or a DataFrame, got {type(data).__name__}.")
