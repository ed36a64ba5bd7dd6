"""Writers: answers and result tables by extension, JSON that numpy cannot break.

Every writer creates missing parent folders and writes atomically (a
temporary file renamed into place), so a crash never leaves half a file.
Each accepts a path or an open binary file object (then ``format=`` says
which format to write).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import CrowdDataError

TABLE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".txt": "tsv", ".parquet": "parquet", ".pq": "parquet"}


def _target(path: Any, fmt: str | None, formats: dict[str, str], what: str) -> tuple[Path | None, str]:
    if hasattr(path, "write"):
        if fmt is None:
            nm = getattr(path, "name", "")
            fmt = formats.get(Path(str(nm)).suffix.lower()) if isinstance(nm, str) and nm else None
        if fmt is None:
            raise CrowdDataError(f"say which format to write the {what} in: format= one of "
                                 f"{sorted(set(formats.values()))}.")
        return None, fmt
    p = Path(path)
    if fmt is None:
        fmt = formats.get(p.suffix.lower())
        if fmt is None:
            raise CrowdDataError(f"cannot tell the format from the extension {p.suffix!r}.", path=str(p),
                                 hint=f"use one of {sorted(formats)} (or pass format=).")
    if fmt not in set(formats.values()):
        raise CrowdDataError(f"unknown format {fmt!r}.", hint=f"use one of {sorted(set(formats.values()))}.")
    return p, fmt


def _atomic_write(p: Path, payload: bytes) -> Path:
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
            os.replace(tmp, p)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    except OSError as e:
        raise CrowdDataError(f"cannot write the file: {e.strerror or e}.", path=str(p),
                             hint="check that the folder exists and is writable.") from None
    return p


def _table_bytes(df: pd.DataFrame, fmt: str, index: bool, guard: bool = True) -> bytes:
    if fmt in ("csv", "tsv"):
        from .csv_guard import csv_bytes
        return csv_bytes(df, guard=guard, index=index, sep="," if fmt == "csv" else "\t")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise CrowdDataError("writing Parquet needs the pyarrow package, which is not installed.",
                             hint="pip install pyarrow, or write .csv instead.") from None
    out = df.copy()
    out.columns = [str(c) for c in out.columns]
    buf = io.BytesIO()
    try:
        out.to_parquet(buf, index=index)
    except Exception:  # noqa: BLE001 - mixed-type object columns: write them as text
        for c in out.columns:
            if out[c].dtype == object:
                out[c] = out[c].map(lambda v: None if v is None else str(v))
        buf = io.BytesIO()
        out.to_parquet(buf, index=index)
    return buf.getvalue()


def write_table(df: pd.DataFrame, path: Any, *, format: str | None = None, index: bool = False,
                guard: bool = True) -> Path | None:
    """Write a DataFrame as CSV, TSV (``.tsv``/``.tab``/``.txt``) or Parquet, chosen by extension.

    CSV/TSV cells that would start a spreadsheet formula are neutralised
    (:mod:`kdcrowd_core.io.csv_guard`) unless ``guard=False``.
    Returns the path written (``None`` for a file object).
    """
    if not isinstance(df, pd.DataFrame):
        raise CrowdDataError(f"write_table needs a DataFrame, got {type(df).__name__}.")
    p, fmt = _target(path, format, TABLE_FORMATS, "table")
    payload = _table_bytes(df, fmt, index, guard)
    if p is None:
        _write_to(path, payload)
        return None
    return _atomic_write(p, payload)


def _write_to(f: Any, payload: bytes) -> None:
    try:
        f.write(payload)
    except TypeError:
        f.write(payload.decode("utf-8"))


def write_answers(data: Any, path: Any, *, format: str | None = None, guard: bool = True) -> Path | None:
    """Write answers as a long table ``task, worker, label`` with the user's ids and label names."""
    from ..data import as_crowd_data
    return write_table(as_crowd_data(data).to_frame(), path, format=format, guard=guard)


def to_jsonable(obj: Any) -> Any:
    """Plain JSON types from numpy/pandas/dataclass objects; NaN and infinities become ``null``."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)) and not isinstance(obj, np.bool_):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, dict):
        return {_key(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "iub" or (obj.dtype.kind == "f" and np.isfinite(obj).all()):
            return obj.tolist()    # already plain ints, floats and bools: no element-by-element pass
        return to_jsonable(obj.tolist())
    if isinstance(obj, pd.DataFrame):
        return to_jsonable(obj.to_dict(orient="records"))
    if isinstance(obj, pd.Series):
        return {_key(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, pd.Index):
        return to_jsonable(obj.tolist())
    if obj is pd.NA or obj is pd.NaT:
        return None
    if isinstance(obj, (Path, os.PathLike)):
        return str(obj)
    if isinstance(obj, (_dt.datetime, _dt.date, pd.Timestamp)):
        return obj.isoformat()
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return to_jsonable(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, (np.generic,)):
        return to_jsonable(obj.item())
    raise CrowdDataError(f"cannot write a {type(obj).__name__} as JSON.",
                         hint="convert it to numbers, text, lists or dicts first.")


def _key(k: Any) -> str:
    if isinstance(k, str):
        return k
    if isinstance(k, (np.integer, int)):
        return str(int(k))
    if isinstance(k, (float, np.floating)):
        return str(float(k))
    return str(k)


def write_json(obj: Any, path: Any, *, indent: int | None = 2) -> Path | None:
    """Write ``obj`` as strict JSON (numpy scalars/arrays, pandas objects and dataclasses allowed)."""
    text = json.dumps(to_jsonable(obj), indent=indent, ensure_ascii=False, allow_nan=False) + "\n"
    payload = text.encode("utf-8")
    if hasattr(path, "write"):
        _write_to(path, payload)
        return None
    return _atomic_write(Path(path), payload)
