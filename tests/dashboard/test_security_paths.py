"""The runs store and the Train page never write or delete outside the data directory (issue 10, item 1)."""
from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import training
from dashboard.runs_db import RunStore
from kdcrowd_core.paths import UnsafePathError

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


def _inject_run(home: Path, run_id: str, status: str = "done") -> None:
    """A row written straight into the database, as a tampered or foreign store would hold it."""
    con = sqlite3.connect(home / "runs.sqlite")
    con.execute("INSERT INTO runs (id, created, status, dataset, config, result_dir) VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, time.time() + 1000, status, "tampered", "{}", str(home / "runs" / run_id)))
    con.commit()
    con.close()


def _victim(tmp_path: Path) -> Path:
    v = tmp_path / "victim_dir"
    v.mkdir()
    (v / "precious.txt").write_text("keep me")
    return v


def test_delete_with_traversal_id_touches_nothing_outside(tmp_path):
    home = tmp_path / "home"
    store = RunStore(home)
    victim = _victim(tmp_path)
    _inject_run(home, "../../victim_dir")
    assert store.get("../../victim_dir") is not None
    assert store.delete("../../victim_dir") is False
    assert (victim / "precious.txt").read_text() == "keep me"
    assert store.get("../../victim_dir") is None          # the database row is gone all the same


def test_run_dir_refuses_bad_ids_and_symlinks(tmp_path):
    store = RunStore(tmp_path / "home")
    with pytest.raises(UnsafePathError):
        store.run_dir("../../victim_dir")
    victim = _victim(tmp_path)
    os.symlink(victim, store.home / "runs" / "linked-run")
    with pytest.raises(UnsafePathError):
        store.run_dir("linked-run")
    _inject_run(store.home, "linked-run")
    store.delete("linked-run")
    assert (victim / "precious.txt").read_text() == "keep me"
    assert not (store.home / "runs" / "linked-run").exists()


def test_delete_button_on_train_page_with_a_traversal_id(tmp_path, kdcrowd_home):
    """Issue 10: `../../victim_dir` in the run store + "Delete this run" removed a folder outside the home."""
    victim = kdcrowd_home.parent / "victim_dir"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    RunStore(kdcrowd_home)
    _inject_run(kdcrowd_home, "../../victim_dir", status="failed")
    at.switch_page("app_pages/train.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    at.selectbox(key="train_pick").select("../../victim_dir").run()
    delete = [b for b in at.button if b.label == "Delete this run"]
    assert delete
    delete[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert (victim / "precious.txt").read_text() == "keep me"
    assert training.store().get("../../victim_dir") is None


def test_train_page_has_no_data_directory_box(kdcrowd_home):
    """The data directory comes from --data-dir / $KDCROWD_HOME; the page only shows it."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("app_pages/train.py")
    at.run()
    assert not at.exception
    assert not [t for t in at.text_input if "directory" in (t.label or "").lower()]
    assert any(str(kdcrowd_home.resolve()) in c.value for c in at.caption)
