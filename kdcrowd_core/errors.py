"""The one exception type the library raises for bad data."""
from __future__ import annotations


class CrowdDataError(ValueError):
    """Bad or unusable crowd data.

    The message says which file (when there is one), where in it (line or
    column), what was expected and how to fix it.  Attributes mirror the
    message for programmatic use: ``path``, ``line``, ``column``, ``hint``.
    """

    def __init__(self, message: str, *, path=None, line=None, column=None, hint=None):
        self.path = None if path is None else str(path)
        self.line = line
        self.column = column
        self.hint = hint
        parts = []
        if self.path:
            where = self.path
            if line is not None:
                where += f", line {line}"
            if column is not None:
                where += f", column {column!r}"
            parts.append(where + ": ")
        elif line is not None or column is not None:
            bits = []
            if line is not None:
                bits.append(f"line {line}")
            if column is not None:
                bits.append(f"column {column!r}")
            parts.append(", ".join(bits) + ": ")
        parts.append(message)
        if hint:
            parts.append(f" Fix: {hint}")
        self.bare_message = message
        super().__init__("".join(parts))
