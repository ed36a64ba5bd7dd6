"""What every featurizer shares: the result, the report, progress and cancellation."""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import CrowdDataError

#: ``progress(done, total)``: items handled so far (embedded, cached or skipped) out of ``total``.
ProgressFn = Callable[[int, int], None]
#: A :class:`threading.Event` (set = stop) or a callable returning True to stop.
CancelFlag = threading.Event | Callable[[], bool] | None


#: How messages name the options, per interface: keys "item", "column", "keep_first", "ids".
#: The library's defaults are its keyword arguments; the CLI passes its flags (``--item``...), the
#: dashboard its control labels, so a message always speaks the words of the interface in use.
LIBRARY_FLAGS = {"item": "item=", "column": "text=", "keep_first": "on_duplicate='first'", "ids": "ids="}


def flag(flags: dict[str, str] | None, key: str, value: str | None = None) -> str:
    """How to tell the user to set option ``key`` (to ``value``) in their interface."""
    f = (flags or {}).get(key) or LIBRARY_FLAGS.get(key, key)
    if value is None:
        return f
    if f.startswith("-"):
        return f"{f} {value}"
    if f.endswith("="):
        return f"{f}{value!r}"
    return f"{f!r}: {value}"


class FeaturizeCancelled(Exception):
    """Raised when the ``cancel`` flag of a featurizer is set; nothing is returned or written.

    Vectors computed before the cancel are kept in the cache, so a rerun resumes.
    """


def is_cancelled(cancel: CancelFlag) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


def check_cancel(cancel: CancelFlag) -> None:
    if is_cancelled(cancel):
        raise FeaturizeCancelled("featurizing was cancelled")


def batched(items: Iterable[Any], n: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for x in items:
        batch.append(x)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class FeaturizeReport:
    """What a featurizer read, embedded, took from the cache and skipped (and why).

    ``skipped`` is a list of ``{"reason": str, "count": int, "examples": [str]}``
    (examples name the file, line or archive member so a user can find them).
    """

    source: str = "<memory>"
    kind: str = "texts"                  # "texts" or "images"
    model: str = ""
    items_read: int = 0                  # rows / files looked at
    embedded: int = 0                    # vectors returned
    computed: int = 0                    # of which computed by the model in this call
    from_cache: int = 0                  # of which taken from the cache
    columns: dict[str, str] = field(default_factory=dict)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def skip(self, reason: str, count: int, examples: Iterable[str] = ()) -> None:
        """Count ``count`` skipped inputs under ``reason`` (merged with an earlier entry of the same reason)."""
        if not count:
            return
        for s in self.skipped:
            if s["reason"] == reason:
                s["count"] += int(count)
                s["examples"] = (s["examples"] + list(examples))[:5]
                return
        self.skipped.append({"reason": reason, "count": int(count), "examples": list(examples)[:5]})

    @property
    def n_skipped(self) -> int:
        return int(sum(s["count"] for s in self.skipped))

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "kind": self.kind, "model": self.model, "items_read": self.items_read,
                "embedded": self.embedded, "computed": self.computed, "from_cache": self.from_cache,
                "columns": dict(self.columns), "skipped": [dict(s) for s in self.skipped],
                "notes": list(self.notes)}

    def to_text(self) -> str:
        """Human-readable summary, one fact per line."""
        what = "rows" if self.kind == "texts" else "files"
        lines = [f"{self.source} ({self.kind}): {self.items_read} {what} read, {self.embedded} items embedded "
                 f"with {self.model} ({self.computed} computed, {self.from_cache} from the cache)"]
        if self.columns:
            lines.append("  columns: " + ", ".join(f"{k}={v!r}" for k, v in self.columns.items()))
        for s in self.skipped:
            ex = ("; e.g. " + "; ".join(s["examples"])) if s.get("examples") else ""
            lines.append(f"  skipped {s['count']}: {s['reason']}{ex}")
        for n in self.notes:
            lines.append(f"  note: {n}")
        return "\n".join(lines)


@dataclass
class Embeddings:
    """Feature vectors of items.

    ``X`` float32 (n, d); ``ids`` pandas.Index of the n item ids (str);
    ``feature_names`` d column names (``minilm_0``..., ``effnet_0``...);
    ``report``: :class:`FeaturizeReport`.  Unpacks like ``read_features``:
    ``X, ids, names = emb``.
    """

    X: np.ndarray
    ids: pd.Index
    feature_names: list[str]
    report: FeaturizeReport

    def __iter__(self):
        return iter((self.X, self.ids, self.feature_names))

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def to_frame(self) -> pd.DataFrame:
        """An ``item`` column then one float column per dimension (the layout ``read_features`` reads)."""
        df = pd.DataFrame(self.X, columns=self.feature_names)
        df.insert(0, "item", np.asarray(self.ids, dtype=object))
        return df


def restrict_to_known(ids: list[str], known_items: Iterable[Any] | None, report: FeaturizeReport,
                      what: str, where: list[str] | None = None) -> np.ndarray:
    """Boolean mask of ``ids`` that are in ``known_items`` (all True when ``known_items`` is None).

    Unknown ids are counted in the report; when none match, a CrowdDataError shows
    an example of each side (the usual cause: ids written differently).
    """
    keep = np.ones(len(ids), dtype=bool)
    if known_items is None:
        return keep
    known = {str(k) for k in known_items}
    keep = np.fromiter((i in known for i in ids), dtype=bool, count=len(ids))
    n_unknown = int((~keep).sum())
    if ids and n_unknown == len(ids):
        raise CrowdDataError(
            f"none of the {len(ids)} {what} belong to an item of the answers (e.g. {ids[0]!r} here, "
            f"{next(iter(known))!r} in the answers).", path=report.source,
            hint="the item ids must be written the same way in both files (same names, no extension or "
                 "folder unless the answers have them); choose the id column or id form that matches.")
    if n_unknown:
        bad = np.flatnonzero(~keep)[:5]
        ex = [f"{where[i]}: {ids[i]!r}" if where else repr(ids[i]) for i in bad]
        report.skip(f"{what} for items that are not in the answers (not embedded)", n_unknown, ex)
    missing = len(known - set(ids))
    if missing:
        report.notes.append(f"{missing} of the {len(known)} answered items have no {what[:-1] if what.endswith('s') else what}"
                            " here: they will have no features")
    return keep
