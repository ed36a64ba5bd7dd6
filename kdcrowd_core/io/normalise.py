"""Ids and labels as the reading options say, with every merge counted.

Both functions work on the *unique* raw values of a column (so a million
answers cost as much as their distinct values) and return a Series aligned
with them: the cleaned value, or missing.  What the cleaning merged or kept
apart is appended to ``notes`` (the reading report's notes).

Rules (docs/formats.md, "Reading options"):

* ids: an empty or all-blank id is missing; the ``id_transform`` steps run in
  order (default: strip); ids that are then all canonical integers become
  int64 (``7``, not ``007``).
* labels: an empty or all-blank label is missing; otherwise distinct raw
  labels stay distinct unless an option merges them.  Harmless clean-ups that
  merge nothing still happen: surrounding spaces are dropped and labels that
  are all numbers become numbers, but only when no two raw labels become one.
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from ..errors import CrowdDataError, opt
from .options import DEFAULT_ID_TRANSFORM, ReadOptions, transform_id

_CANON_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,17})")


def _show(vals: list, n: int = 4) -> str:
    return ", ".join(repr(v) for v in vals[:n]) + (", ..." if len(vals) > n else "")


def _clash(before: pd.Series, after: pd.Series) -> tuple[int, list, Any] | None:
    """(values lost, example raw values, their common new value) when distinct ``before`` became equal."""
    ok = (before.notna() & after.notna()).to_numpy()
    b = pd.Series(before.to_numpy(dtype=object)[ok], dtype=object)
    a = pd.Series(after.to_numpy(dtype=object)[ok], dtype=object)
    if b.nunique() == a.nunique():
        return None
    sizes = pd.DataFrame({"b": b, "a": a}).groupby("a", sort=False)["b"].nunique()
    merged = sizes[sizes > 1]
    first = merged.index[0]
    example = list(pd.unique(b[(a == first).to_numpy()]))[:3]
    return int((sizes - 1).sum()), example, first


def _merge_note(before: pd.Series, after: pd.Series, what: str, why: str) -> str | None:
    """A note when distinct non-missing ``before`` values became equal in ``after``."""
    c = _clash(before, after)
    if c is None:
        return None
    n_lost, example, first = c
    return (f"{what}: {why} made {n_lost} distinct value{'s' if n_lost != 1 else ''} equal to another "
            f"(e.g. {_show(example)} -> {first!r}); they count as one")


def _as_text(uniq: pd.Index) -> pd.Series:
    """Unique raw values as text (None where missing); numbers from JSON become their text."""
    vals = []
    for v in np.asarray(uniq, dtype=object):
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
            vals.append(None)
        elif isinstance(v, str):
            vals.append(v)
        elif isinstance(v, (bool, np.bool_)):
            vals.append(str(bool(v)))
        elif isinstance(v, (float, np.floating)) and float(v).is_integer() and abs(v) < 2 ** 53:
            vals.append(str(int(v)))
        else:
            vals.append(str(v))
    return pd.Series(vals, dtype="string")


def _ints_if_canonical(s: pd.Series) -> pd.Series:
    """Text ids -> int64 when every id is a canonical integer; else objects (None = missing)."""
    nn = s.dropna()
    if len(nn) and bool(nn.str.fullmatch(_CANON_INT).all()):
        out = pd.Series(np.full(len(s), -1, dtype=np.int64))
        out[s.notna().to_numpy()] = nn.astype("int64").to_numpy()
        if s.isna().any():
            out = out.astype(object)
            out[s.isna().to_numpy()] = None
        return out
    return pd.Series(s.astype(object).where(s.notna(), None).to_numpy(), dtype=object)


def clean_ids(uniq: pd.Index, steps: tuple[str, ...] = DEFAULT_ID_TRANSFORM, notes: list[str] | None = None,
              what: str = "item ids") -> pd.Series:
    """Ids as the user wrote them, through ``steps`` (see the module docstring)."""
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
    raw = pd.Series(uniq).astype("string")
    s = raw.mask(raw.str.strip() == "")
    if steps:
        if steps == ("strip",):
            s = s.str.strip()
        else:
            s = pd.Series([None if v is pd.NA else transform_id(v, steps) for v in s], dtype="string")
        s = s.mask(s == "")
        if notes is not None:
            note = _merge_note(raw.mask(raw.str.strip() == ""), s, what, "the id transform " + "+".join(steps))
            if note:
                notes.append(note)
    return _ints_if_canonical(s)


def _numbers(t: pd.Series) -> pd.Series | None:
    """Text labels as numbers when every one is a number (ints when all integral), else None."""
    nn = t.dropna()
    if not len(nn):
        return None
    num = pd.to_numeric(nn, errors="coerce")
    if num.isna().any() or not np.all(np.isfinite(num.to_numpy(dtype=np.float64))):
        return None
    out = pd.Series([None] * len(t), dtype=object)
    vals = num.to_numpy(dtype=np.float64)
    if np.all(np.mod(vals, 1) == 0) and np.all(np.abs(vals) < 2 ** 53):
        out[t.notna().to_numpy()] = [int(v) for v in vals]
    else:
        out[t.notna().to_numpy()] = list(vals)
    return out


def _note_rewritten_numbers(text: pd.Series, num: pd.Series, note) -> None:
    """A note naming the labels whose class name is written differently once read as numbers (``'+1'`` -> ``1``,
    ``'1.50'`` -> ``1.5``): the classes stay distinct, only their spelling changes, and the report says so."""
    ok = text.notna().to_numpy()
    raw = text[ok].astype(str).to_numpy()
    shown = np.array([str(v) for v in num[ok]], dtype=object)
    changed = raw != shown
    if changed.any():
        pairs = [f"{r!r} -> {s!r}" for r, s in list(dict.fromkeys(zip(raw[changed], shown[changed])))[:3]]
        n = int(changed.sum())
        what = "label read as a number and written in its" if n == 1 else "labels read as numbers and written in their"
        note(f"{n} {what} plain form ({', '.join(pairs)}); no two labels became one")


def clean_labels(uniq: pd.Index, options: ReadOptions | None = None, notes: list[str] | None = None,
                 path: str | None = None, apply_map: bool = True) -> pd.Series:
    """Labels as classes: see the module docstring.  Objects, None where missing."""
    o = options or ReadOptions()
    if len(uniq) == 0:
        return pd.Series([], dtype=object)
    note = notes.append if notes is not None else (lambda _n: None)
    if pd.api.types.is_numeric_dtype(uniq.dtype) and not pd.api.types.is_bool_dtype(uniq.dtype):
        v = pd.Series(np.asarray(uniq, dtype=np.float64))
        ok = v.notna() & np.isfinite(v)
        integral = bool(np.all(np.mod(v[ok], 1) == 0))
        out = pd.Series([(int(x) if integral else float(x)) if k else None for x, k in zip(v, ok)], dtype=object)
    else:
        raw = _as_text(uniq)
        t = raw.mask(raw.str.strip() == "")
        stripped = t.str.strip()
        if o.label_trim:
            m = _merge_note(t, stripped, "labels", "trimming spaces (label_trim)")
            if m:
                note(m)
            t = stripped
        else:
            # strip only the labels whose stripped form is no other raw label's
            clash = stripped.duplicated(keep=False) & stripped.notna()
            if clash.any():
                ex = list(pd.unique(t[clash].dropna()))[:3]
                note(f"labels {_show(ex)} differ only by spaces: kept as distinct classes (turn on "
                     f"{opt('label_trim')} to merge them)")
            changed = int((~clash & t.notna() & (t != stripped)).sum())
            if changed:
                note(f"{changed} label{'s' if changed != 1 else ''} had spaces around them, removed "
                     "(no two labels became one)")
            t = t.where(clash, stripped)
        if o.label_case_fold:
            folded = t.str.casefold()
            m = _merge_note(t, folded, "labels", "ignoring case (label_case_fold)")
            if m:
                note(m)
            t = folded
        num = _numbers(t)
        if num is not None:
            ok = t.notna()
            injective = num[ok.to_numpy()].nunique() == t[ok].nunique()
            if injective or o.label_merge_numbers:
                if not injective:
                    m = _merge_note(pd.Series(t.to_numpy(dtype=object)), num, "labels",
                                    "reading them as numbers (label_merge_numbers)")
                    if m:
                        note(m)
                else:
                    _note_rewritten_numbers(t, num, note)
                out = num
            else:
                c = _clash(pd.Series(t.to_numpy(dtype=object)), num)
                ex = c[1] if c else []
                note(f"labels {_show(ex)} are the same number written differently: kept as distinct classes "
                     f"(turn on {opt('label_merge_numbers')} to merge them)")
                out = pd.Series(t.astype(object).where(t.notna(), None).to_numpy(), dtype=object)
        else:
            out = pd.Series(t.astype(object).where(t.notna(), None).to_numpy(), dtype=object)
    if apply_map and o.label_map:
        out = apply_label_map(out, o.label_map, notes=notes, path=path)
    return out


def apply_label_map(values: pd.Series, label_map: dict[str, str], *, notes: list[str] | None = None,
                    path: str | None = None) -> pd.Series:
    """Codes -> class names.  A value that is already a class name stays; any other value is an error."""
    names = set(label_map.values())
    out, unknown = [], []
    for v in values:
        if v is None:
            out.append(None)
            continue
        key = str(v).strip()
        if key in label_map:
            out.append(label_map[key])
        elif key in names:
            out.append(key)
        else:
            out.append(None)
            unknown.append(v)
    if unknown:
        raise CrowdDataError(
            f"label{'s' if len(unknown) > 1 else ''} {_show(sorted(map(str, unknown)), 6)} "
            f"{'have' if len(unknown) > 1 else 'has'} no class name in the label map (codes "
            f"{_show(list(label_map), 8)}).", path=path,
            hint=f"add them to {opt('label_map')} (code=name), or clear it.", option="label_map")
    res = pd.Series(out, dtype=object)
    if notes is not None:
        n_names = len({label_map[k] for k in label_map})
        if n_names < len(label_map):
            notes.append(f"the label map gives {len(label_map)} codes {n_names} class names: codes with the same "
                         "name count as one class")
    return res
