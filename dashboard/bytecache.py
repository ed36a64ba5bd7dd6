"""A least-recently-used cache bounded in bytes, not in entries (no streamlit here).

The dashboard keeps parsed uploads so the same bytes are never parsed twice.
Counting entries is no bound: one large upload holds hundreds of MB.  This
cache adds up the size of what it holds (:func:`nbytes`: numpy arrays, pandas
indexes and frames, containers of them) and evicts the least recently used
entries beyond ``max_bytes``; an entry larger than the whole budget is not
kept at all.  Thread-safe (one server, many sessions).
"""
from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

import numpy as np
import pandas as pd


def nbytes(obj: Any, _seen: set[int] | None = None) -> int:
    """Approximate memory held by ``obj``: arrays, pandas objects, dataclasses/objects and containers of them."""
    seen = set() if _seen is None else _seen
    if id(obj) in seen or obj is None:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, (pd.Index, pd.Series)):
        return int(obj.memory_usage(deep=True)) + nbytes(getattr(obj, "attrs", None), seen)
    if isinstance(obj, pd.DataFrame):
        return int(obj.memory_usage(deep=True, index=True).sum())
    if isinstance(obj, (str, bytes, bytearray, int, float, bool)):
        return sys.getsizeof(obj)
    if isinstance(obj, dict):
        return sum(nbytes(k, seen) + nbytes(v, seen) for k, v in obj.items())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return sum(nbytes(v, seen) for v in obj)
    attrs = getattr(obj, "__dict__", None)
    if attrs is not None:
        return nbytes(attrs, seen)
    slots = getattr(type(obj), "__slots__", ())
    if slots:
        return sum(nbytes(getattr(obj, s, None), seen) for s in slots)
    return sys.getsizeof(obj)


class ByteLRU:
    """``get`` / ``put`` with eviction of the least recently used entries beyond ``max_bytes``."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._total = 0
        self._lock = threading.Lock()

    @property
    def total_bytes(self) -> int:
        return self._total

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def get(self, key: Hashable, default: Any = None) -> Any:
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                return default
            self._items.move_to_end(key)
            return hit[0]

    def put(self, key: Hashable, value: Any, size: int | None = None) -> bool:
        """Keep ``value`` (``size`` bytes, measured when not given); False when it is larger than the budget."""
        size = nbytes(value) if size is None else int(size)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._total -= old[1]
            if size > self.max_bytes:
                return False
            self._items[key] = (value, size)
            self._total += size
            while self._total > self.max_bytes and self._items:
                _, (_, s) = self._items.popitem(last=False)
                self._total -= s
            return True

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._total = 0
