"""Labels, Item quality and the Workers page's actions under AppTest, on the bundled sample."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from streamlit.testing.v1 import AppTest

from dashboard import quality_charts as qc
from dashboard import quality_view as qv
from dashboard import state

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


def _goto(at: AppTest, page: str) -> AppTest:
    at.switch_page(page)
    at.run()
    assert not at.exception, (page, [e.value for e in at.exception])
    return at


def _app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_labels_page_methods_accuracy_interval_and_clamp():
    at = _goto(_app(), "app_pages/labels.py")
    assert [t.value for t in at.title] == ["Labels"]
    ds = at.session_state[state.DATASET]
    caption = " ".join(c.value for c in at.caption)
    assert "95 % interval" in caption
    acc_default = [m.value for m in at.metric if m.label.startswith("Accuracy on")][0]
    at.selectbox(key=qv.METHOD_KEY).set_value("mv").run()
    assert not at.exception
    acc_mv = [m.value for m in at.metric if m.label.startswith("Accuracy on")][0]
    assert acc_mv != acc_default                                   # the method picker changes the labels
    # the same numbers as the CLI's aggregate (same library call)
    lab = qv.fit_labels(ds.crowd, "mv")
    from kdcrowd_core.quality import gold_accuracy
    assert acc_mv == f"{gold_accuracy(ds.crowd, lab.proba)['accuracy']:.1%}"
    at.toggle(key=qv.CLAMP_KEY).set_value(True).run()
    assert not at.exception
    assert [m.value for m in at.metric if m.label.startswith("Accuracy")][0] == "—"


def test_item_quality_page_sorted_and_relabel():
    at = _goto(_app(), "app_pages/items.py")
    assert [t.value for t in at.title] == ["Item quality"]
    df = at.dataframe[0].value
    assert len(df) > 0 and (np.diff(df["quality"].to_numpy()) >= -1e-12).mean() > 0.95
    nxt = at.dataframe[-1].value
    assert len(nxt) == 50 and list(nxt["rank"][:3]) == [1, 2, 3]
    at.number_input(key="relabel_budget").set_value(20).run()
    assert len(at.dataframe[-1].value) == 20


def test_workers_flags_follow_thresholds():
    at = _goto(_app(), "app_pages/workers.py")
    n_block = int([m.value for m in at.metric if m.label == "Workers to block"][0])
    at.slider(key="flag_block_acc").set_value(0.95).run()
    assert not at.exception
    n_block_strict = int([m.value for m in at.metric if m.label == "Workers to block"][0])
    assert n_block_strict > n_block
    at.number_input(key="flag_min_answers").set_value(100000).run()
    assert [m.value for m in at.metric if m.label == "Workers to block"][0] == "0"


def test_csv_bytes_guards_formulas_and_keeps_numbers():
    df = pd.DataFrame({"item": ["=HYPERLINK(1)", "ok", "-2+3"], "x": [-1.5, 2.0, 3.0]})
    text = qv.csv_bytes(df).decode()
    assert "'=HYPERLINK(1)" in text and "'-2+3" in text and "-1.5" in text and "'-1.5" not in text


def test_quality_charts():
    bins = qv.confidence_bins(np.array([0.3, 0.95, 0.99, 0.5]), np.array([False, True, True, True]))
    fig = qc.confidence_distribution(bins)
    assert [t.name for t in fig.data] == ["right (gold)", "wrong (gold)"]
    assert sum(fig.data[1].y) == 1 and sum(fig.data[0].y) == 3
    rows = pd.DataFrame({"split": ["gold", "gold"], "method": ["mv", "teacher"], "accuracy": [0.7, 0.8],
                         "low": [0.6, 0.72], "high": [0.78, 0.86], "n": [100, 100]})
    fig = qc.accuracy_with_intervals(rows)
    assert tuple(fig.layout.yaxis.range) == (0, 1.0)                 # the axis starts at 0
    np.testing.assert_allclose(fig.data[0].error_y.arrayminus, [0.1, 0.08])
    curve = qc.reliability_curve(np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]]), np.array([0, 1, 1]))
    assert curve["n"].sum() == 3 and set(curve["accuracy"]) <= {0.0, 1.0}


def test_before_after_intervals_changes_and_verdict():
    from dashboard import before_after as ba
    from kdcrowd_core.data import CrowdData
    from kdcrowd_core.kd import KDConfig, KDResult
    data = CrowdData.from_arrays(np.zeros(4, int), np.arange(4), np.zeros(4, int), n_items=10, n_classes=2,
                                 gold=np.array([0] * 5 + [1] * 5), validate=False)
    eye = np.eye(2)
    teacher = eye[[0, 0, 0, 0, 0, 0, 0, 0, 1, 1]]          # 7 of 10 right
    student = eye[[0, 0, 0, 1, 1, 1, 1, 1, 1, 1]]          # fixes 3, breaks 2 -> 8 of 10
    res = KDResult(classes=pd.Index(["a", "b"]), item_ids=pd.RangeIndex(10), worker_ids=pd.RangeIndex(4),
                   config=KDConfig(), device="cpu", worker_matrices={},
                   probas={"mv": teacher, "ds": teacher, "teacher": teacher, "student": student, "stage2": teacher},
                   valid_accuracy={"teacher": 0.8, "student": 0.7, "stage2": 0.8})
    rows = ba.accuracy_rows(res, data)
    r = rows.set_index("method")
    assert r.loc["teacher", "accuracy"] == 0.7 and r.loc["student", "accuracy"] == 0.8
    assert (r["low"] < r["accuracy"]).all() and (r["accuracy"] < r["high"]).all() and (r["n"] == 10).all()
    ch = ba.changes_vs_teacher(res, data).set_index("model")
    assert ch.loc["student", "fixed"] == 3 and ch.loc["student", "broke"] == 2
    assert ch.loc["student", "low"] < 0.1 < ch.loc["student", "high"]
    text = " ".join(ba.verdict(ch.reset_index()))
    assert "did not beat the teacher" in text and "fixed 3 labels and broke 2" in text
    assert ba.recommended(res)["model"] == "teacher"            # ties go to the simpler model
    res.valid_accuracy = {}
    assert ba.recommended(res)["model"] is None


def test_model_zip_and_test_predictions(tmp_path):
    import zipfile
    from dashboard import before_after as ba
    from kdcrowd_core.kd import KDConfig, KDResult
    P = np.array([[0.9, 0.1], [0.2, 0.8]])
    res = KDResult(classes=pd.Index(["a", "b"]), item_ids=pd.RangeIndex(2), worker_ids=pd.RangeIndex(1),
                   config=KDConfig(), device="cpu", probas={"stage2": P}, worker_matrices={},
                   test_probas={"stage2": P, "teacher": P[::-1]}, test_ids=pd.Index(["t1", "t2"]))
    res.save(tmp_path / "run" / "result")
    z = zipfile.ZipFile(__import__("io").BytesIO(ba.model_zip(tmp_path / "run")))
    assert {"model/result.json", "model/arrays.npz"} <= set(z.namelist())
    assert ba.model_zip(tmp_path / "nothing") is None
    pr = ba.test_predictions(res, "teacher")
    assert list(pr["label"]) == ["b", "a"] and list(pr["item"]) == ["t1", "t2"] and (pr["model"] == "teacher").all()
    assert list(ba.test_predictions(res, None)["label"]) == ["a", "b"]


def test_recommended_model_from_the_trainer_summary():
    from dashboard import before_after as ba

    class R:
        valid_accuracy = {}

        def __init__(self, s):
            self.s = s

        def summary(self):
            return self.s

    r = ba.recommended(R({"final": "teacher", "final_model": {"name": "teacher", "criterion": "validation accuracy",
                                                             "note": "The student did not beat the teacher."}}))
    assert r["model"] == "teacher" and "did not beat" in r["how"]
    assert ba.recommended(R({"final": "stage2", "final_model": {"name": "stage2", "criterion": "none"}}))["model"] \
        is None


def test_cli_and_dashboard_give_the_same_worker_and_label_numbers(tmp_path, small_crowd_files):
    from dashboard.analysis import compute_analysis
    from kdcrowd_core import quality
    from kdcrowd_core.cli import main
    from kdcrowd_core.io import load_crowd
    for k in ("answers", "gold"):
        (tmp_path / f"{k}.csv").write_bytes(small_crowd_files[k])
    assert main(["-q", "workers", str(tmp_path / "answers.csv"), "--gold", str(tmp_path / "gold.csv"),
                 "-o", str(tmp_path / "w.csv")]) == 0
    assert main(["-q", "aggregate", str(tmp_path / "answers.csv"), "--gold", str(tmp_path / "gold.csv"),
                 "-o", str(tmp_path / "l.csv")]) == 0
    data = load_crowd(tmp_path / "answers.csv", gold=tmp_path / "gold.csv")
    a = compute_analysis(data)                                   # what the Workers page uses
    page = quality.worker_report(data, a.ds_proba, a.ds_matrices)
    cli = pd.read_csv(tmp_path / "w.csv", keep_default_na=False).set_index("worker")
    cli.index = cli.index.astype(str)
    page.index = page.index.astype(str)
    for col in ("accuracy", "accuracy_low", "accuracy_high", "gold_accuracy"):
        np.testing.assert_allclose(cli.loc[page.index, col].astype(float), page[col], atol=1e-9, err_msg=col)
    assert (cli.loc[page.index, "action"] == page["action"]).all()
    labels = pd.read_csv(tmp_path / "l.csv")
    lab = qv.fit_labels(data, "default")                         # what the Labels page uses
    np.testing.assert_allclose(labels["confidence"], lab.proba.max(1), atol=1e-9)
