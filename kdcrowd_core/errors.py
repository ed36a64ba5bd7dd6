"""The one exception type the library raises for bad data.

Messages are written once and phrased for each interface: a hint may name a
reading option with :func:`opt` (``f"name it with {opt('item')}"``); the
library shows it as ``item=``, the CLI as ``--item`` and the dashboard as its
control ("the *Item column* picker").  ``str(error)`` is the library wording;
``error.render("cli")`` / ``error.render("dashboard")`` the others.
"""
from __future__ import annotations

import re

#: interfaces a message can be rendered for
INTERFACES = ("library", "cli", "dashboard")

_MARK = "\x1f"
_MARK_RE = re.compile(_MARK + r"([a-z_]+)" + _MARK)
_NEWLINES = re.compile(r"\s*[\r\n]+\s*")

#: option -> (library keyword, CLI flag, dashboard control).  Options of ReadOptions plus reader keywords.
OPTION_NAMES: dict[str, tuple[str, str, str]] = {
    "format": ("format=", "--format", "the 'File layout' picker"),
    "item": ("item=", "--item", "the 'Item column' picker"),
    "worker": ("worker=", "--worker", "the 'Worker column' picker"),
    "label": ("label=", "--label", "the 'Label column' picker"),
    "gold_item": ("gold_item=", "--gold-item", "the 'Gold item column' picker"),
    "gold_label": ("gold_label=", "--gold-label", "the 'Gold label column' picker"),
    "features_item": ("features_item=", "--features-item", "the 'Features item column' picker"),
    "feature_ids": ("feature_ids=", "--feature-ids", "the 'Feature ids file' upload"),
    "id_transform": ("id_transform=", "--id-transform", "the 'Item id transform' picker"),
    "label_trim": ("label_trim=True", "--label-trim", "the 'Trim spaces around labels' box"),
    "label_case_fold": ("label_case_fold=True", "--label-case-fold", "the 'Ignore case of labels' box"),
    "label_merge_numbers": ("label_merge_numbers=True", "--label-merge-numbers",
                            "the 'Merge labels that are the same number' box"),
    "label_map": ("label_map=", "--label-map", "the 'Class names for label codes' box"),
    "duplicates": ("duplicates=", "--duplicates", "the 'Repeated answers' picker"),
    "classes": ("classes=", "--classes", "the 'Classes' box"),
    "max_bytes": ("max_bytes=", "--max-bytes", "the server's upload limit"),
    "max_rows": ("max_rows=", "--max-rows", "the server's row limit"),
    "allow_unknown_items": ("allow_unknown_items=True", "--allow-unknown-items",
                            "the 'Ignore rows for items without answers' box"),
    "csv_guard": ("guard=False", "--no-csv-guard", "the 'Protect CSV downloads' box"),
}


def opt(name: str) -> str:
    """A placeholder for option ``name`` inside a message or hint, rendered per interface."""
    return f"{_MARK}{name}{_MARK}"


def render_text(text: str | None, interface: str = "library") -> str | None:
    """``text`` with every :func:`opt` placeholder replaced by the interface's name for that option."""
    if text is None:
        return None
    k = INTERFACES.index(interface) if interface in INTERFACES else 0

    def sub(m: re.Match) -> str:
        names = OPTION_NAMES.get(m.group(1))
        return names[k] if names else m.group(1)
    return _MARK_RE.sub(sub, text)


class CrowdDataError(ValueError):
    """Bad or unusable crowd data.

    The message says which file (when there is one), where in it (line or
    column), what was expected and how to fix it.  Attributes mirror the
    message for programmatic use: ``path``, ``line``, ``column``, ``hint``,
    and ``option`` (the reading option that fixes it, e.g. ``"item"``, or
    ``None``).  ``render(interface)`` phrases it for ``"library"``, ``"cli"``
    or ``"dashboard"``.
    """

    def __init__(self, message: str, *, path=None, line=None, column=None, hint=None, option=None):
        self.path = None if path is None else str(path)
        self.line = line
        self.column = column
        self.option = option
        if option is None and hint:
            m = _MARK_RE.search(hint)
            self.option = m.group(1) if m else None
        # one line, whatever a library below said (pyarrow messages span several lines)
        message = _NEWLINES.sub(" ", str(message))
        hint = None if hint is None else _NEWLINES.sub(" ", str(hint))
        self.message_template = message
        self.hint_template = hint
        self.bare_message = render_text(message, "library")  # the message without location and fix
        self.hint = render_text(hint, "library")
        super().__init__(self.render("library"))

    def location(self) -> str:
        """``"<file>, line 3, column 'x'"`` (or the part of it that is known; "" when nothing is)."""
        bits = []
        if self.path:
            bits.append(self.path)
        if self.line is not None:
            bits.append(f"line {self.line}")
        if self.column is not None:
            bits.append(f"column {self.column!r}")
        return ", ".join(bits)

    def render(self, interface: str = "library") -> str:
        """The full message with options named as ``interface`` names them."""
        where = self.location()
        out = (where + ": " if where else "") + render_text(self.message_template, interface)
        if self.hint_template:
            out += " Fix: " + render_text(self.hint_template, interface)
        return out

    def hint_for(self, interface: str = "library") -> str | None:
        """The fix alone, phrased for ``interface``."""
        return render_text(self.hint_template, interface)


class MissingColumnError(CrowdDataError, KeyError):
    """A required column is missing from a table.

    A :class:`CrowdDataError` (so the library's one documented exception still
    catches it) and a ``KeyError``, which is what Crowd-Kit and pandas raise for a
    missing column: code written for Crowd-Kit keeps working.
    """

    def __str__(self) -> str:  # KeyError would repr() the message
        return ValueError.__str__(self)
