"""Embeddings cached by content hash: the same text or image file is embedded once per model.

One SQLite file (``embeddings.sqlite``) under the cache directory holds
``(model, sha256 of the content) -> float32 vector``.  The model key includes
the model's name and the preprocessing version, so a change in either never
serves stale vectors.
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

CACHE_FILE = "embeddings.sqlite"


def default_cache_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Where embeddings are cached: ``<data directory>/cache/features``, the data directory being
    ``data_dir`` when given, else ``$KDCROWD_HOME``, ``./.kdcrowd`` or ``~/.kdcrowd``
    (:func:`kdcrowd_core.paths.data_home`)."""
    from ..paths import data_home
    return data_home(data_dir, create=False) / "cache" / "features"


def content_key(content: bytes | str) -> bytes:
    """sha256 digest of the content (str is hashed as UTF-8)."""
    if isinstance(content, str):
        content = content.encode("utf-8", "surrogatepass")
    return hashlib.sha256(content).digest()


class EmbeddingCache:
    """Vectors of one model keyed by content hash, stored in SQLite under ``directory``.

    ``EmbeddingCache(None, ...)`` is a no-op cache (nothing stored, nothing found).
    Safe to share between threads and processes (SQLite WAL, one connection per call).
    """

    def __init__(self, directory: str | os.PathLike | None, model_key: str, dim: int):
        self.model_key = model_key
        self.dim = int(dim)
        self.path = None if directory is None else Path(directory) / CACHE_FILE
        self._lock = threading.Lock()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as con:
                con.execute("PRAGMA journal_mode=WAL")
                con.execute("CREATE TABLE IF NOT EXISTS vectors (model TEXT NOT NULL, key BLOB NOT NULL, "
                            "vec BLOB NOT NULL, PRIMARY KEY (model, key))")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=60)
        try:
            with con:  # commit on success, roll back on error
                yield con
        finally:
            con.close()

    def get_many(self, keys: Iterable[bytes]) -> dict[bytes, np.ndarray]:
        """The cached vectors of those keys that are in the cache."""
        keys = list(dict.fromkeys(keys))
        if self.path is None or not keys:
            return {}
        found: dict[bytes, np.ndarray] = {}
        with self._lock, self._connect() as con:
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                q = ("SELECT key, vec FROM vectors WHERE model = ? AND key IN (" + ",".join("?" * len(chunk)) + ")")
                for k, v in con.execute(q, [self.model_key, *chunk]):
                    vec = np.frombuffer(v, dtype=np.float32)
                    if vec.shape[0] == self.dim:
                        found[bytes(k)] = vec
        return found

    def put_many(self, items: Iterable[tuple[bytes, np.ndarray]]) -> None:
        if self.path is None:
            return
        rows = [(self.model_key, k, np.ascontiguousarray(v, dtype=np.float32).tobytes()) for k, v in items]
        if not rows:
            return
        with self._lock, self._connect() as con:
            con.executemany("INSERT OR REPLACE INTO vectors (model, key, vec) VALUES (?, ?, ?)", rows)

    def __len__(self) -> int:
        if self.path is None:
            return 0
        with self._lock, self._connect() as con:
            return int(con.execute("SELECT COUNT(*) FROM vectors WHERE model = ?", [self.model_key]).fetchone()[0])
