"""Ids and paths under the data directory: nothing is written or deleted outside it.

The data directory (runs, datasets, caches of the dashboard) is set by
configuration only: ``kdcrowd dashboard --data-dir DIR`` or the environment
variable ``KDCROWD_HOME``; never by a text box in a page.

Every id that becomes part of a path (run ids, dataset ids) is checked with
:func:`check_id` against :data:`ID_PATTERN` (letters, digits, ``_`` and ``-``;
no dot, no slash, at most 64 characters), and every path built from it goes
through :func:`confined`, which resolves it (following symlinks) and refuses
it unless it stays inside the data directory.  :func:`remove_tree` deletes a
folder only after the same check and never follows a symlink out.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from .errors import CrowdDataError

#: The env variable that sets the data directory.
HOME_ENV = "KDCROWD_HOME"
#: What a run or dataset id may look like (it becomes a folder name).
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


class UnsafePathError(CrowdDataError):
    """An id or a path that would leave the data directory (or is not a valid id)."""


def is_valid_id(value) -> bool:
    """True when ``value`` is a str matching :data:`ID_PATTERN` in full."""
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None


def check_id(kind: str, value) -> str:
    """``value`` when it is a valid ``kind`` id (e.g. "run", "dataset"), else :class:`UnsafePathError`."""
    if not is_valid_id(value):
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        raise UnsafePathError(f"{shown} is not a valid {kind} id.",
                              hint=f"a {kind} id is 1 to 64 letters, digits, '_' or '-', starting with a letter "
                                   "or digit (no '.', '/' or spaces).")
    return value


def data_home(setting: str | os.PathLike | None = None, *, create: bool = True) -> Path:
    """The data directory, resolved (created when ``create``).

    Order: explicit ``setting`` (the ``--data-dir`` flag), env ``KDCROWD_HOME``,
    ``./.kdcrowd`` when it already exists in the working directory, ``~/.kdcrowd``.
    """
    if setting:
        p = Path(setting).expanduser()
    elif os.environ.get(HOME_ENV):
        p = Path(os.environ[HOME_ENV]).expanduser()
    elif Path(".kdcrowd").is_dir():
        p = Path(".kdcrowd")
    else:
        p = Path.home() / ".kdcrowd"
    if create:
        p.mkdir(parents=True, exist_ok=True)
    return p.resolve()


def confined(root: str | os.PathLike, *parts: str | os.PathLike) -> Path:
    """``root / parts``, resolved, after checking that it stays strictly inside ``root``.

    Symlinks are followed (``Path.resolve``) before the check, so a link that
    points outside is refused as well as ``..`` or an absolute part.  Raises
    :class:`UnsafePathError`; the returned path is resolved.
    """
    base = Path(root).resolve()
    if not parts:
        raise UnsafePathError("no path under the data directory was given.", path=base)
    for p in parts:
        s = os.fspath(p)
        if not s or "\x00" in s:
            raise UnsafePathError(f"{s!r} is not a usable path part.", path=base)
    target = base.joinpath(*parts).resolve()
    if target == base or not target.is_relative_to(base):
        raise UnsafePathError(f"{os.path.join(*map(os.fspath, parts))!r} leads outside the data directory.",
                              path=base, hint="use an id made of letters, digits, '_' and '-' only.")
    return target


def remove_tree(root: str | os.PathLike, *parts: str | os.PathLike) -> bool:
    """Delete the folder (or file) ``root / parts`` when it is inside ``root``; True when something was removed.

    The last part may be a symlink: the link itself is removed, never what it
    points to (even when it points inside the data directory).  A path that
    leaves ``root`` raises :class:`UnsafePathError` and nothing is touched.
    """
    base = Path(root).resolve()
    raw = base.joinpath(*parts)
    # the parent (after symlinks) must be inside root; the last component is checked without following it
    parent = confined(base, *parts[:-1]) if len(parts) > 1 else base
    name = Path(os.fspath(parts[-1])).name if parts else ""
    if not parts or name != os.fspath(parts[-1]) or name in ("", ".", ".."):
        raise UnsafePathError(f"{os.fspath(parts[-1]) if parts else ''!r} is not a single folder name.", path=base)
    lexical = parent / name
    if not lexical.is_relative_to(base) or lexical == base:
        raise UnsafePathError(f"{os.fspath(raw)!r} leads outside the data directory.", path=base)
    if lexical.is_symlink():
        lexical.unlink()
        return True
    if lexical.is_dir():
        shutil.rmtree(lexical)   # rmtree does not follow symlinks inside the tree
        return True
    if lexical.exists():
        lexical.unlink()
        return True
    return False
