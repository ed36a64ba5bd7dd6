"""preview_table: the first rows of an answers file and what the reader would make of them.

For the dashboard's "Adjust how this file is read": it shows the rows, the
columns with their detected roles, and whether detection failed or was
ambiguous (with the reader's message), so the user can pick the columns.
It never raises for bad *content*: problems come back in ``problem``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..errors import CrowdDataError
from ._columns import candidates, detect_roles, is_truth_name
from ._source import DEFAULT_MAX_BYTES
from .options import ReadOptions
from .options import resolve as resolve_options


@dataclass
class Preview:
    """What :func:`preview_table` found.

    ``rows``: the first ``n`` rows as a DataFrame of text (``None`` when the
    file could not be parsed); ``columns``: the column names; ``format``: the
    detected (or chosen) layout; ``roles``: role -> column for the roles that
    were found (``item``, ``worker``, ``label``); ``candidates``: role -> the
    columns that could be it (several = ambiguous); ``ambiguous``: detection
    failed or had to guess; ``problem``: the reader's error
    (:class:`CrowdDataError`) when reading with these options fails, else
    ``None``; ``data``: the CrowdData read with these options when reading
    succeeds (the caller may discard it).
    """

    name: str
    rows: pd.DataFrame | None
    columns: list[Any]
    format: str | None
    roles: dict[str, Any] = field(default_factory=dict)
    candidates: dict[str, list[Any]] = field(default_factory=dict)
    ambiguous: bool = False
    problem: CrowdDataError | None = None
    data: Any = None

    def message(self, interface: str = "dashboard") -> str | None:
        return None if self.problem is None else self.problem.render(interface)


def preview_table(source: Any, options: ReadOptions | dict | None = None, n: int = 20, *,
                  name: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> Preview:
    """The first ``n`` rows of an answers file, its columns, detected roles and any reading problem."""
    from ._source import describe_source, open_source
    from ._table import frame_table, read_parquet_table, read_text_table
    from .answers import _load_json, detect_format, read_answers

    o = resolve_options(options)
    label = describe_source(source, name)
    if hasattr(source, "seek"):
        try:
            source.seek(0)
        except (OSError, ValueError):
            pass
    try:
        if isinstance(source, pd.DataFrame):
            table = frame_table(source, name)
            raw_bytes = None
        else:
            src = open_source(source, name=name, max_bytes=max_bytes, kinds=("text", "parquet", "json"),
                              what="answers")
            raw_bytes = src.data
            label = src.name
            if src.kind == "json":
                obj = _load_json(src)
                recs = obj if isinstance(obj, list) else [obj]
                flat = pd.json_normalize([r for r in recs[:n] if isinstance(r, dict)], max_level=1)
                table = frame_table(flat.astype(str), src.name)
            elif src.kind == "parquet":
                table = read_parquet_table(src, what="answers")
            else:
                table, _sep = read_text_table(src, what="answers")
    except CrowdDataError as e:
        return Preview(name=label, rows=None, columns=[], format=None, ambiguous=True, problem=e)
    df = table.df
    rows = df.head(n).astype("string").fillna("")
    cols = list(df.columns)
    fmt = o.format
    if fmt == "auto":
        try:
            fmt = detect_format(table, item=o.item, worker=o.worker, label=o.label)
        except CrowdDataError:
            fmt = None
    cands: dict[str, list[Any]] = {}
    roles: dict[str, Any] = {}
    ambiguous = False
    if fmt == "long" or fmt is None:
        for role in ("item", "worker", "label"):
            given = getattr(o, role)
            if given is not None:
                cands[role] = [given]
                continue
            found, _tier = candidates([c for c in cols if role != "label" or not is_truth_name(c)], role)
            cands[role] = found
            ambiguous |= len(found) != 1
        try:
            roles = detect_roles(cols, item=o.item, worker=o.worker, label=o.label, path=table.path)
        except CrowdDataError:
            roles = {r: f[0] for r, f in cands.items() if len(f) == 1}
            ambiguous = True
    problem = None
    data = None
    try:
        src_again = raw_bytes if raw_bytes is not None else source
        data = read_answers(src_again, name=label if raw_bytes is not None else name, options=o)
        rep = data.report[0]
        roles = {k: v for k, v in rep.columns.items() if k in ("item", "worker", "label")}
        fmt = rep.format
        # read fine: ambiguous only where the reader had to choose a reading (wide by shape)
        ambiguous = o.format == "auto" and any(str(n).startswith("read as wide") for n in rep.notes)
    except CrowdDataError as e:
        problem = e
        ambiguous = True
    return Preview(name=label, rows=rows, columns=cols, format=fmt, roles=roles, candidates=cands,
                   ambiguous=ambiguous, problem=problem, data=data)
