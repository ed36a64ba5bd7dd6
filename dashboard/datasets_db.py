"""SQLite store of the dashboard's datasets: their files, reading options and sizes, beside the runs.

A dataset is what the Data page loaded: the annotations plus the optional
parts (features, gold, validation and test splits, class names, item
content).  Each one gets an id made here (``uuid4().hex``, never from user
input), a row in the ``datasets`` table of ``<home>/runs.sqlite`` and a folder
``<home>/datasets/<id>/`` holding its files under fixed names (``<kind>.dat``;
the user's file name is kept in the table, for messages and format detection).
The page URL carries the id (``?dataset=<id>``), so a refresh, a second tab or
a bookmark reopens the same data.

Every id is checked (:func:`check_dataset_id`) and every path resolved and
confined to the data directory before anything is read, written or deleted.
No streamlit import here.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdcrowd_core import paths

from .runs_db import connect, data_home, fetch_all

_SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created    REAL NOT NULL,
    updated    REAL NOT NULL,
    is_sample  INTEGER NOT NULL DEFAULT 0,
    n_items    INTEGER NOT NULL DEFAULT 0,
    n_workers  INTEGER NOT NULL DEFAULT 0,
    n_answers  INTEGER NOT NULL DEFAULT 0,
    n_classes  INTEGER NOT NULL DEFAULT 0,
    files      TEXT NOT NULL DEFAULT '{}',
    options    TEXT NOT NULL DEFAULT '{}'
);
"""

#: File kinds a dataset may hold (the Data page's upload boxes, plus the class-names list and item content).
FILE_KINDS = ("answers", "features", "gold", "valid_features", "valid_gold", "test_features", "test_gold",
              "class_names", "content", "label_map")


def check_dataset_id(value: Any) -> str:
    """``value`` when it is a valid dataset id, else :class:`~kdcrowd_core.paths.UnsafePathError`."""
    return paths.check_id("dataset", value)


def new_dataset_id() -> str:
    """A fresh dataset id (32 hex digits); ids never come from user input."""
    return uuid.uuid4().hex


@dataclass
class DatasetRecord:
    """One row of the ``datasets`` table.

    ``files`` maps a kind to ``{"name": the user's file name, "digest", "size"}``;
    ``options`` maps a kind to its reading options (JSON-able dict) plus dataset-wide
    settings under ``"dataset"`` (e.g. class names).
    """

    id: str
    name: str
    created: float
    updated: float
    is_sample: bool = False
    n_items: int = 0
    n_workers: int = 0
    n_answers: int = 0
    n_classes: int = 0
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> str:
        """Changes whenever the dataset's content or options change (cache key with the id)."""
        return f"{self.id}:{self.updated!r}"


class DatasetStore:
    """The ``datasets`` table in ``<home>/runs.sqlite`` and the files under ``<home>/datasets/``."""

    def __init__(self, home: str | os.PathLike | None = None):
        self.home = data_home(home)
        self.path = self.home / "runs.sqlite"
        (self.home / "datasets").mkdir(exist_ok=True)
        con = self._connect()
        try:
            con.executescript(_SCHEMA)
        finally:
            con.close()

    # ------------------------------------------------------------ plumbing
    def _connect(self) -> sqlite3.Connection:
        return connect(self.path)

    def _exec(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        return fetch_all(self.path, sql, args)

    @staticmethod
    def _record(row: sqlite3.Row) -> DatasetRecord:
        d = dict(row)
        d["files"] = json.loads(d["files"] or "{}")
        d["options"] = json.loads(d["options"] or "{}")
        d["is_sample"] = bool(d["is_sample"])
        return DatasetRecord(**d)

    def folder(self, dataset_id: str) -> Path:
        """``<home>/datasets/<id>``, checked to stay inside the data directory."""
        return paths.confined(self.home / "datasets", check_dataset_id(dataset_id))

    def file_path(self, dataset_id: str, kind: str) -> Path:
        if kind not in FILE_KINDS:
            raise ValueError(f"unknown dataset file kind {kind!r}")
        return paths.confined(self.home / "datasets", check_dataset_id(dataset_id), f"{kind}.dat")

    # ---------------------------------------------------------------- write
    def save(self, *, dataset_id: str, name: str, files: dict[str, tuple[bytes, str]] | None = None,
             keep_files: dict[str, dict[str, Any]] | None = None, copy_from: str | None = None,
             options: dict[str, Any] | None = None, counts: dict[str, int] | None = None,
             is_sample: bool = False) -> DatasetRecord:
        """Create or update a dataset.

        ``files``: new ``{kind: (bytes, file name)}`` written now (replacing that kind);
        ``keep_files``: file entries to keep as they are (same folder) or, with
        ``copy_from``, to copy from that dataset's folder; kinds in neither are removed.
        """
        check_dataset_id(dataset_id)
        import hashlib
        import shutil
        now = time.time()
        old = self.get(dataset_id)
        entries: dict[str, dict[str, Any]] = {}
        folder = self.folder(dataset_id)
        folder.mkdir(parents=True, exist_ok=True)
        for kind, meta in (keep_files or {}).items():
            if copy_from is not None and copy_from != dataset_id:
                shutil.copyfile(self.file_path(copy_from, kind), self.file_path(dataset_id, kind))
            entries[kind] = dict(meta)
        for kind, (payload, fname) in (files or {}).items():
            target = self.file_path(dataset_id, kind)
            tmp = target.with_name(f".{kind}.{uuid.uuid4().hex[:8]}.tmp")
            tmp.write_bytes(payload)
            tmp.replace(target)
            entries[kind] = {"name": str(fname), "size": len(payload),
                             "digest": hashlib.blake2b(payload, digest_size=16).hexdigest()}
        for kind in FILE_KINDS:   # parts dropped from the dataset: remove their file
            if kind not in entries:
                p = self.file_path(dataset_id, kind)
                if p.exists():
                    p.unlink()
        c = counts or {}
        args = (name, now, int(is_sample), int(c.get("n_items", 0)), int(c.get("n_workers", 0)),
                int(c.get("n_answers", 0)), int(c.get("n_classes", 0)), json.dumps(entries),
                json.dumps(options or {}))
        if old is None:
            self._exec("INSERT INTO datasets (name, updated, is_sample, n_items, n_workers, n_answers, n_classes, "
                       "files, options, id, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (*args, dataset_id, now))
        else:
            self._exec("UPDATE datasets SET name = ?, updated = ?, is_sample = ?, n_items = ?, n_workers = ?, "
                       "n_answers = ?, n_classes = ?, files = ?, options = ? WHERE id = ?", (*args, dataset_id))
        return self.get(dataset_id)

    def rename(self, dataset_id: str, name: str) -> None:
        name = " ".join(str(name).split())[:200]
        if not name:
            raise ValueError("a dataset name can't be empty")
        self._exec("UPDATE datasets SET name = ? WHERE id = ?", (name, check_dataset_id(dataset_id)))

    def delete(self, dataset_id: str) -> None:
        """Remove the dataset's row and folder (its runs stay, with the answers they trained on)."""
        check_dataset_id(dataset_id)
        self._exec("DELETE FROM datasets WHERE id = ?", (dataset_id,))
        paths.remove_tree(self.home / "datasets", dataset_id)

    # ----------------------------------------------------------------- read
    def get(self, dataset_id: str) -> DatasetRecord | None:
        rows = self._exec("SELECT * FROM datasets WHERE id = ?", (check_dataset_id(dataset_id),))
        return self._record(rows[0]) if rows else None

    def list(self) -> list[DatasetRecord]:
        """Every dataset, the sample first, then the most recently created."""
        rows = self._exec("SELECT * FROM datasets ORDER BY is_sample DESC, created DESC")
        return [self._record(r) for r in rows]

    def sample(self) -> DatasetRecord | None:
        rows = self._exec("SELECT * FROM datasets WHERE is_sample = 1 ORDER BY created LIMIT 1")
        return self._record(rows[0]) if rows else None

    def read_file(self, dataset_id: str, kind: str) -> bytes:
        return self.file_path(dataset_id, kind).read_bytes()
