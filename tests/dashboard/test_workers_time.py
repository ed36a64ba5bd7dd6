"""Time on task (MTurk's WorkTimeInSeconds) in the Workers page's table and report, as in `kdcrowd workers`."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
from streamlit.testing.v1 import AppTest

from dashboard import quality_view as qv
from dashboard import state
from kdcrowd_core import quality

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
WORKERS = [f"A{k}XYZ" for k in range(6)]


def mturk_batch(n_items: int = 30, seed: int = 0) -> tuple[bytes, dict[str, float]]:
    """An MTurk batch results CSV (one assignment per row) and each worker's median WorkTimeInSeconds."""
    rng = np.random.default_rng(seed)
    rows, times = [], {w: [] for w in WORKERS}
    for i in range(n_items):
        truth = ["cat", "dog"][i % 2]
        for k, w in enumerate(rng.choice(WORKERS, size=3, replace=False)):
            secs = int(rng.integers(5, 60)) * (1 + WORKERS.index(w))
            times[w].append(secs)
            label = truth if rng.random() < 0.8 else ["cat", "dog"][(i + 1) % 2]
            rows.append(f"H{i},AS{i}_{k},{w},{secs},Approved,img{i:03d},{label}")
    text = "HITId,AssignmentId,WorkerId,WorkTimeInSeconds,AssignmentStatus,Input.item,Answer.label\n"
    return (text + "\n".join(rows) + "\n").encode(), {w: float(np.median(t)) for w, t in times.items() if t}


def ranking(at: AppTest) -> pd.DataFrame:
    """The Workers page's ranking table (its first table)."""
    return at.dataframe[0].value


def test_work_seconds_from_bytes_csv_tsv_gzip_and_absent():
    data, medians = mturk_batch()
    for payload, name in ((data, "batch.csv"), (gzip.compress(data), "batch.csv.gz"),
                          (data.replace(b",", b"\t"), "batch.tsv")):
        s = quality.work_seconds_from_bytes(payload, name=name)
        assert s is not None and s.to_dict() == medians, name
    # a named worker column, and non-numeric times ignored
    renamed = data.replace(b"WorkerId", b"annotator")
    assert quality.work_seconds_from_bytes(renamed, "annotator").to_dict() == medians
    assert quality.work_seconds_from_bytes(renamed) is None                 # no worker column it knows
    blank = b"WorkerId,WorkTimeInSeconds,Input.item,Answer.label\nA,12,i1,x\nA,n/a,i2,y\nB,,i1,x\n"
    s = quality.work_seconds_from_bytes(blank)
    assert s["A"] == 12 and np.isnan(s["B"])
    assert quality.work_seconds_from_bytes(b"item,worker,label\ni1,A,x\n") is None
    assert quality.work_seconds_from_bytes(b"\x1f\x8b broken gzip") is None


def test_workers_page_shows_time_on_task_from_an_mturk_export():
    data, medians = mturk_batch()
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    assert not at.exception
    # the bundled sample has no WorkTimeInSeconds: no time-on-task column
    at.switch_page("app_pages/workers.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "median_seconds" not in ranking(at).columns
    at.session_state[state.PENDING] = [("answers", data, "Batch_123_batch_results.csv")]
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    ds = at.session_state[state.DATASET]
    assert ds.name == "Batch_123_batch_results.csv" and ds.crowd.n_workers == len(medians)
    table = ranking(at)
    shown = table["median_seconds"]
    shown.index = shown.index.astype(str)
    assert shown.to_dict() == {w: medians[w] for w in shown.index}
    assert any("WorkTimeInSeconds" in c.value for c in at.caption)
    assert "time on task (median seconds)" in at.selectbox(key="workers_sort").options
    at.selectbox(key="workers_sort").select("time on task (median seconds)").run()
    assert not at.exception
    order = ranking(at)["median_seconds"].to_numpy()
    assert (np.diff(order) <= 0).all()                                    # slowest first
    # the full report (the download) carries the same column, like `kdcrowd workers`
    a = state.analysis(ds)
    report = qv.worker_report_cached(ds.key, ds.crowd, a.ds_proba, a.ds_matrices, quality.WorkerThresholds(),
                                     qv.work_seconds(ds))
    got = pd.Series(report["median_seconds"].to_numpy(), index=report.index.astype(str))
    assert got.to_dict() == medians
