"""Pages and statistics with many classes (issue 10, item 8): class x class charts page through the classes,
agreement statistics never build per-pair K x K tables or N x K arrays."""
from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

from dashboard import class_paging, state
from kdcrowd_core import metrics
from kdcrowd_core.data import CrowdData

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


def _crowd(n_items: int, n_classes: int, n_workers: int, seed: int = 0) -> CrowdData:
    rng = np.random.default_rng(seed)
    item = np.repeat(np.arange(n_items), 4)
    worker = np.concatenate([rng.choice(n_workers, 4, replace=False) for _ in range(n_items)])
    truth = rng.integers(0, n_classes, n_items)
    label = np.where(rng.random(item.size) < 0.7, truth[item], rng.integers(0, n_classes, item.size))
    return CrowdData.from_arrays(item, worker, label, classes=[f"c{k}" for k in range(n_classes)])


def test_block_pages_through_the_classes():
    M = np.arange(2 * 50 * 50, dtype=float).reshape(2, 50, 50)
    order = class_paging.class_order(np.r_[np.zeros(45), np.arange(5) + 1])
    assert list(order[:5]) == [49, 48, 47, 46, 45]
    codes = class_paging.page_codes(order, 3)
    assert len(codes) == 10 and class_paging.n_pages(50) == 3
    b = class_paging.block(M, codes)
    assert b.shape == (2, 10, 10) and b[1, 2, 3] == M[1, codes[2], codes[3]]
    assert class_paging.block(M, None) is M


def test_agreement_statistics_with_1000_classes_stay_small():
    """Issue 10: Disagreement with 1,000 classes took 57 s and 5 GB (a t x t x K x K table per worker pair)."""
    data = _crowd(3000, 1000, 40)
    tracemalloc.start()
    try:
        kappa = metrics.pairwise_cohen_kappa(data, top=20)
        metrics.pair_cooccurrence(data)
        metrics.krippendorff_alpha(data)
        metrics.fleiss_kappa(data)
        metrics.item_stats(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert kappa.shape == (20, 20)
    assert peak < 60e6, f"peak {peak / 1e6:.0f} MB"      # the old pairwise table alone was 3.2 GB


def _csv(data: CrowdData) -> bytes:
    rows = ["item,worker,label"] + [f"i{i},w{w},{data.classes[c]}" for i, w, c in
                                    zip(data.item, data.worker, data.label)]
    return "\n".join(rows).encode()


def _shape(z) -> tuple[int, int]:
    """Rows and columns of a heatmap's z (a nested list, or Plotly's typed array {"bdata", "shape"})."""
    if isinstance(z, dict):
        r, c = (int(v) for v in str(z["shape"]).split(","))
        return r, c
    return len(z), len(z[0]) if z else 0


def _app_with_answers(data, name: str) -> AppTest:
    """The app with ``data`` uploaded as the answers file ``name`` (no error shown)."""
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    at.session_state[state.PENDING] = [("answers", _csv(data), name)]
    at.run()
    assert not at.error, [e.value for e in at.error]
    return at


def test_pages_with_many_classes_send_small_figures():
    at = _app_with_answers(_crowd(600, 60, 30), "many_classes.csv")
    for page, key in (("app_pages/workers.py", "workers_class_page"), ("app_pages/disagreement.py",
                                                                        "dis_class_page")):
        at.switch_page(page)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert at.number_input(key=key).value == 1
        for el in at.get("plotly_chart"):
            fig = json.loads(el.proto.spec)
            for tr in fig["data"]:
                if tr.get("type") == "heatmap" and len(tr.get("y") or []) and str(tr["y"][0]).startswith("c"):
                    rows, cols = _shape(tr["z"])
                    assert rows <= class_paging.CLASS_PAGE and cols <= class_paging.CLASS_PAGE, (page, rows, cols)
        at.number_input(key=key).set_value(3).run()
        assert not at.exception, [e.value for e in at.exception]


def test_analysis_with_300_classes_keeps_worker_matrices_compact():
    """Issue 10: with many classes the analysis held R dense K x K matrices (plus copies and temporaries)
    and the Workers page's report built another R x K x K count array; now the matrices stay compact."""
    from dashboard.analysis import compute_analysis
    from kdcrowd_core import quality
    from kdcrowd_core.inference.matrices import ShrunkMatrices
    data = _crowd(2000, 300, 30)
    tracemalloc.start()
    try:
        a = compute_analysis(data)
        report = quality.worker_report(data, a.ds_proba, a.ds_matrices)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert isinstance(a.ds_matrices, ShrunkMatrices)
    assert len(report) == 30 and report["accuracy_low"].between(0, 1).all()
    # measured: 107 MB before (numpy arrays only; the torch fit's R x K x K arrays come on top), 31 MB now
    assert peak < 60e6, f"peak {peak / 1e6:.0f} MB"


def test_workers_and_labels_pages_with_300_classes():
    at = _app_with_answers(_crowd(400, 300, 12), "three_hundred_classes.csv")
    for page in ("app_pages/workers.py", "app_pages/labels.py"):
        at.switch_page(page)
        at.run()
        assert not at.exception, (page, [e.value for e in at.exception])
    table = at.dataframe[-1].value
    # 300 classes: no per-class probability columns on screen (the download has them)
    assert list(table.columns[:3]) == ["item", "label", "confidence"]
    assert not any(str(c).startswith("prob_") for c in table.columns)


def test_items_page_with_many_classes_ranks_the_relabel_list_when_asked(monkeypatch):
    """Issue 10: at 1,000 classes the relabel ranking's expected gain took ~3 s of the Items page's 9 s; above
    ``RELABEL_EAGER_MAX_WORK`` it now waits for a click; the scores shown are the library's."""
    from dashboard import quality_view as qv
    from kdcrowd_core import quality
    big = CrowdData.from_arrays(np.repeat(np.arange(10_000), 4), np.tile(np.arange(4), 10_000),
                                np.arange(40_000) % 1000, n_classes=1000)
    assert qv.relabel_on_request(big)                                  # the benchmark's crowd: on request
    assert not qv.relabel_on_request(_crowd(2000, 8, 20))              # a usual crowd: ranked on every visit
    calls = []
    real_gain = quality.expected_gain

    def counted_gain(*args, **kwargs):
        calls.append(1)
        return real_gain(*args, **kwargs)

    monkeypatch.setattr(quality, "expected_gain", counted_gain)
    monkeypatch.setattr(qv, "RELABEL_EAGER_MAX_WORK", 1_000)          # this small crowd counts as a large one
    data = _crowd(300, 250, 12)
    at = _app_with_answers(data, "items_many_classes.csv")
    at.switch_page("app_pages/items.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.dataframe) == 1 and not calls                        # the item table, no ranking yet
    shown = at.dataframe[0].value
    assert not any(str(col).startswith("prob_") for col in shown.columns)
    downloads = [b.proto.label for b in at.get("download_button")]   # the class probabilities: a file of their own
    assert downloads[0] == "Download every item's quality (CSV)" and len(downloads) == 2
    assert downloads[1].endswith(" classes' probabilities (large CSV)")
    ds = at.session_state[state.DATASET]
    lab = qv.labels_cached(ds.key, ds.crowd, "default", False)
    lib = quality.item_quality(ds.crowd, lab.proba, class_probas=False)
    np.testing.assert_allclose(shown["quality"].to_numpy(dtype=float),
                               lib.loc[shown.index, "quality"].to_numpy(dtype=float), atol=1e-12)
    at.button(key="relabel_rank").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(calls) == 1 and len(at.dataframe) == 2
    nxt = at.dataframe[-1].value
    expected = quality.relabel_next(ds.crowd, lab.proba, 50)
    assert list(nxt.index) == list(expected.index)
    np.testing.assert_allclose(nxt["expected_gain"].to_numpy(dtype=float), expected["expected_gain"], atol=1e-12)
    at.number_input(key="relabel_budget").set_value(20).run()          # asked once: kept for this dataset
    assert len(at.dataframe[-1].value) == 20
