"""SQLite store of training runs: config, status, events (the log), error, result directory.

The database lives in the dashboard's data directory (:func:`data_home`):
``kdcrowd dashboard --data-dir`` / ``$KDCROWD_HOME`` if set, else ``./.kdcrowd``
when it already exists in the working directory, else ``~/.kdcrowd``.  Each run
also gets a folder ``<home>/runs/<run_id>/`` where the trainer's result is
saved, so a run can be reopened after a restart.  Run ids are checked
(:func:`kdcrowd_core.paths.check_id`) and run folders confined to the data
directory before anything is written or deleted: an id read back from the
database is never trusted as a path.

No streamlit import here: the training thread writes to the store directly.
Every method opens its own short-lived connection, so the store is safe to use
from several threads (SQLite serialises the writes; WAL mode keeps readers
unblocked).
"""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Iterator

from kdcrowd_core import paths

#: Run statuses. "interrupted" = the process running it stopped while the run was going.
STATUSES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
ACTIVE = ("queued", "running")
#: Seconds between two heartbeats of a live run (written by the process that runs it).
HEARTBEAT_S = 5.0
#: A run of another host (a shared data directory) is taken for dead after this long without a heartbeat.
STALE_AFTER_S = 120.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id          TEXT PRIMARY KEY,
    created     REAL NOT NULL,
    started     REAL,
    finished    REAL,
    status      TEXT NOT NULL,
    dataset     TEXT NOT NULL DEFAULT '',
    dataset_key TEXT NOT NULL DEFAULT '',
    config      TEXT NOT NULL DEFAULT '{}',
    device      TEXT,
    summary     TEXT,
    error       TEXT,
    result_dir  TEXT,
    dataset_id  TEXT NOT NULL DEFAULT '',
    pid         INTEGER,
    host        TEXT,
    proc_token  TEXT,
    heartbeat   REAL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    run_id  TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    t       REAL NOT NULL,
    kind    TEXT NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
"""


#: Columns added after the first release (added to an older database when it is opened).
_LATER_COLUMNS = {"dataset_id": "TEXT NOT NULL DEFAULT ''",   # a store made before datasets were stored
                  "pid": "INTEGER", "host": "TEXT", "proc_token": "TEXT", "heartbeat": "REAL"}


def this_host() -> str:
    return socket.gethostname()


def process_token(pid: int) -> str | None:
    """Start time of process ``pid`` (``/proc/<pid>/stat``, field 22), so a reused pid is not taken for the
    same process; None where /proc is not available."""
    try:
        raw = Path(f"/proc/{int(pid)}/stat").read_text()
        return raw[raw.rindex(")") + 2:].split()[19]
    except (OSError, ValueError, IndexError):
        return None


def process_alive(pid: int | None, token: str | None = None) -> bool:
    """True when process ``pid`` of this host exists (and, when ``token`` is known, is the same process)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except OSError:
        return False
    if token is not None:
        now = process_token(pid)
        if now is not None and now != token:
            return False
    return True


def data_home(setting: str | os.PathLike | None = None) -> Path:
    """The dashboard's data directory (created if missing); see :func:`kdcrowd_core.paths.data_home`.

    Order: explicit ``setting``, env ``KDCROWD_HOME``, ``./.kdcrowd`` if it exists, ``~/.kdcrowd``.
    """
    return paths.data_home(setting)



def connect(path: Path) -> sqlite3.Connection:
    """A connection to the store (the runs and the datasets tables): autocommit, WAL, rows as mappings."""
    con = sqlite3.connect(path, timeout=30, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.row_factory = sqlite3.Row
    return con


def fetch_all(path: Path, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
    """Run one statement on a fresh connection and return its rows."""
    con = connect(path)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()

@dataclass
class RunRecord:
    """One row of the ``runs`` table, with JSON columns decoded."""

    id: str
    created: float
    status: str
    dataset: str = ""
    dataset_key: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    started: float | None = None
    finished: float | None = None
    device: str | None = None
    summary: dict[str, Any] | None = None
    error: str | None = None
    result_dir: str | None = None
    dataset_id: str = ""     # the stored dataset (dashboard/datasets_db.py) it was trained on
    pid: int | None = None
    host: str | None = None
    proc_token: str | None = None
    heartbeat: float | None = None

    @property
    def duration(self) -> float | None:
        if self.started is None:
            return None
        return (self.finished or time.time()) - self.started

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE


def _json(v) -> str:
    return json.dumps(v, default=_default, allow_nan=True)


def _default(o):
    try:
        import numpy as np
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(o)


def _clock(t: float | None) -> str:
    return "—" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


class RunStore:
    """The runs database at ``<home>/runs.sqlite``."""

    def __init__(self, home: str | os.PathLike | None = None):
        self.home = data_home(home)
        self.path = self.home / "runs.sqlite"
        (self.home / "runs").mkdir(exist_ok=True)
        con = self._connect()
        try:
            con.executescript(_SCHEMA)
            have = {r["name"] for r in con.execute("PRAGMA table_info(runs)")}
            for col, typ in _LATER_COLUMNS.items():
                if col not in have:
                    try:
                        con.execute(f"ALTER TABLE runs ADD COLUMN {col} {typ}")
                    except sqlite3.OperationalError:   # another process added it just now
                        pass
        finally:
            con.close()

    # ------------------------------------------------------------ plumbing
    def _connect(self) -> sqlite3.Connection:
        return connect(self.path)

    def _exec(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        return fetch_all(self.path, sql, args)

    @staticmethod
    def _record(row: sqlite3.Row) -> RunRecord:
        d = dict(row)
        d["config"] = json.loads(d["config"] or "{}")
        d["summary"] = json.loads(d["summary"]) if d["summary"] else None
        return RunRecord(**d)

    # ----------------------------------------------------------------- runs
    def run_dir(self, run_id: str) -> Path:
        """The run's folder ``<home>/runs/<run_id>``; raises UnsafePathError for an invalid id or a path
        (e.g. a symlink) that leaves the data directory."""
        return paths.confined(self.home / "runs", paths.check_id("run", run_id))

    def create(self, *, config: dict[str, Any], dataset: str = "", dataset_key: str = "",
               dataset_id: str = "") -> RunRecord:
        """Insert a new queued run and create its folder."""
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        d = self.run_dir(run_id)
        d.mkdir(parents=True, exist_ok=True)
        self._exec("INSERT INTO runs (id, created, status, dataset, dataset_key, config, result_dir, dataset_id) "
                   "VALUES (?, ?, 'queued', ?, ?, ?, ?, ?)",
                   (run_id, time.time(), dataset, dataset_key, _json(config), str(d), dataset_id))
        return self.get(run_id)

    def import_run(self, run_id: str, *, marker: str, status: str = "done", created: float | None = None,
                   started: float | None = None, finished: float | None = None, dataset: str = "",
                   dataset_key: str = "", dataset_id: str = "", config: dict[str, Any] | None = None,
                   device: str | None = None,
                   summary: dict[str, Any] | None = None, result_dir: str | None = None,
                   events: list[tuple[float, str, dict[str, Any]]] = ()) -> bool:
        """Register a run computed elsewhere (e.g. the bundled sample run), at most once per ``marker``.

        One transaction inserts the run, its ``events`` (``(t, kind, payload)``) and
        the ``marker`` key in the ``meta`` table; when the marker is already there
        (imported before, even if the run was deleted since) nothing is written.
        Returns True when the run was inserted now.
        """
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        paths.check_id("run", run_id)
        if result_dir is not None:
            result_dir = str(self.run_dir(run_id))   # a run's folder is always derived from its id
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            if con.execute("SELECT 1 FROM meta WHERE key = ?", (marker,)).fetchone() is not None:
                con.execute("ROLLBACK")
                return False
            con.execute("INSERT OR IGNORE INTO runs (id, created, started, finished, status, dataset, dataset_key, "
                        "config, device, summary, result_dir, dataset_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (run_id, time.time() if created is None else created, started, finished, status, dataset,
                         dataset_key, _json(config or {}), device, None if summary is None else _json(summary),
                         result_dir, dataset_id))
            con.executemany("INSERT OR IGNORE INTO events (run_id, seq, t, kind, payload) VALUES (?, ?, ?, ?, ?)",
                            [(run_id, i + 1, float(t), kind, _json(payload))
                             for i, (t, kind, payload) in enumerate(events)])
            con.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (marker, _json({"run_id": run_id,
                                                                                      "t": time.time()})))
            con.execute("COMMIT")
            return True
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    def get_meta(self, key: str) -> Any:
        """A value stored with :meth:`import_run`'s marker (decoded JSON), or None."""
        rows = self._exec("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0]["value"]) if rows else None

    def get(self, run_id: str) -> RunRecord | None:
        rows = self._exec("SELECT * FROM runs WHERE id = ?", (run_id,))
        return self._record(rows[0]) if rows else None

    def list(self, limit: int = 50) -> list[RunRecord]:
        rows = self._exec("SELECT * FROM runs ORDER BY created DESC LIMIT ?", (int(limit),))
        return [self._record(r) for r in rows]

    def set_status(self, run_id: str, status: str, *, error: str | None = None,
                   device: str | None = None, summary: dict | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        now = time.time()
        sets, args = ["status = ?"], [status]
        if status == "running":
            sets.append("started = COALESCE(started, ?)")
            args.append(now)
        if status not in ACTIVE:
            sets.append("finished = ?")
            args.append(now)
        if error is not None:
            sets.append("error = ?")
            args.append(error)
        if device is not None:
            sets.append("device = ?")
            args.append(device)
        if summary is not None:
            sets.append("summary = ?")
            args.append(_json(summary))
        self._exec(f"UPDATE runs SET {', '.join(sets)} WHERE id = ?", (*args, run_id))

    def delete(self, run_id: str) -> bool:
        """Remove the run from the database and its folder from disk.

        The folder is removed only when ``run_id`` is a valid id and the folder is inside
        ``<home>/runs`` (a symlink is unlinked, never followed): an id such as ``../../x`` found in
        the database deletes the database rows and nothing on disk.  Returns True when a folder was
        removed."""
        self._exec("DELETE FROM events WHERE run_id = ?", (run_id,))
        self._exec("DELETE FROM runs WHERE id = ?", (run_id,))
        if not paths.is_valid_id(run_id):
            return False
        try:
            return paths.remove_tree(self.home / "runs", run_id)
        except (paths.UnsafePathError, OSError):
            return False

    # ------------------------------------------------------------ heartbeat
    def claim(self, run_id: str, pid: int | None = None) -> None:
        """Record which process runs ``run_id`` (pid, host, process start time) and its first heartbeat."""
        pid = os.getpid() if pid is None else int(pid)
        self._exec("UPDATE runs SET pid = ?, host = ?, proc_token = ?, heartbeat = ? WHERE id = ?",
                   (pid, this_host(), process_token(pid), time.time(), run_id))

    def beat(self, run_id: str) -> None:
        """The run's process is alive: refresh its heartbeat."""
        self._exec("UPDATE runs SET heartbeat = ? WHERE id = ?", (time.time(), run_id))

    def is_orphaned(self, r: RunRecord, now: float | None = None, stale_after: float = STALE_AFTER_S) -> bool:
        """True when active run ``r``'s process is gone.

        Same host: the recorded process no longer exists (or its pid now belongs to another process).
        Another host (a shared data directory): no heartbeat for ``stale_after`` seconds.  A row with no
        process recorded (written by an older version) counts by its last sign of life."""
        if not r.is_active:
            return False
        now = time.time() if now is None else now
        if r.pid is not None and r.host == this_host():
            return not process_alive(r.pid, r.proc_token)
        last = r.heartbeat or r.started or r.created
        return now - float(last) > stale_after

    def mark_interrupted(self, active_ids: set[str] = frozenset(), *,
                         stale_after: float = STALE_AFTER_S) -> int:
        """Active runs whose process is gone -> 'interrupted'; returns how many.

        Runs of live processes (this one's ``active_ids``, another server's on the same data directory)
        are left alone, so two servers sharing a data directory never interrupt each other's runs."""
        n = 0
        now = time.time()
        for r in self.list(limit=10_000):
            if r.id in active_ids or not self.is_orphaned(r, now, stale_after):
                continue
            who = f"process {r.pid} on {r.host}" if r.pid else "the process"
            msg = f"{who} running it stopped while the run was going (no heartbeat since {_clock(r.heartbeat)})."
            self.add_event(r.id, "log", {"message": msg})
            self.set_status(r.id, "interrupted", error=f"Interrupted: {msg}")
            n += 1
        return n

    # --------------------------------------------------------------- events
    def add_event(self, run_id: str, kind: str, payload: dict[str, Any]) -> None:
        """Append one event (``kind`` = "progress", "log", "error", ...) to a run's log."""
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            seq = con.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE run_id = ?",
                              (run_id,)).fetchone()[0]
            con.execute("INSERT INTO events (run_id, seq, t, kind, payload) VALUES (?, ?, ?, ?, ?)",
                        (run_id, seq, time.time(), kind, _json(payload)))
            con.execute("COMMIT")
        finally:
            con.close()

    def events(self, run_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        """A run's events in order, each ``{"seq", "t", "kind", **payload}``."""
        if kind is None:
            rows = self._exec("SELECT seq, t, kind, payload FROM events WHERE run_id = ? ORDER BY seq", (run_id,))
        else:
            rows = self._exec("SELECT seq, t, kind, payload FROM events WHERE run_id = ? AND kind = ? ORDER BY seq",
                              (run_id, kind))
        return [{"seq": r["seq"], "t": r["t"], "kind": r["kind"], **json.loads(r["payload"])} for r in rows]

    def log_text(self, run_id: str) -> str:
        """The run's log as plain text, one line per event."""
        lines = []
        for e in self.events(run_id):
            ts = time.strftime("%H:%M:%S", time.localtime(e["t"]))
            msg = e.get("message") or ""
            if e["kind"] == "progress":
                bits = [f"{e.get('stage')}"]
                if e.get("epoch"):
                    bits.append(f"epoch {e['epoch']}/{e.get('n_epochs')}")
                if e.get("loss") is not None:
                    bits.append(f"loss {e['loss']:.4f}")
                if e.get("train_accuracy") is not None:
                    bits.append(f"acc {e['train_accuracy']:.3f}")
                msg = " ".join(bits) + (f" — {msg}" if msg else "")
            lines.append(f"[{ts}] {e['kind']}: {msg}")
        return "\n".join(lines)

    def __iter__(self) -> Iterator[RunRecord]:
        return iter(self.list())
