"""Stored datasets: the SQLite/file round trip, reopening after a restart, the page address, the picker."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import state, training
from dashboard.datasets_db import DatasetStore, check_dataset_id, new_dataset_id
from dashboard.runs_db import RunStore
from kdcrowd_core.errors import CrowdDataError

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


def _restart() -> None:
    """What a server restart forgets: every cached resource (parsed files, opened datasets, stores)."""
    import streamlit as st
    st.cache_resource.clear()
    st.cache_data.clear()


def test_store_round_trip(kdcrowd_home):
    store = DatasetStore(kdcrowd_home)
    did = new_dataset_id()
    rec = store.save(dataset_id=did, name="first", files={"answers": (b"item,worker,label\n1,a,x\n", "a.csv")},
                     options={"item": "item"}, counts={"n_items": 1, "n_workers": 1, "n_answers": 1})
    assert rec.id == did and rec.files["answers"]["name"] == "a.csv" and rec.options == {"item": "item"}
    assert store.read_file(did, "answers") == b"item,worker,label\n1,a,x\n"
    assert store.file_path(did, "answers").is_relative_to(kdcrowd_home.resolve() / "datasets")
    # a second store on the same directory (another process) sees the same rows and files
    again = DatasetStore(kdcrowd_home)
    assert [r.id for r in again.list()] == [did] and again.get(did).n_items == 1
    again.rename(did, "  renamed \n data ")
    assert store.get(did).name == "renamed data"
    # files of a copy: kept, copied from another dataset, replaced; dropped kinds are removed
    other = new_dataset_id()
    store.save(dataset_id=other, name="copy", keep_files={"answers": rec.files["answers"]}, copy_from=did,
               files={"gold": (b"item,label\n1,x\n", "g.csv")})
    assert store.read_file(other, "answers") == store.read_file(did, "answers")
    store.save(dataset_id=other, name="copy", keep_files={"answers": rec.files["answers"]})
    assert not store.file_path(other, "gold").exists() and "gold" not in store.get(other).files
    store.delete(did)
    assert store.get(did) is None and not store.folder(did).exists() and store.get(other) is not None


@pytest.mark.parametrize("bad", ["../etc", "a/b", "", "x" * 200, "..", ".hidden", "a b", None, 12])
def test_ids_are_checked_before_any_path(bad, kdcrowd_home):
    store = DatasetStore(kdcrowd_home)
    with pytest.raises(CrowdDataError):
        check_dataset_id(bad)
    with pytest.raises(CrowdDataError):
        store.folder(bad)
    with pytest.raises(CrowdDataError):
        store.get(bad)
    with pytest.raises(CrowdDataError):
        state.open_dataset(bad)


def test_uploads_are_stored_and_reopen_after_a_restart(small_crowd_files, kdcrowd_home):
    s: dict = {}
    sample = state.current(s)
    assert sample.is_sample and sample.id
    assert state.ingest(s, "answers", small_crowd_files["answers"], "mine.csv",
                        options={"item": "item", "worker": "worker", "label": "label"})
    first = s[state.DATASET]
    assert first.id and first.id != sample.id and not first.is_sample
    assert state.ingest(s, "features", small_crowd_files["features"], "f.csv")
    assert state.ingest(s, "gold", small_crowd_files["gold"], "g.csv")
    assert state.ingest(s, "valid_features", small_crowd_files["test_features"], "vf.csv")
    assert state.ingest(s, "valid_gold", small_crowd_files["test_gold"], "vg.csv")
    ds = s[state.DATASET]
    assert ds.id == first.id, "optional files are added to the same dataset"
    assert ds.has_valid and ds.valid_split()[0].shape == (60, 8)
    state.rename_dataset(s, "my crowd")
    rec = DatasetStore(kdcrowd_home).get(ds.id)
    assert rec.name == "my crowd" and set(rec.files) == {"answers", "features", "gold", "valid_features",
                                                          "valid_gold"}
    assert rec.options == {"item": "item", "worker": "worker", "label": "label"}
    assert (rec.n_items, rec.n_workers, rec.n_answers) == (ds.crowd.n_items, ds.crowd.n_workers, ds.crowd.n_answers)

    _restart()
    back = state.open_dataset(ds.id)
    assert back is not ds and back.id == ds.id and back.name == "my crowd"
    assert back.key == ds.key and back.crowd.n_answers == ds.crowd.n_answers and back.crowd.features.shape == (240, 8)
    assert back.options == rec.options and back.has_valid
    # the sample is one dataset among the others, registered once
    recs = DatasetStore(kdcrowd_home).list()
    assert [r.is_sample for r in recs].count(True) == 1 and len(recs) == 2


def test_adding_to_the_sample_makes_a_copy(small_crowd_files):
    s: dict = {}
    sample = state.current(s)
    assert state.ingest(s, "gold", b"item,label\n" + b"\n".join(
        f"{i},{c}".encode() for i, c in zip(sample.crowd.item_ids[:5], sample.crowd.classes[:1].tolist() * 5)),
        "more_gold.csv")
    ds = s[state.DATASET]
    assert ds.id != sample.id and not ds.is_sample and "+ more_gold.csv" in ds.name
    assert state.open_dataset(sample.id).is_sample      # the sample itself is unchanged
    _restart()
    back = state.open_dataset(ds.id)
    assert back.crowd.n_items == sample.crowd.n_items and back.crowd.features is not None


def test_a_bad_file_stores_nothing(small_crowd_files, kdcrowd_home):
    s: dict = {}
    assert state.ingest(s, "answers", small_crowd_files["answers"], "a.csv")
    before = DatasetStore(kdcrowd_home).get(s[state.DATASET].id)
    assert not state.ingest(s, "gold", b"item,label\nnope,cat\n", "bad_gold.csv")
    after = DatasetStore(kdcrowd_home).get(s[state.DATASET].id)
    assert after.files == before.files and after.updated == before.updated


def test_delete_falls_back_to_the_sample_and_never_deletes_it(small_crowd_files):
    s: dict = {}
    sample = state.current(s)
    state.ingest(s, "answers", small_crowd_files["answers"], "a.csv")
    did = s[state.DATASET].id
    state.delete_dataset(s, did)
    assert s[state.DATASET].id == sample.id
    with pytest.raises(CrowdDataError, match="no dataset"):
        state.open_dataset(did)
    state.delete_dataset(s, sample.id)
    assert state.open_dataset(sample.id).is_sample


def _page(query: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_page_address_carries_the_dataset(small_crowd_files, kdcrowd_home):
    at = _page()
    sample_id = at.session_state[state.DATASET].id
    assert at.query_params["dataset"] == sample_id
    at.session_state[state.PENDING] = [("answers", small_crowd_files["answers"], "mine.csv")]
    at.run()
    mine = at.session_state[state.DATASET]
    assert mine.name == "mine.csv" and at.query_params["dataset"] == mine.id   # the upload wins over the old id

    # a "second tab" / bookmark / refresh after a server restart: a new session opens the address's dataset
    _restart()
    tab = _page({"dataset": mine.id})
    ds = tab.session_state[state.DATASET]
    assert ds.id == mine.id and ds.crowd.n_items == 240 and tab.metric[0].value == "240"
    # the picker opens another dataset and the address follows
    pick = tab.selectbox(key=f"dataset_pick_{mine.id}")
    assert len(pick.options) == 2 and pick.options[0].startswith("sample data")
    assert pick.options[1].startswith("mine.csv — 240 items")
    pick.set_value(sample_id).run()
    assert tab.session_state[state.DATASET].id == sample_id and tab.query_params["dataset"] == sample_id
    # an unknown or malformed id: a warning, and the app still opens (on the sample)
    for bad in ("0" * 32, "../../etc/passwd"):
        other = _page({"dataset": bad})
        assert other.session_state[state.DATASET].is_sample
        assert any("could not be opened" in w.value for w in other.warning)


def test_results_show_only_the_current_datasets_runs(small_crowd_files, kdcrowd_home):
    at = _page()
    sample = at.session_state[state.DATASET]
    at.session_state[state.PENDING] = [("answers", small_crowd_files["answers"], "mine.csv")]
    at.run()
    mine = at.session_state[state.DATASET]
    store = RunStore(kdcrowd_home)
    runs = store.list()
    assert runs and all(r.dataset_id == sample.id for r in runs)      # the bundled sample run
    assert training.runs_of(sample, done_only=True) and not training.runs_of(mine)
