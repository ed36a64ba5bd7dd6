"""The bundled pre-computed KD-Crowd run (sample_data/run): up to date, imported once, shown on first open."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from dashboard import state, training
from dashboard.runs_db import RunStore

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")
BUNDLE = ROOT / "sample_data" / "run"
REGENERATE = "regenerate with python scripts/make_sample_run.py"


def _script():
    spec = importlib.util.spec_from_file_location("make_sample_run", ROOT / "scripts" / "make_sample_run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def meta() -> dict:
    assert (BUNDLE / "run.json").is_file(), f"sample_data/run/run.json is missing: {REGENERATE}"
    return json.loads((BUNDLE / "run.json").read_text())


# ------------------------------------------------------------ staleness guard
def test_bundled_run_matches_the_current_defaults(meta):
    from kdcrowd_core.kd import KDConfig
    mk = _script()
    current = KDConfig().to_dict()
    stored = {**mk.ADDED_SETTINGS, **meta["config"]}   # settings added later: the value it was trained with
    ignored = set(mk.IGNORED_KEYS)
    diff = {k: (stored.get(k, "<missing>"), current.get(k, "<missing>")) for k in sorted(set(stored) | set(current))
            if k not in ignored and stored.get(k, "<missing>") != current.get(k, "<missing>")}
    assert not diff, f"the bundled sample run was trained with other settings than KDConfig()'s defaults " \
                     f"(stored, current): {diff} — {REGENERATE}"
    assert stored["seed"] == 0 and stored["device"] == "cpu"


def test_bundled_run_matches_the_sample_files(meta):
    mk = _script()
    assert meta["data_digests"] == mk.sample_digests(), f"the sample data changed since the run was made: {REGENERATE}"
    # the dashboard computes the same dataset key for the loaded sample
    assert meta["dataset_key"] == state._sample_from_files().key, REGENERATE


def test_bundled_run_loads_with_the_current_code(meta):
    from kdcrowd_core import io as kio
    from kdcrowd_core.kd import KDCrowd, KDResult
    try:
        res = KDResult.load(BUNDLE / "result")
        trainer = KDCrowd.load(BUNDLE / "result", device="cpu")
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"the bundled run no longer loads ({type(exc).__name__}: {exc}): {REGENERATE}")
    answers = kio.read_answers(ROOT / "sample_data" / "answers.csv")
    N, K = answers.n_items, answers.n_classes
    assert list(res.classes.astype(str)) == [str(c) for c in answers.classes]
    for m in ("mv", "ds", "teacher", "student", "stage2"):
        assert res.probas[m].shape == (N, K), (m, REGENERATE)
        np.testing.assert_allclose(res.probas[m].sum(1), 1.0, atol=1e-4)
    for m in ("ds", "teacher", "stage2"):
        assert res.worker_matrices[m].shape == (answers.n_workers, K, K), (m, REGENERATE)
    Xt, tids, _ = kio.read_features(ROOT / "sample_data" / "test_features.csv")
    for model in ("teacher", "student", "stage2"):
        p = trainer.predict_proba(Xt, model=model)
        assert p.shape == (len(tids), K), (model, REGENERATE)
        # the saved weights reproduce the saved test predictions
        np.testing.assert_allclose(p, res.test_probas[model], atol=1e-4, err_msg=REGENERATE)
    assert set(res.train_accuracy) >= {"mv", "ds", "teacher", "student", "stage2"}
    # the test split has its baselines: the student's head trained on MV and on Dawid-Skene labels
    assert set(res.test_probas) >= {"mv", "ds", "teacher", "student", "stage2"}, REGENERATE
    assert set(meta["summary"]["test_accuracy"]) >= {"mv", "ds", "teacher", "student", "stage2"}, REGENERATE
    tgold = kio.read_gold(ROOT / "sample_data" / "test_gold.csv")
    cls = [str(c) for c in res.classes]
    y = np.array([cls.index(str(tgold[i])) for i in tids.astype(str)])
    for m in ("mv", "ds"):
        assert res.test_probas[m].shape == (len(tids), K)
        acc = float((res.test_probas[m].argmax(1) == y).mean())
        assert acc == pytest.approx(meta["summary"]["test_accuracy"][m], abs=1e-9), (m, acc)
    assert meta["summary"]["train_accuracy"] == pytest.approx(res.train_accuracy)


def test_bundled_run_is_small():
    size = sum(p.stat().st_size for p in BUNDLE.rglob("*") if p.is_file())
    assert size < 2_000_000, f"sample_data/run takes {size / 1e6:.2f} MB"


# ------------------------------------------------------------------ import
def _sample():
    return state._sample_from_files()


def test_import_once_and_not_again(tmp_path):
    ds = _sample()
    store = RunStore(tmp_path / "home")
    rid = training.import_bundled_run(store, ds.crowd, ds.key)
    assert rid is not None and training.is_bundled(rid)
    rec = store.get(rid)
    assert rec.status == "done" and rec.dataset_key == ds.key and rec.config["teacher"]
    assert (Path(rec.result_dir) / "result" / "result.json").is_file()
    assert (Path(rec.result_dir) / "answers.npz").is_file()
    assert rec.summary["train_accuracy"]["stage2"] > 0
    assert len(store.events(rid, "progress")) > 10      # the training curves of the Train page
    # a second start (same or another store object) imports nothing
    assert training.import_bundled_run(store, ds.crowd, ds.key) is None
    assert training.import_bundled_run(RunStore(tmp_path / "home"), ds.crowd, ds.key) is None
    assert [r.id for r in store.list()] == [rid]
    # deleted by the user: it stays deleted
    store.delete(rid)
    assert training.import_bundled_run(store, ds.crowd, ds.key) is None
    assert store.list() == []


def test_no_import_for_other_data_or_when_a_run_exists(tmp_path, small_crowd_files):
    ds = _sample()
    store = RunStore(tmp_path / "a")
    other = state.apply_upload(None, "answers", small_crowd_files["answers"], "mine.csv", cached=False)
    assert training.import_bundled_run(store, other.crowd, other.key) is None
    assert store.list() == []
    # the user already trained on the sample: theirs is shown, no import
    rec = store.create(config={"teacher": "aggnet"}, dataset=ds.name, dataset_key=ds.key)
    store.set_status(rec.id, "done")
    assert training.import_bundled_run(store, ds.crowd, ds.key) is None
    assert [r.id for r in store.list()] == [rec.id]


# ----------------------------------------------------------------- the app
def _goto(at: AppTest, page: str) -> AppTest:
    at.switch_page(page)
    at.run()
    assert not at.exception, (page, [e.value for e in at.exception])
    return at


def test_first_open_shows_the_bundled_run(meta, kdcrowd_home):
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    runs = RunStore(kdcrowd_home).list()
    assert len(runs) == 1 and training.is_bundled(runs[0]) and runs[0].status == "done"
    _goto(at, "app_pages/results.py")
    assert not at.error and "Before and after" in [s.value for s in at.subheader]
    assert any("pre-computed sample run" in i.value for i in at.info)
    acc = meta["summary"]["train_accuracy"]
    shown = {m.label: m.value for m in at.metric}
    for key, label in (("mv", "Majority vote"), ("ds", "Dawid-Skene"), ("teacher", "Teacher"),
                       ("student", "Student"), ("stage2", "Stage 2")):
        assert shown[label] == f"{acc[key]:.1%}", (label, shown, acc)
    # the test split shows the MV / DS baselines (classifiers with the same head)
    captions = " ".join(c.value for c in at.caption)
    assert "with classifiers trained on majority-vote and Dawid-Skene labels" in captions, REGENERATE
    assert "no majority-vote / Dawid-Skene baselines" not in captions
    # the worker detail shows the run's teacher and stage-2 matrices next to Dawid-Skene's
    _goto(at, "app_pages/workers.py")
    assert not any("Train a model" in c.value for c in at.caption)
    detail = [e for e in at.get("plotly_chart") if "Worker " in e.proto.spec and "Stage 2" in e.proto.spec]
    assert detail and "Teacher" in detail[0].proto.spec
    # reruns and other pages don't import it again
    _goto(at, "app_pages/train.py")
    _goto(at, "app_pages/data.py")
    assert len(RunStore(kdcrowd_home).list()) == 1


def test_upload_other_data_is_not_mixed_with_the_sample_run(small_crowd_files, kdcrowd_home):
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.session_state[state.PENDING] = [("answers", small_crowd_files["answers"], "mine.csv")]
    at.run()
    assert not at.exception and at.session_state[state.DATASET].name == "mine.csv"
    _goto(at, "app_pages/workers.py")
    assert any("Train a model" in c.value for c in at.caption)     # no sample matrices on other data
    _goto(at, "app_pages/results.py")
    # Results lists only this dataset's runs: none yet, and it says so
    assert any("No finished training run on this dataset" in i.value for i in at.info)
    assert "Before and after" not in [s.value for s in at.subheader]
    assert len(RunStore(kdcrowd_home).list()) == 1
