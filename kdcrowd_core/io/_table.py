"""Delimited text and Parquet into a DataFrame of strings, with line numbers.

* delimiter: counted on the first lines with the ``csv`` module for
  ``,`` ``\\t`` ``;`` ``|`` (quote-aware); the candidate that splits the most
  lines into the same number (>= 2) of fields wins; failing all, runs of
  whitespace; failing that, one column.
* header: see :func:`detect_header`.
* parsing: pandas, every column as text (ids such as ``007`` stay intact,
  labels such as ``NA`` or ``None`` are not turned into missing values; only
  empty fields are missing).  The pyarrow engine is used for big files when
  pyarrow is installed; any problem re-parses with the C engine, whose errors
  carry line numbers.  Blank lines are kept as all-missing rows so that row
  ``i`` is line ``first_line + i`` of the file.
"""
from __future__ import annotations

import csv
import io
import re
import warnings
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from ._columns import ALIASES, TRUTH_NAMES, norm
from ._source import Source

WHITESPACE = r"\s+"
_CANDIDATES = [",", "\t", ";", "|"]
_PYARROW_MIN_BYTES = 1 << 20  # below 1 MiB the C engine is as fast and has better errors
_NUM_RE = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")
_INT_RE = re.compile(r"^-?\d+$")


def delimiter_name(sep: str | None) -> str | None:
    return {None: None, WHITESPACE: "whitespace", "\t": "\\t"}.get(sep, sep)


@dataclass
class Table:
    """A parsed table: ``df`` (text columns for text files), where its rows came from."""

    df: pd.DataFrame
    name: str
    path: str | None
    has_header: bool
    first_line: int | None  # file line of row 0; None: rows are not lines (Parquet, JSON, DataFrame)
    row_word: str = "line"
    blank: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    #: columns left out because they hold lists or objects (column -> an example value, as text)
    nested: dict = field(default_factory=dict)
    #: header names that repeat in the file (pandas renamed the later ones ``name.1``): new name -> original
    renamed: dict = field(default_factory=dict)

    def nested_note(self) -> str | None:
        if not self.nested:
            return None
        parts = [f"{c!r} (e.g. {ex})" for c, ex in list(self.nested.items())[:4]]
        return (f"column{'s' if len(self.nested) > 1 else ''} {', '.join(parts)} "
                f"{'hold' if len(self.nested) > 1 else 'holds'} lists or objects, which cannot be ids or labels: "
                "left out")

    def where(self, positions: np.ndarray | Sequence[int]) -> list[str]:
        """Human locations of row positions: ``"line 12"`` (or ``"row 12"``)."""
        pos = np.asarray(positions, dtype=np.int64)[:5]
        if self.first_line is None:
            return [f"{self.row_word} {int(p) + 1}" for p in pos]
        return [f"line {int(p) + self.first_line}" for p in pos]

    def line(self, position: int) -> int | None:
        return None if self.first_line is None else int(position) + self.first_line


def is_numberish(s: str) -> bool:
    s = s.strip()
    return s == "" or bool(_NUM_RE.match(s)) or s.lower() in ("nan", "-nan", "inf", "-inf")


def _split(lines: list[str], sep: str | None) -> list[list[str]]:
    if sep is None:
        return [[ln] for ln in lines]
    if sep == WHITESPACE:
        return [ln.split() for ln in lines]
    try:
        return list(csv.reader(lines, delimiter=sep))
    except csv.Error:
        return [ln.split(sep) for ln in lines]


def head_lines(src: Source, n: int = 200) -> list[str]:
    lines = [ln for ln in src.head().splitlines()[:n]]
    return lines


def sniff_delimiter(lines: list[str], ext: str = "") -> str | None:
    """The field delimiter of ``lines`` (``None``: one column; ``WHITESPACE``: runs of blanks)."""
    body = [ln for ln in lines if ln.strip()]
    if not body:
        return None
    order = list(_CANDIDATES)
    if ext in (".tsv", ".tab"):
        order.remove("\t")
        order.insert(0, "\t")
    best, best_score = None, None
    for sep in order:
        if sep not in "".join(body[:50]):
            continue
        counts = np.array([len(r) for r in _split(body, sep)])
        vals, freq = np.unique(counts, return_counts=True)
        mode = int(vals[np.argmax(freq)])
        if mode < 2:
            continue
        score = (round(float(freq.max()) / len(counts), 2), mode if sep != "|" else mode - 0.5)
        if best_score is None or score > best_score:
            best, best_score = sep, score
    if best is not None and best_score[0] >= 0.5:
        return best
    counts = np.array([len(ln.split()) for ln in body])
    vals, freq = np.unique(counts, return_counts=True)
    mode = int(vals[np.argmax(freq)])
    if mode >= 2 and freq.max() / len(counts) >= 0.9:
        return WHITESPACE
    return best  # possibly None: a single column


_KNOWN_NAMES = {n for tiers in ALIASES.values() for t in tiers for n in t} | set(TRUTH_NAMES)
_PLATFORM = ("input.", "answer.", "input:", "output:", "golden:", "assignment:", "hint:", "hitid", "workerid",
             "assignmentid", "unnamed:")


def names_known(row: Sequence[str]) -> bool:
    return any(norm(f) in _KNOWN_NAMES or str(f).strip().lower().startswith(_PLATFORM) for f in row)


def detect_header(rows: list[list[str]], *, names_only: bool = False) -> bool:
    """Is the first row a header?

    1. A field is a known column name (``item``, ``worker``, ``label``, ``truth``,
       ``Input.*``, ``WorkerId`` ...) -> header.
    2. ``names_only`` (gold files): otherwise no header, unless rule 3 says so.
    3. A non-numeric field heads a column that is numeric below -> header.
    4. The row holds numbers: no header, unless those numbers are consecutive
       integers (``0,1,2,...``, ``,0,1,2`` as pandas writes a wide frame, or
       ``item,1,2,3`` with numbered workers).
    5. The row is all text: header, unless a first-row value reappears below
       in its column (names do not repeat as data; answers do).
    """
    rows = [r for r in rows if any(f.strip() for f in r)]
    if not rows:
        return False
    first, rest = rows[0], rows[1:200]
    if names_known(first):
        return True
    numeric = [is_numberish(f) for f in first]
    for j, _f in enumerate(first):
        if numeric[j]:
            continue
        col = [r[j] for r in rest if j < len(r) and r[j].strip()]
        if col and all(is_numberish(v) for v in col):
            return True
    if names_only:
        return False
    nums = [f.strip() for f, isnum in zip(first, numeric) if isnum and f.strip()]
    if nums:
        if not all(_INT_RE.match(v) for v in nums) or len(nums) < 3:
            return False
        ints = [int(v) for v in nums]
        n_empty = sum(1 for f in first if not f.strip())
        return n_empty <= 1 and ints == list(range(ints[0], ints[0] + len(ints)))
    if not rest:
        return True
    for j, f in enumerate(first):
        f = f.strip()
        if f and any(j < len(r) and r[j].strip() == f for r in rest):
            return False
    return True


_FIELDS_RE = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")
_EOF_RE = re.compile(r"EOF inside string starting at row (\d+)")


def _parse(text: bytes, sep: str | None, header: bool, engine: str, dtype: Any, **extra: Any) -> pd.DataFrame:
    kw: dict[str, Any] = dict(**extra, header=0 if header else None, dtype=dtype, keep_default_na=False, na_values=[""],
                              skip_blank_lines=False, encoding="utf-8")
    if sep is None:
        # one column: a delimiter that cannot occur, so commas in labels are kept
        kw.update(sep="\x1f", quoting=csv.QUOTE_NONE)
    else:
        kw["sep"] = sep
    if engine == "pyarrow":
        kw["engine"] = "pyarrow"
    else:
        kw["engine"] = "c"
        kw["index_col"] = False
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        return pd.read_csv(io.BytesIO(text), **kw)


def read_text_table(src: Source, *, header: bool | None = None, sep: Any = "auto", dtype: Any = str,
                    header_rule: Callable[[list[list[str]]], bool] | None = None, what: str,
                    nrows: int | None = None) -> tuple[Table, str | None]:
    """Parse a text source.  Returns the table and the delimiter used."""
    lines = head_lines(src)
    if sep == "auto":
        sep = sniff_delimiter(lines, src.ext)
    if header is None:
        rows = _split([ln for ln in lines if ln.strip()][:200], sep)
        header = (header_rule or detect_header)(rows)
    # leading blank lines before the header/data are dropped; count them for line numbers
    text = src.text
    lead = len(text) - len(text.lstrip(b"\r\n"))
    lead_lines = 0
    if lead:
        pre = text[:lead]
        lead_lines = pre.count(b"\n") + pre.replace(b"\r\n", b"").count(b"\r")
        text = text[lead:]
    engine = "c"
    extra = {} if nrows is None else {"nrows": nrows}
    if nrows is None and len(text) >= _PYARROW_MIN_BYTES and sep not in (None, WHITESPACE):
        try:
            import pyarrow  # noqa: F401
            engine = "pyarrow"
        except ImportError:
            engine = "c"
    df = None
    if engine == "pyarrow":
        try:
            df = _parse(text, sep, header, "pyarrow", dtype)
        except Exception:  # noqa: BLE001 - any pyarrow trouble: the C engine gives the precise error
            df = None
    if df is None:
        try:
            df = _parse(text, sep, header, "c", dtype, **extra)
        except pd.errors.EmptyDataError:
            raise src.error("the file has no columns.",
                            hint=f"give a file of {what} with a header line and rows.") from None
        except pd.errors.ParserWarning:
            raise src.error("the header line has fewer fields than the data rows.", line=1 + lead_lines,
                            hint="give every column a name in the header line, or remove the extra fields.") from None
        except pd.errors.ParserError as e:
            msg = str(e)
            m = _FIELDS_RE.search(msg)
            if m:
                exp, line, saw = (int(g) for g in m.groups())
                raise src.error(
                    f"this row has {saw} fields but {exp} were expected (as many as in the "
                    f"{'header' if header else 'first row'}; delimiter {delimiter_name(sep)!r}).",
                    line=line + lead_lines,
                    hint="quote values that contain the delimiter (\"a, b\"), or remove the extra fields.") from None
            m = _EOF_RE.search(msg)
            if m:
                row = int(m.group(1))
                raise src.error("a quoted value is never closed (the file ends inside quotes).",
                                line=row + lead_lines + (1 if header else 0),
                                hint="close the quote (\") or remove the stray quote character.") from None
            raise src.error(f"cannot parse the table: {msg.strip()}",
                            hint="check the delimiter and quoting of the file.") from None
        except (ValueError, UnicodeError, OverflowError, MemoryError) as e:
            raise src.error(f"cannot parse the table: {e}",
                            hint="check the delimiter and quoting of the file.") from None
    if header:
        df.columns = [_clean_name(c) for c in df.columns]
    blank = df.isna().all(axis=1).to_numpy() if len(df.columns) else np.zeros(len(df), dtype=bool)
    first_line = 1 + lead_lines + (1 if header else 0)
    renamed = _repeated_names(text, sep, list(df.columns)) if header else {}
    return Table(df=df, name=src.name, path=src.path, has_header=bool(header), first_line=first_line,
                 blank=blank, renamed=renamed), sep


def _repeated_names(text: bytes, sep: str | None, columns: list) -> dict:
    """Header names that repeat (pandas reads ``a,a`` as ``a``, ``a.1``): {new name: name in the file}."""
    first = text[:1 << 16].split(b"\n", 1)[0].decode("utf-8", errors="replace").rstrip("\r")
    raw = [f.strip() for f in _split([first], sep)[0]] if first else []
    if len(raw) != len(columns) or len(set(raw)) == len(raw):
        return {}
    return {c: r for c, r in zip(columns, raw) if str(c) != r and r != ""}


def _clean_name(c: Any) -> Any:
    return c.strip() if isinstance(c, str) else c


def read_parquet_table(src: Source, *, what: str) -> Table:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise src.error("reading Parquet needs the pyarrow package, which is not installed.",
                        hint="pip install pyarrow (or pip install kdcrowd[parquet]), "
                             "or save the table as CSV.") from None
    try:
        df = pd.read_parquet(io.BytesIO(src.data))
    except Exception as e:  # noqa: BLE001 - pyarrow raises many types for corrupt files
        first = (str(e).strip().splitlines() or [""])[0][:160]
        raise src.error(f"not a readable Parquet file ({type(e).__name__}: {first}).",
                        hint="check that the file is complete, or save the table as CSV.") from None
    df = df.reset_index(drop=not _has_named_index(df))
    df.columns = [_clean_name(c) for c in df.columns]
    df, nested = drop_nested(df)
    blank = df.isna().all(axis=1).to_numpy() if len(df.columns) else np.zeros(len(df), dtype=bool)
    return Table(df=df, name=src.name, path=src.path, has_header=True, first_line=None, row_word="row", blank=blank,
                 nested=nested)


def _has_named_index(df: pd.DataFrame) -> bool:
    return not isinstance(df.index, pd.RangeIndex) and any(n is not None for n in df.index.names)


def frame_table(df: pd.DataFrame, name: str | None) -> Table:
    label = name or "<DataFrame>"
    df = df.reset_index(drop=not _has_named_index(df))
    df, nested = drop_nested(df)
    blank = df.isna().all(axis=1).to_numpy() if len(df.columns) else np.zeros(len(df), dtype=bool)
    return Table(df=df, name=label, path=None if label.startswith("<") else label, has_header=True,
                 first_line=None, row_word="row", blank=blank, nested=nested)


def drop_nested(df: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """``df`` without the columns holding lists/dicts/arrays (from JSON or Parquet), and those columns."""
    nested: dict = {}
    for c in df.columns:
        col = df[c]
        if col.dtype != object:
            continue
        try:
            pd.factorize(col)
        except TypeError:
            ex = next((v for v in col if v is not None and not isinstance(v, (str, int, float, bool))), None)
            text = repr(ex.tolist() if isinstance(ex, np.ndarray) else ex)
            nested[c] = text if len(text) <= 60 else text[:57] + "..."
    if nested:
        df = df.drop(columns=list(nested))
    return df, nested


def records_frame(records: list) -> pd.DataFrame:
    """JSON records -> DataFrame; nested objects flattened to ``a.b`` columns (lists stay, see drop_nested)."""
    if any(isinstance(v, dict) for r in records[:1000] if isinstance(r, dict) for v in r.values()):
        try:
            return pd.json_normalize(records, max_level=3)
        except (TypeError, ValueError, AttributeError):
            pass
    return pd.DataFrame.from_records(records)
