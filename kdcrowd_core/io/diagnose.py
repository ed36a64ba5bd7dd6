"""Id diagnosis: why the ids of features, gold or item content do not match the answers', and the fix.

``diagnose_ids(answer_ids, other_ids, what="features")`` counts the matches,
shows an example id from each side and tries every id transform (all
combinations of :data:`~kdcrowd_core.io.options.ID_TRANSFORMS`, applied to
both sides on top of the current one); it proposes the transform that
matches the most ids when that beats the current one.  The result's
``message(interface)`` says all that in the words of the interface
("set --id-transform to 'file name'", "pick 'file name' in the 'Item id
transform' picker").
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any
from collections.abc import Iterable

import numpy as np
import pandas as pd

from ..errors import CrowdDataError, opt, render_text
from .options import DEFAULT_ID_TRANSFORM, ID_TRANSFORMS, id_transform_name, parse_id_transform, transform_id

#: the id sets compared are capped (a sample) so that a diagnosis stays fast on millions of ids
_MAX_IDS = 200_000


@dataclass
class IdDiagnosis:
    """How the ids of ``what`` (features, gold, item content) match the answers' item ids.

    ``n_answer_ids``: answered items; ``n_other_ids``: ids in the other file;
    ``n_matched``: ids on both sides with the current transform;
    ``example_answer_id`` / ``example_other_id``: an unmatched id of each side
    (``None`` when all match); ``proposed_transform``: steps that match more
    ids (``None`` when no transform does better), with ``n_matched_proposed``;
    ``needs_all_answered``: True when every answered item needs a match
    (features), False when only the other side's ids must be known (gold).
    """

    what: str
    source: str | None
    n_answer_ids: int
    n_other_ids: int
    n_matched: int
    example_answer_id: Any
    example_other_id: Any
    current_transform: tuple[str, ...]
    proposed_transform: tuple[str, ...] | None
    n_matched_proposed: int
    needs_all_answered: bool = True
    row_numbers: bool = False  # the other side's ids are row numbers 0..n-1 (a .npy without ids)

    @property
    def ok(self) -> bool:
        """Nothing to fix: every id that must match does."""
        if self.needs_all_answered:
            return self.n_matched == self.n_answer_ids
        return self.n_matched == self.n_other_ids

    @property
    def coverage(self) -> float:
        denom = self.n_answer_ids if self.needs_all_answered else self.n_other_ids
        return self.n_matched / denom if denom else 1.0

    def message(self, interface: str = "library") -> str:
        """What matches, an example of each side, and the fix, phrased for ``interface``."""
        return render_text(self._template(), interface)

    def hint(self, interface: str = "library") -> str | None:
        return render_text(self._hint_template(), interface)

    def _template(self) -> str:
        if self.needs_all_answered:
            head = (f"{self.what} match {self.n_matched} of the {self.n_answer_ids} answered items "
                    f"({self.n_other_ids} {self.what} ids)")
        else:
            head = (f"{self.n_matched} of the {self.n_other_ids} {self.what} ids are answered items "
                    f"(the answers have {self.n_answer_ids} items)")
        parts = [head + "."]
        if self.example_answer_id is not None and self.example_other_id is not None:
            parts.append(f"For example, the answers have item {self.example_answer_id!r} where the {self.what} "
                         f"have {self.example_other_id!r}.")
        return " ".join(parts)

    def _hint_template(self) -> str | None:
        if self.ok:
            return None
        if self.row_numbers:
            return (f"the {self.what} are an array without ids, so its rows are items 0..n-1; give the item id "
                    f"of each row with {opt('feature_ids')} (a text file, one id per line).")
        if self.proposed_transform is not None:
            name = id_transform_name(self.proposed_transform)
            return (f"set {opt('id_transform')} to {name!r}: then {self.n_matched_proposed} ids match "
                    f"(now {self.n_matched}); the reading report counts any items it makes one.")
        return (f"no id transform makes more ids match; check that the {self.what} are for the same items as the "
                "answers (same id column, same naming).")

    def error(self) -> CrowdDataError:
        """The diagnosis as a CrowdDataError (path = the other file)."""
        opt_name = "feature_ids" if self.row_numbers else ("id_transform" if self.proposed_transform else None)
        return CrowdDataError(self._template(), path=self.source, hint=self._hint_template(), option=opt_name)


def _as_keys(ids: Iterable[Any]) -> list:
    out = []
    for v in ids:
        if isinstance(v, (np.integer,)):
            v = int(v)
        elif isinstance(v, (np.floating, float)) and float(v).is_integer():
            v = int(v)
        out.append(v)
    return out


def _key(v: Any) -> str:
    return str(v)


def _candidates(current: tuple[str, ...]) -> list[tuple[str, ...]]:
    extra = [s for s in ID_TRANSFORMS if s not in current]
    out = []
    for r in range(len(extra) + 1):
        for combo in itertools.combinations(extra, r):
            steps = set(current) | set(combo)
            out.append(tuple(s for s in ID_TRANSFORMS if s in steps))
    return out


def _matches(a: list, b: list, steps: tuple[str, ...]) -> tuple[int, int, int]:
    """(ids of ``a`` that match, distinct ids of ``a`` after the steps, of ``b``) after ``steps``."""
    ta = {_key(transform_id(v, steps)) for v in a}
    tb = {_key(transform_id(v, steps)) for v in b}
    return len(ta & tb), len(ta), len(tb)


def diagnose_ids(answer_ids: Iterable[Any], other_ids: Iterable[Any], *, what: str = "features",
                 source: str | None = None, current: Any = DEFAULT_ID_TRANSFORM,
                 needs_all_answered: bool | None = None, row_numbers: bool = False) -> IdDiagnosis:
    """Compare ``other_ids`` (features, gold, item content) with ``answer_ids`` and propose an id transform.

    ``current``: the id transform already applied to both sides (the ReadOptions' one).
    ``needs_all_answered``: default True for features and item content, False for gold.
    ``row_numbers``: the other ids are row numbers of an id-less array (the fix is to give ids).
    """
    cur = parse_id_transform(current)
    if needs_all_answered is None:
        needs_all_answered = what != "gold"
    a = _as_keys(pd.unique(pd.Index(list(answer_ids)))[:_MAX_IDS])
    b = _as_keys(pd.unique(pd.Index(list(other_ids)))[:_MAX_IDS])
    sa, sb = {_key(v) for v in a}, {_key(v) for v in b}
    matched = len(sa & sb)
    ex_a = next((v for v in a if _key(v) not in sb), None)
    ex_b = next((v for v in b if _key(v) not in sa), None)
    best, best_n = None, matched
    if not row_numbers:
        for steps in _candidates(cur):
            if steps == cur:
                continue
            n, _n_a, _n_b = _matches(a, b, steps)
            if n > best_n or (best is not None and n == best_n and len(steps) < len(best)):
                best, best_n = steps, n
    return IdDiagnosis(what=what, source=source, n_answer_ids=len(sa), n_other_ids=len(sb), n_matched=matched,
                       example_answer_id=ex_a, example_other_id=ex_b, current_transform=cur,
                       proposed_transform=best, n_matched_proposed=best_n if best is not None else matched,
                       needs_all_answered=needs_all_answered, row_numbers=row_numbers)
