"""The whole app under streamlit.testing.v1.AppTest: every page on the sample, uploads, training, cancel."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import state, training

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")

PAGES = ["app_pages/data.py", "app_pages/workers.py", "app_pages/disagreement.py", "app_pages/train.py",
         "app_pages/results.py"]


def _app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _goto(at: AppTest, page: str) -> AppTest:
    at.switch_page(page)
    at.run()
    assert not at.exception, (page, [e.value for e in at.exception])
    return at


def _titles(at):
    return [t.value for t in at.title]


def test_every_page_renders_on_the_sample():
    at = _app()
    assert _titles(at) == ["Data"]
    ds = at.session_state[state.DATASET]
    assert ds.is_sample and ds.crowd.n_items >= 1000
    labels = [m.label for m in at.metric]
    assert labels[:4] == ["Items", "Workers", "Classes", "Answers"]
    assert at.metric[0].value == f"{ds.crowd.n_items:,}"
    _goto(at, PAGES[1])
    assert _titles(at) == ["Workers"] and not at.warning
    assert at.selectbox(key="workers_detail").value is not None
    _goto(at, PAGES[2])
    assert _titles(at) == ["Disagreement"]
    assert [m.label for m in at.metric][:2] == ["Krippendorff's alpha", "Fleiss' kappa"]
    _goto(at, PAGES[3])
    assert _titles(at) == ["Train"]
    _goto(at, PAGES[4])
    assert _titles(at) == ["Results"]
    # the pre-computed sample run (sample_data/run) is there from the first open
    assert not any("No finished training run" in i.value for i in at.info)
    assert "Before and after" in [s.value for s in at.subheader]


def test_workers_filters():
    at = _goto(_app(), PAGES[1])
    at.text_input(key="workers_search").input("no-such-worker-zz").run()
    assert not at.exception and any("No worker matches" in w.value for w in at.warning)
    at.text_input(key="workers_search").input("").run()
    at.selectbox(key="workers_sort").select("activity (answers)").run()
    assert not at.exception
    first = at.selectbox(key="workers_detail").options[0]
    ws = at.session_state[state.DATASET]
    a = state.analysis(ws)
    assert str(a.workers["answers"].idxmax()) == first


def test_upload_good_files_through_the_page(small_crowd_files):
    at = _app()
    at.session_state[state.PENDING] = [("answers", small_crowd_files["answers"], "my_answers.csv"),
                                       ("features", small_crowd_files["features"], "my_features.csv"),
                                       ("gold", small_crowd_files["gold"], "my_gold.csv")]
    at.run()
    assert not at.exception and not at.error
    ds = at.session_state[state.DATASET]
    assert ds.name == "my_answers.csv" and ds.crowd.n_items == 240 and ds.crowd.has_gold
    assert at.metric[0].value == "240" and at.metric[4].value == "72"
    for p in PAGES[1:3]:
        _goto(at, p)


BAD_FILES = [
    ("answers", b"", "empty.csv"),
    ("answers", bytes(range(256)) * 40, "binary.csv"),
    ("answers", b"item,worker,label\n1,a,x\n2,b,x\n", "single_class.csv"),
    ("answers", b"\x89PNG\r\n\x1a\n" + bytes(100), "picture.png"),
    ("answers", b"PK\x03\x04" + bytes(60), "sheet.xlsx"),
    ("answers", b"item,label\n1,cat\n2,dog\n", "no_worker_column.csv"),
    ("features", b"item,f0\nzz,1.0\n", "features_other_items.csv"),
    ("gold", b"item,label\nnope,cat\n", "gold_unknown_items.csv"),
]


@pytest.mark.parametrize("kind,payload,name", BAD_FILES, ids=[b[2] for b in BAD_FILES])
def test_bad_upload_shows_error_and_keeps_previous_data(kind, payload, name, small_crowd_files):
    at = _app()
    at.session_state[state.PENDING] = [("answers", small_crowd_files["answers"], "good.csv")]
    at.run()
    before = at.session_state[state.DATASET]
    assert before.name == "good.csv"
    at.session_state[state.PENDING] = [(kind, payload, name)]
    at.run()
    assert not at.exception
    assert len(at.error) == 1 and name in at.error[0].value, [e.value for e in at.error]
    assert at.session_state[state.DATASET] is before
    assert at.metric[0].value == "240"          # the page still shows the good data
    at.button(key="use_sample").click().run()                   # "Use the sample data" clears the error
    assert not at.error and at.session_state[state.DATASET].is_sample


def _load_small(at, files):
    at.session_state[state.PENDING] = [(k, files[k], f"{k}.csv")
                                       for k in ("answers", "features", "gold", "test_features", "test_gold")]
    at.run()
    assert not at.error, [e.value for e in at.error]


def _wait(job, timeout=240):
    t0 = time.time()
    while job.is_active and time.time() - t0 < timeout:
        time.sleep(0.1)
    if job.is_active:  # show where the run is stuck
        import faulthandler
        import sys
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    assert not job.is_active, f"still {job.status} after {timeout} s"


def _short_settings(at, epochs=2):
    for key in ("cfg_ep_t", "cfg_ep_s", "cfg_ep_2"):
        at.number_input(key=key).set_value(epochs)
    at.selectbox(key="cfg_device").select("cpu")


def test_short_training_run_to_completion_and_results(small_crowd_files):
    at = _app()
    _load_small(at, small_crowd_files)
    _goto(at, PAGES[3])
    _short_settings(at, epochs=2)
    at.button[0].click().run()      # the form's "Start training"
    assert not at.exception and not at.error, [e.value for e in at.error]
    job = training.manager().get(at.session_state[training.RUN_KEY])
    assert job is not None
    _wait(job)
    assert job.status == "done", (job.error, job.traceback)
    rec = training.store().get(job.run_id)
    assert rec.status == "done" and rec.summary is not None
    # the pages stay usable and show the run
    at.run()
    assert not at.exception
    # "Open a run" follows the new run (not the pre-computed sample run listed below it)
    assert at.selectbox(key="train_pick").value == job.run_id
    assert any(b.label == "Show the results" for b in at.button)
    _goto(at, PAGES[4])
    assert not at.error and "Before and after" in [s.value for s in at.subheader]
    methods = [m.label for m in at.metric]
    assert methods[:5] == ["Majority vote", "Dawid-Skene", "Teacher", "Student", "Stage 2"]
    assert all(m.value.endswith("%") for m in at.metric[:5])
    # the worker detail now shows teacher and stage-2 matrices
    _goto(at, PAGES[1])
    # reopened after a "restart": a fresh job manager reads the run from SQLite and its folder
    training._manager.clear()
    training._load_result.clear()
    run = training.load_run(job.run_id)
    assert run is not None and set(run.result.probas) >= {"mv", "ds", "teacher", "student", "stage2"}
    assert run.crowd.n_answers == at.session_state[state.DATASET].crowd.n_answers


def test_cancel_a_run(small_crowd_files):
    at = _app()
    _load_small(at, small_crowd_files)
    _goto(at, PAGES[3])
    _short_settings(at, epochs=1000)
    at.button[0].click().run()
    assert not at.exception
    run_id = at.session_state[training.RUN_KEY]
    job = training.manager().get(run_id)
    assert job.is_active
    cancel = [b for b in at.button if b.label == "Cancel the run"]
    assert cancel, [b.label for b in at.button]
    cancel[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert job.cancel.is_set(), "the Cancel button did not reach the job"
    _wait(job, timeout=30)
    assert job.status == "cancelled"
    assert training.store().get(run_id).status == "cancelled"
    at.run()
    assert not at.exception


def test_training_with_gold_held_out_for_model_selection(small_crowd_files):
    """Half of the gold items leave training and select the models; the pages show the run consistently."""
    at = _app()
    _load_small(at, small_crowd_files)
    crowd = at.session_state[state.DATASET].crowd
    n_gold = int(crowd.gold_mask.sum())
    _goto(at, PAGES[3])
    _short_settings(at, epochs=3)
    at.number_input(key="cfg_valid_share").set_value(50)
    at.button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    job = training.manager().get(at.session_state[training.RUN_KEY])
    _wait(job)
    assert job.status == "done", (job.error, job.traceback)
    n_valid = round(0.5 * n_gold)
    rec = training.store().get(job.run_id)
    assert rec.config["validation_gold_items"] == n_valid
    res = job.result
    assert len(res.item_ids) == crowd.n_items - n_valid and len(res.worker_ids) == crowd.n_workers
    assert res.valid_accuracy and all(0 <= v <= 1 for v in res.valid_accuracy.values())
    run = training.load_run(job.run_id, crowd, at.session_state[state.DATASET].key)
    assert run.crowd.n_items == len(res.item_ids) and int(run.crowd.gold_mask.sum()) == n_gold - n_valid
    for page in (PAGES[4], PAGES[1]):
        _goto(at, page)
        assert not at.error, [e.value for e in at.error]
