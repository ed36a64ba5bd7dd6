"""Ids and paths confined to the data directory (kdcrowd_core.paths)."""
from __future__ import annotations

import os

import pytest

from kdcrowd_core import paths
from kdcrowd_core.errors import CrowdDataError


@pytest.mark.parametrize("value", ["20260101-120000-abc123", "sample-0a1b2c3d4e", "a", "A_b-9", "x" * 64])
def test_valid_ids(value):
    assert paths.check_id("run", value) == value


@pytest.mark.parametrize("value", ["", "../../victim_dir", "..", ".", ".hidden", "a/b", "a\\b", "/etc", "a b",
                                   "x" * 65, "a\x00b", "-lead", "_lead", "é", "a\n", None, 3, "~root"])
def test_invalid_ids_are_refused(value):
    with pytest.raises(paths.UnsafePathError) as e:
        paths.check_id("run", value)
    assert isinstance(e.value, CrowdDataError) and "run id" in str(e.value)


def test_confined_refuses_what_leaves_the_root(tmp_path):
    root = tmp_path / "home"
    root.mkdir()
    assert paths.confined(root, "runs", "r1") == (root / "runs" / "r1").resolve()
    for parts in [("..", "x"), ("runs", "..", "..", "x"), (str(tmp_path / "elsewhere"),), (".",), ("",)]:
        with pytest.raises(paths.UnsafePathError):
            paths.confined(root, *parts)


def test_confined_follows_symlinks(tmp_path):
    root, outside = tmp_path / "home", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(paths.UnsafePathError):
        paths.confined(root, "link", "file.txt")
    os.symlink(root / "inner_target", root / "inner")
    assert paths.confined(root, "inner") == (root / "inner_target").resolve()


def test_remove_tree_never_leaves_the_root(tmp_path):
    root, victim = tmp_path / "home", tmp_path / "victim_dir"
    (root / "runs" / "r1").mkdir(parents=True)
    (root / "runs" / "r1" / "f").write_text("x")
    victim.mkdir()
    (victim / "keep.txt").write_text("keep")
    with pytest.raises(paths.UnsafePathError):
        paths.remove_tree(root / "runs", "..", "..", "victim_dir")
    with pytest.raises(paths.UnsafePathError):
        paths.remove_tree(root / "runs", "../../victim_dir")
    # a symlinked run folder pointing outside: the link goes, the target stays
    os.symlink(victim, root / "runs" / "evil")
    assert paths.remove_tree(root / "runs", "evil")
    assert not (root / "runs" / "evil").exists() and (victim / "keep.txt").read_text() == "keep"
    assert paths.remove_tree(root / "runs", "r1") and not (root / "runs" / "r1").exists()
    assert not paths.remove_tree(root / "runs", "never-existed")


def test_data_home_order(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path / "env"))
    assert paths.data_home() == (tmp_path / "env").resolve()
    assert paths.data_home(tmp_path / "flag") == (tmp_path / "flag").resolve()
    assert (tmp_path / "flag").is_dir()
