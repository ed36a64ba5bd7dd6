"""The parse cache is bounded in bytes, not in entries (issue 10, item 8)."""
from __future__ import annotations

import numpy as np

from dashboard import state
from dashboard.bytecache import ByteLRU, nbytes


def test_lru_evicts_by_bytes():
    c = ByteLRU(1000)
    assert c.put("a", np.zeros(50))          # 400 bytes
    assert c.put("b", np.zeros(50))
    assert c.get("a") is not None            # a is now the most recent
    assert c.put("c", np.zeros(50))          # 1200 > 1000: b (least recent) goes
    assert "b" not in c and "a" in c and "c" in c and c.total_bytes == 800
    assert not c.put("huge", np.zeros(1000))  # larger than the whole budget: not kept
    assert "huge" not in c and c.total_bytes == 800


def test_nbytes_of_a_parsed_crowd(small_crowd_files):
    crowd = state.parse_file("answers", small_crowd_files["answers"], "a.csv")
    arrays = crowd.item.nbytes + crowd.worker.nbytes + crowd.label.nbytes
    assert arrays <= nbytes(crowd) < 50 * arrays + 10_000_000


def test_parse_cache_stays_within_its_byte_budget(small_crowd_files, monkeypatch):
    one = nbytes(state.parse_file("answers", small_crowd_files["answers"], "a.csv"))
    cache = ByteLRU(int(2.5 * one))
    monkeypatch.setattr(state, "PARSE_CACHE", cache)
    payload = small_crowd_files["answers"]
    for k in range(6):   # six different files (a comment line changes the bytes)
        data = payload + f"\n# {k}\n".encode() if k else payload
        state.apply_upload(None, "answers", data, f"a{k}.csv")
    assert len(cache) == 2 and cache.total_bytes <= cache.max_bytes
    # the same bytes again: served from the cache, not parsed again
    before = len(cache)
    state.apply_upload(None, "answers", payload + b"\n# 5\n", "a5.csv")
    assert len(cache) == before
