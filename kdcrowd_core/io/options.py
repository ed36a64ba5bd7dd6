"""ReadOptions: how a file is read, as one object shared by the library, the CLI and the dashboard.

Every field has a default that means "detect" or "keep as written"; a
non-default value is a choice the user made and the reading report says so.
The object is plain data: ``to_dict``/``from_dict`` (and ``to_json``/
``from_json``) round-trip it, so the dashboard stores it with each dataset
and the CLI builds it from flags (:func:`add_cli_arguments`,
:func:`from_cli_args`).  docs/formats.md, "Reading options", documents each
field.
"""
from __future__ import annotations

import dataclasses
import json
import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ..errors import CrowdDataError, opt

#: file layouts (``auto`` detects)
FORMATS = ("auto", "long", "wide", "mturk", "toloka", "labelstudio")

#: item id transforms, applied in this order whatever order they are given in
ID_TRANSFORMS = ("strip", "filename", "stem", "lower")
ID_TRANSFORM_HELP = {
    "strip": "remove spaces around the id",
    "filename": "keep the file name of a URL or path (http://x/a/img1.jpg -> img1.jpg)",
    "stem": "drop the file extension (img1.jpg -> img1)",
    "lower": "lower-case",
}
#: named choices for pickers (label -> steps); "as is" keeps ids exactly as written
ID_TRANSFORM_PRESETS: dict[str, tuple[str, ...]] = {
    "as is": (),
    "strip spaces": ("strip",),
    "file name": ("strip", "filename"),
    "file name without extension": ("strip", "filename", "stem"),
    "lower-case": ("strip", "lower"),
    "file name, lower-case": ("strip", "filename", "lower"),
    "file name without extension, lower-case": ("strip", "filename", "stem", "lower"),
}
DEFAULT_ID_TRANSFORM = ("strip",)

#: what to do with a worker's repeated answers to one item
DUPLICATES = ("all", "last", "first")


def _is_col(v: Any) -> bool:
    return v is None or (isinstance(v, (str, int)) and not isinstance(v, bool))


@dataclass
class ReadOptions:
    """How to read answers, gold and features (every field optional).

    Columns (``None`` = detect by name; a name or a 0-based position):
    ``item``, ``worker``, ``label`` of the answers; ``gold_item``,
    ``gold_label`` of the gold file; ``features_item`` of a features table;
    ``feature_ids``: for ``.npy`` features, a file with one item id per line
    (row ``k`` of the array is item ``ids[k]``).

    ``format``: one of :data:`FORMATS`.

    ``id_transform``: steps from :data:`ID_TRANSFORMS` applied to every item
    id (answers, gold, features): ``()`` keeps ids as written; the default
    ``("strip",)`` removes surrounding spaces.  Ids the transform makes equal
    are counted in the report.

    Labels: distinct raw labels stay distinct classes unless asked:
    ``label_trim`` (``" cat"`` = ``"cat"``), ``label_case_fold`` (``"Cat"``
    = ``"cat"``), ``label_merge_numbers`` (``"01"`` = ``"1.0"`` = ``"1"``),
    ``label_map``: code -> class name (``{"0": "highway", ...}``, see
    :func:`parse_label_map`); ``classes``: every class in order.

    ``duplicates``: a worker's repeated answers to one item: ``"all"`` count
    (as Crowd-Kit), ``"last"`` / ``"first"`` keep one.

    ``allow_unknown_items``: gold labels and feature rows for items without
    answers are ignored (noted) instead of refused.
    """

    format: str = "auto"
    item: str | int | None = None
    worker: str | int | None = None
    label: str | int | None = None
    gold_item: str | int | None = None
    gold_label: str | int | None = None
    features_item: str | int | None = None
    feature_ids: str | None = None
    id_transform: tuple[str, ...] = DEFAULT_ID_TRANSFORM
    label_trim: bool = False
    label_case_fold: bool = False
    label_merge_numbers: bool = False
    label_map: dict[str, str] | None = None
    classes: tuple | None = None
    duplicates: str = "all"
    allow_unknown_items: bool = False

    def __post_init__(self) -> None:
        self.format = check_format(self.format)
        for name in ("item", "worker", "label", "gold_item", "gold_label", "features_item"):
            v = getattr(self, name)
            if isinstance(v, str) and v == "":
                setattr(self, name, None)
            elif not _is_col(v):
                raise CrowdDataError(f"{name} must be a column name or a 0-based position, got {v!r}.",
                                     hint=f"give {opt(name)} a column name.", option=name)
        if self.feature_ids is not None:
            self.feature_ids = os.fspath(self.feature_ids) if isinstance(self.feature_ids, os.PathLike) \
                else self.feature_ids
        self.id_transform = parse_id_transform(self.id_transform)
        for name in ("label_trim", "label_case_fold", "label_merge_numbers", "allow_unknown_items"):
            setattr(self, name, bool(getattr(self, name)))
        if self.label_map is not None:
            self.label_map = parse_label_map(self.label_map)
        if self.classes is not None:
            if isinstance(self.classes, str):
                self.classes = tuple(c.strip() for c in self.classes.split(",") if c.strip())
            else:
                self.classes = tuple(self.classes)
        d = str(self.duplicates).strip().lower()
        if d not in DUPLICATES:
            raise CrowdDataError(f"duplicates must be one of {list(DUPLICATES)}, got {self.duplicates!r}.",
                                 hint=f"set {opt('duplicates')} to all, last or first.", option="duplicates")
        self.duplicates = d

    # ------------------------------------------------------------ (de)serialise
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; only fields that differ from the default (so old records stay readable)."""
        out: dict[str, Any] = {}
        default = ReadOptions()
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v == getattr(default, f.name):
                continue
            if isinstance(v, tuple):
                v = list(v)
            elif isinstance(v, dict):
                v = dict(v)
            out[f.name] = v
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ReadOptions:
        if d is None:
            return cls()
        if not isinstance(d, dict):
            raise CrowdDataError(f"reading options must be a JSON object, got {type(d).__name__}.")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise CrowdDataError(f"unknown reading options {unknown}.", hint=f"known options: {sorted(names)}.")
        return cls(**d)

    @classmethod
    def from_json(cls, text: str | bytes | None) -> ReadOptions:
        if text is None or (isinstance(text, (str, bytes)) and not text.strip()):
            return cls()
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise CrowdDataError(f"reading options are not valid JSON: {e.msg}.") from None
        return cls.from_dict(d)

    def replace(self, **changes: Any) -> ReadOptions:
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def is_default(self) -> bool:
        return not self.to_dict()

    def describe(self) -> list[str]:
        """The non-default choices, one short sentence each (for the reading report)."""
        out = []
        for k, v in self.to_dict().items():
            if k == "id_transform":
                out.append("item ids: " + (" then ".join(v) if v else "as written (no stripping)"))
            elif k == "label_map":
                out.append("class names for label codes: " + ", ".join(f"{a}={b}" for a, b in v.items()))
            elif isinstance(v, bool):
                out.append(k.replace("_", " "))
            else:
                out.append(f"{k} = {v!r}")
        return out

    def answer_kwargs(self) -> dict[str, Any]:
        return {"format": self.format, "item": self.item, "worker": self.worker, "label": self.label}


def check_format(fmt: Any) -> str:
    aliases = {"label-studio": "labelstudio", "label_studio": "labelstudio", "ls": "labelstudio",
               "mechanical_turk": "mturk", "amt": "mturk", "crowd-kit": "long", "crowdkit": "long",
               "cleanlab": "wide", "matrix": "wide", "csv": "long"}
    f = str(fmt).strip().lower() if fmt is not None else "auto"
    f = aliases.get(f, f)
    if f not in FORMATS:
        raise CrowdDataError(f"unknown format {fmt!r}.", hint=f"set {opt('format')} to one of {list(FORMATS)}.",
                             option="format")
    return f


def parse_id_transform(value: Any) -> tuple[str, ...]:
    """Steps in canonical order from a preset name, ``"strip,filename"``, a list, or ``None``/``"as is"``."""
    if value is None:
        return ()
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ID_TRANSFORM_PRESETS:
            return ID_TRANSFORM_PRESETS[v]
        if v in ("", "as_is", "asis", "none"):
            return ()
        parts = [p.strip() for p in re.split(r"[,+ ]+", v) if p.strip()]
    else:
        try:
            parts = [str(p).strip().lower() for p in value]
        except TypeError:
            raise CrowdDataError(f"id_transform must be a list of steps, got {value!r}.",
                                 hint=f"use steps from {list(ID_TRANSFORMS)}.", option="id_transform") from None
    aliases = {"basename": "filename", "file_name": "filename", "name": "filename", "noext": "stem",
               "without_extension": "stem", "no_extension": "stem", "lowercase": "lower", "lower_case": "lower",
               "casefold": "lower", "trim": "strip"}
    steps = set()
    for p in parts:
        p = aliases.get(p, p)
        if p not in ID_TRANSFORMS:
            raise CrowdDataError(f"unknown id transform step {p!r}.",
                                 hint=f"set {opt('id_transform')} to steps from {list(ID_TRANSFORMS)} "
                                      "(comma-separated), or 'as is'.", option="id_transform")
        steps.add(p)
    return tuple(s for s in ID_TRANSFORMS if s in steps)


def id_transform_name(steps: tuple[str, ...]) -> str:
    """The preset name of ``steps`` when there is one, else the steps joined with commas."""
    for name, st in ID_TRANSFORM_PRESETS.items():
        if tuple(st) == tuple(steps):
            return name
    return ",".join(steps)


def _filename(s: str) -> str:
    if "://" in s:
        path = urlsplit(s).path
        s = unquote(path) if path else s
    else:
        s = s.split("?", 1)[0] if s.startswith(("s3:", "gs:")) else s
    s = s.replace("\\", "/").rstrip("/")
    return posixpath.basename(s) or s


def _stem(s: str) -> str:
    head, sep, tail = s.rpartition("/")
    base = tail
    dot = base.rfind(".")
    if dot > 0:
        base = base[:dot]
    return head + sep + base


def transform_id(value: Any, steps: tuple[str, ...]) -> Any:
    """One id through ``steps`` (only text ids change)."""
    if not isinstance(value, str):
        return value
    s = value
    for st in steps:
        if st == "strip":
            s = s.strip()
        elif st == "filename":
            s = _filename(s)
        elif st == "stem":
            s = _stem(s)
        elif st == "lower":
            s = s.lower()
    return s


# ------------------------------------------------------------------ label maps
_MAP_ITEM = re.compile(r"\s*([^=:]+?)\s*[=:]\s*(.+?)\s*$")


def parse_label_map(value: Any) -> dict[str, str]:
    """``"0=highway,1=insidecity"`` (also ``:``, ``;`` or new lines), a dict, or pairs -> {code: name}.

    Keys are text (``0`` and ``"0"`` are the same code).  Order is kept: it is the class order.
    """
    if isinstance(value, dict):
        pairs = [(str(k).strip(), str(v).strip()) for k, v in value.items()]
    elif isinstance(value, str):
        pairs = []
        for k, part in enumerate(p for p in re.split(r"[,;\n]", value) if p.strip()):
            m = _MAP_ITEM.match(part)
            if not m:
                raise CrowdDataError(f"cannot read {part.strip()!r} (entry {k + 1}) as code=name.",
                                     hint=f"write {opt('label_map')} as 0=highway,1=insidecity.", option="label_map")
            pairs.append((m.group(1), m.group(2)))
    else:
        try:
            pairs = [(str(a).strip(), str(b).strip()) for a, b in value]
        except (TypeError, ValueError):
            raise CrowdDataError(f"a label map must be text like 0=highway,1=insidecity or a dict, got "
                                 f"{type(value).__name__}.", option="label_map") from None
    out: dict[str, str] = {}
    for code, name in pairs:
        if not code or not name:
            raise CrowdDataError(f"empty code or class name in the label map ({code!r}={name!r}).",
                                 hint=f"write {opt('label_map')} as 0=highway,1=insidecity.", option="label_map")
        if code in out and out[code] != name:
            raise CrowdDataError(f"code {code!r} is given two class names ({out[code]!r} and {name!r}).",
                                 hint="give each code one class name.", option="label_map")
        out[code] = name
    if not out:
        raise CrowdDataError("the label map is empty.", hint=f"write {opt('label_map')} as 0=highway,1=insidecity.",
                             option="label_map")
    return out


def read_label_map(source: Any, *, name: str | None = None) -> dict[str, str]:
    """A two-column file (code, class name; header optional; CSV/TSV/whitespace) -> {code: name}."""
    from ._source import open_source
    from ._table import WHITESPACE, _split, head_lines, sniff_delimiter
    src = open_source(source, name=name, max_bytes=16 << 20, kinds=("text",), what="a label map")
    lines = [ln for ln in src.text.decode("utf-8").splitlines() if ln.strip()]
    sep = sniff_delimiter(head_lines(src), src.ext)
    if sep in (None, WHITESPACE):  # "0 highway" / "1 inside city": code, then the rest of the line
        rows = [ln.split(None, 1) for ln in lines]
        sep = WHITESPACE
    else:
        rows = _split(lines, sep)
    pairs = []
    for k, r in enumerate(rows):
        r = [c.strip() for c in r if c.strip() != ""]
        if len(r) != 2:
            raise src.error(f"expected two columns (code, class name), found {len(r)}.", line=k + 1,
                            hint="one line per class: code, name (e.g. 0,highway).", option="label_map")
        pairs.append((r[0], r[1]))
    if pairs and pairs[0][0].strip().lower() in ("code", "label", "id", "value", "key", "class_id") \
            and not pairs[0][0].strip().isdigit():
        pairs = pairs[1:]
    try:
        return parse_label_map(pairs)
    except CrowdDataError as e:
        raise src.error(e.message_template, hint=e.hint_template, option="label_map") from None


def label_map_from_text_or_file(value: str) -> dict[str, str]:
    """CLI/dashboard entry: an existing file path is read as a two-column file, anything else parsed as text."""
    if isinstance(value, str) and "=" not in value and ":" not in value.replace(":\\", "") and Path(value).is_file():
        return read_label_map(value)
    if isinstance(value, str) and Path(value).suffix.lower() in (".csv", ".tsv", ".txt") and Path(value).is_file():
        return read_label_map(value)
    return parse_label_map(value)


# ------------------------------------------------------------------ CLI
def add_cli_arguments(p: Any, *, gold: bool = True, features: bool = True) -> None:
    """Every ReadOptions field as a CLI flag (``--item``, ``--id-transform``, ...) in one argument group."""
    g = p.add_argument_group("reading files (see docs/formats.md, 'Reading options')")
    g.add_argument("--format", choices=list(FORMATS), default="auto", help="answers file layout (default: detect)")
    g.add_argument("--item", help="item column of the answers (name or 0-based position; default: detect)")
    g.add_argument("--worker", help="worker column of the answers (default: detect)")
    g.add_argument("--label", help="label column of the answers (default: detect)")
    if gold:
        g.add_argument("--gold-item", metavar="COLUMN", help="item column of the gold file (default: detect)")
        g.add_argument("--gold-label", metavar="COLUMN", help="label column of the gold file (default: detect)")
    if features:
        g.add_argument("--features-item", metavar="COLUMN", help="item column of a features table (default: detect)")
        g.add_argument("--feature-ids", metavar="FILE",
                       help="for .npy features: a text file with the item id of each row, one per line "
                            "(default: rows are items 0..n-1)")
    g.add_argument("--id-transform", metavar="STEPS", default=None,
                   help="applied to every item id: comma-separated steps from strip, filename (of a URL or path), "
                        "stem (no extension), lower; 'as is' for none (default: strip)")
    g.add_argument("--label-trim", action="store_true", help="labels that differ only by surrounding spaces are one")
    g.add_argument("--label-case-fold", action="store_true", help="labels that differ only by case are one class")
    g.add_argument("--label-merge-numbers", action="store_true",
                   help="labels that are the same number (01, 1.0, 1) are one class")
    g.add_argument("--label-map", metavar="MAP",
                   help="class names for label codes: 0=highway,1=insidecity or a two-column file (code, name)")
    g.add_argument("--classes", metavar="C1,C2,...", help="every class, in order (default: those that occur)")
    g.add_argument("--max-rows", type=int, default=None, metavar="N",
                   help="refuse tables with more rows (default 10,000,000; checked before parsing)")
    g.add_argument("--max-bytes", type=int, default=None, metavar="BYTES",
                   help="refuse files bigger than this, also once decompressed (default 1 GiB)")
    g.add_argument("--allow-unknown-items", action="store_true",
                   help="ignore gold labels and feature rows for items that have no answers (default: refuse them, "
                        "as they usually mean the ids do not match)")
    g.add_argument("--duplicates", choices=list(DUPLICATES), default="all",
                   help="a worker's repeated answers to one item: all count (default, as Crowd-Kit), or keep "
                        "the last / first")


def from_cli_args(args: Any) -> ReadOptions:
    """ReadOptions from parsed CLI arguments (flags a command lacks keep their defaults)."""
    def get(name: str) -> Any:
        return getattr(args, name, None)
    kw: dict[str, Any] = {}
    for name in ("format", "item", "worker", "label", "gold_item", "gold_label", "features_item", "feature_ids",
                 "duplicates", "classes"):
        v = get(name)
        if v not in (None, ""):
            kw[name] = v
    if get("id_transform") is not None:
        kw["id_transform"] = get("id_transform")
    for name in ("label_trim", "label_case_fold", "label_merge_numbers", "allow_unknown_items"):
        if get(name):
            kw[name] = True
    if get("label_map"):
        kw["label_map"] = label_map_from_text_or_file(get("label_map"))
    return ReadOptions(**kw)


def resolve(options: ReadOptions | dict | None, **overrides: Any) -> ReadOptions:
    """``options`` (or defaults) with the keyword arguments that were actually given (not None) applied."""
    if options is None:
        base = ReadOptions()
    elif isinstance(options, ReadOptions):
        base = options
    elif isinstance(options, dict):
        base = ReadOptions.from_dict(options)
    else:
        raise CrowdDataError(f"options= must be a ReadOptions, got {type(options).__name__}.")
    ch = {k: v for k, v in overrides.items() if v is not None and not (k == "format" and v == "auto")}
    return base.replace(**ch) if ch else base


def read_limits(args: Any) -> dict[str, int]:
    """``max_rows`` / ``max_bytes`` given on the command line (reader keywords, not reading options)."""
    return {k: getattr(args, k) for k in ("max_rows", "max_bytes") if getattr(args, k, None) is not None}
