"""Every chart builder: figure type, number of traces and points, consistent colours, titles."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard import charts

CLASSES = ["cat", "dog", "bird"]


def _title(fig):
    return fig.layout.title.text


def test_palettes_are_stable_and_distinct():
    a = charts.class_colors(CLASSES)
    b = charts.class_colors(CLASSES + ["fish"])
    assert list(a) == CLASSES and len(set(a.values())) == 3
    assert all(a[k] == b[k] for k in a)            # adding a class never recolours the others
    assert len(set(charts.METHOD_COLORS[m] for m in charts.METHOD_ORDER)) == 5
    many = charts.class_colors(range(30))
    assert len(many) == 30 and len(set(list(many.values())[:24])) == 24


def test_count_distribution_small_range_uses_exact_counts():
    counts = np.array([1, 2, 2, 3, 3, 3])
    fig = charts.count_distribution(counts, title="Answers per item", what="answers per item", per="items")
    assert isinstance(fig, go.Figure) and len(fig.data) == 1 and _title(fig) == "Answers per item"
    bar = fig.data[0]
    assert list(bar.x) == [1, 2, 3] and list(bar.y) == [1, 2, 3]
    assert "items" in bar.hovertemplate


def test_count_distribution_wide_range_is_binned():
    counts = np.random.default_rng(0).integers(1, 100_000, size=200_000)
    fig = charts.count_distribution(counts, title="t", what="w", per="workers", max_bars=40)
    assert len(fig.data[0].x) == 40 and int(np.sum(fig.data[0].y)) == counts.size


def test_class_balance_colours_per_class():
    fig = charts.class_balance(CLASSES, np.array([5, 3, 2]), gold_counts=np.array([1, 1, 0]), title="Balance")
    assert len(fig.data) == 2 and _title(fig) == "Balance"
    cols = charts.class_colors(CLASSES)
    assert list(fig.data[0].marker.color) == [cols[c] for c in CLASSES]
    assert list(fig.data[1].marker.color) == [cols[c] for c in CLASSES]
    assert np.isclose(sum(fig.data[0].y), 1.0) and np.isclose(sum(fig.data[1].y), 1.0)
    assert len(charts.class_balance(CLASSES, np.array([5, 3, 2])).data) == 1


def test_confusion_heatmap():
    M = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.0, 0.5, 0.5]])
    fig = charts.confusion_heatmap(M, CLASSES, title="W1", counts=M * 10)
    hm = fig.data[0]
    assert isinstance(hm, go.Heatmap) and np.allclose(np.asarray(hm.z), M)
    assert hm.zmin == 0 and hm.zmax == 1 and list(hm.x) == CLASSES and _title(fig) == "W1"
    assert "answers" in hm.hovertemplate


def test_matrices_side_by_side_one_trace_per_matrix():
    M = np.eye(3)
    fig = charts.matrices_side_by_side({"ds": M, "teacher": M, "stage2": M, "empirical": M}, CLASSES,
                                       title="Worker w1")
    assert len(fig.data) == 4 and all(isinstance(t, go.Heatmap) for t in fig.data)
    assert sum(bool(t.showscale) for t in fig.data) == 1
    assert [a.text for a in fig.layout.annotations] == ["Dawid-Skene", "Teacher", "Stage 2", "Empirical (gold)"]


def test_worker_matrix_grid_shape_and_titles():
    rng = np.random.default_rng(0)
    M = rng.dirichlet(np.ones(3), size=(7, 3))
    fig = charts.worker_matrix_grid(M, [f"w{i}" for i in range(7)], CLASSES, cols=4)
    assert len(fig.data) == 7 and all(isinstance(t, go.Heatmap) for t in fig.data)
    assert all(t.zmin == 0 and t.zmax == 1 for t in fig.data)
    assert [a.text for a in fig.layout.annotations][:7] == [f"w{i}" for i in range(7)]
    assert "w3" in fig.data[3].hovertemplate


def test_contested_items_heatmap_marks_disagreements():
    A = np.array([[0, 1, -1], [2, 2, 2]])
    fig = charts.contested_items_heatmap(A, ["i1", "i2"], ["a", "b", "c"], CLASSES, np.array([0, 2]))
    assert len(fig.data) == 2
    hm, marks = fig.data
    z = np.asarray(hm.z, dtype=float)
    assert np.isnan(z[0, 2]) and z[1, 0] == 2
    assert len(marks.x) == 1 and marks.x[0] == "b" and marks.y[0] == "item i1"   # only (i1, b) disagrees
    # the discrete colour scale uses the class colours
    cols = list(charts.class_colors(CLASSES).values())
    assert [s[1] for s in hm.colorscale][::2] == cols
    assert np.asarray(hm.customdata)[0, 1, 0] == "dog"


def test_cooccurrence_heatmap_rows_normalised_counts_in_hover():
    C = np.array([[10, 2, 0], [2, 6, 1], [0, 1, 4]])
    fig = charts.cooccurrence_heatmap(C, CLASSES)
    z = np.asarray(fig.data[0].z)
    assert np.allclose(z.sum(axis=1), 1) and np.allclose(np.asarray(fig.data[0].customdata), C)
    assert "pairs" in fig.data[0].hovertemplate


def test_entropy_histogram_counts_all_items():
    e = np.random.default_rng(1).random(1000) * 2
    fig = charts.entropy_histogram(e, bins=25)
    assert len(fig.data) == 1 and len(fig.data[0].x) == 25 and int(sum(fig.data[0].y)) == 1000


def test_kappa_heatmap():
    k = pd.DataFrame([[1.0, 0.3], [0.3, 1.0]], index=["a", "b"], columns=["a", "b"])
    fig = charts.kappa_heatmap(k, overlap=pd.DataFrame([[5, 2], [2, 7]], index=["a", "b"], columns=["a", "b"]))
    hm = fig.data[0]
    assert hm.zmin == -1 and hm.zmax == 1 and list(hm.y) == ["a", "b"] and "shared items" in hm.hovertemplate


def test_worker_scatter_one_point_per_worker():
    s = pd.DataFrame({"answers": [10, 200, 30], "accuracy": [0.9, 0.5, 0.7], "spammer_score": [0.1, 0.8, 0.2]},
                     index=["w1", "w2", "w3"])
    fig = charts.worker_scatter(s)
    assert len(fig.data) == 1 and len(fig.data[0].x) == 3 and list(fig.data[0].text) == ["w1", "w2", "w3"]


def test_training_curves_traces_per_stage():
    hist = [{"stage": "ds", "message": "x"}]
    for st in ("teacher", "student"):
        for e in (1, 2, 3):
            hist.append({"stage": st, "epoch": e, "n_epochs": 3, "loss": 1 / e,
                         "train_accuracy": 0.5 + e / 10, "valid_accuracy": None})
    fig = charts.training_curves(hist)
    names = [t.name for t in fig.data]
    assert names == ["Teacher loss", "Teacher train acc.", "Student loss", "Student train acc."]
    assert fig.data[0].line.color == charts.METHOD_COLORS["teacher"]
    assert fig.data[2].line.color == charts.METHOD_COLORS["student"]
    assert len(fig.data[0].x) == 3
    assert len(charts.training_curves([]).data) == 0


def test_accuracy_bars_colour_per_method_and_split():
    acc = {"annotated items": {"stage2": 0.9, "mv": 0.7, "ds": 0.8},
           "test split": {"teacher": 0.6, "student": 0.65, "stage2": 0.7}}
    fig = charts.accuracy_bars(acc, title="Accuracy")
    assert len(fig.data) == 2 and _title(fig) == "Accuracy"
    assert list(fig.data[0].x) == ["Majority vote", "Dawid-Skene", "Stage 2"]        # canonical order
    assert list(fig.data[0].marker.color) == [charts.METHOD_COLORS[m] for m in ("mv", "ds", "stage2")]
    assert fig.data[0].marker.pattern.shape != fig.data[1].marker.pattern.shape


def test_per_class_accuracy():
    t = pd.DataFrame([[0.9, 0.8, 0.7], [0.95, 0.85, 0.6]], index=["mv", "stage2"], columns=CLASSES)
    fig = charts.per_class_accuracy(t)
    assert len(fig.data) == 2 and fig.data[1].marker.color == charts.METHOD_COLORS["stage2"]
    assert list(fig.data[0].x) == CLASSES


def test_method_agreement_and_confidence():
    ag = pd.DataFrame(np.array([[1, 0.9], [0.9, 1]]), index=["mv", "ds"], columns=["mv", "ds"])
    fig = charts.method_agreement_heatmap(ag)
    assert list(fig.data[0].x) == ["Majority vote", "Dawid-Skene"]
    conf = {"teacher": np.array([0.5, 0.9, 0.99]), "student": np.array([0.6, 0.7])}
    fig = charts.confidence_histograms(conf, bins=10)
    assert len(fig.data) == 2 and len(fig.data[0].x) == 10
    assert fig.data[1].line.color == charts.METHOD_COLORS["student"]
    assert int(sum(fig.data[0].customdata)) == 3 and np.isclose(sum(fig.data[1].y), 1)


def test_flip_matrix_counts_in_hover():
    C = np.array([[50, 2, 0], [1, 40, 3], [0, 0, 30]])
    fig = charts.flip_matrix(C, CLASSES)
    assert np.allclose(np.asarray(fig.data[0].customdata), C)
    assert "Teacher" in fig.data[0].hovertemplate and "Student" in fig.data[0].hovertemplate


def test_matrix_change_scatter():
    rng = np.random.default_rng(0)
    b = rng.dirichlet(np.ones(3), size=(5, 3))
    a = rng.dirichlet(np.ones(3), size=(5, 3))
    fig = charts.matrix_change_scatter(b, a, list("abcde"), np.array([1, 2, 3, 4, 5]))
    assert len(fig.data) == 2 and len(fig.data[0].x) == 5
    assert np.allclose(fig.data[0].x, np.einsum("rjj->r", b) / 3)
