"""load_crowd: answers + gold + features in one call."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..data import CrowdData, ReadReport, _coerce_like
from ..errors import CrowdDataError
from ._source import DEFAULT_MAX_BYTES, DEFAULT_MAX_ROWS, describe_source
from .answers import read_answers
from .features import read_features
from .gold import read_gold
from ..errors import opt
from .diagnose import diagnose_ids
from .options import ReadOptions
from .options import resolve as resolve_options


def load_crowd(answers: Any, *, gold: Any = None, features: Any = None, feature_ids: Any = None,
               allow_unknown_items: bool = False, options: ReadOptions | dict | None = None,
               **read_kwargs: Any) -> CrowdData:
    """Read answers, then attach gold labels and item features.

    Parameters
    ----------
    answers : source accepted by :func:`read_answers`
    gold : source accepted by :func:`read_gold`, or a pandas.Series item id -> label, optional
    features : source accepted by :func:`read_features`, or a tuple ``(X, ids, names)``, optional
    feature_ids : ids for a ``.npy`` features file (sequence or path of a one-id-per-line file)
    allow_unknown_items : bool, default False
        ``False``: gold labels or feature rows for items that have no answers are
        an error (usually the ids of the two files do not match).  ``True``:
        they are ignored (noted in the report) — e.g. features of unlabelled items.
    options : ReadOptions, optional
        How to read all three files (docs/formats.md, "Reading options").
    **read_kwargs
        Passed to :func:`read_answers` (``format``, ``item``, ``worker``,
        ``label``, ``classes``, ``max_bytes``, ``name``).

    Returns
    -------
    CrowdData
        ``data.report`` holds one ReadReport per file read.

    Raises
    ------
    CrowdDataError
        Bad files; gold or features for unknown items; features missing for
        some answered items; non-numeric features.  Messages name the file.
    """
    o = resolve_options(options, feature_ids=feature_ids)
    allow_unknown_items = allow_unknown_items or o.allow_unknown_items
    data = read_answers(answers, options=o, **read_kwargs)
    max_bytes = read_kwargs.get("max_bytes", DEFAULT_MAX_BYTES)
    max_rows = read_kwargs.get("max_rows", DEFAULT_MAX_ROWS)
    if gold is not None:
        g_name = describe_source(gold) if not isinstance(gold, pd.Series) else "<gold Series>"
        g = gold if isinstance(gold, pd.Series) else read_gold(gold, max_bytes=max_bytes, options=o, max_rows=max_rows)
        rep = g.attrs.get("report") if isinstance(g.attrs.get("report"), ReadReport) else None
        src = None if g_name.startswith("<") else g_name
        n_before = len(data.report)
        if not allow_unknown_items:
            gids = g.dropna().index
            if (data.item_ids.get_indexer(_coerce_like(gids, data.item_ids)) < 0).any():
                diag = diagnose_ids(data.item_ids, gids, what="gold", source=src, current=o.id_transform)
                raise CrowdDataError(
                    f"gold labels for {diag.n_other_ids - diag.n_matched} items that have no answers: "
                    + diag._template(), path=src,
                    hint=(diag._hint_template() if diag.proposed_transform is not None else
                          "check that the gold item ids are the answers' item ids.") +
                    f" To ignore gold for items without answers, turn on {opt('allow_unknown_items')}.",
                    option="id_transform" if diag.proposed_transform is not None else "allow_unknown_items")
        data = data.with_gold(g, source=src, allow_unknown_items=allow_unknown_items)
        if rep is not None:
            data.report.insert(n_before, rep)
            known = data.item_ids.get_indexer(_coerce_like(g.dropna().index, data.item_ids)) >= 0
            if (~known).any():
                rep.notes.append(f"{int((~known).sum())} gold labels for items without answers were ignored")
            rep.notes.append(f"gold labels for {int(data.gold_mask.sum())} of {data.n_items} answered items")
    if features is not None:
        if isinstance(features, tuple) and len(features) == 3 and not hasattr(features, "report"):
            X, ids, names = features
            f_name, rep = "<features>", None
        else:
            f = read_features(features, max_bytes=max_bytes, options=o, max_rows=max_rows)
            X, ids, names = f
            f_name, rep = f.report.source, f.report
        src = None if f_name.startswith("<") else f_name
        ids = pd.Index(ids)
        _check_feature_ids(data, ids, src, o, rep)
        data = data.with_features(X, ids, feature_names=list(names) if names is not None else None, source=src)
        # rows for items that have no answers
        extra = ids.get_indexer(_coerce_like(data.item_ids, ids))
        unknown = np.ones(len(ids), dtype=bool)
        unknown[extra[extra >= 0]] = False
        if unknown.any():
            ex = list(ids[unknown][:5])
            if not allow_unknown_items:
                raise CrowdDataError(
                    f"{int(unknown.sum())} of {len(ids)} feature rows are for items that have no answers, e.g. {ex}.",
                    path=src,
                    hint=f"check that the feature ids match the answers' item ids; turn on "
                         f"{opt('allow_unknown_items')} to ignore them.", option="allow_unknown_items")
            if rep is not None:
                rep.notes.append(f"{int(unknown.sum())} feature rows for items without answers were ignored")
        if rep is not None:
            data.report.append(rep)
    return data


def _check_feature_ids(data: CrowdData, ids: pd.Index, src: str | None, o: ReadOptions,
                       rep: ReadReport | None) -> None:
    """Every answered item needs a feature row: if some have none, say why (id diagnosis) and how to fix."""
    pos = ids.get_indexer(_coerce_like(data.item_ids, ids))
    if (pos >= 0).all():
        return
    row_numbers = rep is not None and rep.columns.get("item") == "<row number>"
    diag = diagnose_ids(data.item_ids, ids, what="features", source=src, current=o.id_transform,
                        row_numbers=row_numbers)
    missing = int((pos < 0).sum())
    msg = f"features are missing for {missing} of {data.n_items} answered items: " + diag._template()
    hint = diag._hint_template() or "add a feature row for every item that has answers."
    raise CrowdDataError(msg, path=src, hint=hint,
                         option="feature_ids" if row_numbers else ("id_transform" if diag.proposed_transform
                                                                   else None))
